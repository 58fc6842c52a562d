"""``ops``: the ledger's catalog tables are copied (per-batch tables other modules add too, feed tables never), incrementally, and the quarantine is queryable."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import sqlalchemy as sa

from tests.unit.warehouse.warehouse_fixtures import REGISTRY, land, notice_rows
from warehouse.build import QUARANTINE_SCHEMA, build
from warehouse.catalog import BatchRecord, Catalog
from warehouse.landing import ParquetSink
from warehouse.layout import Lake, batch_id
from warehouse.publish import current_path

UTC = timezone.utc


def test_catalog_tables_are_copied_generically_and_quarantine_is_a_table(home: Path, catalog: Catalog) -> None:
    # A table another module (the quality gate) keeps in the catalog.
    extra = sa.Table("quality_results", sa.MetaData(), sa.Column("batch_id", sa.String(200), primary_key=True),
                     sa.Column("passed", sa.Boolean), sa.Column("checked_at", sa.DateTime), sa.Column("details", sa.JSON))
    extra.metadata.create_all(catalog.engine)
    with catalog.engine.begin() as conn:
        conn.execute(extra.insert().values(batch_id="b1", passed=False, checked_at=datetime(2025, 3, 1, 8),
                                           details={"rule": "uscc"}))
    lake = Lake(home)
    bid = batch_id("lingang", "notice", "w1")
    std, quarantine = (lake.std_path("notice", "lingang", date(2025, 3, 1), bid),
                       lake.quarantine_path("notice", "lingang", date(2025, 3, 1), bid))
    with ParquetSink(std, notice_rows("lingang", []).schema) as sink:
        sink.write(notice_rows("lingang", [{"notice_id": "N1"}]))
    rejected = pa.table({"_source": ["lingang"], "_batch_id": [bid], "_extracted_at": [datetime(2025, 3, 1, tzinfo=UTC)],
                         "_page": [1], "_row": [3], "_row_index": [3], "_key": ["N9"], "field": ["publisher_uscc"],
                         "rule": ["uscc.checksum"], "reason": ["统一社会信用代码校验位错误"], "_record": ['{"id": "N9"}']},
                        schema=pa.schema([f for f in QUARANTINE_SCHEMA if f.name != "entity"]))
    with ParquetSink(quarantine, rejected.schema) as sink:
        sink.write(rejected)
    now = datetime.now(UTC)
    catalog.commit_batch(BatchRecord(bid, "lingang", "notice", "w1", "w1", 2, 1, 1, now, now,
                                     std_path=lake.relative(std), quarantine_path=lake.relative(quarantine)))
    build(home, catalog, registry=REGISTRY)
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        assert con.sql("SELECT batch_id, passed, checked_at, details FROM ops.quality_results").to_arrow_table().to_pylist() == [
            {"batch_id": "b1", "passed": False, "checked_at": datetime(2025, 3, 1, 8, tzinfo=UTC), "details": '{"rule": "uscc"}'}]
        assert con.execute("SELECT entity, _key, rule, reason FROM ops.quarantine").fetchall() == [
            ("notice", "N9", "uscc.checksum", "统一社会信用代码校验位错误")]
        tables = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'ops'").fetchall()}
        assert tables >= {"batches", "sync_state", "ledger_counter", "quality_results", "quarantine", "builds",
                          "build_state", "change_sequence"}
    finally:
        con.close()


def _land_with_quarantine(home: Path, catalog: Catalog, window: str, rejected_key: str) -> str:
    lake = Lake(home)
    bid = batch_id("lingang", "notice", window)
    std, quarantine = (lake.std_path("notice", "lingang", date(2025, 3, 1), bid),
                       lake.quarantine_path("notice", "lingang", date(2025, 3, 1), bid))
    with ParquetSink(std, notice_rows("lingang", []).schema) as sink:
        sink.write(notice_rows("lingang", [{"notice_id": "N-" + window}]))
    rejected = pa.table({"_source": ["lingang"], "_batch_id": [bid], "_extracted_at": [datetime(2025, 3, 1, tzinfo=UTC)],
                         "_page": [1], "_row": [3], "_row_index": [3], "_key": [rejected_key], "field": ["publisher_uscc"],
                         "rule": ["uscc.checksum"], "reason": ["统一社会信用代码校验位错误"], "_record": ['{}']},
                        schema=pa.schema([f for f in QUARANTINE_SCHEMA if f.name != "entity"]))
    with ParquetSink(quarantine, rejected.schema) as sink:
        sink.write(rejected)
    now = datetime.now(UTC)
    catalog.commit_batch(BatchRecord(bid, "lingang", "notice", window, window, 2, 1, 1, now, now,
                                     std_path=lake.relative(std), quarantine_path=lake.relative(quarantine)))
    return bid


def _quarantine(home: Path) -> list[tuple]:
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        return sorted(con.execute("SELECT * FROM ops.quarantine").fetchall())
    finally:
        con.close()


def test_an_incremental_build_appends_the_new_batches_quarantine_and_equals_a_rebuild(home: Path, catalog: Catalog) -> None:
    first = _land_with_quarantine(home, catalog, "w1", "N8")
    build(home, catalog, registry=REGISTRY)
    second = _land_with_quarantine(home, catalog, "w2", "N9")
    build(home, catalog, registry=REGISTRY)
    incremental = _quarantine(home)
    assert sorted((r[0], r[2], r[7]) for r in incremental) == sorted([("notice", first, "N8"), ("notice", second, "N9")])
    build(home, catalog, registry=REGISTRY)  # nothing new: the same rows, not appended twice
    assert _quarantine(home) == incremental
    build(home, catalog, registry=REGISTRY, full=True)
    assert _quarantine(home) == incremental
    # a batch whose file went missing leaves the table (it is rebuilt from the files that are there)
    Lake(home).resolve(catalog.landed_batches()[0].quarantine_path).unlink()
    build(home, catalog, registry=REGISTRY)
    assert [(r[2], r[7]) for r in _quarantine(home)] == [(second, "N9")]


def _ops(home: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        return sorted(con.execute(sql).fetchall())
    finally:
        con.close()


def test_a_catalog_shared_with_the_feed_database_puts_no_feed_table_in_ops(home: Path, catalog: Catalog) -> None:
    """One PostgreSQL (here one SQLite file) for the ledger and the feed API: the feed's keys, sealed
    webhook secrets and access requests stay out of the published snapshots; per-batch tables still go in."""
    from feeds.sharing import access_requests
    from feeds.subscriptions import feed_subscriptions

    for table in (feed_subscriptions, access_requests):
        table.metadata.create_all(catalog.engine, tables=[table])
    per_batch = sa.Table("batch_notes", sa.MetaData(), sa.Column("batch_id", sa.String(200), primary_key=True),
                         sa.Column("note", sa.Text))
    per_batch.metadata.create_all(catalog.engine)
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    with catalog.engine.begin() as conn:
        conn.execute(per_batch.insert().values(batch_id=catalog.landed_batches()[0].batch_id, note="已复核"))
    build(home, catalog, registry=REGISTRY)
    tables = {t for (t,) in _ops(home, "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'ops'")}
    assert not tables & {"feed_subscriptions", "access_requests"}
    assert "batch_notes" in tables and _ops(home, "SELECT note FROM ops.batch_notes") == [("已复核",)]
    dump = repr(_ops(home, "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'ops'"))
    assert "secret_sealed" not in dump


def test_an_incremental_build_copies_only_the_changed_batches_ledger_rows(
    home: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ops.batches and a per-batch table (the quality gate's results) take the rows of the batches landed
    since the last build and of failed ones; reruns, failures and late landings leave ops equal to a whole copy."""
    results = sa.Table("quality_results", sa.MetaData(), sa.Column("batch_id", sa.String(200), primary_key=True),
                       sa.Column("rule", sa.String(100), primary_key=True), sa.Column("success", sa.Boolean))
    results.metadata.create_all(catalog.engine)

    def checked(bid: str, *rules: tuple[str, bool]) -> None:  # the gate's rows for a batch, replaced on a rerun
        with catalog.engine.begin() as conn:
            conn.execute(results.delete().where(results.c.batch_id == bid))
            conn.execute(results.insert(), [{"batch_id": bid, "rule": r, "success": ok} for r, ok in rules])

    asked: list[int | None] = []
    real = Catalog.ops_tables

    def recording(self: Catalog, landed_after: int | None = None):  # type: ignore[no-untyped-def]
        asked.append(landed_after)
        return real(self, landed_after)

    monkeypatch.setattr(Catalog, "ops_tables", recording)
    b1, _ = land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    checked(b1, ("uscc", True))
    build(home, catalog, registry=REGISTRY)
    b2, seq2 = land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2"}]))
    checked(b2, ("uscc", False), ("dates", True))
    catalog.record_failure("lingang-notice-w3", "lingang", "notice", datetime.now(UTC), "HTTP 503 from the source")
    build(home, catalog, registry=REGISTRY)
    assert asked[-1] == 1  # only what landed after the first build's copy was read
    # a rerun of w2 (new landed_seq, results replaced), the failed w3 retried and failing again, then w4
    _, rerun_seq = land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2", "title": "改"}]))
    assert rerun_seq > seq2
    checked(b2, ("uscc", True))
    catalog.record_failure("lingang-notice-w3", "lingang", "notice", datetime.now(UTC), "timeout after 3 retries")
    b4, _ = land(home, catalog, "lingang", "w4", notice_rows("lingang", [{"notice_id": "N4"}]))
    build(home, catalog, registry=REGISTRY)
    whole = real(catalog, None).tables
    for table in ("batches", "quality_results"):
        columns = ", ".join(whole[table].column_names)
        expected = sorted(tuple(r.values()) for r in whole[table].to_pylist())
        got = _ops(home, f"SELECT {columns} FROM ops.{table}")
        assert [tuple(v.isoformat() if isinstance(v, datetime) else v for v in r) for r in got] == \
            [tuple(v.isoformat() if isinstance(v, datetime) else v for v in r) for r in expected], table
    assert _ops(home, "SELECT batch_id, status, message FROM ops.batches WHERE status = 'failed'") == [
        ("lingang-notice-w3", "failed", "timeout after 3 retries")]
    assert _ops(home, "SELECT batch_id, rule, success FROM ops.quality_results") == sorted([
        (b1, "uscc", True), (b2, "uscc", True)])
    assert _ops(home, "SELECT batch_id FROM ops.batches WHERE status = 'landed'") == sorted([(b1,), (b2,), (b4,)])
    assert asked[-1] == rerun_seq - 1  # the third build read from the second's last landed_seq on


