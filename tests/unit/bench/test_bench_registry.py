"""The scenario registry: every goal figure the issues name is decided by a scenario, goals judge right."""
from __future__ import annotations

import pytest

from bench import scenarios
from bench.harness import ScenarioRun, decide_goals
from bench.outcome import CaseOutcome, Measured, Summary
from bench.runner import Measure, RunResult
from bench.scenarios import PEER_CX, PEER_REST, REQUIRED_GOALS, SCENARIOS, Goal, Peer


def test_the_scenarios_are_registered_in_order() -> None:
    numbers = [int(s.removeprefix("S")) for s in SCENARIOS]
    assert numbers == sorted(numbers) and numbers[:8] == list(range(1, 9)) and 10 in numbers  # S10: delivery


def test_every_goal_figure_named_in_the_issues_is_decided_by_some_scenario() -> None:
    decided = {g.id: s.id for s in SCENARIOS.values() for g in s.goals}
    missing = [g for g in REQUIRED_GOALS if g not in decided]
    assert not missing, f"goal figures no scenario prints: {missing}"


def test_goal_ids_are_unique_across_scenarios() -> None:
    ids = [g.id for s in SCENARIOS.values() for g in s.goals]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_quick_scales_are_smaller_than_full_ones(scenario: scenarios.Scenario) -> None:
    assert scenario.quick_scales and scenario.full_scales
    assert max(scenario.quick_scales) < min(scenario.full_scales)


def test_the_issue_thresholds_are_the_registered_ones() -> None:
    goals = {g.id: g for s in SCENARIOS.values() for g in s.goals}
    expected = {"municipal_1m_vs_dlt": (">=", 1.2), "incremental_share": ("<=", 0.05), "rss_5m_mb": ("<=", 1024),
                "rss_ratio_5m_1m": ("<=", 1.1), "lingang_validation_share": ("<=", 0.25),
                "csv_1m_rows_per_s": (">=", 500_000), "excel_100k_rows_per_s": (">=", 50_000),
                "snapshot_diff_seconds": ("<=", 3.0), "warehouse_incremental_share": ("<=", 0.10),
                "feed_p95_1_client_ms": ("<=", 50), "feed_p95_8_clients_ms": ("<=", 250), "feed_errors": ("==", 0),
                "municipal_5m_vs_dlt": (">=", 1.2), "lingang_vs_dlt": (">=", 2.0), "build_ratio_5m_1m": ("<=", 5.5),
                "municipal_1m_floor_seconds": ("<=", None), "municipal_1m_hub_over_floor": ("<=", None),
                "municipal_5m_floor_seconds": ("<=", None), "municipal_5m_hub_over_floor": ("<=", None)}
    assert {k: (goals[k].op, goals[k].threshold) for k in expected} == expected


def _goal(op: str, threshold: float | None) -> Goal:
    return Goal("g", "a goal", op, threshold, "s", lambda o: None)


def test_goal_verdicts() -> None:
    assert _goal("<=", 3.0).verdict(2.9) == "PASS"
    assert _goal("<=", 3.0).verdict(3.1) == "MISS"
    assert _goal(">=", 1.2).verdict(1.2) == "PASS"
    assert _goal(">=", 1.2).verdict(1.19) == "MISS"
    assert _goal("==", 0).verdict(0) == "PASS"
    assert _goal("==", 0).verdict(2) == "MISS"
    assert _goal("<=", None).verdict(5.0) == "figure"
    assert _goal("<=", 3.0).verdict(None).startswith("MISS (not measured")


def test_a_goal_with_an_unknown_comparison_is_refused() -> None:
    with pytest.raises(ValueError, match="op must be"):
        _goal("<", 1.0)


def test_a_peer_has_a_measure_or_a_reason_never_both_or_neither() -> None:
    Peer("dlt", Measure("peer_dlt_sql"))
    Peer("dlt", missing="not installed")
    with pytest.raises(ValueError):
        Peer("dlt")
    with pytest.raises(ValueError):
        Peer("dlt", Measure("peer_dlt_sql"), missing="not installed")


def test_without_dlt_the_peer_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenarios.importlib.util, "find_spec", lambda name: None)
    peer = scenarios.dlt_peer("dlt sql_table", Measure("peer_dlt_sql"))
    assert peer.measure is None
    assert peer.missing == "not installed (pip install -e '.[bench]')"


def test_every_measure_a_scenario_can_name_exists() -> None:
    from bench.measures import MEASURES

    import inspect

    source = inspect.getsource(scenarios) + inspect.getsource(__import__("bench.feed_scenario", fromlist=["x"]))
    named = {part.split('"')[1] for part in source.split('Measure(')[1:] if part.startswith('"')}
    assert named and named <= set(MEASURES), named - set(MEASURES)


