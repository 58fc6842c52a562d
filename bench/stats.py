"""Median and spread of repeated measurements.

Why a module of its own: the harness, the report and the tests must agree on one definition.
On a noisy shared 2-core machine a mean is dragged by one slow repeat, so the figure is the
median, and the spread (min and max of the repeats, plus their relative range) says how far
to trust it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class Spread:
    """One metric over K repeats: median, min, max and the relative range (max - min) / median."""

    median: float
    low: float
    high: float
    n: int

    @property
    def relative_range(self) -> float:
        """(max - min) / median; 0 for a single repeat or a zero median."""
        if self.n < 2 or self.median == 0:
            return 0.0
        return (self.high - self.low) / abs(self.median)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "relative_range": self.relative_range}


def spread(values: Iterable[float | int | None]) -> Spread | None:
    """Summarise repeats; None when no repeat produced the value (e.g. a peer with no byte count).

    Rejects NaN and infinities: a broken timer must fail loudly, not become a median.
    """
    kept: list[float] = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if math.isnan(f) or math.isinf(f):
            raise ValueError(f"cannot summarise a non-finite measurement ({v!r})")
        kept.append(f)
    if not kept:
        return None
    return Spread(median=statistics.median(kept), low=min(kept), high=max(kept), n=len(kept))


def rate(amount: float | int | None, seconds: float | None) -> float | None:
    """amount per second, None when either side is unknown or the time is not positive."""
    if amount is None or seconds is None or seconds <= 0:
        return None
    return float(amount) / seconds
