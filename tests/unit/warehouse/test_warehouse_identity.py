"""One organisation across sources: name normalisation, match rules, the golden table and its versions."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from schemas import ENTITIES, get_entity
from tests.unit.warehouse.warehouse_fixtures import entity_rows, land, valid_uscc
from tests.unit.warehouse.warehouse_fixtures import query_current as q
from warehouse.build import BuildError, build, build_memory_limit
from warehouse.catalog import Catalog
from warehouse import identity
from warehouse.identity import ORG_ROLES, normalise_org_names

UTC = timezone.utc
JITA = valid_uscc("91310115", "MA1FL2X3")  # 上海积塔半导体有限公司
SENSETIME = valid_uscc("91310000", "MA1FL4KX")
OTHER = valid_uscc("91310112", "MA1FL9Q1")


def put(home: Path, catalog: Catalog, source: str, window: str, entity: str, items: list[dict[str, Any]],
        *, extracted: datetime | None = None) -> None:
    land(home, catalog, source, window, entity_rows(entity, items, source=source, extracted=extracted),
         entity=get_entity(entity))


def test_names_normalise_width_space_brackets_and_company_form() -> None:
    names = pa.array([
        "上海积塔半导体有限公司", "上海积塔半导体有限责任公司", " 上海积塔半导体 有限公司。", "上海积塔半导体股份有限公司",
        "上海积塔半导体股份公司", "积塔半导体（上海）有限公司", "积塔半导体(上海)有限公司", "ＡＢＢ（中国）有限公司",
        "abb(中国)有限公司", "上海【临港】电力电子研究有限公司", "\u3000", None,
    ])
    assert normalise_org_names(names).to_pylist() == [
        "上海积塔半导体有限公司", "上海积塔半导体有限公司", "上海积塔半导体有限公司", "上海积塔半导体股份有限公司",
        "上海积塔半导体股份有限公司", "积塔半导体(上海)有限公司", "积塔半导体(上海)有限公司", "abb(中国)有限公司",
        "abb(中国)有限公司", "上海[临港]电力电子研究有限公司", None, None,
    ]


def test_every_uscc_column_of_the_schema_is_a_declared_mention() -> None:
    declared = {(r.entity, r.uscc_column) for r in ORG_ROLES if r.uscc_column}
    in_schema = {(e.name, f.name) for e in ENTITIES.values() for f in e.fields
                 if f.name.endswith("_uscc") and e.name != "organization"}
    assert in_schema == declared
    for role in ORG_ROLES:
        assert role.name_column in {f.name for f in ENTITIES[role.entity].fields}, role


def _three_sources(home: Path, catalog: Catalog) -> None:
    put(home, catalog, "municipal_projects", "w1", "organization", [
        {"org_id": JITA, "uscc": JITA, "name": "上海积塔半导体有限公司", "org_type": "enterprise",
         "district_code": "310115", "address": "临港新片区云水路600号"},
        # no USCC in the municipal database: matched on the name to the USCC organisation below
        {"org_id": "municipal_projects:77", "name": "上海商汤科技开发有限责任公司", "org_type": "enterprise"},
    ])
    put(home, catalog, "lingang_group", "w1", "organization", [
        {"org_id": JITA.lower(), "uscc": JITA.lower(), "name": "上海积塔半导体有限公司", "industry_code": "IC",
         "is_integration_enterprise": True, "integration_status": "pilot"},
    ])
    put(home, catalog, "district_yangpu", "w1", "project", [
        {"project_id": "YP-1", "title": "集成电路产教融合实训基地", "lead_org_name": "上海积塔半导体有限公司",
         "lead_org_uscc": JITA, "district_code": "310110"},
        {"project_id": "YP-2", "title": "人工智能订单班", "lead_org_name": "上海商汤科技开发有限公司",
         "lead_org_uscc": SENSETIME, "district_code": "310110"},
        {"project_id": "YP-3", "title": "海洋装备订单班", "lead_org_name": "上海未知装备有限公司", "district_code": "310110"},
    ])
    put(home, catalog, "municipal_projects", "w1", "project_participant", [
        {"participant_id": "M1", "project_id": "MP-1", "org_id": "municipal_projects:77",
         "org_name": "商汤", "org_type": "enterprise"},
    ])


def test_one_row_per_organisation_across_three_sources(home: Path, catalog: Catalog) -> None:
    _three_sources(home, catalog)
    result = build(home, catalog)
    assert result.entities["organization"].rows == 3
    golden = q(home, "SELECT org_id, uscc, name, org_type, district_code, industry_code, is_integration_enterprise, "
                     "match_rule, sources FROM core.organization ORDER BY org_id")
    assert golden == sorted([
        (JITA, JITA, "上海积塔半导体有限公司", "enterprise", "310115", "IC", True, "uscc",
         ["district_yangpu", "lingang_group", "municipal_projects"]),
        (SENSETIME, SENSETIME, "上海商汤科技开发有限责任公司", "enterprise", None, None, None, "name",
         ["district_yangpu", "municipal_projects"]),
        ("name:上海未知装备有限公司", None, "上海未知装备有限公司", None, None, None, None, "unmatched",
         ["district_yangpu"]),
    ])
    # per-source rows are kept as they arrived
    assert q(home, "SELECT _source, org_id FROM core.organization_source ORDER BY 1, 2") == [
        ("lingang_group", JITA.lower()), ("municipal_projects", JITA), ("municipal_projects", "municipal_projects:77")]
    # how each mention was resolved; the participant names its organisation by id, not by name
    matches = q(home, "SELECT _source, entity, role, name, org_id, match_rule, via_org_id FROM core.organization_match "
                      "ORDER BY 1, 2, 3, 4")
    assert matches == [
        ("district_yangpu", "project", "lead_org", "上海商汤科技开发有限公司", SENSETIME, "uscc", False),
        ("district_yangpu", "project", "lead_org", "上海未知装备有限公司", "name:上海未知装备有限公司", "unmatched", False),
        ("district_yangpu", "project", "lead_org", "上海积塔半导体有限公司", JITA, "uscc", False),
        ("lingang_group", "organization", "organization", "上海积塔半导体有限公司", JITA, "uscc", False),
        ("municipal_projects", "organization", "organization", "上海商汤科技开发有限责任公司", SENSETIME, "name", False),
        ("municipal_projects", "organization", "organization", "上海积塔半导体有限公司", JITA, "uscc", False),
        ("municipal_projects", "project_participant", "org", "商汤", SENSETIME, "name", True),
    ]
    assert q(home, "SELECT match_rule, normalised_name, sources, mentions FROM ops.organization_unmatched") == [
        ("unmatched", "上海未知装备有限公司", ["district_yangpu"], 1)]
    assert q(home, "SELECT count(*) FROM core.organization_history") == [(3,)]


def test_same_name_with_two_usccs_is_ambiguous_and_reported(home: Path, catalog: Catalog) -> None:
    put(home, catalog, "municipal_projects", "w1", "organization", [
        {"org_id": JITA, "uscc": JITA, "name": "上海积塔半导体有限公司"},
        {"org_id": OTHER, "uscc": OTHER, "name": "上海积塔半导体有限责任公司"},
    ])
    put(home, catalog, "district_minhang", "w1", "trainee", [
        {"trainee_id": "T1", "name": "张三", "enterprise_name": "上海积塔半导体（有限公司）".replace("（有限公司）", "有限公司"),
         "school_name": "上海电机学院", "school_uscc": "123"},  # an invalid USCC counts as none
    ])
    build(home, catalog)
    assert q(home, "SELECT role, org_id, match_rule, candidate_usccs FROM core.organization_match "
                   "WHERE entity = 'trainee' ORDER BY role") == [
        ("enterprise", "name:上海积塔半导体有限公司", "ambiguous", sorted([JITA, OTHER])),
        ("school", "name:上海电机学院", "unmatched", None),
    ]
    assert q(home, "SELECT match_rule, normalised_name, candidate_usccs FROM ops.organization_unmatched "
                   "ORDER BY 1") == [
        ("ambiguous", "上海积塔半导体有限公司", sorted([JITA, OTHER])), ("unmatched", "上海电机学院", None)]
    # not guessed: neither USCC organisation took the trainee's mention
    assert q(home, "SELECT org_id, sources FROM core.organization WHERE uscc IS NOT NULL ORDER BY 1") == sorted([
        (JITA, ["municipal_projects"]), (OTHER, ["municipal_projects"])])
    assert q(home, "SELECT uscc, reason IS NULL FROM core._uscc_checked ORDER BY 1") == sorted([
        ("123", False), (JITA, True), (OTHER, True)])


def test_a_later_uscc_organisation_folds_the_unmatched_row_into_a_tombstone(home: Path, catalog: Catalog) -> None:
    put(home, catalog, "district_jiading", "w1", "cooperation", [
        {"cooperation_id": "C1", "school_name": "上海电机学院", "enterprise_name": "上海积塔半导体有限公司",
         "district_code": "310114"},
    ])
    first = build(home, catalog)
    (name_version,) = q(home, "SELECT change_version FROM core.organization WHERE org_id = 'name:上海积塔半导体有限公司'")[0]
    assert first.entities["organization"].rows == 2

    put(home, catalog, "municipal_projects", "w2", "organization", [
        {"org_id": JITA, "uscc": JITA, "name": "上海积塔半导体有限责任公司", "district_code": "310115"}])
    second = build(home, catalog)
    assert second.entities["organization"].rows == 2
    assert q(home, "SELECT org_id, match_rule, sources FROM core.organization ORDER BY 1") == sorted([
        (JITA, "name", ["district_jiading", "municipal_projects"]),
        ("name:上海电机学院", "unmatched", ["district_jiading"])])
    tombstone = q(home, "SELECT natural_key, change_version, district_code FROM core._tombstones "
                        "WHERE entity = 'organization'")
    assert len(tombstone) == 1
    key, version, district = tombstone[0]
    assert json.loads(key) == {"org_id": "name:上海积塔半导体有限公司"} and district is None
    assert second.first_change_version <= version <= second.last_change_version and version > name_version
    (jita_version,) = q(home, f"SELECT change_version FROM core.organization WHERE org_id = '{JITA}'")[0]
    assert second.first_change_version <= jita_version <= second.last_change_version
    # the folded row's history is closed; nothing new landed: no version is spent
    assert q(home, "SELECT valid_to IS NOT NULL FROM core.organization_history "
                   "WHERE org_id = 'name:上海积塔半导体有限公司'") == [(True,)]
    third = build(home, catalog)
    assert third.changes == 0 and third.last_change_version == second.last_change_version


def test_tombstones_carry_the_district_of_the_row_or_its_project(home: Path, catalog: Catalog) -> None:
    put(home, catalog, "municipal_projects", "w1", "project", [
        {"project_id": "P1", "title": "集成电路订单班", "district_code": "310115"},
        {"project_id": "P2", "title": "海洋装备产业学院", "district_code": "310110"}])
    put(home, catalog, "municipal_projects", "w1", "project_report", [
        {"report_id": "R1", "project_id": "P1"}, {"report_id": "R2", "project_id": "P2"}])
    put(home, catalog, "municipal_projects", "w1", "project_participant", [
        {"participant_id": "M1", "project_id": "P1", "org_name": "上海电机学院"}])
    build(home, catalog)
    # deletes arrive without a district (a hard delete carries only its key)
    put(home, catalog, "municipal_projects", "w2", "project_report", [
        {"report_id": "R1", "project_id": "P1", "_is_deleted": True}])
    put(home, catalog, "municipal_projects", "w2", "project_participant", [
        {"participant_id": "M1", "project_id": "P1", "_is_deleted": True}])
    put(home, catalog, "municipal_projects", "w2", "project", [
        {"project_id": "P2", "title": "海洋装备产业学院", "_is_deleted": True}])
    build(home, catalog)
    # P2's report is deleted after P2 itself: its district comes from P2's tombstone
    put(home, catalog, "municipal_projects", "w3", "project_report", [
        {"report_id": "R2", "project_id": "P2", "_is_deleted": True}])
    build(home, catalog)
    assert q(home, "SELECT entity, natural_key, district_code FROM core._tombstones "
                   "WHERE entity NOT LIKE 'organization%' ORDER BY 1, 2") == [
        ("project", '{"_source":"municipal_projects","project_id":"P2"}', "310110"),
        ("project_participant", '{"_source":"municipal_projects","participant_id":"M1"}', "310115"),
        ("project_report", '{"_source":"municipal_projects","report_id":"R1"}', "310115"),
        ("project_report", '{"_source":"municipal_projects","report_id":"R2"}', "310110"),
    ]
    comment = q(home, "SELECT comment FROM duckdb_columns() WHERE table_name = '_tombstones' "
                      "AND column_name = 'district_code'")[0][0]
    assert "project" in comment


def test_an_old_tombstone_table_gains_the_district_column_in_place(home: Path, catalog: Catalog) -> None:
    put(home, catalog, "lingang", "w1", "notice", [{"notice_id": "N1", "title": "申报通知", "district_code": "310115"}])
    build(home, catalog)
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute("ALTER TABLE core._tombstones DROP COLUMN district_code")
    con.close()
    put(home, catalog, "lingang", "w2", "notice", [{"notice_id": "N1", "_is_deleted": True}])
    build(home, catalog)
    assert q(home, "SELECT natural_key, district_code FROM core._tombstones WHERE entity = 'notice'") == [
        ('{"_source":"lingang","notice_id":"N1"}', "310115")]


def test_build_memory_is_a_size_or_a_share() -> None:
    assert build_memory_limit("1GB") == "1GB"
    assert build_memory_limit(" 512MB ") == "512MB"
    assert build_memory_limit("0.25").endswith("MB")
    for bad in ("lots", "1.5", "0"):
        with pytest.raises(BuildError, match="IEHUB_BUILD_MEMORY"):
            build_memory_limit(bad)


def test_the_build_connection_is_memory_bounded_and_spills_under_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from warehouse.build import _connect
    from warehouse.layout import Lake

    monkeypatch.setenv("IEHUB_BUILD_MEMORY", "300MB")
    lake = Lake(home)
    home.mkdir(parents=True)
    con = _connect(lake)
    try:
        limit, spill, order = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory'), "
            "current_setting('preserve_insertion_order')").fetchall()[0]
    finally:
        con.close()
    assert limit == "286.1 MiB"  # DuckDB reports 300 MB (10^6) in MiB
    assert Path(spill) == home / "tmp" / "duckdb" and not order


def test_a_warehouse_from_before_the_golden_table_upgrades_in_place(home: Path, catalog: Catalog) -> None:
    put(home, catalog, "municipal_projects", "w1", "organization", [
        {"org_id": JITA, "uscc": JITA, "name": "上海积塔半导体有限公司", "district_code": "310115"}])
    first = build(home, catalog)
    # the previous layout: core.organization held the entity's rows, without match_rule and sources
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    for table in ("organization", "organization_history"):
        con.execute(f"ALTER TABLE core.{table} DROP COLUMN match_rule")
        con.execute(f"ALTER TABLE core.{table} DROP COLUMN sources")
    con.execute("DELETE FROM ops.build_state WHERE entity = 'organization'")
    con.close()
    second = build(home, catalog)
    assert q(home, "SELECT org_id, match_rule, sources FROM core.organization") == [
        (JITA, "uscc", ["municipal_projects"])]
    # the upgrade re-versions the row once (its content now includes match_rule and sources), then stays put
    assert second.changes == 1 and second.first_change_version == first.last_change_version + 1
    assert build(home, catalog).changes == 0


def test_the_golden_row_does_not_depend_on_which_stream_landed_first(tmp_path: Path) -> None:
    """Parallel workers land streams in another order than one machine's loop: same golden rows."""
    mentions = {
        ("district_yangpu", "project"): [
            {"project_id": "YP-9", "title": "智能制造订单班", "lead_org_name": "上海积塔半导体有限公司",
             "lead_org_uscc": JITA, "district_code": "310110"},
            {"project_id": "YP-8", "title": "工业软件实训", "lead_org_name": "上海积塔半导体有限公司",
             "lead_org_uscc": JITA, "district_code": "310110"},
        ],
        ("district_minhang", "project"): [
            {"project_id": "MH-1", "title": "集成电路工艺实训", "lead_org_name": "积塔半导体（上海）",
             "lead_org_uscc": JITA, "district_code": "310112"},
        ],
    }

    def golden(order: list[tuple[str, str]]) -> list[tuple]:
        home = tmp_path / "-".join(s for s, _ in order)
        catalog = Catalog.for_home(home)
        try:
            for minute, (source, entity) in enumerate(order):
                put(home, catalog, source, "w1", entity, mentions[(source, entity)],
                    extracted=datetime(2025, 3, 1, 8, minute, tzinfo=UTC))
            build(home, catalog)
        finally:
            catalog.dispose()
        return q(home, "SELECT org_id, name, _source, _source_key, _record_hash FROM core.organization ORDER BY org_id")

    first = golden(list(mentions))
    second = golden(list(reversed(mentions)))
    assert first == second
    # the form two rows give beats the form one row gives, whichever landed last
    assert first[0][:2] == (JITA, "上海积塔半导体有限公司")