def test_each_goal_says_the_scale_it_was_measured_at() -> None:
    """The Excel workbook is a tenth of the scenario's scale, S6's big run five times it."""
    goals = {g.id: g for s in SCENARIOS.values() for g in s.goals}
    assert int(round(1_000_000 * goals["excel_100k_rows_per_s"].scale_multiple)) == 100_000
    assert int(round(1_000_000 * goals["rss_5m_mb"].scale_multiple)) == 5_000_000
    assert goals["csv_1m_rows_per_s"].scale_multiple == 1


# ------------------------------------------------------------------ goals decided from the right case and scale
def _measured(seconds: float, rows: int, build: float | None = None) -> Measured:
    stages = {"extract": seconds / 4} | ({"build": build} if build is not None else {})
    return Measured(Summary([RunResult(seconds=seconds, rows=rows, bytes=None, stages=stages, peak_rss_mb=100.0)]))


def _s1_run(scale: int, hub: float, build: float, dlt: float, adbc: float, cx: float) -> ScenarioRun:
    """S1's cases at one scale: the PostgreSQL hub with its dlt peer, SQLite (1M only) and the two floors."""
    cases = [CaseOutcome("municipal-postgresql", "pg", _measured(hub, scale, build), {PEER_CX: _measured(dlt, scale)}),
             CaseOutcome("municipal-floor-adbc", "floor adbc", _measured(adbc, scale)),
             CaseOutcome("municipal-floor-connectorx", "floor cx", _measured(cx, scale))]
    if scale <= 1_000_000:  # SQLite: a different time, which no PostgreSQL goal may read
        cases.insert(1, CaseOutcome("municipal-sqlite", "sqlite", _measured(99.0, scale, 99.0),
                                    {PEER_CX: _measured(1.0, scale)}))
    return ScenarioRun(SCENARIOS["S1"], scale, cases)


def test_s1_goals_are_decided_from_the_run_at_their_own_scale() -> None:
    """The 1M goals from the 1M run, the 5M ones from the 5M run, the build ratio across both; floors the faster."""
    runs = [_s1_run(1_000_000, hub=10.0, build=4.0, dlt=8.0, adbc=4.0, cx=5.0),
            _s1_run(5_000_000, hub=60.0, build=30.0, dlt=30.0, adbc=25.0, cx=20.0)]
    decide_goals(SCENARIOS["S1"], runs, log=lambda m: None)
    at_1m = {g.goal.id: (pytest.approx(g.value), g.verdict, g.scale) for g in runs[0].goals}
    at_5m = {g.goal.id: (pytest.approx(g.value), g.verdict, g.scale) for g in runs[1].goals}
    assert at_1m == {"municipal_1m_vs_dlt": (0.8, "MISS", 1_000_000),
                     "municipal_1m_floor_seconds": (4.0, "figure", 1_000_000),       # ADBC, the faster at 1M
                     "municipal_1m_hub_over_floor": (2.5, "figure", 1_000_000),
                     "municipal_1m_dlt_over_floor": (2.0, "figure", 1_000_000)}
    assert at_5m == {"municipal_5m_vs_dlt": (0.5, "MISS", 5_000_000),
                     "build_ratio_5m_1m": (7.5, "MISS", 5_000_000),                  # 30 s / 4 s
                     "municipal_5m_floor_seconds": (20.0, "figure", 5_000_000),      # connectorx, the faster at 5M
                     "municipal_5m_hub_over_floor": (3.0, "figure", 5_000_000),
                     "municipal_5m_dlt_over_floor": (1.5, "figure", 5_000_000)}
    assert all(g.goal.nominal_scale == g.scale for r in runs for g in r.goals)  # no "(at …; goal set at …)" note


def test_a_run_at_one_scale_decides_every_goal_there_and_no_ratio_across_scales() -> None:
    (run,) = runs = [_s1_run(50_000, hub=2.0, build=1.0, dlt=1.0, adbc=0.5, cx=0.8)]
    decide_goals(SCENARIOS["S1"], runs, log=lambda m: None)
    goals = {g.goal.id: g for g in run.goals}
    assert len(goals) == len(SCENARIOS["S1"].goals) and {g.scale for g in goals.values()} == {50_000}
    assert goals["municipal_5m_vs_dlt"].value == goals["municipal_1m_vs_dlt"].value == 0.5
    assert goals["build_ratio_5m_1m"].value is None and goals["build_ratio_5m_1m"].verdict == "MISS (not measured)"


def test_lingang_is_decided_against_dlt_rest() -> None:
    case = CaseOutcome("lingang", "lingang", _measured(10.0, 1_000_000), {PEER_REST: _measured(25.0, 1_000_000)})
    run = ScenarioRun(SCENARIOS["S2"], 1_000_000, [case])
    decide_goals(SCENARIOS["S2"], [run], log=lambda m: None)
    (goal,) = run.goals
    assert (goal.goal.id, goal.value, goal.verdict) == ("lingang_vs_dlt", 2.5, "PASS")


def test_a_goal_rank_counts_from_zero() -> None:
    with pytest.raises(ValueError, match="scale_rank"):
        Goal("g", "a goal", "<=", 1.0, "s", lambda o: None, scale_rank=-1)
