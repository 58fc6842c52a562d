"""The municipal project database through the SQL kind, on the real PostgreSQL server and on SQLite.

Real databases seeded by the sandbox, real Parquet, a real DuckDB build: full load, incremental
after mutations, boundary timestamps, soft and hard deletes, type fidelity, and a connection
dropped in the middle of a result (PostgreSQL: through a loopback proxy that cuts it).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from connectors.errors import ConnectorError
from connectors.sql.backends import AdbcBackend
from iehub import pipeline
from iehub.config import Settings
from sandbox import municipal
from tests.integration.sql_helpers import CuttingProxy, core_rows, fresh_database, quarantined, spec_with
from warehouse.build import build

pytestmark = pytest.mark.integration

SOURCE = "municipal_projects"
STREAM_TABLE = {"organizations": "organizations", "projects": "projects", "project_members": "project_members",
                "performance_reports": "performance_reports", "training_bases": "training_bases",
                "teachers": "teachers"}
ENTITY_KEY = {"projects": ("project", "project_id"), "project_members": ("project_participant", "participant_id"),
              "performance_reports": ("project_report", "report_id"), "training_bases": ("training_base",
                                                                                          "training_base_id"),
              "teachers": ("teacher", "teacher_id")}
UTC = timezone.utc


@pytest.fixture(params=["sqlite", "postgresql"])
def source_db(request: pytest.FixtureRequest, tmp_path: Path, iehub_home: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        municipal.seed(url, scale=0.05, seed=11)
        monkeypatch.setenv("IEHUB_MUNICIPAL_DB_URL", url)
        yield url


def sync(home: Path, *, streams: list[str] | None = None, full: bool = False, spec=None) -> dict[str, dict]:
    settings = Settings.from_env(home)
    spec = spec or spec_with(SOURCE)
    out = {}
    for name in streams or list(spec.streams):
        out[name] = pipeline.sync_stream(settings, SOURCE, name, full=full, spec=spec)
    build(home, settings.catalog())
    return out


def live_keys(url: str, table: str) -> set[str]:
    pk = municipal.PRIMARY_KEYS[table]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {str(k) for (k,) in conn.exec_driver_sql(f"SELECT {pk} FROM {table} WHERE deleted_at IS NULL")}
    finally:
        engine.dispose()


def assert_core_matches_source(home: Path, url: str, streams: list[str]) -> None:
    """Each live source row is in core once or quarantined with a reason; no deleted row is in core."""
    for stream in streams:
        entity, key = ENTITY_KEY[stream]
        keys = [k for (k,) in core_rows(home, f"select {key} from core.{entity} where _source = ?", [SOURCE])]
        assert len(keys) == len(set(keys)), f"{entity}: duplicate keys in core"
        live = live_keys(url, STREAM_TABLE[stream])
        bad = quarantined(home, entity, SOURCE)
        assert set(keys) == live - bad, f"{entity}: core differs from the source's live rows"
        assert len(bad & live) <= max(3, 0.05 * len(live)), f"{entity}: too much quarantined"


def execute(url: str, sql: str, params: dict | None = None) -> None:
    """Run one statement; on SQLite, times are stored as SQLAlchemy stores them (UTC text)."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        params = {k: v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime)
                  else str(v) if isinstance(v, Decimal) else v for k, v in (params or {}).items()}
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql), params or {})
    finally:
        engine.dispose()


def test_full_load_lands_every_live_row_once(iehub_home: Path, source_db: str) -> None:
    results = sync(iehub_home)
    for r in results.values():
        assert r["rows_in"] == r["rows_loaded"] + r["rows_quarantined"] > 0
    assert_core_matches_source(iehub_home, source_db, list(ENTITY_KEY))
    # the source's own organisation rows (core.organization is the golden table across sources)
    orgs = core_rows(iehub_home, "select count(*), count(uscc) from core.organization_source where _source = ?",
                     [SOURCE])[0]
    assert orgs[0] > 100 and orgs[1] >= orgs[0] - 20  # a few associations have no USCC: org_id <source>:<id>
    assert core_rows(iehub_home, "select count(*) from core.organization_source "
                                 "where org_id like 'municipal_projects:%'")[0][0] > 0
    # the rerun reads only the overlap window, finds it unchanged and lands nothing
    again = sync(iehub_home)
    assert all(r["rows_in"] == 0 for r in again.values()), {k: r["rows_in"] for k, r in again.items()}


