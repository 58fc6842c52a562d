"""The subprocess runner and the harness, end to end: fresh processes, peak RSS, failures, one real scenario."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness import Harness
from bench.runner import Measure, RunFailed, parse_result, run_measure
from bench.scenarios import SCENARIOS, Case, Goal, Scenario


def test_a_measure_runs_in_its_own_process_and_reports_its_own_peak_rss(tmp_path: Path) -> None:
    small = run_measure(Measure("selftest_sleep", {"allocate_mb": 0, "rows": 10, "bytes": 1000}), work_dir=tmp_path,
                        timeout=60)
    big = run_measure(Measure("selftest_sleep", {"allocate_mb": 300, "rows": 10}), work_dir=tmp_path, timeout=60)
    assert small.rows == 10 and small.bytes == 1000 and small.extra == {"scratch_exists": True}
    # the 300 MB block shows in that child's peak alone: each run's RSS is its own, never the parent's
    assert big.peak_rss_mb >= small.peak_rss_mb + 200
    assert small.peak_rss_mb < 200
    assert list(tmp_path.iterdir()) == []  # scratch and captured output removed


def test_the_parents_memory_is_not_lent_to_the_child(tmp_path: Path) -> None:
    """Linux carries a forking parent's high-water RSS into the child's ru_maxrss; the figure must not."""
    ballast = bytearray(400 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    small = run_measure(Measure("selftest_sleep", {"rows": 1}), work_dir=tmp_path, timeout=60)
    assert len(ballast) and small.peak_rss_mb < 200


def test_a_failing_measure_raises_with_its_error(tmp_path: Path) -> None:
    with pytest.raises(RunFailed, match="source unreachable"):
        run_measure(Measure("selftest_sleep", {"fail": "source unreachable"}), work_dir=tmp_path, timeout=60)


def test_an_unknown_measure_is_named(tmp_path: Path) -> None:
    with pytest.raises(RunFailed, match="unknown measure 'no_such'"):
        run_measure(Measure("no_such"), work_dir=tmp_path, timeout=60)


def test_a_run_over_its_timeout_is_killed(tmp_path: Path) -> None:
    with pytest.raises(RunFailed, match="timeout"):
        run_measure(Measure("selftest_sleep", {"sleep": 30}), work_dir=tmp_path, timeout=3)


def test_output_without_a_result_line_is_an_error() -> None:
    with pytest.raises(RunFailed, match="no BENCH-RESULT"):
        parse_result("some log line\n")
    assert parse_result('log\nBENCH-RESULT {"seconds": 1.5}\n') == {"seconds": 1.5}


def _selftest_scenario(fail_setup: bool = False) -> Scenario:
    def plan(ctx):  # type: ignore[no-untyped-def]
        if fail_setup:
            raise RuntimeError("PostgreSQL at 127.0.0.1:5432 is unreachable")
        shared = Measure("selftest_sleep", {"rows": ctx.scale, "sleep": 0.05})
        return [Case("a", "case a", shared), Case("b", "case b (same measure)", shared)]

    goal = Goal("rows", "rows seen", ">=", 100, "rows", lambda o: float(o["a"].hub.summary.rows))
    return Scenario("T1", "selftest", "the harness's own test", (1000,), (100,), plan, (goal,))


def test_the_harness_warms_up_repeats_and_shares_a_measurement(tmp_path: Path) -> None:
    logs: list[str] = []
    harness = Harness(repeat=2, quick=False, work=tmp_path, timeout=60, log=logs.append)
    run = harness.run([_selftest_scenario()], {"T1": (100,)})
    sr = run.runs[0]
    assert sr.error is None
    a, b = sr.cases
    assert a.hub.summary is not None and len(a.hub.summary.runs) == 2 and a.hub.summary.warmup_seconds is not None
    assert b.hub is a.hub  # measured once, shared
    assert sum("warm-up" in line for line in logs) == 1 and sum("repeat" in line for line in logs) == 2
    assert [(g.goal.id, g.value, g.verdict) for g in sr.goals] == [("rows", 100.0, "PASS")]
    assert not run.failed


def test_a_case_marked_once_runs_once_without_warm_up_even_in_a_full_run(tmp_path: Path) -> None:
    def plan(ctx):  # type: ignore[no-untyped-def]
        return [Case("big", "case big", Measure("selftest_sleep", {"rows": ctx.scale, "sleep": 0.01}), once=True)]

    logs: list[str] = []
    run = Harness(repeat=3, quick=False, work=tmp_path, timeout=60, log=logs.append).run(
        [Scenario("T2", "once", "a big case", (1000,), (100,), plan)], {"T2": (100,)})
    (case,) = run.runs[0].cases
    assert case.hub.summary is not None and len(case.hub.summary.runs) == 1
    assert case.hub.summary.warmup_seconds is None
    assert "one run, no warm-up" in case.label
    assert not any("warm-up]" in line for line in logs)


def test_big_municipal_sources_are_postgresql_only_and_measured_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import scenarios as sc

    monkeypatch.setattr(sc, "municipal_db", lambda ctx, dialect, rows: {"url": f"{dialect}://x", "source_bytes": 1})
    big = sc.municipal_cases(sc.Context(5_000_000, 7, False, Path("/nonexistent"), None))
    small = sc.municipal_cases(sc.Context(1_000_000, 7, False, Path("/nonexistent"), None))
    assert [(c.id, c.once) for c in big] == [("municipal-postgresql", True)]
    assert [(c.id, c.once) for c in small] == [("municipal-postgresql", False), ("municipal-sqlite", False)]


def test_a_scenario_whose_setup_fails_is_reported_not_skipped(tmp_path: Path) -> None:
    run = Harness(repeat=1, quick=True, work=tmp_path, log=lambda m: None).run([_selftest_scenario(True)],
                                                                                {"T1": (100,)})
    sr = run.runs[0]
    assert sr.error is not None and "127.0.0.1:5432 is unreachable" in sr.error
    assert run.failed and sr.goals[0].verdict.startswith("MISS")


def test_a_real_scenario_end_to_end_warehouse_build(tmp_path: Path) -> None:
    """S7 at 400 projects: sources prepared, both builds measured in fresh processes, the goal computed."""
    harness = Harness(repeat=1, quick=True, work=tmp_path, log=lambda m: None)
    run = harness.run([SCENARIOS["S7"]], {"S7": (400,)})
    sr = run.runs[0]
    assert sr.error is None, sr.error
    full, inc = sr.cases
    assert full.hub.error is None and inc.hub.error is None, (full.hub.error, inc.hub.error)
    assert full.hub.summary.rows == inc.hub.summary.rows == 801  # projects + reports + 1 from the change
    assert inc.hub.summary.runs[0].extra["changes"] > 0
    assert full.hub.summary.peak_rss_mb.median > 50
    goal = sr.goals[0]
    assert goal.goal.id == "warehouse_incremental_share" and goal.value is not None and goal.value > 0
    assert goal.verdict in ("PASS", "MISS")
    assert (tmp_path / "setup" / "warehouse-400" / "ready.json").exists()


def test_each_stage_gets_its_own_peak_and_the_run_keeps_the_highest() -> None:
    """A script in its own process: 300 MB in the first stage, little in the second."""
    import subprocess
    import sys

    script = (
        "from bench.runner import reset_peak, peak_rss_mb\n"
        "reset_peak()\n"
        "block = bytearray(300 * 1024 * 1024)\n"
        "for i in range(0, len(block), 4096): block[i] = 1\n"
        "del block\n"
        "first = reset_peak()\n"
        "small = bytearray(10 * 1024 * 1024)\n"
        "for i in range(0, len(small), 4096): small[i] = 1\n"
        "second = reset_peak()\n"
        "print(first, second, peak_rss_mb())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3]).stdout.split()
    first, second, whole = map(float, out)
    assert first > 300 and second < first - 200  # the second stage's mark started afresh
    assert whole >= first


def test_the_stages_cell_shows_each_stages_peak_when_measured() -> None:
    from bench import report
    from bench.outcome import Measured, Summary
    from bench.runner import RunResult

    runs = [RunResult(1.0, 10, None, {"extract": 0.5, "build": 0.5}, 900.0,
                      extra={"peak_rss_mb_by_stage": {"extract": 400.0 + i, "build": 880.0}}) for i in range(3)]
    cell = report._stages(Measured(Summary(runs)))
    assert cell == "extract 0.50 (401 MB), build 0.50 (880 MB)"