def test_a_mentions_latest_row_does_not_depend_on_the_order_rows_were_landed_in(tmp_path: Path) -> None:
    """Rows extracted together are equally new: a mention's lineage (its latest row) is the greatest
    source key among them, not whichever the scan met last. A first load is stored in the order it
    was landed, so two landings of the same rows in another order must still record the same row
    (and a rebuild from the lake, stored otherwise, the same again)."""
    items = [{"project_id": f"YP-{n}", "title": "订单班", "lead_org_name": "上海积塔半导体有限公司",
              "lead_org_uscc": JITA, "district_code": "310110"} for n in (3, 1, 4, 2)]
    seen = []
    for order in (items, list(reversed(items))):
        home = tmp_path / order[0]["project_id"]
        catalog = Catalog.for_home(home)
        try:
            put(home, catalog, "district_yangpu", "w1", "project", order,
                extracted=datetime(2025, 3, 1, 8, 0, tzinfo=UTC))
            build(home, catalog)
            sql = "SELECT role, _source_key, mentions FROM core._organization_mentions WHERE entity = 'project'"
            seen.append(q(home, sql))
            build(home, catalog, full=True)
            assert q(home, sql) == seen[-1]
        finally:
            catalog.dispose()
    assert seen[0] == seen[1] == [("lead_org", "YP-4", 4)]


