"""Programme marts on small hand-made data whose answers are known."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from schemas import get_entity
from tests.unit.warehouse.warehouse_fixtures import entity_rows, land
from tests.unit.warehouse.warehouse_fixtures import query_current as q
from tests.unit.warehouse.warehouse_fixtures import valid_uscc as uscc
from warehouse.build import build
from warehouse.catalog import Catalog
from warehouse.marts import MARTS

UTC = timezone.utc


E1 = uscc("91310115", "MA1FL2X3")
U1, U2, U3 = uscc("12310000", "42500001"), uscc("12310000", "42500002"), uscc("12310000", "42500003")
EXTRACTED = datetime(2025, 8, 1, tzinfo=UTC)


def std(entity_name: str, items: list[dict[str, Any]], source: str = "municipal_db") -> pa.Table:
    return entity_rows(entity_name, items, source=source, extracted=EXTRACTED)


def put(home: Path, catalog: Catalog, entity_name: str, items: list[dict[str, Any]]) -> None:
    land(home, catalog, "municipal_db", "w1", std(entity_name, items), entity=get_entity(entity_name))


@pytest.fixture(scope="module")
def programme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One hand-made programme, built once for every test of this module (builds cost seconds)."""
    home = tmp_path_factory.mktemp("marts") / "home"
    catalog = Catalog.for_home(home)
    try:
        yield _programme(home, catalog)
    finally:
        catalog.dispose()


def _programme(home: Path, catalog: Catalog) -> Path:
    put(home, catalog, "organization", [
        {"org_id": "O1", "uscc": E1, "name": "上海积塔半导体有限公司", "org_type": "enterprise",
         "is_integration_enterprise": True, "integration_status": "pilot", "district_code": "310115"},
        {"org_id": "O2", "uscc": U1, "name": "上海电机学院", "org_type": "university", "district_code": "310115"},
    ])
    put(home, catalog, "project", [
        {"project_id": "P1", "title": "集成电路订单班", "category": "A", "lead_org_uscc": U1, "lead_org_name": "上海电机学院",
         "district_code": "310115", "industry_code": "IC", "budget_amount": Decimal("1000000.00")},
        {"project_id": "P2", "title": "集成电路实训中心", "category": "A", "lead_org_uscc": U2, "lead_org_name": "上海电力大学",
         "district_code": "310115", "industry_code": "IC", "budget_amount": Decimal("3000000.00")},
        {"project_id": "P3", "title": "海洋装备产业学院", "category": "B", "lead_org_uscc": U3,
         "district_code": "310110", "industry_code": "EQUIPMENT"},
    ])
    put(home, catalog, "project_report", [
        # 23:00 in Shanghai on the due date: on time. 01:00 the day after: late by one day.
        {"report_id": "R1", "project_id": "P1", "due_on": date(2025, 1, 31), "submitted_at": datetime(2025, 1, 31, 15, tzinfo=UTC)},
        {"report_id": "R2", "project_id": "P1", "due_on": date(2025, 4, 30), "submitted_at": datetime(2025, 4, 30, 17, tzinfo=UTC)},
        {"report_id": "R3", "project_id": "P2", "due_on": date(2024, 12, 31)},
        {"report_id": "R4", "project_id": "P2", "due_on": date(2099, 12, 31)},
    ])
    put(home, catalog, "talent_demand", [
        {"demand_id": "D1", "org_uscc": E1, "org_name": "上海积塔半导体有限公司", "major": "电气工程",
         "occupation": "电气工程师", "headcount": 10, "published_on": date(2025, 2, 1)},
        {"demand_id": "D2", "major": "电气工程", "occupation": "运维工程师", "headcount": 5},
        {"demand_id": "D3", "major": "机械工程", "occupation": "装配工", "headcount": 4},
    ])
    put(home, catalog, "talent_supply", [
        {"supply_id": "S1", "school_uscc": U1, "school_name": "上海电机学院", "major": "电气工程",
         "graduates_count": 12, "graduation_year": 2025},
        {"supply_id": "S2", "school_name": "上海海洋大学", "major": "海洋科学", "graduates_count": 3, "graduation_year": 2025},
    ])
    put(home, catalog, "cooperation", [
        {"cooperation_id": "C1", "school_uscc": U1, "school_name": "上海电机学院", "enterprise_uscc": E1,
         "enterprise_name": "上海积塔半导体有限公司", "start_date": date(2024, 9, 1), "investment_amount": Decimal("500000.00")},
        {"cooperation_id": "C2", "school_uscc": U1, "school_name": "上海电机学院",
         "enterprise_name": "上海商汤科技开发有限公司", "start_date": date(2025, 3, 1)},
    ])
    put(home, catalog, "trainee", [
        {"trainee_id": "T1", "name": "张三", "school_uscc": U1, "school_name": "上海电机学院", "enterprise_uscc": E1,
         "enterprise_name": "上海积塔半导体有限公司", "start_date": date(2025, 7, 1), "is_employed": True},
    ])
    build(home, catalog)
    return home


