"""``ops``: every catalog table is copied (tables other modules add too) and the quarantine is queryable."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from tests.unit.warehouse.warehouse_fixtures import REGISTRY, notice_rows
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