def test_an_incremental_build_reads_the_ledger_from_where_it_stopped(
    home: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the batches landed after the least-applied entity's last one are listed; an entity that
    must start over (its columns changed) lists its own batches from the start."""
    asked: list[tuple[str | None, int]] = []
    real = Catalog.landed_batches

    def recording(self: Catalog, entity: str | None = None, *, after: int = 0):  # type: ignore[no-untyped-def]
        asked.append((entity, after))
        return real(self, entity, after=after)

    monkeypatch.setattr(Catalog, "landed_batches", recording)
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    build(home, catalog, registry=REGISTRY)
    _, seq = land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2"}]))
    asked.clear()
    build(home, catalog, registry=REGISTRY)
    assert asked == [(None, seq - 1)]
    assert _ops(home, "SELECT notice_id FROM core.notice") == [("N1",), ("N2",)]
    # the build state says notices were built with other columns: they start over from every batch
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    try:
        con.execute("UPDATE ops.build_state SET signature = 'older columns' WHERE entity = 'notice'")
    finally:
        con.close()
    land(home, catalog, "lingang", "w3", notice_rows("lingang", [{"notice_id": "N3"}]))
    asked.clear()
    result = build(home, catalog, registry=REGISTRY)
    assert ("notice", 0) in asked and result.entities["notice"].rebuilt
    assert _ops(home, "SELECT notice_id FROM core.notice") == [("N1",), ("N2",), ("N3",)]