def test_projects_by_district_category_and_industry(programme: Path) -> None:
    assert q(programme, """SELECT district_code, district_name, category, industry_code, industry_name, project_count,
                                  lead_org_count, budget_amount, avg_budget_amount
                           FROM marts.projects_by_district_industry ORDER BY 1""") == [
        ("310110", "杨浦区", "B", "EQUIPMENT", "高端装备制造", 1, 1, Decimal("0.00"), None),
        ("310115", "浦东新区", "A", "IC", "集成电路", 2, 2, Decimal("4000000.00"), Decimal("2000000.00")),
    ]


def test_talent_demand_against_supply(programme: Path) -> None:
    assert q(programme, """SELECT major, demand_headcount, supply_graduates, gap_headcount
                           FROM marts.talent_balance_by_major ORDER BY 1""") == [
        ("机械工程", 4, 0, 4), ("海洋科学", 0, 3, -3), ("电气工程", 15, 12, 3)]
    assert q(programme, """SELECT occupation, demand_headcount, major_supply_graduates
                           FROM marts.talent_demand_by_occupation WHERE major = '电气工程' ORDER BY 1""") == [
        ("电气工程师", 10, 12), ("运维工程师", 5, 12)]


def test_enterprise_participation(programme: Path) -> None:
    assert q(programme, """SELECT enterprise_uscc, enterprise_name, integration_status, cooperation_count,
                                  schools_partnered, trainees_hosted, talent_demand_headcount
                           FROM marts.enterprise_participation ORDER BY enterprise_name""") == [
        (None, "上海商汤科技开发有限公司", None, 1, 1, 0, 0),
        (E1, "上海积塔半导体有限公司", "pilot", 1, 1, 1, 10),
    ]
    assert q(programme, """SELECT integration_status, integration_status_zh, enterprises, cooperation_count, trainees_hosted
                           FROM marts.enterprise_participation_by_status ORDER BY 1""") == [
        ("none", "未入库", 1, 1, 0), ("pilot", "试点", 1, 1, 1)]


def test_report_timeliness_by_lead_organisation(programme: Path) -> None:
    assert q(programme, "SELECT report_id, timeliness, days_late FROM marts.report_status ORDER BY 1") == [
        ("R1", "on_time", 0), ("R2", "late", 1), ("R3", "missing", None), ("R4", "pending", None)]
    assert q(programme, """SELECT lead_org_uscc, reports_total, reports_on_time, reports_late, reports_missing,
                                  reports_pending, on_time_rate
                           FROM marts.report_timeliness_by_lead_org ORDER BY 1""") == [
        (U1, 2, 1, 1, 0, 0, 0.5), (U2, 2, 0, 0, 1, 1, 0.0)]


def test_annual_reports_per_school_and_enterprise(programme: Path) -> None:
    assert q(programme, f"""SELECT school_uscc, year, cooperations_started, enterprises_partnered, trainees_started,
                                  trainees_employed, graduates_supplied, cooperation_investment_amount
                           FROM marts.annual_report_school WHERE school_uscc = '{U1}' ORDER BY year""") == [
        (U1, 2024, 1, 1, 0, 0, 0, Decimal("500000.00")),
        (U1, 2025, 1, 2, 1, 1, 12, Decimal("0.00")),
    ]
    assert q(programme, f"""SELECT enterprise_uscc, year, cooperations_started, trainees_hosted, talent_demand_headcount
                           FROM marts.annual_report_enterprise WHERE enterprise_uscc = '{E1}' ORDER BY year""") == [
        (E1, 2024, 1, 0, 0), (E1, 2025, 0, 1, 10)]