def test_an_incremental_identity_equals_a_full_rebuild(home: Path, catalog: Catalog,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Updates, inserts and deletes that move mentions between organisations: after every incremental
    build the mentions, the match table and the golden rows equal those a full rebuild computes, and
    the match table (kept, its rows replaced) keeps its comments."""
    steps: list[tuple[str, str, list[dict[str, Any]]]] = [
        ("cooperation", "district_jiading", [
            {"cooperation_id": "C1", "school_name": "上海电机学院", "enterprise_name": "上海积塔半导体有限公司",
             "district_code": "310114"},
            {"cooperation_id": "C2", "school_name": "上海电机学院", "enterprise_name": "上海商汤智能科技有限公司",
             "enterprise_uscc": SENSETIME, "district_code": "310114"}]),
        # the unmatched 积塔 mention folds into the USCC row that arrives
        ("organization", "municipal_projects", [
            {"org_id": JITA, "uscc": JITA, "name": "上海积塔半导体有限责任公司", "district_code": "310115"}]),
        # C1's enterprise moves to 商汤 by name (no USCC of its own); a new cooperation with another USCC
        ("cooperation", "district_jiading", [
            {"cooperation_id": "C1", "school_name": "上海电机学院", "enterprise_name": "上海商汤智能科技有限责任公司",
             "district_code": "310114"},
            {"cooperation_id": "C3", "school_name": "上海海事大学", "enterprise_name": "其他公司",
             "enterprise_uscc": OTHER, "district_code": "310115"}]),
        # C2 (商汤's only USCC mention) deleted: C1's mention is left unmatched
        ("cooperation", "district_jiading", [{"cooperation_id": "C2", "_is_deleted": True}]),
        # projects (whose changed keys the marts capture: their mentions are re-read for those keys only)
        ("project", "municipal_projects", [
            {"project_id": "P1", "title": "一", "lead_org_id": "L1", "lead_org_name": "上海积塔半导体有限公司"},
            {"project_id": "P2", "title": "二", "lead_org_id": "L1", "lead_org_name": "上海积塔半导体有限公司"},
            {"project_id": "P3", "title": "三", "lead_org_name": "上海商汤智能科技有限公司", "lead_org_uscc": SENSETIME}]),
        # P1 moves to another lead organisation (L1's mention counts one), P4 joins P3's
        ("project", "municipal_projects", [
            {"project_id": "P1", "title": "一", "lead_org_id": "L2", "lead_org_name": "上海电机学院"},
            {"project_id": "P4", "title": "四", "lead_org_name": "上海商汤智能科技有限公司", "lead_org_uscc": SENSETIME}]),
        # P2 (L1's last mention) and P3 deleted; P4 re-titled (its mention unchanged)
        ("project", "municipal_projects", [
            {"project_id": "P2", "_is_deleted": True}, {"project_id": "P3", "_is_deleted": True},
            {"project_id": "P4", "title": "肆", "lead_org_name": "上海商汤智能科技有限公司", "lead_org_uscc": SENSETIME}]),
        # P4 re-titled again, nothing else: only its mention's lineage moves (no resolution needed)
        ("project", "municipal_projects", [
            {"project_id": "P4", "title": "四（二期）", "lead_org_name": "上海商汤智能科技有限公司",
             "lead_org_uscc": SENSETIME}]),
    ]
    resolved: list[int] = []
    real = identity.build_golden
    monkeypatch.setattr(identity, "build_golden", lambda *a, **k: resolved.append(len(resolved)) or real(*a, **k))
    tables = {
        "core._organization_mentions": "SELECT * FROM core._organization_mentions ORDER BY ALL",
        "core.organization_match": "SELECT * FROM core.organization_match ORDER BY ALL",
        # an unchanged golden row keeps the version, and so the lineage (source, key, batch, extraction
        # time), it was written with
        "core.organization": "SELECT * EXCLUDE (change_version, _source, _source_key, _batch_id, _extracted_at) "
                             "FROM core.organization ORDER BY ALL",
    }
    for step, (entity, source, items) in enumerate(steps):
        put(home, catalog, source, f"w{step + 1}", entity, items,
            extracted=datetime(2025, 3, 1 + step, 8, 0, tzinfo=UTC))
        resolved.clear()
        build(home, catalog)
        # every step but the last changes what some mention says: only the last skips the resolution
        assert bool(resolved) == (step < len(steps) - 1), step
        incremental = {name: q(home, sql) for name, sql in tables.items()}
        assert q(home, "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'organization_match' "
                       "AND comment IS NULL") == [(0,)]
        build(home, catalog, full=True)
        assert {name: q(home, sql) for name, sql in tables.items()} == incremental, (step, entity)
    assert q(home, "SELECT org_id, match_rule FROM core.organization_match WHERE entity = 'cooperation' "
                   "AND role = 'enterprise' ORDER BY ALL") == [(SENSETIME, "name"), (OTHER, "uscc")]
    assert q(home, "SELECT source_org_id, name, mentions FROM core._organization_mentions WHERE entity = 'project' "
                   "ORDER BY ALL") == [("L2", "上海电机学院", 1), (None, "上海商汤智能科技有限公司", 1)]
    # the skipped resolution still gave the match row its mention's new lineage (the last step's batch)
    assert q(home, "SELECT m._batch_id = o._batch_id, m._extracted_at FROM core._organization_mentions AS m "
                   "JOIN core.organization_match AS o USING (entity, role, _source, name) "
                   "WHERE m.entity = 'project' AND m.uscc IS NOT NULL") == [(True, datetime(2025, 3, 8, 8, 0, tzinfo=UTC))]


def test_resolving_the_touched_mentions_equals_resolving_all_versions_included(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project change moves mentions it does not touch: another entity's mention with the same
    normalised name folds into (or leaves) the USCC a new project brings, and a project naming an
    organisation row by id follows that row when the row's own name folds. Two homes take the same
    batches, one resolving only what the touched mentions can move (identity._resolve_touched), one
    resolving every mention: their match tables, golden rows, history and tombstones are equal,
    change versions and lineage included."""
    y_uscc = valid_uscc("91310115", "MA1FLY77")
    steps: list[tuple[str, str, list[dict[str, Any]]]] = [
        # unmatched names: a cooperation's enterprise, an organisation row without a USCC, and a project
        # naming that row by id under a short form of its name (resolved through the row)
        ("cooperation", "district_jiading", [
            {"cooperation_id": "C1", "school_name": "上海电机学院", "enterprise_name": "上海积塔半导体有限公司",
             "district_code": "310114"}]),
        ("organization", "municipal_projects", [
            {"org_id": "L7", "name": "上海远洋装备有限公司", "district_code": "310115"},
            {"org_id": "L8", "uscc": SENSETIME, "district_code": "310115"}]),  # a row with no name
        ("project", "municipal_projects", [
            {"project_id": "P1", "title": "一", "lead_org_id": "L7", "lead_org_name": "远洋装备"},
            {"project_id": "P2", "title": "二", "lead_org_name": "上海电机学院"}]),
        # a project brings 积塔's USCC under a width variant of the name: the cooperation's mention folds in
        ("project", "municipal_projects", [
            {"project_id": "P3", "title": "三", "lead_org_name": "上海积塔半导体有限责任公司", "lead_org_uscc": JITA}]),
        # a project brings the organisation row's USCC by name: the row folds, and P1 (by id) follows it
        ("project", "municipal_projects", [
            {"project_id": "P4", "title": "四", "lead_org_name": "上海远洋装备有限公司", "lead_org_uscc": y_uscc}]),
        # P3 leaves: 积塔 has no USCC mention left, the cooperation's mention is unmatched again
        ("project", "municipal_projects", [{"project_id": "P3", "_is_deleted": True}]),
        # P4 moves to another name, P2 changes its lead organisation's form, P5 joins P1's row by id
        ("project", "municipal_projects", [
            {"project_id": "P4", "title": "四", "lead_org_name": "上海其他公司", "lead_org_uscc": OTHER},
            {"project_id": "P2", "title": "二", "lead_org_name": "上海电机学院 "},
            {"project_id": "P5", "title": "五", "lead_org_id": "L7", "lead_org_name": "远洋"}]),
        # P6 and P7 name organisation rows by id alone (L8's has no name to share with anything)
        ("project", "municipal_projects", [
            {"project_id": "P6", "title": "六", "lead_org_id": "L7", "lead_org_name": "远洋集团"},
            {"project_id": "P7", "title": "七", "lead_org_id": "L8", "lead_org_name": "商汤"}]),
    ]
    tables = {
        "match": "SELECT * FROM core.organization_match ORDER BY ALL",
        "golden": "SELECT * FROM core.organization ORDER BY ALL",
        # a delete's time is the build's clock: the two homes build at other instants
        "history": "SELECT * EXCLUDE (valid_to), valid_to IS NULL FROM core.organization_history ORDER BY ALL",
        "tombstones": "SELECT * EXCLUDE (deleted_at) FROM core._tombstones WHERE entity = 'organization' ORDER BY ALL",
    }
    scoped: list[bool] = []
    real = identity._resolve_touched
    monkeypatch.setattr(identity, "_resolve_touched", lambda con: scoped.append(real(con)) or scoped[-1])
    homes = {flag: tmp_path / f"touched-{flag}" for flag in (True, False)}
    follow = ("SELECT entity, source_org_id, name, org_id, match_rule, via_org_id FROM core.organization_match "
              "WHERE entity IN ('cooperation', 'project') AND role <> 'school' ORDER BY ALL")
    folded: dict[int, list[tuple]] = {}
    catalogs = {flag: Catalog.for_home(path) for flag, path in homes.items()}
    try:
        for step, (entity, source, items) in enumerate(steps):
            seen = {}
            for flag, path in homes.items():
                monkeypatch.setattr(identity, "RESOLVE_TOUCHED", flag)
                put(path, catalogs[flag], source, f"w{step + 1}", entity, items,
                    extracted=datetime(2025, 3, 1 + step, 8, 0, tzinfo=UTC))
                scoped.clear()
                build(path, catalogs[flag])
                # the touched path is taken when only projects changed (and never when switched off)
                assert scoped == ([True] if flag and step >= 2 else []), (step, flag)
                seen[flag] = {name: q(path, sql) for name, sql in tables.items()}
            assert seen[True] == seen[False], step
            folded[step] = q(homes[True], follow)
    finally:
        for cat in catalogs.values():
            cat.dispose()
    final = folded[len(steps) - 1]
    assert final == [
        ("cooperation", None, "上海积塔半导体有限公司", "name:上海积塔半导体有限公司", "unmatched", False),
        ("project", "L7", "远洋", "name:上海远洋装备有限公司", "unmatched", True),
        ("project", "L7", "远洋装备", "name:上海远洋装备有限公司", "unmatched", True),
        ("project", "L7", "远洋集团", "name:上海远洋装备有限公司", "unmatched", True),
        ("project", "L8", "商汤", SENSETIME, "uscc", True),
        ("project", None, "上海其他公司", OTHER, "uscc", False),
        ("project", None, "上海电机学院", "name:上海电机学院", "unmatched", False),
    ]
    # the steps in between moved what they were meant to move
    moved = {step: sorted((name, org_id, rule) for entity, _, name, org_id, rule, _ in rows
                          if (entity, name) in {("cooperation", "上海积塔半导体有限公司"), ("project", "远洋装备")})
             for step, rows in folded.items()}
    assert moved[3] == [("上海积塔半导体有限公司", JITA, "name"), ("远洋装备", "name:上海远洋装备有限公司", "unmatched")]
    assert moved[4] == [("上海积塔半导体有限公司", JITA, "name"), ("远洋装备", y_uscc, "name")]
    assert moved[5] == [("上海积塔半导体有限公司", "name:上海积塔半导体有限公司", "unmatched"), ("远洋装备", y_uscc, "name")]


def test_mentions_follow_an_update_in_place_without_a_re_read_unless_it_is_older(
        home: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project re-sent with only its title changed keeps every mention's rows: the mention takes the
    newer row as its latest without re-reading core (identity._count_mentions). A row re-sent with an
    older extraction than its mention's latest may have replaced that latest row: the touched
    mentions are re-read. Either way mentions and matches equal a full rebuild's."""
    real = identity._reread_mentions
    reread: list[str] = []
    monkeypatch.setattr(identity, "_reread_mentions", lambda con, entity, *a: reread.append(entity) or real(
        con, entity, *a))
    lead = {"lead_org_id": "L1", "lead_org_name": "上海积塔半导体有限公司", "lead_org_uscc": JITA}
    put(home, catalog, "municipal_projects", "w1", "project", [
        {"project_id": "P1", "title": "一", **lead}, {"project_id": "P2", "title": "二", **lead}],
        extracted=datetime(2025, 3, 1, tzinfo=UTC))
    build(home, catalog)
    tables = ("SELECT * FROM core._organization_mentions ORDER BY ALL", "SELECT * FROM core.organization_match ORDER BY ALL")
    for window, title, day, re_read in (("w2", "一（二期）", 5, False), ("w3", "一（三期）", 2, True)):
        reread.clear()
        put(home, catalog, "municipal_projects", window, "project", [{"project_id": "P1", "title": title, **lead}],
            extracted=datetime(2025, 3, day, tzinfo=UTC))
        build(home, catalog)
        assert reread == (["project"] if re_read else []), window
        incremental = [q(home, sql) for sql in tables]
        build(home, catalog, full=True)
        assert [q(home, sql) for sql in tables] == incremental, window
    # the latest row carrying the mention: w3's P1, which replaced w2's (March 5) in core; P2 is of March 1
    assert q(home, "SELECT mentions, _source_key, _extracted_at FROM core._organization_mentions "
                   "WHERE entity = 'project'") == [(2, "P1", datetime(2025, 3, 2, tzinfo=UTC))]


def test_mention_counts_follow_the_apply_and_core_is_read_only_when_the_latest_row_left(
        home: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """The touched mentions' counts move by the rows that left and joined them (identity._count_mentions):
    a new mention is inserted, an emptied one deleted. Core is re-read only for a mention whose
    recorded latest row left with no newer row joining (the latest is then one of the rows that
    stayed). After every build the mentions equal a full rebuild's, lineage included."""
    real = identity._reread_mentions
    reread: list[str] = []
    monkeypatch.setattr(identity, "_reread_mentions", lambda con, entity, *a: reread.append(entity) or real(
        con, entity, *a))
    jita = {"lead_org_id": "L1", "lead_org_name": "上海积塔半导体有限公司", "lead_org_uscc": JITA}
    other = {"lead_org_id": "L9", "lead_org_name": "上海其他公司"}
    steps: list[tuple[list[dict[str, Any]], bool]] = [
        ([{"project_id": "P1", "title": "一", **jita}], False),
        ([{"project_id": "P2", "title": "二", **jita}], False),                     # joins, newer: the latest
        ([{"project_id": "P3", "title": "三", **jita}], False),
        ([{"project_id": "P3", "_is_deleted": True}], True),                        # the latest leaves: re-read
        ([{"project_id": "P1", "title": "一", **other}], False),                    # moves to a new mention
        ([{"project_id": "P2", "title": "二（二期）", **jita}], False),             # the latest re-sent, newer
        ([{"project_id": "P1", "_is_deleted": True}], False),                       # empties L9's mention
    ]
    tables = ("SELECT * FROM core._organization_mentions ORDER BY ALL",
              "SELECT * FROM core.organization_match ORDER BY ALL")
    for n, (items, re_read) in enumerate(steps):
        reread.clear()
        put(home, catalog, "municipal_projects", f"w{n}", "project", items,
            extracted=datetime(2025, 3, 1 + n, tzinfo=UTC))
        build(home, catalog)
        assert bool(reread) == re_read, n
        incremental = [q(home, sql) for sql in tables]
        build(home, catalog, full=True)
        assert [q(home, sql) for sql in tables] == incremental, n
    assert q(home, "SELECT name, mentions, _source_key, _extracted_at FROM core._organization_mentions "
                   "WHERE entity = 'project'") == [("上海积塔半导体有限公司", 1, "P2", datetime(2025, 3, 6, tzinfo=UTC))]


def test_mention_deltas_refuse_prior_rows_without_their_source_key() -> None:
    """The mentions' deltas need each prior row's _source_key (did a mention's latest row leave?);
    prior rows without it fail the step by name instead of leaving a wrong lineage behind."""
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE _prior_project (project_id VARCHAR, _source VARCHAR, lead_org_name VARCHAR)")
    con.execute("CREATE TEMP TABLE _now_project (project_id VARCHAR, _source VARCHAR, lead_org_name VARCHAR, "
                "_del BOOLEAN)")
    roles = [r for r in ORG_ROLES if r.entity == "project"]
    with pytest.raises(ValueError, match="organisation mentions of project: _prior_project lacks the rows' _source_key"):
        identity._count_mentions(con, "project", ("project_id",), roles, {"project_id", "lead_org_name"},
                                 "_prior_project", "_now_project")


def test_a_re_read_of_few_mentions_names_their_values_in_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """identity._few_values: the USCC column when every re-read mention has a USCC, else the org id column
    when every one has an id, else no filter; none either above _LITERAL_KEYS mentions."""
    con = duckdb.connect()
    lead = next(r for r in ORG_ROLES if r.entity == "project" and r.role == "lead_org")
    columns = {"lead_org_name", "lead_org_uscc", "lead_org_id"}

    def keys(*rows: tuple[str | None, str | None]) -> str:
        con.execute("CREATE OR REPLACE TABLE k (source_org_id VARCHAR, uscc VARCHAR)")
        con.executemany("INSERT INTO k VALUES (?, ?)", list(rows))
        return "k"

    assert identity._few_values(con, lead, columns, keys(("L1", JITA), (None, "X'9"))) == \
        f""" WHERE c."lead_org_uscc" IN ('{JITA}', 'X''9')"""
    assert identity._few_values(con, lead, columns, keys(("L2", JITA), ("L1", None))) == \
        """ WHERE c."lead_org_id" IN ('L1', 'L2')"""
    assert identity._few_values(con, lead, columns, keys(("L1", None), (None, JITA))) == ""
    assert identity._few_values(con, lead, {"lead_org_name"}, keys(("L1", JITA))) == ""
    monkeypatch.setattr(identity, "_LITERAL_KEYS", 1)
    assert identity._few_values(con, lead, columns, keys(("L1", JITA), ("L2", OTHER))) == ""
