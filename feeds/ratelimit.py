"""Per-key token buckets: a steady ``rate`` of requests per second with bursts up to ``burst``.

Why a token bucket: a platform's nightly pass fires pages back to back, which a fixed window
would cut off at the window edge and then release in a stampede; a bucket lets a short burst
through and then paces the pass at the sustained rate. The monotonic clock makes the limit
immune to wall-clock steps.

Why a mapped file: ``iehub serve --workers N`` runs N processes, and a key's rate is the key's,
not each worker's. The buckets live in a small table in a file under the feeds folder that
every worker maps; a check takes a thread lock and an ``flock`` on it, reads and writes one
slot (a few microseconds). Without a path (tests, one-off apps) the same table lives in
anonymous memory. ``CLOCK_MONOTONIC`` is one clock for every process of a machine; the file
carries the boot it was written in, and a table from an earlier boot is cleared.

Slots are found by hashing the key id, probing a few neighbours. A bucket that would be full
by now is the same as no bucket, so its slot is free for any key: the table only needs room
for the keys active within ``burst / rate`` seconds. If a probe finds no free slot (thousands of
keys all busy at once) the fullest bucket's slot is taken, which errs towards letting a request
through, never towards refusing one wrongly.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["RateLimiter"]

SLOTS = 4096
PROBE = 32
_HEADER = struct.Struct("<8s16s")  # magic, boot id
_SLOT = struct.Struct("<16sdd")  # key digest, tokens, at (monotonic seconds)
_MAGIC = b"iehubrl1"
_EMPTY = bytes(16)
_SIZE = _HEADER.size + SLOTS * _SLOT.size


def _boot_id() -> bytes:
    try:
        return bytes.fromhex(Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", ""))[:16]
    except (OSError, ValueError):
        return _EMPTY


class RateLimiter:
    """``check(key)`` returns 0 when the request may go, else the seconds to wait (for Retry-After)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic, *,
                 path: Path | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1 (got rate={rate}, burst={burst})")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None  # a file object, so a forgotten limiter closes it when collected
        if path is None:
            self._map = mmap.mmap(-1, _SIZE)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._file = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+b", buffering=0)
                with self._locked():
                    if os.fstat(self._file.fileno()).st_size < _SIZE:
                        os.ftruncate(self._file.fileno(), _SIZE)
                    self._map = mmap.mmap(self._file.fileno(), _SIZE)
            except OSError as exc:
                if self._file is not None:
                    self._file.close()
                raise OSError(f"cannot map the rate-limit table {path}: {exc.strerror or exc}") from None
        with self._locked():
            header = _HEADER.pack(_MAGIC, _boot_id())
            if self._map[:_HEADER.size] != header:  # new, foreign, or from an earlier boot: its clock is gone
                self._map[:] = bytes(_SIZE)
                self._map[:_HEADER.size] = header

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:  # flock is per open file, so threads of one process need their own lock too
            if self._file is None:
                yield
                return
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

    def _refilled(self, tokens: float, at: float, now: float) -> float:
        return min(self.burst, tokens + max(0.0, now - at) * self.rate) if at <= now else self.burst

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()

    @staticmethod
    def _probe(digest: bytes) -> Iterator[int]:
        """The offsets of the slots ``digest`` may occupy, in probe order."""
        start = int.from_bytes(digest[:4], "little") % SLOTS
        for i in range(PROBE):
            yield _HEADER.size + ((start + i) % SLOTS) * _SLOT.size

    def _slot(self, digest: bytes, now: float) -> tuple[int, float]:
        """(offset, tokens now) of ``digest``'s bucket: its own slot, else a free one, else the fullest."""
        free: int | None = None
        fullest: tuple[float, int] = (-1.0, 0)
        for offset in self._probe(digest):
            owner, tokens, at = _SLOT.unpack_from(self._map, offset)
            if owner == digest:
                return offset, self._refilled(tokens, at, now)
            level = self.burst if owner == _EMPTY else self._refilled(tokens, at, now)
            if free is None and level >= self.burst:
                free = offset
            fullest = max(fullest, (level, offset))
        return (free if free is not None else fullest[1]), self.burst

    def check(self, key: str) -> float:
        """Take one token for ``key`` if there is one; otherwise how long until there will be."""
        digest = self._digest(key)
        with self._locked():
            now = self._clock()
            offset, tokens = self._slot(digest, now)
            if tokens >= 1.0:
                _SLOT.pack_into(self._map, offset, digest, tokens - 1.0, now)
                return 0.0
            _SLOT.pack_into(self._map, offset, digest, tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """Retry-After takes whole seconds; round up so a client that obeys it is never refused again."""
        return str(max(1, math.ceil(wait)))

    def forget(self, key: str) -> None:
        """Drop a key's bucket (a revoked key needs none)."""
        digest = self._digest(key)
        with self._locked():
            for offset in self._probe(digest):
                if self._map[offset:offset + 16] == digest:
                    _SLOT.pack_into(self._map, offset, _EMPTY, 0.0, 0.0)

    def close(self) -> None:
        """Unmap the table (the app keeps its limiter for the life of the process; tests close theirs)."""
        with self._lock:
            self._map.close()
            if self._file is not None:
                self._file.close()
                self._file = None