def test_evaluation_indicators_carry_their_definitions(programme: Path) -> None:
    rows = q(programme, "SELECT indicator_code, value, definition_zh FROM marts.evaluation_indicators")
    values = {code: (value, definition) for code, value, definition in rows}
    assert [code for code, _, _ in rows] == sorted(values)  # in code order, as the programme reports them
    assert values["EI01"][0] == 3 and values["EI02"][0] == 4_000_000 and values["EI04"][0] == 1
    assert values["EI06"][0] == 2 and values["EI08"][0] == 100.0
    assert values["EI10"][0] == 33.33 and values["EI11"][0] == 0.79  # rounded to 2 decimals
    assert all(definition for _, definition in values.values())


def test_empty_warehouse_gives_empty_marts_with_grain_comments(home: Path, catalog: Catalog) -> None:
    build(home, catalog)
    comments = dict(q(home, "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'marts' "
                            "UNION ALL SELECT view_name, comment FROM duckdb_views() WHERE schema_name = 'marts'"))
    views = {v for (v,) in q(home, "SELECT view_name FROM duckdb_views() WHERE schema_name = 'marts'")}
    assert views == {m.name for m in MARTS if m.view} == {"report_status"}
    assert set(comments) == {m.name for m in MARTS}
    assert all("Grain: one row per" in c for c in comments.values()), comments
    for mart in MARTS:
        expected = len(mart_indicators()) if mart.name == "evaluation_indicators" else 0
        assert q(home, f"SELECT count(*) FROM marts.{mart.name}") == [(expected,)]
    undocumented = q(home, "SELECT table_name, column_name FROM duckdb_columns() "
                           "WHERE schema_name IN ('marts', 'core', 'ops', 'ref') AND (comment IS NULL OR comment = '')")
    assert undocumented == []


def mart_indicators() -> tuple:
    from warehouse.marts import INDICATORS

    return INDICATORS


def test_a_mart_that_was_a_table_becomes_its_view(home: Path, catalog: Catalog) -> None:
    build(home, catalog)
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute("DROP VIEW marts.report_status")
    con.execute("CREATE TABLE marts.report_status AS SELECT 1 AS stale")
    con.close()
    put(home, catalog, "project", [{"project_id": "P9", "title": "新项目"}])
    build(home, catalog)
    assert q(home, "SELECT view_name FROM duckdb_views() WHERE schema_name = 'marts'") == [("report_status",)]
    assert q(home, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'marts' AND table_name = 'report_status'") \
        == [(0,)]


def _tamper(home: Path, *marts: str) -> None:
    """Put a marker row into each mart, straight into the builder's last file (which the next build copies)."""
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    try:
        for mart in marts:
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'marts' AND table_name = ?",
                [mart]).fetchall()]
            con.execute(f"INSERT INTO marts.{mart} ({columns[0]}) VALUES (NULL)")
    finally:
        con.close()


def _rows(home: Path, mart: str) -> int:
    return q(home, f"SELECT count(*) FROM marts.{mart}")[0][0]


def test_a_build_recomputes_only_the_marts_whose_inputs_changed(home: Path, catalog: Catalog) -> None:
    _programme(home, catalog)
    before = {m: _rows(home, m) for m in ("projects_by_district_industry", "talent_balance_by_major")}
    _tamper(home, "projects_by_district_industry", "talent_balance_by_major")
    put(home, catalog, "project", [{"project_id": "P9", "title": "新项目", "category": "B",
                                    "district_code": "310110", "industry_code": "EQUIPMENT"}])
    build(home, catalog)
    # project changed: its mart is brought up to date group by group (P9 counted in its group); the
    # marker sits in a group no changed row was or is in (all NULL), so it is left as it was
    assert q(home, "SELECT project_count FROM marts.projects_by_district_industry WHERE district_code = '310110'") \
        == [(2,)]
    assert _rows(home, "projects_by_district_industry") == before["projects_by_district_industry"] + 1
    # talent did not: its mart was left as it was (marker still there)
    assert _rows(home, "talent_balance_by_major") == before["talent_balance_by_major"] + 1
    # a recomputed table keeps its comments
    comment = q(home, "SELECT comment FROM duckdb_tables() WHERE schema_name = 'marts' "
                      "AND table_name = 'projects_by_district_industry'")[0][0]
    assert comment.startswith("协同育人项目分布")
    # a full build recomputes everything
    build(home, catalog, full=True)
    assert _rows(home, "talent_balance_by_major") == before["talent_balance_by_major"]


