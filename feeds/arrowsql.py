"""SQL over one Arrow table in the feed process's in-memory DuckDB: one call per page, GIL released.

Why DuckDB and not Python objects: the API serves many pages at once from threads of one
process, and work done on a page's Python objects holds the GIL for its whole length, so
concurrent requests queue behind each other. A DuckDB statement scans the Arrow table where
it lies (no copy), runs without the GIL, and hands Arrow back. :mod:`feeds.formats` writes the
text forms and JSON records this way, :mod:`feeds.masking` the keyed digests.
"""

from __future__ import annotations

import threading
from typing import Any

import duckdb
import pyarrow as pa

__all__ = ["select_from"]

_connection: duckdb.DuckDBPyConnection | None = None
_lock = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of the shared in-memory DuckDB (one per call: cursors are per thread)."""
    global _connection
    with _lock:
        if _connection is None:
            # One thread: a page is one vector's worth of rows, and concurrency comes from the requests.
            _connection = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "256MB"})
        return _connection.cursor()


def select_from(table: pa.Table, select: str, params: list[Any] | None = None) -> pa.Table:
    """``SELECT {select} FROM page AS t`` over ``table``, with ``params`` bound to its ``?`` marks."""
    cur = _cursor()
    try:
        cur.register("page", table)
        return cur.sql(f"SELECT {select} FROM page AS t", params=params or []).to_arrow_table()
    finally:
        cur.close()
