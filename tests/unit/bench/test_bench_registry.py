"""The scenario registry: every goal figure the issues name is decided by a scenario, goals judge right."""
from __future__ import annotations

import pytest

from bench import scenarios
from bench.runner import Measure
from bench.scenarios import REQUIRED_GOALS, SCENARIOS, Goal, Peer


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
                "feed_p95_1_client_ms": ("<=", 50), "feed_p95_8_clients_ms": ("<=", 250), "feed_errors": ("==", 0)}
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