def test_a_mart_that_reads_the_clock_is_recomputed_on_a_new_day(home: Path, catalog: Catalog) -> None:
    _programme(home, catalog)
    _tamper(home, "report_timeliness_by_lead_org", "evaluation_indicators", "talent_balance_by_major")
    tampered = {m: _rows(home, m) for m in ("report_timeliness_by_lead_org", "talent_balance_by_major")}
    build(home, catalog)  # nothing new, same day: nothing recomputed
    assert {m: _rows(home, m) for m in tampered} == tampered
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute("UPDATE ops.mart_state SET built_on = current_date - 1")
    con.close()
    build(home, catalog)  # the next day: report timeliness (pending → missing) and what reads it
    assert _rows(home, "report_timeliness_by_lead_org") == tampered["report_timeliness_by_lead_org"] - 1
    assert q(home, "SELECT count(*) FROM marts.evaluation_indicators WHERE indicator_code IS NULL") == [(0,)]
    assert _rows(home, "talent_balance_by_major") == tampered["talent_balance_by_major"]  # no clock there


def test_a_redeclared_mart_is_created_afresh(home: Path, catalog: Catalog) -> None:
    _programme(home, catalog)
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute("ALTER TABLE marts.talent_balance_by_major ADD COLUMN stale INTEGER")
    con.execute("UPDATE ops.mart_state SET signature = 'an older declaration' WHERE mart = 'talent_balance_by_major'")
    con.close()
    build(home, catalog)
    columns = [c for (c,) in q(home, "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'marts' "
                                     "AND table_name = 'talent_balance_by_major' ORDER BY column_index")]
    assert "stale" not in columns
    assert q(home, "SELECT major, gap_headcount FROM marts.talent_balance_by_major ORDER BY 1") == [
        ("机械工程", 4), ("海洋科学", -3), ("电气工程", 3)]


def test_unchanged_tables_leave_out_what_any_change_can_touch() -> None:
    from warehouse.build import EntityBuild, unchanged_tables

    quiet, busy = EntityBuild(3, 0, 0.0), EntityBuild(3, 1, 0.0, changes=2)
    assert unchanged_tables({"project": busy, "talent_demand": quiet}) == {
        ("core", "talent_demand"), ("core", "talent_demand_history")}
    everything = unchanged_tables({"project": quiet, "talent_demand": quiet})
    assert ("core", "project") in everything and ("core", "_tombstones") in everything
    assert ("core", "organization_match") in everything
    assert unchanged_tables({"project": EntityBuild(0, 0, 0.0, rebuilt=True)}) == set()


def _all_marts(home: Path) -> dict[str, list[tuple]]:
    """Every mart's rows, and every tally's (kept by deltas, it must hold what a full build computes)."""
    from warehouse.marts import TALLY_TABLES

    return {**{m.name: q(home, f"SELECT * FROM marts.{m.name} ORDER BY ALL") for m in MARTS},
            **{t: q(home, f"SELECT * FROM ops.{t} ORDER BY ALL") for t in TALLY_TABLES}}