def test_incremental_reads_only_what_changed_and_hard_deletes_reconcile(iehub_home: Path, source_db: str) -> None:
    sync(iehub_home)
    changes = municipal.mutate(source_db, changed=0.05, seed=3)
    results = sync(iehub_home)
    for stream, table in STREAM_TABLE.items():
        c = changes[table]
        assert results[stream]["rows_in"] == c["updated"] + c["inserted"] + c["soft_deleted"], stream
    # hard deletes wait for the periodic key-only diff; forcing it turns them into tombstones
    forced = spec_with(SOURCE, stream_updates={"reconcile_every_hours": 0})
    streams = [s for s in ENTITY_KEY]
    results = sync(iehub_home, streams=streams, spec=forced)
    for stream in streams:
        assert results[stream]["rows_in"] == changes[STREAM_TABLE[stream]]["hard_deleted"], stream
    assert_core_matches_source(iehub_home, source_db, streams)
    tombstones = core_rows(iehub_home, "select entity, count(*) from core._tombstones group by 1")
    expected = {ENTITY_KEY[s][0]: changes[STREAM_TABLE[s]]["hard_deleted"] + changes[STREAM_TABLE[s]]["soft_deleted"]
                for s in streams}
    assert {e: n for e, n in tombstones if e in expected} == {e: n for e, n in expected.items() if n}


def test_rows_sharing_a_timestamp_across_pages_and_late_commits(iehub_home: Path, source_db: str) -> None:
    small_pages = spec_with(SOURCE, batch_rows=40)
    sync(iehub_home, streams=["projects"], spec=small_pages)
    moment = datetime(2026, 6, 1, 8, 0, 0, 123456, tzinfo=UTC)
    execute(source_db, "UPDATE projects SET status = '已验收', updated_at = :t WHERE project_id <= 100", {"t": moment})
    r = sync(iehub_home, streams=["projects"], spec=small_pages)["projects"]
    assert r["rows_in"] == 100 and r["pages"] == 3  # 40 + 40 + 20 rows with one timestamp, each read once
    raw_file = next((iehub_home / "lake" / "raw" / SOURCE / "project").rglob(f"{r['batch_id']}.parquet"))
    raw = pq.read_table(raw_file, columns=["_key"]).column(0).to_pylist()
    assert sorted(raw, key=int) == [str(i) for i in range(1, 101)]
    # a transaction that committed late, stamped 60 s before the newest row we hold
    execute(source_db, "UPDATE projects SET title = '迟到的提交', updated_at = :t WHERE project_id = 200",
            {"t": moment - timedelta(seconds=60)})
    r = sync(iehub_home, streams=["projects"], spec=small_pages)["projects"]
    assert r["rows_in"] == 1 and r["skipped_unchanged"] == 100
    for _ in range(2):  # later passes over the same window keep it
        sync(iehub_home, streams=["projects"], spec=small_pages)
        title = core_rows(iehub_home, "select title from core.project where project_id = '200'")
        assert title == [("迟到的提交",)]
    statuses = core_rows(iehub_home, "select count(*) from core.project where status = 'accepted' "
                                     "and cast(project_id as int) <= 100")[0][0]
    assert statuses == 100 - len(quarantined(iehub_home, "project", SOURCE) & {str(i) for i in range(1, 101)})


def test_soft_and_hard_deletes_become_tombstones(iehub_home: Path, source_db: str) -> None:
    sync(iehub_home, streams=["projects", "performance_reports"])
    now = datetime.now(UTC)
    execute(source_db, "UPDATE projects SET deleted_at = :t, updated_at = :t WHERE project_id IN (3, 4, 5)",
            {"t": now})
    execute(source_db, "DELETE FROM performance_reports WHERE project_id IN (6, 7)")
    execute(source_db, "DELETE FROM project_members WHERE project_id IN (6, 7)")
    execute(source_db, "DELETE FROM training_bases WHERE project_id IN (6, 7)")
    execute(source_db, "DELETE FROM projects WHERE project_id IN (6, 7)")
    forced = spec_with(SOURCE, stream_updates={"reconcile_every_hours": 0})
    r = sync(iehub_home, streams=["projects", "performance_reports"], spec=forced)
    assert r["projects"]["rows_in"] >= 4  # 3 soft deletes read by cursor + tombstones from the key diff
    gone = {"3", "4", "5", "6", "7"}
    keys = {k for (k,) in core_rows(iehub_home, "select project_id from core.project")}
    assert not keys & gone
    tomb = {k for (k,) in core_rows(iehub_home, "select natural_key::json->>'project_id' from core._tombstones "
                                                "where entity = 'project'")}
    # soft deletes always arrive; the key diff can only retire keys the hub held live (not quarantined ones)
    assert tomb == {"3", "4", "5"} | ({"6", "7"} - quarantined(iehub_home, "project", SOURCE))
    assert r["performance_reports"]["rows_in"] > 0  # their reports were hard-deleted too


