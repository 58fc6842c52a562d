"""Run scenarios: prepare their sources, measure every case (warm-up, then K repeats), decide the goals.

Why one warm-up per measurement: the first run after preparing a source pays for cold page
caches (the database's and the OS's) and for compiling bytecode; discarding it leaves K repeats
that each start from the same warm state, and the median of those is the figure. A measurement
shared by two scenarios (S6's 1M sync is S1's; S4 reuses S1–S3's) is taken once per harness run.
``--quick`` warms up once per scenario instead (its first measurement), to stay within minutes:
its figures are indicative, the full run's are the ones goals are read from.
"""
from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bench.outcome import CaseOutcome, Measured, Summary
from bench.runner import Measure, RunResult, run_measure
from bench.scenarios import Goal, Scenario, at_rank
from bench.setups import WORK, Context, ServerPool

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class GoalResult:
    goal: Goal
    value: float | None
    verdict: str
    scale: int

    def to_dict(self) -> dict[str, Any]:
        g = self.goal
        return {"id": g.id, "text": g.text, "op": g.op, "threshold": g.threshold, "unit": g.unit,
                "nominal_scale": g.nominal_scale, "measured_scale": self.scale, "value": self.value,
                "verdict": self.verdict}


@dataclass
class ScenarioRun:
    """One scenario at one scale: its cases and goals, or the error that stopped its setup."""

    scenario: Scenario
    scale: int
    cases: list[CaseOutcome] = field(default_factory=list)
    goals: list[GoalResult] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario.id, "title": self.scenario.title, "scale": self.scale,
                "error": self.error, "seconds": self.seconds,
                "cases": [{"id": c.case_id, "label": c.label, "hub": c.hub.to_dict(),
                           "peers": {k: v.to_dict() for k, v in c.peers.items()},
                           "ratios": {k: c.ratio(k) for k in c.peers}} for c in self.cases],
                "goals": [g.to_dict() for g in self.goals]}


@dataclass
class HarnessRun:
    started_at: datetime
    repeat: int
    quick: bool
    seed: int
    runs: list[ScenarioRun] = field(default_factory=list)
    seconds: float = 0.0
    warmup_each: bool = True

    @property
    def failed(self) -> bool:
        """True when a scenario could not run or a hub measurement failed (goal MISSes are not failures)."""
        return any(r.error or any(c.hub.error for c in r.cases) for r in self.runs)


class Harness:
    def __init__(self, *, repeat: int, quick: bool, seed: int = 7, work: Path = WORK,
                 timeout: float | None = None, warmup_each: bool | None = None, log: Log = _stderr) -> None:
        if repeat < 1:
            raise ValueError(f"--repeat must be at least 1, not {repeat}")
        self.repeat, self.quick, self.seed, self.work = repeat, quick, seed, work
        self.timeout = timeout or (600.0 if quick else 3600.0)
        self.warmup_each = (not quick) if warmup_each is None else warmup_each
        self.log = log
        self._memo: dict[str, Measured] = {}
        self._warmed = False  # within the current scenario run (used when not warming up each measurement)

    def measure(self, measure: Measure, label: str, once: bool = False) -> Measured:
        """Warm-up, then `repeat` runs, each in a fresh process; reused when this run measured it already.

        `once`: one run, no warm-up (a case too large to repeat, see Case.once)."""
        key = measure.key()
        if key in self._memo:
            self.log(f"    {label}: measured earlier in this run (shared)")
            return self._memo[key]
        runs: list[RunResult] = []
        warmup: float | None = None
        warm = not once and (self.warmup_each or not self._warmed)
        self._warmed = True
        repeat = 1 if once else self.repeat
        try:
            for i in range(0 if warm else 1, repeat + 1):
                result = run_measure(measure, work_dir=self.work / "runs", timeout=self.timeout)
                tag = "warm-up" if i == 0 else ("one run" if once else f"repeat {i}/{repeat}")
                rows = f"{result.rows:,} rows, " if result.rows is not None else ""
                self.log(f"    {label} [{tag}]: {rows}{result.seconds:.2f} s, peak RSS {result.peak_rss_mb:.0f} MB")
                if i == 0:
                    warmup = result.seconds
                else:
                    runs.append(result)
            outcome = Measured(summary=Summary(runs, warmup_seconds=warmup))
        except Exception as exc:  # noqa: BLE001 - one failed measurement must not stop the others
            self.log(f"    {label}: FAILED: {exc}")
            outcome = Measured(error=str(exc))
        self._memo[key] = outcome
        return outcome

    def run_scenario(self, scenario: Scenario, scale: int, servers: ServerPool) -> ScenarioRun:
        t0 = time.perf_counter()
        run = ScenarioRun(scenario, scale)
        self._warmed = False
        self.log(f"{scenario.id} {scenario.title} at {scale:,} rows")
        try:
            cases = scenario.plan(Context(scale, self.seed, self.quick, self.work, servers))
        except Exception as exc:  # noqa: BLE001 - reported as this scenario's error, never skipped silently
            run.error = f"{type(exc).__name__}: {exc}"
            self.log(f"  {scenario.id}: could not prepare its sources: {run.error}")
            cases = []
        for case in cases:
            label = case.label + (" (one run, no warm-up)" if case.once and self.repeat > 1 else "")
            self.log(f"  {label}")
            outcome = CaseOutcome(case.id, label, self.measure(case.hub, "hub", case.once))
            for peer in case.peers:
                if peer.measure is None:
                    outcome.peers[peer.label] = Measured(error=peer.missing)
                    self.log(f"    {peer.label}: {peer.missing}")
                else:
                    outcome.peers[peer.label] = self.measure(peer.measure, peer.label, case.once)
            run.cases.append(outcome)
        run.seconds = time.perf_counter() - t0
        return run

    def run(self, scenarios: list[Scenario], scales: dict[str, tuple[int, ...]]) -> HarnessRun:
        result = HarnessRun(started_at=datetime.now(timezone.utc), repeat=self.repeat, quick=self.quick,
                            seed=self.seed, warmup_each=self.warmup_each)
        t0 = time.perf_counter()
        with ExitStack() as stack:
            servers = ServerPool(stack)
            for scenario in scenarios:
                runs = [self.run_scenario(scenario, scale, servers) for scale in scales[scenario.id]]
                decide_goals(scenario, runs, self.log)
                result.runs += runs
        result.seconds = time.perf_counter() - t0
        return result


def decide_goals(scenario: Scenario, runs: list[ScenarioRun], log: Log = _stderr) -> None:
    """Decide each goal of `scenario` once, in the run at its scale_rank (the last run when fewer ran), from that
    run's cases (plain ids) and every run's (``at_rank(case, rank)``); its result goes to that run's goals."""
    if not runs:
        return
    every = {at_rank(c.case_id, rank): c for rank, r in enumerate(runs) for c in r.cases}
    for goal in scenario.goals:
        run = runs[min(goal.scale_rank, len(runs) - 1)]
        outcomes = {**every, **{c.case_id: c for c in run.cases}}
        try:
            value = goal.figure(outcomes)
        except Exception as exc:  # noqa: BLE001 - a figure that cannot be computed is a MISS with the reason
            log(f"  goal {goal.id}: cannot compute ({exc})")
            value = None
        run.goals.append(GoalResult(goal, value, goal.verdict(value), int(round(run.scale * goal.scale_multiple))))