@pytest.mark.parametrize("whole_share", [0.5, 100.0], ids=["default", "always-by-group"])
def test_marts_kept_by_group_equal_a_full_rebuild(home: Path, catalog: Catalog, whole_share: float,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Inserts, updates that move rows between groups, deletes: every incremental build's marts equal
    the marts a full rebuild computes. Recomputing only the groups rows join (not those they leave)
    would leave P1's old district/category group, U2's lead-organisation group and the groups of the
    deleted project and report stale. The small marts here have most groups touched by each step,
    which the default recomputes whole; a share no build reaches keeps them group by group."""
    import warehouse.marts

    monkeypatch.setattr(warehouse.marts, "WHOLE_SHARE", whole_share)
    _programme(home, catalog)
    grouped = [m.name for m in MARTS if m.groups]
    assert {"projects_by_district_industry", "report_timeliness_by_lead_org"} <= set(grouped)
    steps: list[tuple[str, list[dict[str, Any]]]] = [
        # P1 moves from (310115, A, IC) to a new group and to another lead organisation; a new project
        ("project", [
            {"project_id": "P1", "title": "集成电路订单班", "category": "C", "lead_org_uscc": U3, "lead_org_name": "上海海事大学",
             "district_code": "310110", "industry_code": "EQUIPMENT", "budget_amount": Decimal("5.00")},
            {"project_id": "P5", "title": "新能源汽车产业学院", "category": "A", "lead_org_id": "L5", "lead_org_name": "上海理工大学",
             "district_code": "310115", "industry_code": "IC", "budget_amount": Decimal("7.00")}]),
        # R3 moves from P2 (U2) to P5 (L5); R5 is new, of an unknown project (the NULL group)
        ("project_report", [
            {"report_id": "R3", "project_id": "P5", "due_on": date(2024, 12, 31)},
            {"report_id": "R5", "project_id": "P404", "due_on": date(2025, 3, 31)}]),
        # P2 deleted: its report R4 falls into the NULL group; R1 deleted
        ("project", [{"project_id": "P2", "_is_deleted": True}]),
        ("project_report", [{"report_id": "R1", "_is_deleted": True}]),
        # P3 is re-sent unchanged, P404 arrives: R5 leaves the NULL group
        ("project", [
            {"project_id": "P3", "title": "海洋装备产业学院", "category": "B", "lead_org_uscc": U3,
             "district_code": "310110", "industry_code": "EQUIPMENT"},
            {"project_id": "P404", "title": "迟到的项目", "category": "A", "lead_org_uscc": U1, "lead_org_name": "上海电机学院",
             "district_code": "310115", "industry_code": "IC"}]),
        # P1 re-titled (its lead organisation unchanged: its report is not looked for); P5's lead
        # organisation renamed under the same id (its group's name changes: its report is)
        ("project", [
            {"project_id": "P1", "title": "集成电路订单班（二期）", "category": "C", "lead_org_uscc": U3,
             "lead_org_name": "上海海事大学", "district_code": "310110", "industry_code": "EQUIPMENT",
             "budget_amount": Decimal("5.00")},
            {"project_id": "P5", "title": "新能源汽车产业学院", "category": "A", "lead_org_id": "L5",
             "lead_org_name": "上海理工大学（新）", "district_code": "310115", "industry_code": "IC",
             "budget_amount": Decimal("7.00")}]),
        # P404's budget alone changes: its group's totals move though no row changes group
        ("project", [
            {"project_id": "P404", "title": "迟到的项目", "category": "A", "lead_org_uscc": U1, "lead_org_name": "上海电机学院",
             "district_code": "310115", "industry_code": "IC", "budget_amount": Decimal("9.00")}]),
        # a project with a surrogate of its own, then renamed (same surrogate, new project id) into
        # another group: the old key leaves core without being in the new file
        ("project", [{"project_id": "P7", "_sk": "SK7", "title": "改名前", "category": "D", "lead_org_id": "L7",
                      "district_code": "310104", "industry_code": "AI"}]),
        ("project", [{"project_id": "P8", "_sk": "SK7", "title": "改名后", "category": "E", "lead_org_id": "L8",
                      "district_code": "310104", "industry_code": "AI"}]),
    ]
    for step, (entity_name, items) in enumerate(steps):
        # a window of its own: a batch of the same window would replace the earlier one in the ledger
        rows = std(entity_name, items)
        rows = rows.set_column(rows.schema.get_field_index("_source_key"), "_source_key",
                               pa.array([i.get("_sk", i.get("project_id", i.get("report_id"))) for i in items]))
        land(home, catalog, "municipal_db", f"w{step + 2}", rows, entity=get_entity(entity_name))
        build(home, catalog)
        incremental = _all_marts(home)
        build(home, catalog, full=True)
        assert _all_marts(home) == incremental, entity_name
    assert q(home, "SELECT count(*) FROM core._key_changes WHERE entity = 'project'") == [(1,)]
    assert q(home, "SELECT category FROM marts.projects_by_district_industry WHERE district_code = '310104'") == [("E",)]
    # R2 with P1 (now U3), R3 with P5 (L5), R4 of the deleted P2 (NULL), R5 with P404 (U1)
    assert q(home, "SELECT lead_org_key, reports_total FROM marts.report_timeliness_by_lead_org ORDER BY ALL") == [
        (U1, 1), (U3, 1), ("L5", 1), (None, 1)]
    assert q(home, "SELECT lead_org_name FROM marts.report_timeliness_by_lead_org WHERE lead_org_key = 'L5'") == [
        ("上海理工大学（新）",)]


def test_a_tally_that_does_not_hold_what_core_held_is_computed_again(
        home: Path, catalog: Catalog, caplog: pytest.LogCaptureFixture) -> None:
    """A tally row missing (a file edited by hand, a bug): the change would take its count below zero.
    The build says so, computes the tally again from core, and the mart equals a full build's."""
    from warehouse.marts import TALLY_TABLES

    _programme(home, catalog)
    (tally,) = TALLY_TABLES
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute(f"DELETE FROM ops.{tally} WHERE district_code = '310115'")
    con.close()
    land(home, catalog, "municipal_db", "moved", std("project", [
        {"project_id": "P1", "title": "集成电路订单班", "category": "C", "lead_org_uscc": U1,
         "district_code": "310110", "industry_code": "EQUIPMENT", "budget_amount": Decimal("5.00")}]),
         entity=get_entity("project"))
    with caplog.at_level("WARNING", logger="warehouse.marts"):
        build(home, catalog)
    assert f"ops.{tally}: the change takes 1 of its rows below zero" in caplog.text
    incremental = _all_marts(home)
    build(home, catalog, full=True)
    assert _all_marts(home) == incremental


def test_a_change_to_columns_a_mart_does_not_read_touches_none_of_its_groups(
        home: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A status or title update rewrites the project's row but moves no figure of
    projects_by_district_industry: none of its groups is recomputed, and the mart still equals a full
    rebuild's."""
    import warehouse.marts

    monkeypatch.setattr(warehouse.marts, "WHOLE_SHARE", 100.0)
    _programme(home, catalog)
    before = q(home, "SELECT * FROM marts.projects_by_district_industry ORDER BY ALL")
    land(home, catalog, "municipal_db", "retitled", std("project", [
        {"project_id": "P1", "title": "集成电路订单班（更名）", "category": "A", "lead_org_uscc": U1,
         "lead_org_name": "上海电机学院", "district_code": "310115", "industry_code": "IC",
         "budget_amount": Decimal("1000000.00"), "status": "结项"}]), entity=get_entity("project"))
    with caplog.at_level("INFO", logger="warehouse.marts"):
        result = build(home, catalog)
    assert result.entities["project"].changes == 1
    assert "projects_by_district_industry (0 groups)" in caplog.text
    assert q(home, "SELECT * FROM marts.projects_by_district_industry ORDER BY ALL") == before
    build(home, catalog, full=True)
    assert q(home, "SELECT * FROM marts.projects_by_district_industry ORDER BY ALL") == before


def test_a_projects_reports_are_found_through_the_reports_key_directory(programme: Path, tmp_path: Path) -> None:
    """rows_of_projects (the timeliness mart's reports of the touched groups' projects): found by the
    project hashes of the reports' key directory, the same rows a join of core on the strings gives;
    a colliding hash brings in no other project's report, and a directory hashed by another DuckDB
    is not used."""
    import shutil

    from warehouse.versions import _RECIPE_TEXT, _PROJECT_TEXT, directory_gaps, rows_of_projects

    path = tmp_path / "warehouse.duckdb"
    shutil.copyfile(programme / "warehouse.duckdb", path)
    path.chmod(0o644)
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE TEMP TABLE wanted AS SELECT * FROM (VALUES ('municipal_db', 'P2'), ('municipal_db', 'P9')) "
                    "AS t(_source, project_id)")

        def found() -> tuple[str, list[str]]:
            sql = rows_of_projects(con, "project_report", "wanted")
            return sql, [r for (r,) in con.execute(f"SELECT report_id FROM ({sql}) ORDER BY 1").fetchall()]

        sql, reports = found()
        assert 'ops."keys_project_report"' in sql and reports == ["R3", "R4"]
        assert directory_gaps(con, "project_report") == 0
        # R1's entry made to collide with P2's hash: a candidate, dropped by the comparison of the strings
        con.execute("UPDATE ops.keys_project_report SET project_hash = hash('municipal_db', 'P2') WHERE change_version = "
                    "(SELECT change_version FROM core.project_report WHERE report_id = 'R1')")
        assert found()[1] == ["R3", "R4"]
        assert directory_gaps(con, "project_report") == 1  # and the directory check sees the wrong entry
        # hashed by another DuckDB: its hashes are not this one's, so core is joined on the strings
        recipe = _RECIPE_TEXT.format(table='core."project_report"', keys='"_source", "report_id"', version="0.0.0-other",
                                     projects=_PROJECT_TEXT.format(hash='hash("_source", "project_id")'))
        con.execute("COMMENT ON TABLE ops.keys_project_report IS '" + recipe.replace("'", "''") + "'")
        sql, reports = found()
        assert "keys_project_report" not in sql and reports == ["R3", "R4"]
    finally:
        con.close()
