"""Per-key token buckets: a steady ``rate`` of requests per second with bursts up to ``burst``.

Why a token bucket: a platform's nightly pass fires pages back to back, which a fixed window
would cut off at the window edge and then release in a stampede; a bucket lets a short burst
through and then paces the pass at the sustained rate. The monotonic clock makes the limit
immune to wall-clock steps. One lock guards the table of buckets; each check is O(1).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """``check(key)`` returns 0 when the request may go, else the seconds to wait (for Retry-After)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1 (got rate={rate}, burst={burst})")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def check(self, key: str) -> float:
        """Take one token for ``key`` if there is one; otherwise how long until there will be."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """Retry-After takes whole seconds; round up so a client that obeys it is never refused again."""
        return str(max(1, math.ceil(wait)))

    def forget(self, key: str) -> None:
        """Drop a key's bucket (a revoked key needs none)."""
        with self._lock:
            self._buckets.pop(key, None)
