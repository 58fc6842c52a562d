"""Arrow tables from Python values without pandas: the same table pyarrow's own converters make."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from warehouse.arrow_rows import table_from_columns, table_from_rows

SCHEMA = pa.schema([
    ("batch_id", pa.string()), ("rows_in", pa.int64()), ("page", pa.int32()), ("ok", pa.bool_()),
    ("share", pa.float64()), ("finished_at", pa.timestamp("us", tz="UTC")), ("on", pa.date32()),
    ("entities", pa.list_(pa.string())), ("blob", pa.binary()), ("amount", pa.decimal128(18, 2)),
])

ROWS = [
    {"batch_id": "municipal_db-project-2025-03-01", "rows_in": 1_000_000, "page": 3, "ok": True, "share": 0.25,
     "finished_at": datetime(2025, 3, 1, 10, 30, 0, 123456, tzinfo=timezone.utc), "on": date(2025, 3, 1),
     "entities": ["project", "project_report"], "blob": b"\x00\x01", "amount": Decimal("12345.67")},
    # another zone, a naive time (read as UTC, as pyarrow does), NULLs and missing keys
    {"batch_id": "临港-合作协议", "rows_in": None, "page": None, "ok": False, "share": None,
     "finished_at": datetime(2025, 3, 1, 18, 30, tzinfo=timezone(timedelta(hours=8))), "on": None,
     "entities": [], "amount": None},
    {"batch_id": None, "finished_at": datetime(2025, 3, 2, 9, 0), "entities": None},
]


def test_rows_give_the_table_from_pylist_gives() -> None:
    got = table_from_rows(ROWS, SCHEMA)
    assert got.schema == SCHEMA
    assert got.equals(pa.Table.from_pylist(ROWS, schema=SCHEMA))


def test_many_rows_give_the_same_table_through_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    import warehouse.arrow_rows as arrow_rows

    monkeypatch.setattr(arrow_rows, "PYARROW_ROWS", 2)
    got = table_from_rows(ROWS, SCHEMA)
    assert got.schema == SCHEMA
    assert got.equals(pa.Table.from_pylist(ROWS, schema=SCHEMA))


def test_no_rows_give_an_empty_table_of_the_schema() -> None:
    got = table_from_rows([], SCHEMA)
    assert got.num_rows == 0 and got.schema == SCHEMA


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        table_from_columns({"path": ["a", "b"], "landed_seq": [1]},
                           pa.schema([("path", pa.string()), ("landed_seq", pa.int64())]))


BUILD_IN_FRESH_PROCESS = """
import sys
from pathlib import Path
from warehouse.build import build
from warehouse.catalog import Catalog
from tests.unit.warehouse.warehouse_fixtures import REGISTRY
before = "pandas" in sys.modules
catalog = Catalog.for_home(Path(sys.argv[1]))
build(Path(sys.argv[1]), catalog, registry=REGISTRY)
build(Path(sys.argv[1]), catalog, registry=REGISTRY)
import schemas.duckdb_compute
print(before, "pandas" in sys.modules, len(schemas.duckdb_compute._INSTANCE))
"""


def test_a_build_does_not_load_pandas_nor_open_a_database_for_conversions(home: Path) -> None:
    """pyarrow's converters import pandas on first use (0.1-0.3 s of every `iehub build` process);
    the build lends its own DuckDB for the conversions (opening another cost 20-35 ms a build)."""
    from tests.unit.warehouse.warehouse_fixtures import land, notice_rows
    from warehouse.catalog import Catalog

    catalog = Catalog.for_home(home)
    try:
        land(home, catalog, "lingang", "2025-03-01", notice_rows("lingang", [{"notice_id": "N1", "title": "通知"}]))
    finally:
        catalog.dispose()
    out = subprocess.run([sys.executable, "-c", BUILD_IN_FRESH_PROCESS, str(home)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.split() == ["False", "False", "0"], out.stderr


def test_a_lent_connection_converts_beside_its_open_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    import warehouse.arrow_rows as arrow_rows
    from schemas import duckdb_compute

    monkeypatch.setattr(duckdb_compute, "_INSTANCE", [])
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER)")
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO t VALUES (1)")
    with arrow_rows.lend(con):
        got = table_from_rows(ROWS, SCHEMA)
    assert got.equals(pa.Table.from_pylist(ROWS, schema=SCHEMA)) and duckdb_compute._INSTANCE == []
    con.execute("COMMIT")  # the conversion neither ended nor broke the caller's transaction
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    table_from_rows(ROWS, SCHEMA)  # lent no more: the process's own database again
    assert len(duckdb_compute._INSTANCE) == 1
