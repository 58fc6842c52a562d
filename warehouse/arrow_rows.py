"""Small Arrow tables from Python values (ledger rows, file lists, code lists) without loading pandas.

The build turns a few Python lists into Arrow (the catalog's tables for ``ops``, the new files'
paths, the code lists). pyarrow's own converters (``pa.array``, ``Table.from_pylist``) ask
pandas, on first use, whether a value is one of its objects, which imports pandas: 0.1-0.3 s
of every ``iehub build`` process (measured at 1M projects: a 1% incremental build spends ~1.1 s
in all), for tables of a few rows. DuckDB binds the same values as typed list parameters, and
its Arrow result is cast to the exact schema, so the output is the table ``from_pylist`` made.
Naive datetimes are read as UTC, as pyarrow reads them for a time-zone-aware column.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from schemas import duckdb_compute

__all__ = ["lend", "table_from_columns", "table_from_rows"]


#: Above this many rows pyarrow's own converters are used (they load pandas once, 0.1-0.3 s; binding
#: 1M rows of 14 columns as DuckDB parameters cost more than that many times over).
PYARROW_ROWS = 50_000

_LENT = threading.local()


@contextmanager
def lend(con: Any) -> Iterator[None]:
    """Convert on ``con``'s database (a cursor of it) on this thread, instead of opening one.

    A build has a DuckDB open already; opening the in-memory one as well cost 20-35 ms of every
    build process (a 1% incremental build at 1M projects takes ~0.85 s). A cursor is a connection
    of its own, so the conversions touch none of the build's settings, temp tables or transaction.
    """
    before = getattr(_LENT, "con", None)
    _LENT.con = con
    try:
        yield
    finally:
        _LENT.con = before


@contextmanager
def _cursor() -> Iterator[Any]:
    """A cursor of the lent connection, else of the process's shared in-memory DuckDB
    (:mod:`schemas.duckdb_compute`: opening one costs ~20 ms, a cursor of it ~1 ms); closed on leaving."""
    lent = getattr(_LENT, "con", None)
    if lent is None:
        with duckdb_compute.cursor() as con:
            yield con
        return
    con = lent.cursor()
    try:
        yield con
    finally:
        con.close()


def _sql_type(t: pa.DataType) -> str:
    from warehouse.versions import duck_type  # with DuckDB: loaded by the callers that use it, not at import

    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BLOB"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _sql_type(t.value_type) + "[]"
    return duck_type(t)


def table_from_columns(columns: Mapping[str, Sequence[Any]], schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` from one sequence of Python values per column (all of one length)."""
    lengths = {len(columns[f.name]) for f in schema}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths {sorted(lengths)} for {schema.names}")
    if not schema.names or lengths == {0}:
        return pa.Table.from_batches([], schema=schema)  # (schema.empty_table() loads pandas too)
    if lengths.pop() > PYARROW_ROWS:
        # Binding is for a few rows: a long ledger's whole copy (1M quality results) took 3.5 s here.
        return pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)
    with _cursor() as con:  # a connection of its own (thread-safe); its TimeZone is its own
        con.execute("SET TimeZone = 'UTC'")
        select = "SELECT " + ", ".join(f"unnest(?::{_sql_type(f.type)}[]) AS c{i}" for i, f in enumerate(schema))
        table = con.sql(select, params=[list(columns[f.name]) for f in schema]).to_arrow_table()
    return table.rename_columns(schema.names).cast(schema)


def table_from_rows(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` from dicts (``Table.from_pylist(rows, schema=schema)``: missing keys are NULL)."""
    return table_from_columns({f.name: [r.get(f.name) for r in rows] for f in schema}, schema)
