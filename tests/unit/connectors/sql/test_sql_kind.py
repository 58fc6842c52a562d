"""The SQL kind on its own: its spec, exact typing, keyset pages over ties, hard-delete diffs.

Runs against real SQLite files (no server needed); PostgreSQL and MariaDB are in tests/integration.
"""
from __future__ import annotations

import sqlite3
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from connectors.base import CURSOR, KEY, open_stream
from connectors.errors import FatalError, SpecError
from connectors.spec import SPEC_DIR, load_spec
from connectors.sql.stream import DELETED
from connectors.sql.types import UTC_US, arrow_type, conform

from tests.unit.connectors.test_spec import _write

BASE = yaml.safe_load((SPEC_DIR / "municipal_projects.yaml").read_text(encoding="utf-8"))


def _variant(change) -> dict:
    data = yaml.safe_load(yaml.safe_dump(BASE, allow_unicode=True))
    change(data)
    return data


def test_shipped_sql_specs_are_valid() -> None:
    assert set(load_spec("municipal_projects").streams) == {
        "organizations", "projects", "project_members", "performance_reports", "training_bases", "teachers"}
    assert set(load_spec("lingang_group").streams) == {"enterprises", "cooperations", "training_bases"}


INVALID = {
    "table and query": (lambda d: d["streams"]["projects"].update(query="SELECT 1"), "exactly one of 'table' or 'query'"),
    "query without types": (lambda d: d["streams"]["organizations"].pop("columns"), "declares the types"),
    "unknown column type": (lambda d: d["streams"]["organizations"]["columns"].update(uscc="varchar"), "unknown type"),
    "two statements": (lambda d: d["streams"]["organizations"].update(query="SELECT 1; DROP TABLE x"), "one SELECT"),
    "key not in query": (lambda d: d["streams"]["organizations"].update(primary_key="id"), "primary_key 'id'"),
    "literal url": (lambda d: d["connection"].update(url="postgresql://u:hunter2@h/db"), "connection.url"),
    "unknown backend": (lambda d: d["connection"].update(backend="odbc"), "connection.backend"),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_sql_specs_fail_before_anything_runs(tmp_path: Path, case: str) -> None:
    change, expected = INVALID[case]
    with pytest.raises(SpecError) as exc:
        load_spec(_write(tmp_path, _variant(change)))
    assert expected in str(exc.value)
    assert "hunter2" not in str(exc.value) or case == "literal url" and "line" in str(exc.value)


@pytest.mark.parametrize("given,target,expected", [
    (pa.array(["1234567.89", " 0.10", None]), pa.decimal128(18, 2), [Decimal("1234567.89"), Decimal("0.10"), None]),
    (pa.array([0.1, 12915.95, 4010000.0]), pa.decimal128(18, 2), [Decimal("0.10"), Decimal("12915.95"),
                                                                 Decimal("4010000.00")]),
    (pa.array([4010000, 7]), pa.decimal128(18, 2), [Decimal("4010000.00"), Decimal("7.00")]),
    (pa.array(["2026-03-01 12:34:56.789012", "2026-03-01 12:34:56"]), UTC_US,
     [datetime(2026, 3, 1, 12, 34, 56, 789012, tzinfo=timezone.utc), datetime(2026, 3, 1, 12, 34, 56, tzinfo=timezone.utc)]),
    (pa.array(["2026-03-01 20:34:56.5+08:00"]), UTC_US, [datetime(2026, 3, 1, 12, 34, 56, 500000, tzinfo=timezone.utc)]),
    (pa.array(["2024-02-29"]), pa.date32(), [date(2024, 2, 29)]),
    (pa.array([1, 0, None]), pa.bool_(), [True, False, None]),
    (pa.nulls(2), pa.decimal128(18, 2), [None, None]),
])
def test_values_take_their_declared_type_exactly(given: pa.Array, target: pa.DataType, expected: list) -> None:
    assert conform(given, target).to_pylist() == expected


def test_spec_types_read_as_arrow() -> None:
    assert arrow_type("decimal(14, 4)") == pa.decimal128(14, 4)
    assert arrow_type("timestamptz") == UTC_US


# ------------------------------------------------------------------ a stream over a real SQLite file
def _source(tmp_path: Path, rows: list[tuple]) -> Path:
    path = tmp_path / "src.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE items (item_id INTEGER PRIMARY KEY, title VARCHAR(50), amount NUMERIC(18, 2), "
                "updated_at DATETIME NOT NULL, deleted_at DATETIME)")
    con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    return path


def _spec(tmp_path: Path, db: Path, **stream: object) -> Path:
    data = {
        "name": "toy", "kind": "sql",
        "connection": {"url": {"env": "IEHUB_TOY_URL"}, "default_url": f"sqlite:///{db}", "batch_rows": 3},
        "overlap_seconds": 60,
        "streams": {"items": {"entity": "notice", "table": "items", "primary_key": "item_id",
                              "cursor_column": "updated_at", "soft_delete": {"column": "deleted_at"},
                              "mapping": {"fields": {"notice_id": "item_id", "title": "title",
                                                     "updated_at": {"from": "updated_at",
                                                                    "normalise": ["utc_timestamp"]}},
                                          "deleted": "_deleted"}, **stream}},
    }
    return _write(tmp_path, data)


def _open(spec_path: Path, state: dict | None = None, known: list[str] | None = None):
    stream = open_stream(load_spec(spec_path), "items")
    stream.prepare(state=state, work_dir=spec_path.parent, known_keys=lambda: pa.array(known or [], pa.string()))
    return stream


T = "2026-01-01 00:00:00.000000"


