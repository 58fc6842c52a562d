"""The report: ratio, verdicts, failures and missing peers, in the console rows, the Markdown and the JSON."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from bench import report
from bench.harness import GoalResult, HarnessRun, ScenarioRun
from bench.outcome import CaseOutcome, Measured, Summary
from bench.runner import RunResult
from bench.scenarios import SCENARIOS


def _run(seconds: float, rows: int = 1_000_000, rss: float = 400.0, stages: dict[str, float] | None = None) -> RunResult:
    return RunResult(seconds=seconds, rows=rows, bytes=200_000_000, stages=stages or {"extract": seconds / 2},
                     peak_rss_mb=rss)


def _harness_run() -> HarnessRun:
    s1 = SCENARIOS["S1"]
    hub = Summary([_run(10.0, stages={"extract": 4.0, "standardise": 2.0, "validate": 1.0, "land": 1.0, "build": 2.0}),
                   _run(12.0, stages={"extract": 5.0, "standardise": 2.0, "validate": 1.0, "land": 1.0, "build": 3.0}),
                   _run(11.0, stages={"extract": 4.5, "standardise": 2.0, "validate": 1.0, "land": 1.0, "build": 2.5})])
    cx = Summary([_run(15.0), _run(14.0), _run(16.0)])
    case = CaseOutcome("municipal-postgresql", "municipal projects, postgresql", Measured(hub),
                       {"dlt sql_table connectorx → duckdb": Measured(cx),
                        "dlt sql_table pyarrow → duckdb": Measured(error="peer_dlt_sql exited with 1 after 2.0s:\n"
                                                                       "Traceback …\nValueError: boom")})
    sqlite = CaseOutcome("municipal-sqlite", "municipal projects, sqlite", Measured(error="hub_municipal exited with 1"),
                         {"dlt": Measured(error="not installed (pip install -e '.[bench]')")})
    by_id = {c.case_id: c for c in (case, sqlite)}
    goal = s1.goals[0]
    value = goal.figure(by_id)
    sr = ScenarioRun(s1, 50_000, [case, sqlite], [GoalResult(goal, value, goal.verdict(value), 50_000)])
    failed = ScenarioRun(SCENARIOS["S8"], 50_000, error="SetupError: bench/feed_latency.py is not in the tree yet")
    return HarnessRun(datetime(2026, 12, 1, 21, 0, tzinfo=timezone.utc), repeat=3, quick=True, seed=7,
                      runs=[sr, failed], seconds=90.0)


def test_ratio_is_peer_time_over_hub_time_and_decides_the_goal() -> None:
    run = _harness_run()
    case = run.runs[0].cases[0]
    assert case.ratio("dlt sql_table connectorx → duckdb") == 15.0 / 11.0
    goal = run.runs[0].goals[0]
    assert goal.verdict == "PASS" and goal.value == 15.0 / 11.0


def test_the_table_shows_hub_spread_stages_peers_failures_and_missing_peers() -> None:
    t = report.tables(_harness_run())
    first = t.cases[0]
    assert first[0] == "S1" and first[2] == "50,000"
    assert first[3] == "11.00 s (10.00–12.00)"
    assert first[4] == "90,909"                     # rows/s median over the repeats
    assert "validate 1.00" in first[7] and "build 2.50" in first[7]
    assert first[-1] == "1.36×"
    pyarrow = t.cases[1]
    assert pyarrow[0] == "" and pyarrow[8] == "dlt sql_table pyarrow → duckdb"
    assert pyarrow[9].startswith("FAILED") and "ValueError: boom" in pyarrow[9]
    sqlite = t.cases[2]
    assert sqlite[3].startswith("FAILED")
    assert sqlite[8] == "dlt: not installed (pip install -e '.[bench]')"
    setup = t.cases[3]
    assert setup[0] == "S8" and "feed_latency.py is not in the tree yet" in setup[3]
    assert t.goals[0][-1] == "PASS"
    assert "at 50,000; goal set at 1,000,000" in t.goals[0][2]


def test_markdown_and_json_are_named_by_the_runs_start(tmp_path: Path) -> None:
    run = _harness_run()
    json_path, md_path = report.write(run, "python -m bench --quick", tmp_path)
    stem = f"{run.started_at:%Y-%m-%d-%H%M}-quick"
    assert json_path.name == f"{stem}.json" and md_path.name == f"{stem}.md"
    md = md_path.read_text(encoding="utf-8")
    assert "| S1 | municipal projects, postgresql | 50,000 | 11.00 s (10.00–12.00) |" in md
    assert "## Goals" in md and "| PASS |" in md
    data = json.loads(json_path.read_text(encoding="utf-8"))
    s1 = data["scenarios"][0]
    assert data["command"] == "python -m bench --quick" and data["repeat"] == 3
    assert len(s1["cases"][0]["hub"]["summary"]["runs"]) == 3
    assert s1["cases"][0]["ratios"]["dlt sql_table connectorx → duckdb"] == 15.0 / 11.0
    assert s1["goals"][0]["verdict"] == "PASS"
    assert data["scenarios"][1]["error"].startswith("SetupError")


def test_a_failed_hub_measurement_fails_the_run_but_a_missed_goal_does_not() -> None:
    run = _harness_run()
    assert run.failed
    ok = HarnessRun(run.started_at, 1, True, 7, runs=[ScenarioRun(SCENARIOS["S1"], 10, [run.runs[0].cases[0]],
                                                                   [GoalResult(SCENARIOS["S1"].goals[0], 0.5, "MISS", 10)])])
    assert not ok.failed


def test_validate_share_and_sync_seconds_leave_the_build_out() -> None:
    s = Summary([_run(10.0, stages={"extract": 4.0, "standardise": 2.0, "validate": 1.0, "land": 1.0, "build": 2.0})])
    assert s.sync_seconds().median == 8.0
    assert s.validate_share().median == 1.0 / 8.0


def test_a_partial_run_is_written_beside_the_whole_run_not_over_it(tmp_path: Path) -> None:
    run = _harness_run()
    whole = report.write(run, "python -m bench --quick", tmp_path)
    part = report.write(run, "python -m bench S1 --quick --scale 1M", tmp_path, "S1-1000000")
    assert part[1].name == f"{run.started_at:%Y-%m-%d-%H%M}-quick-S1-1000000.md"
    assert whole[1].exists() and whole[1] != part[1]


def test_a_second_run_of_the_same_minute_is_written_beside_the_first(tmp_path: Path) -> None:
    """Results of a run, once written (and perhaps committed), are never replaced by a later run's."""
    run = _harness_run()
    first = report.write(run, "python -m bench --quick", tmp_path)
    first_md = first[1].read_text(encoding="utf-8")
    second = report.write(run, "python -m bench --quick --repeat 5", tmp_path)
    third = report.write(run, "python -m bench --quick --repeat 7", tmp_path)
    assert [p.name for p in (*second, *third)] == [first[0].name.replace(".json", "-2.json"),
                                                   first[1].name.replace(".md", "-2.md"),
                                                   first[0].name.replace(".json", "-3.json"),
                                                   first[1].name.replace(".md", "-3.md")]
    assert first[1].read_text(encoding="utf-8") == first_md
    assert "--repeat 5" in second[1].read_text(encoding="utf-8")
