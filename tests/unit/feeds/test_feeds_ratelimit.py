"""The per-key token bucket, on a fake clock."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from feeds.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refusal_with_the_wait_then_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.check("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.check("k")
    assert wait == pytest.approx(0.5)
    assert RateLimiter.retry_after(wait) == "1"
    clock.now += 0.5
    assert limiter.check("k") == 0.0
    assert limiter.check("k") > 0
    clock.now += 100  # refills only up to the burst
    assert [limiter.check("k") for _ in range(4)][-1] > 0


def test_keys_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    assert limiter.check("a") == 0.0
    assert limiter.check("a") > 0
    assert limiter.check("b") == 0.0
    limiter.forget("a")
    assert limiter.check("a") == 0.0


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert RateLimiter.retry_after(0.01) == "1"
    assert RateLimiter.retry_after(2.2) == "3"


def test_concurrent_callers_get_exactly_the_burst() -> None:
    limiter = RateLimiter(rate=0.001, burst=50, clock=Clock())
    granted = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(20):
            if limiter.check("k") == 0.0:
                with lock:
                    granted.append(1)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 50


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0)])
def test_nonsense_settings_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate must be"):
        RateLimiter(rate, burst)


def _take_from_file(path: str, tries: int, results: "multiprocessing.Queue[int]") -> None:
    limiter = RateLimiter(rate=0.001, burst=50, path=Path(path))
    results.put(sum(1 for _ in range(tries) if limiter.check("k") == 0.0))
    limiter.close()


def test_worker_processes_share_one_bucket_per_key(tmp_path: Path) -> None:
    """`iehub serve --workers N`: a key's rate is the key's, not each worker's."""
    ctx = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
    results = ctx.Queue()
    path = str(tmp_path / "ratelimit.bin")
    RateLimiter(rate=0.001, burst=50, path=Path(path)).close()  # the table exists before the race
    workers = [ctx.Process(target=_take_from_file, args=(path, 40, results)) for _ in range(3)]
    for w in workers:
        w.start()
    granted = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(60)
    assert sum(granted) == 50  # 120 tries across three processes, exactly the burst let through


def test_a_table_from_another_boot_is_cleared(tmp_path: Path) -> None:
    path = tmp_path / "ratelimit.bin"
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock(), path=path)
    assert limiter.check("k") == 0.0 and limiter.check("k") > 0
    limiter.close()
    again = RateLimiter(rate=1.0, burst=1, clock=Clock(), path=path)
    assert again.check("k") > 0  # same boot: the empty bucket is remembered across restarts
    again.close()
    with path.open("r+b") as f:  # what a reboot changes: the boot id in the header
        f.seek(8)
        f.write(b"\xff" * 16)
    after_boot = RateLimiter(rate=1.0, burst=1, clock=Clock(), path=path)
    assert after_boot.check("k") == 0.0
    after_boot.close()


def test_more_keys_than_slots_still_get_their_burst_once_buckets_refill() -> None:
    from feeds import ratelimit

    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    keys = [f"key-{i}" for i in range(ratelimit.SLOTS + 500)]
    assert all(limiter.check(k) == 0.0 for k in keys)  # a full table errs towards letting requests through
    clock.now += 2  # every bucket is full again: each slot is free for any key
    assert all(limiter.check(k) == 0.0 for k in keys[:1000])
    assert all(limiter.check(k) == 0.0 for k in keys[:1000])
    assert all(limiter.check(k) > 0 for k in keys[:1000])  # and each key's own bucket is back in force