def test_ties_across_page_boundaries_are_each_read_once(tmp_path: Path) -> None:
    rows = [(i, f"标题{i}", "10.50", T, None) for i in range(1, 8)] + [(8, "later", 1, "2026-01-02 00:00:00.000000", None)]
    stream = _open(_spec(tmp_path, _source(tmp_path, rows)))
    pages = list(stream.read(None))
    assert [p.table.num_rows for p in pages] == [3, 3, 2]
    keys = [k for p in pages for k in p.table.column(KEY).to_pylist()]
    assert keys == [str(i) for i in range(1, 9)]
    assert pages[-1].table.column(CURSOR).to_pylist()[-1] == "2026-01-02 00:00:00.000000"
    assert pages[0].table.schema.field("amount").type == pa.decimal128(18, 2)


def test_incremental_starts_the_overlap_window_behind_the_cursor(tmp_path: Path) -> None:
    rows = [(1, "old", 1, "2025-12-31 23:58:30.000000", None), (2, "in window", 1, "2025-12-31 23:59:30.000000", None),
            (3, "new", 1, "2026-01-01 00:00:10.000000", "2026-01-01 00:00:10.000000")]
    stream = _open(_spec(tmp_path, _source(tmp_path, rows)), state={"cursor": T})
    pages = list(stream.read(T))
    table = pa.concat_tables(p.table for p in pages)
    assert table.column(KEY).to_pylist() == ["2", "3"]
    assert table.column(DELETED).to_pylist() == [False, True]  # deleted_at set: a soft delete


def test_hard_deletes_found_by_the_key_diff_become_tombstones(tmp_path: Path) -> None:
    rows = [(1, "a", 1, T, None), (3, "c", 1, T, None)]
    db = _source(tmp_path, rows)
    due = _open(_spec(tmp_path, db, reconcile_every_hours=0), state={"cursor": T}, known=["1", "2", "3"])
    pages = list(due.read(T))
    tomb = pages[-1].table
    assert tomb.column(KEY).to_pylist() == ["2"] and tomb.column(DELETED).to_pylist() == [True]
    assert tomb.column("title").null_count == 1
    assert "reconciled_at" in due.state_extra()
    # not due yet: no key query, the last reconciliation is carried forward
    recent = datetime.now(timezone.utc).isoformat()
    later = _open(_spec(tmp_path, db), state={"cursor": T, "reconciled_at": recent}, known=["1", "2", "3"])
    assert all(DELETED not in p.table.column_names or not any(p.table.column(DELETED).to_pylist())
               for p in later.read(T))
    assert later.state_extra() == {"reconciled_at": recent}


def test_connectorx_pages_read_the_same_rows(tmp_path: Path) -> None:
    rows = [(i, f"t{i}", f"{i}.25", T, None) for i in range(1, 11)]
    db = _source(tmp_path, rows)
    default = [p.table for p in _open(_spec(tmp_path, db)).read(None)]
    path = _spec(tmp_path, db)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["connection"]["backend"] = "connectorx"
    cx = [p.table for p in _open(_write(tmp_path, data)).read(None)]
    assert pa.concat_tables(cx).equals(pa.concat_tables(default))


def test_a_wrong_table_name_says_what_to_fix(tmp_path: Path) -> None:
    db = _source(tmp_path, [])
    stream = _open(_spec(tmp_path, db, table="itemz"))
    with pytest.raises(FatalError) as exc:
        list(stream.read(None))
    assert "itemz" in str(exc.value) and "check the spec's table name" in str(exc.value)


def test_a_numeric_column_sqlite_stored_as_integers_then_reals_still_reads_exactly(tmp_path: Path) -> None:
    """ADBC SQLite fixes INT64 from the first rows and fails on the first REAL: the stream carries on."""
    rows = [(i, "whole", 4010000, T, None) for i in range(1, 2501)] + [(2501, "cents", 12915.95, T, None)]
    path = _spec(tmp_path, _source(tmp_path, rows))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["connection"]["batch_rows"] = 1000
    stream = _open(_write(tmp_path, data))
    table = pa.concat_tables(p.table for p in stream.read(None))
    assert table.num_rows == 2501 and table.column(KEY).to_pylist()[-1] == "2501"
    assert table.column("amount").to_pylist()[-2:] == [Decimal("4010000.00"), Decimal("12915.95")]
    assert stream.stats()["backend"] == "sqlalchemy"  # started on ADBC, finished on the fallback


@pytest.mark.parametrize(("url", "name", "expected"), [
    ("postgresql+psycopg://u@h/db", 'Odd"Name', '"Odd""Name"'),
    ("postgresql://u@h/db", "project_id", '"project_id"'),
    ("sqlite:///x.db", 'Odd"Name', '"Odd""Name"'),
    ("mysql+pymysql://u@h/db", 'Odd"Name', '`Odd"Name`'),
    ("mariadb+pymysql://u@h/db", "a`b", "`a``b`"),
])
def test_names_are_quoted_exactly_in_each_dialect(url: str, name: str, expected: str) -> None:
    from sqlalchemy.engine import make_url

    from connectors.sql.stream import _quote

    assert _quote(make_url(url), name) == expected


def test_quoting_a_postgresql_name_loads_no_sqlalchemy_dialect() -> None:
    import subprocess
    import sys

    code = ("import sys; from sqlalchemy.engine import make_url; from connectors.sql.stream import _quote; "
            "q = _quote(make_url('postgresql+psycopg://u@h/db'), 'project_id'); "
            "print(q, 'sqlalchemy.dialects.postgresql' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[4]).stdout.split()
    assert out == ['"project_id"', "False"]
