"""What a measurement came to: its repeats summarised, per metric and per stage.

Why apart from the harness: goals (bench/scenarios.py) compute their figures from these, the
report writes them, and the tests build them by hand without running anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.measures import SYNC_STAGES
from bench.runner import RunResult
from bench.stats import Spread, rate, spread


@dataclass
class Summary:
    """K repeats of one measurement (the warm-up already discarded)."""

    runs: list[RunResult]
    warmup_seconds: float | None = None

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError("a summary needs at least one repeat")

    @property
    def seconds(self) -> Spread:
        s = spread(r.seconds for r in self.runs)
        assert s is not None  # runs is non-empty and seconds is required
        return s

    @property
    def rows(self) -> int | None:
        s = spread(r.rows for r in self.runs)
        return None if s is None else int(s.median)

    @property
    def rows_per_s(self) -> Spread | None:
        return spread(rate(r.rows, r.seconds) for r in self.runs)

    @property
    def mb_per_s(self) -> Spread | None:
        return spread(rate(None if r.bytes is None else r.bytes / 1e6, r.seconds) for r in self.runs)

    @property
    def peak_rss_mb(self) -> Spread:
        s = spread(r.peak_rss_mb for r in self.runs)
        assert s is not None
        return s

    @property
    def imports_seconds(self) -> Spread | None:
        return spread(r.imports_seconds for r in self.runs)

    def stage(self, name: str) -> Spread | None:
        return spread(r.stages.get(name) for r in self.runs)

    @property
    def stage_names(self) -> list[str]:
        names: list[str] = []
        for r in self.runs:
            names += [n for n in r.stages if n not in names]
        return names

    def sync_seconds(self) -> Spread | None:
        """Seconds of the sync steps (extract → land, the quality gate included), build excluded."""
        return spread(sum(r.stages.get(s, 0.0) for s in SYNC_STAGES) if any(s in r.stages for s in SYNC_STAGES)
                      else None for r in self.runs)

    def validate_share(self) -> Spread | None:
        """The quality gate's share of the sync's time, per repeat."""
        shares = []
        for r in self.runs:
            sync = sum(r.stages.get(s, 0.0) for s in SYNC_STAGES)
            shares.append(r.stages["validate"] / sync if sync > 0 and "validate" in r.stages else None)
        return spread(shares)

    def to_dict(self) -> dict[str, Any]:
        def d(s: Spread | None) -> dict[str, Any] | None:
            return None if s is None else s.to_dict()

        return {"repeats": len(self.runs), "warmup_seconds": self.warmup_seconds, "rows": self.rows,
                "seconds": d(self.seconds), "rows_per_s": d(self.rows_per_s), "mb_per_s": d(self.mb_per_s),
                "peak_rss_mb": d(self.peak_rss_mb), "imports_seconds": d(self.imports_seconds),
                "stages": {n: d(self.stage(n)) for n in self.stage_names},
                "extra": self.runs[-1].extra, "runs": [r.to_dict() for r in self.runs]}


@dataclass
class Measured:
    """A measurement's outcome: a summary, or the error that stopped it (or the reason it was not run)."""

    summary: Summary | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"summary": None if self.summary is None else self.summary.to_dict(), "error": self.error}


@dataclass
class CaseOutcome:
    """One row of the report: the hub's measurement and each peer's on the same data."""

    case_id: str
    label: str
    hub: Measured
    peers: dict[str, Measured] = field(default_factory=dict)

    def ratio(self, peer: str) -> float | None:
        """peer_time / hub_time on the same rows (> 1: the hub is faster); by throughput so that a peer that
        loaded a different row count is not flattered."""
        h, p = self.hub.summary, self.peers.get(peer, Measured()).summary
        if h is None or p is None:
            return None
        hr, pr = h.rows_per_s, p.rows_per_s
        if hr is not None and pr is not None and pr.median > 0 and h.rows and p.rows:
            return hr.median / pr.median
        if h.seconds.median <= 0:
            return None
        return p.seconds.median / h.seconds.median
