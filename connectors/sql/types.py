"""One Arrow type per source column, whatever the dialect or driver returned.

Drivers disagree: ADBC hands PostgreSQL NUMERIC over as text, connectorx as decimal(38,10),
SQLite stores NUMERIC as REAL and timestamps as text. The raw lake keeps each column in the
type the database declares (reflected for tables, declared in the spec for queries), so a
row reads the same from SQLite, PostgreSQL or MariaDB and decimals, dates and time zones stay
exact: decimals go through text (floats by their shortest repr), never binary arithmetic.
"""
from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import types as sat

UTC_US = pa.timestamp("us", tz="UTC")
NAIVE_US = pa.timestamp("us")


def arrow_type(declared: str) -> pa.DataType:
    """A spec's column type (`int`, `decimal(18,2)`, `timestamptz`…) as Arrow."""
    declared = declared.strip().lower()
    if m := re.match(r"decimal\((\d+),\s*(\d+)\)", declared):
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    return {"int": pa.int64(), "text": pa.string(), "float": pa.float64(), "bool": pa.bool_(), "date": pa.date32(),
            "timestamp": NAIVE_US, "timestamptz": UTC_US}[declared]


def from_sqlalchemy(column_type: sat.TypeEngine) -> pa.DataType:
    """A reflected column type as Arrow; anything unusual is kept as text."""
    if isinstance(column_type, sat.Boolean):
        return pa.bool_()
    if isinstance(column_type, sat.Integer):
        return pa.int64()
    if isinstance(column_type, sat.Numeric) and not isinstance(column_type, sat.Float):
        precision = column_type.precision or 38
        scale = column_type.scale if column_type.scale is not None else (10 if column_type.precision is None else 0)
        return pa.decimal128(min(precision, 38), scale)
    if isinstance(column_type, sat.Float):
        return pa.float64()
    if isinstance(column_type, sat.DateTime):
        return UTC_US if column_type.timezone else NAIVE_US
    if isinstance(column_type, sat.Date):
        return pa.date32()
    return pa.string()


#: PostgreSQL's own names of the types :func:`from_sqlalchemy` gives other than text (``pg_type.typname``).
_POSTGRES_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(), "int2": pa.int64(), "int4": pa.int64(), "int8": pa.int64(), "float4": pa.float64(),
    "float8": pa.float64(), "timestamp": NAIVE_US, "timestamptz": UTC_US, "date": pa.date32(),
}


def from_postgres(typname: str, precision: int | None, scale: int | None) -> pa.DataType:
    """A PostgreSQL column type (``pg_type.typname``, and a numeric's declared precision and scale) as
    Arrow, the same as :func:`from_sqlalchemy` gives for what SQLAlchemy reflects of that column (a
    domain, an enum, an array, time, interval or money: text)."""
    if typname == "numeric":
        return pa.decimal128(38, 10) if precision is None else pa.decimal128(min(precision, 38), scale or 0)
    return _POSTGRES_TYPES.get(typname, pa.string())


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if isinstance(arr.type, pa.ExtensionType) or isinstance(arr, pa.ExtensionArray):
        arr = arr.storage  # ADBC's opaque PostgreSQL types (numeric…) keep their text as storage
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    return arr


def conform(arr: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array:
    """`arr` as `target`, exactly; raises pa.ArrowInvalid naming nothing when a value cannot be."""
    arr = _plain(arr)
    t = arr.type
    if t == target:
        return arr
    if pa.types.is_null(t) or arr.null_count == len(arr):  # a driver may type an all-null column anyhow
        return pa.nulls(len(arr), target)
    if pa.types.is_decimal(target):
        if pa.types.is_floating(t):
            arr = arr.cast(pa.string())  # shortest repr: 0.1 stays 0.1
        if pa.types.is_string(arr.type):
            arr = pc.utf8_trim_whitespace(arr)
        elif pa.types.is_integer(arr.type):  # SQLite keeps 4010000.00 as INTEGER; Arrow wants room for 19 digits
            arr = arr.cast(pa.decimal128(38, target.scale))
        return arr.cast(target)
    if pa.types.is_timestamp(target):
        if pa.types.is_timestamp(t):
            if t.tz is None and target.tz is not None:
                return pc.assume_timezone(arr.cast(NAIVE_US), target.tz)
            if t.tz is not None and target.tz is None:
                return arr.cast(UTC_US).cast(pa.int64()).cast(NAIVE_US)  # as UTC wall time
            return arr.cast(target)
        if pa.types.is_string(t):
            # ISO text (SQLite, MySQL as text); a trailing zone marker, if any, is honoured by Arrow.
            try:
                naive = arr.cast(NAIVE_US)
            except pa.ArrowInvalid:
                return arr.cast(UTC_US).cast(target) if target.tz else arr.cast(UTC_US).cast(pa.int64()).cast(NAIVE_US)
            return pc.assume_timezone(naive, target.tz) if target.tz else naive
    if pa.types.is_date(target) and pa.types.is_timestamp(t):
        return arr.cast(pa.date32())
    if pa.types.is_boolean(target) and (pa.types.is_integer(t) or pa.types.is_decimal(t)):
        return pc.not_equal(arr.cast(pa.int64()), 0)
    if pa.types.is_string(target) and pa.types.is_binary(t):
        return arr.cast(pa.string())
    return arr.cast(target)


def conform_table(table: pa.Table | pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """Columns of `schema`, by name, each conformed; a column missing from `table` is an error."""
    missing = [n for n in schema.names if n not in table.schema.names]
    if missing:
        raise KeyError(f"the result has no column(s) {missing}")
    return pa.Table.from_arrays([conform(table.column(n), schema.field(n).type) for n in schema.names], schema=schema)
