"""Lineage columns: where every landed row came from, and a fingerprint of its content.

``_record_hash`` lets the warehouse tell a changed record from a re-sent one without
comparing every column. It covers the business fields only, so re-extracting the same
record in another batch gives the same hash.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import duckdb_compute
from schemas.model import Entity
from schemas.normalise import _plain, _utf8_buffers

try:  # the row loop in C (built by setup.py); without a compiler DuckDB's md5 gives the same hashes
    from schemas import _md5
except ImportError:  # the tests run both ways, setting _md5 to None
    _md5 = None

__all__ = ["add_lineage", "record_hash"]

_NULL_MARK = "\x00"  # a null is not the empty string
_SEPARATOR = 0x1F
#: Threads of the C loop: every core, up to 4 (as DuckDB's instance would use for the same rows).
HASH_THREADS = max(1, min(os.cpu_count() or 1, 4))
#: Rows per Arrow batch handed to DuckDB: it hashes one batch per thread, so a chunk given as one
#: batch ran on one core (250k project rows: 0.23 s wall as one batch, 0.13 s as several).
HASH_BATCH_ROWS = 1 << 16


def _hash_text(column: pa.Array) -> pa.Array:
    """Stable text per value: timestamps as epoch microseconds, everything else via Arrow's cast."""
    t = column.type
    if pa.types.is_timestamp(t):
        column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return pc.fill_null(column.cast(pa.string()), _NULL_MARK)


#: Days since 1970-01-01 of 0000-01-01 and 9999-12-31: the dates Arrow writes with a four-digit year,
#: the ones the C loop writes itself.
_DAYS = (-719528, 2932896)


def _c_column(column: pa.Array) -> tuple[int, np.ndarray, np.ndarray | None, int] | None:
    """``column`` as the C loop's typed (kind, data, nulls, param) tuple, when the loop writes its
    values exactly as :func:`_hash_text` would (the tests hold it to that); else None."""
    assert _md5 is not None
    t, n = column.type, len(column)
    if pa.types.is_timestamp(t):
        column, t = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), pa.int64()
    if pa.types.is_boolean(t):
        kind, param, data = _md5.BOOL, 0, pc.fill_null(column, False).to_numpy(zero_copy_only=False).view(np.uint8)
    else:
        if pa.types.is_integer(t) and pa.types.is_signed_integer(t):
            kind, param, width = _md5.INT, t.bit_width // 8, t.bit_width // 8
        elif pa.types.is_date32(t):
            low, high = pc.min_max(column).values()
            if low.is_valid and (low.value < _DAYS[0] or high.value > _DAYS[1]):
                return None
            kind, param, width = _md5.DATE, 0, 4
        elif pa.types.is_decimal128(t) and 0 <= t.scale <= 6:
            kind, param, width = _md5.DECIMAL, t.scale, 16
        else:
            return None
        data = np.frombuffer(column.buffers()[1], dtype=np.uint8, count=n * width, offset=column.offset * width)
    nulls = pc.is_null(column).to_numpy(zero_copy_only=False).view(np.uint8) if column.null_count else None
    return kind, data, nulls, param


def record_hash(table: pa.Table, entity: Entity) -> pa.Array:
    """Hex MD5 per row over the entity's business fields in schema order.

    Recipe (pinned by a test, since changing it marks every stored record as changed):
    each value as text (timestamps as UTC epoch microseconds, others by Arrow's string cast),
    null as U+0000, joined by U+001F. Values are typed as the schema first, so the hash depends on the canonical value, not on
    how a source happened to deliver it. MD5 is for change detection, not security.
    """
    n = table.num_rows
    if n == 0:
        return pa.array([], type=pa.string())
    typed = [_plain(table[f.name]).cast(f.type) for f in entity.business_fields]
    if _md5 is not None:
        # each row streamed through one MD5 state, nothing joined in memory (1M 杨浦 rows: 0.2 s on
        # two cores against DuckDB's 0.44 s, which first builds every row's joined text); dates,
        # numbers, timestamps and booleans written as text by the loop itself, not cast first
        columns = [_c_column(column) or _utf8_buffers(_hash_text(column))[::-1] for column in typed]
        digests = _md5.hex_rows(columns, _SEPARATOR, HASH_THREADS)
        offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
        return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(digests)])
    parts = {f"c{i}": _hash_text(column) for i, column in enumerate(typed)}
    # Nulls are already U+0000, so concat_ws skips nothing; DuckDB joins and hashes in parallel.
    expr = f"md5(concat_ws(chr({_SEPARATOR}), {', '.join(parts)}))"
    with duckdb_compute.cursor() as con:
        con.register("rows_to_hash", pa.Table.from_batches(pa.table(parts).to_batches(max_chunksize=HASH_BATCH_ROWS)))
        # preserve_insertion_order (set on the shared instance) keeps output rows aligned with input,
        # also when its threads hash different batches.
        hashed = con.sql(f"SELECT {expr} AS h FROM rows_to_hash").to_arrow_table()
    return _plain(hashed["h"])


def add_lineage(
    table: pa.Table,
    entity: Entity,
    *,
    source: str,
    batch_id: str,
    extracted_at: datetime,
    source_key: pa.Array | None = None,
) -> pa.Table:
    """Complete mapped rows into landed rows conforming exactly to ``entity.arrow_schema()``.

    ``_is_deleted`` is taken from the mapping output (False when absent). Without an explicit
    ``source_key`` the record's business key (joined with '|') stands in for it.
    """
    n = table.num_rows
    missing = [f.name for f in entity.business_fields if f.name not in table.column_names]
    if missing:
        raise ValueError(f"entity {entity.name}: table lacks business fields {missing}")
    if not source or not batch_id:
        raise ValueError("source and batch_id must be non-empty")
    if extracted_at.tzinfo is None:
        raise ValueError("extracted_at must be timezone-aware (UTC); naive times are ambiguous")

    business = {f.name: _plain(table[f.name]).cast(f.type) for f in entity.business_fields}
    if "_is_deleted" in table.column_names:
        deleted = pc.fill_null(_plain(table["_is_deleted"]).cast(pa.bool_()), False)
    else:
        deleted = pc.is_valid(pa.nulls(n, pa.bool_()))  # all False

    if source_key is not None:
        keys = _plain(source_key).cast(pa.string())
        if len(keys) != n:
            raise ValueError(f"source_key has {len(keys)} values for {n} rows")
    else:
        key_parts = [business[k].cast(pa.string()) for k in entity.key if k in business]
        keys = key_parts[0] if len(key_parts) == 1 else pc.binary_join_element_wise(*key_parts, "|")

    schema = entity.arrow_schema()
    lineage = {
        "_source": pa.repeat(pa.scalar(source, pa.string()), n),
        "_source_key": keys,
        "_batch_id": pa.repeat(pa.scalar(batch_id, pa.string()), n),
        "_extracted_at": pa.repeat(pa.scalar(extracted_at.astimezone(timezone.utc), schema.field("_extracted_at").type), n),
        "_record_hash": record_hash(pa.table(business), entity),
        "_is_deleted": deleted,
    }
    arrays = [business[name] if name in business else lineage[name] for name in schema.names]
    return pa.Table.from_arrays(arrays, schema=schema)