def test_types_survive_exactly(iehub_home: Path, source_db: str) -> None:
    updated = datetime(2026, 3, 1, 12, 34, 56, 789012, tzinfo=UTC)
    execute(source_db, """INSERT INTO projects (project_id, project_code, title, category, lead_org_id, lead_org_name,
        lead_org_uscc, district_code, industry, approved_on, start_date, end_date, budget, funding_type, status,
        created_at, updated_at) VALUES (900001, 'XM2024-9000001', '类型保真测试项目', '现代产业学院', 1, '上海电机学院',
        NULL, '310115', '集成电路', :approved, :start, :end, :budget, '财政', '建设中', :t, :t)""",
            {"approved": date(2024, 2, 29), "start": date(2024, 3, 1), "end": date(2027, 2, 28),
             "budget": Decimal("87654321.99"), "t": updated})
    execute(source_db, """INSERT INTO performance_reports (report_id, project_id, period, period_start, period_end,
        students_trained, teachers_involved, enterprises_involved, funds_spent, due_on, submitted_at, summary,
        created_at, updated_at) VALUES (900001, 900001, '2025H2', :ps, :pe, 7, 2, 1, :spent, :due, :sub, NULL, :t, :t)""",
            {"ps": date(2025, 7, 1), "pe": date(2025, 12, 31), "spent": Decimal("0.10"), "due": date(2026, 1, 31),
             "sub": datetime(2026, 1, 31, 15, 59, 59, 999999, tzinfo=UTC), "t": updated})
    r = sync(iehub_home, streams=["projects", "performance_reports"])
    row = core_rows(iehub_home, "select budget_amount, approved_on, end_date, updated_at, category, industry_code "
                                "from core.project where project_id = '900001'")
    assert row == [(Decimal("87654321.99"), date(2024, 2, 29), date(2027, 2, 28), updated, "industry_college",
                    "IC")]
    report = core_rows(iehub_home, "select spent_amount, submitted_at, period_end from core.project_report "
                                   "where report_id = '900001'")
    assert report == [(Decimal("0.10"), datetime(2026, 1, 31, 15, 59, 59, 999999, tzinfo=UTC), date(2025, 12, 31))]
    # the raw lake keeps the source's declared types, the same on every dialect
    raw = next((iehub_home / "lake" / "raw" / SOURCE / "project").rglob("*.parquet"))
    schema = pq.read_schema(raw)
    assert str(schema.field("budget").type) == "decimal128(18, 2)"
    assert str(schema.field("approved_on").type) == "date32[day]"
    assert schema.field("updated_at").type.unit == "us"
    assert r["projects"]["rows_in"] > 0


@pytest.fixture
def pg_source(tmp_path: Path, iehub_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path) as url:
        municipal.seed(url, scale=0.5, seed=5, tables=("organizations", "projects"))
        monkeypatch.setattr(AdbcBackend, "batch_bytes", 16_384)  # many small batches, so the cut falls mid-result
        yield url


def test_dropped_connection_resumes_after_the_last_row_read(iehub_home: Path, pg_source: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = CuttingProxy("127.0.0.1", sa.make_url(pg_source).port or 5432, cut_after=350_000, cuts=1)
    try:
        monkeypatch.setenv("IEHUB_MUNICIPAL_DB_URL", proxy.url_for(pg_source))
        r = sync(iehub_home, streams=["projects"], spec=spec_with(SOURCE, backoff_seconds=0))["projects"]
    finally:
        proxy.close()
    assert proxy.cut == 1
    assert r["http"]["reconnects"] == 1
    assert r["rows_in"] == 2500
    keys = pq.read_table(iehub_home / r["std_path"], columns=["project_id"]).column(0).to_pylist()
    assert len(keys) == len(set(keys))
    assert_core_matches_source(iehub_home, pg_source, ["projects"])


def test_dropped_connection_fails_cleanly_and_the_retry_lands_everything(iehub_home: Path, pg_source: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = CuttingProxy("127.0.0.1", sa.make_url(pg_source).port or 5432, cut_after=350_000, cuts=10)
    monkeypatch.setenv("IEHUB_MUNICIPAL_DB_URL", proxy.url_for(pg_source))
    try:
        with pytest.raises(ConnectorError) as failure:
            sync(iehub_home, streams=["projects"], spec=spec_with(SOURCE, max_attempts=2, backoff_seconds=0))
        assert "reading failed after 2 attempt(s)" in str(failure.value)
        assert "postgres@" not in str(failure.value) or "***" in str(failure.value)
        settings = Settings.from_env(iehub_home)
        assert not [b for b in settings.catalog().landed_batches("project")]
        assert settings.catalog().get_state(SOURCE, "project") is None
        proxy.cuts_left = 0  # the network is back: the same sync again
        r = sync(iehub_home, streams=["projects"])["projects"]
    finally:
        proxy.close()
    assert r["rows_in"] == 2500
    assert_core_matches_source(iehub_home, pg_source, ["projects"])
