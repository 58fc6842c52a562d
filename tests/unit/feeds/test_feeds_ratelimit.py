"""The per-key token bucket, on a fake clock."""

from __future__ import annotations

import threading

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
