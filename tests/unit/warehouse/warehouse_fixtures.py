"""Test helpers for the warehouse: two small hand-made entities and a lander.

The merge semantics are tested on hand-made data whose shape we control; one test in
test_warehouse_build.py also builds with the real ``schemas.ENTITIES``.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from schemas import get_entity
from schemas.lineage import record_hash
from schemas.validators import org_code_check_char, uscc_check_char
from schemas.model import Entity, Field

from warehouse.catalog import BatchRecord, Catalog
from warehouse.landing import ParquetSink
from warehouse.layout import Lake, batch_id
from warehouse.publish import current_path

UTC = timezone.utc

NOTICE = Entity(
    name="notice",
    zh="通知公告",
    en="notice published on the platform",
    grain="one row per source and notice",
    key=("_source", "notice_id"),
    fields=(
        Field("notice_id", pa.string(), "公告编号", "notice id", required=True),
        Field("title", pa.string(), "标题", "title"),
        Field("budget_amount", pa.decimal128(18, 2), "预算金额(元)", "budget in yuan"),
        Field("publish_date", pa.date32(), "发布日期", "publish date"),
        Field("contact_phone", pa.string(), "联系电话", "contact phone", pii="personal"),
        Field("updated_at", pa.timestamp("us", tz="UTC"), "更新时间", "last update (UTC)"),
    ),
)

ORGANIZATION = Entity(
    name="organization",
    zh="机构",
    en="organisation",
    grain="one row per organisation (USCC)",
    key=("uscc",),
    fields=(
        Field("uscc", pa.string(), "统一社会信用代码", "unified social credit code", required=True),
        Field("org_name", pa.string(), "机构名称", "organisation name"),
    ),
)

REGISTRY = {"notice": NOTICE, "organization": ORGANIZATION}


def notice_rows(source: str, rows: list[dict[str, Any]], *, extracted: datetime | None = None) -> pa.Table:
    """Notice rows with lineage filled in; each dict needs notice_id, may set title/_is_deleted."""
    extracted = extracted or datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    full = []
    for r in rows:
        full.append(
            {
                "notice_id": r["notice_id"],
                "title": r.get("title"),
                "budget_amount": r.get("budget_amount", Decimal("1200.50")),
                "publish_date": r.get("publish_date", date(2025, 3, 1)),
                "contact_phone": r.get("contact_phone", "13800138000"),
                "updated_at": r.get("updated_at"),
                "_source": source,
                "_source_key": r["notice_id"],
                "_batch_id": r.get("_batch_id", "b"),
                "_extracted_at": extracted,
                "_record_hash": "",  # filled below from the business fields, as the pipeline does
                "_is_deleted": r.get("_is_deleted", False),
            }
        )
    table = pa.Table.from_pylist(full, schema=NOTICE.arrow_schema())
    return with_record_hash(table, NOTICE)


def query_current(home: Path, sql: str) -> list[tuple]:
    """Rows of ``sql`` on the published snapshot (what readers see), as tuples."""
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        return [tuple(r.values()) for r in con.sql(sql).to_arrow_table().to_pylist()]
    finally:
        con.close()


def valid_uscc(prefix: str, org_code: str) -> str:
    """A check-digit-valid USCC (GB 32100) from 8 leading characters and an 8-character org code."""
    first17 = prefix + org_code + org_code_check_char(org_code)
    return first17 + uscc_check_char(first17)


def entity_rows(
    entity_name: str,
    items: list[dict[str, Any]],
    *,
    source: str = "municipal_db",
    extracted: datetime | None = None,
) -> pa.Table:
    """Std rows of a canonical entity with lineage and real record hashes; unset fields are NULL."""
    entity = get_entity(entity_name)
    key = [k for k in entity.key if not k.startswith("_")][0]
    extracted = extracted or datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    full = [{f.name: r.get(f.name) for f in entity.arrow_schema()} | {
        "_source": source, "_source_key": r[key], "_batch_id": "b", "_extracted_at": extracted,
        "_record_hash": "", "_is_deleted": r.get("_is_deleted", False)} for r in items]
    return with_record_hash(pa.Table.from_pylist(full, schema=entity.arrow_schema()), entity)


def with_record_hash(table: pa.Table, entity: Entity) -> pa.Table:
    """Real ``_record_hash`` values: the build gives no new version to a row whose hash did not change."""
    index = table.schema.get_field_index("_record_hash")
    return table.set_column(index, "_record_hash", record_hash(table, entity))


def land(
    home: Path,
    catalog: Catalog,
    source: str,
    window: str,
    table: pa.Table,
    *,
    entity: Entity = NOTICE,
    state: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """Land one std file and ledger it, as the pipeline will; returns (batch_id, landed_seq)."""
    lake = Lake(home)
    bid = batch_id(source, entity.name, window)
    path = lake.std_path(entity.name, source, date(2025, 3, 1), bid)
    with ParquetSink(path, entity.arrow_schema()) as sink:
        sink.write(table.set_column(table.schema.get_field_index("_batch_id"), "_batch_id",
                                    pa.array([bid] * table.num_rows, pa.string())))
    now = datetime.now(UTC)
    seq = catalog.commit_batch(
        BatchRecord(
            batch_id=bid,
            source=source,
            entity=entity.name,
            window_start=window,
            window_end=window,
            rows_in=table.num_rows,
            rows_loaded=table.num_rows,
            rows_quarantined=0,
            started_at=now,
            finished_at=now,
            std_path=lake.relative(path),
        ),
        state=state,
    )
    return bid, seq
