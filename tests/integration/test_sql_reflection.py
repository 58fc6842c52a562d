"""The SQL kind reads a PostgreSQL table's columns over the connection it reads the rows on, and types
them as SQLAlchemy's reflection did: every common type, domains, enums, arrays, quoted names, a schema
named or found on the search path. A real server (a missing one fails the test by name)."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
import yaml

from connectors.base import open_stream
from connectors.errors import FatalError
from connectors.spec import load_spec
from tests.integration.sql_helpers import fresh_database

COLUMNS = """
    "Item_ID" integer PRIMARY KEY, title varchar(50), small smallint, big bigint, flag boolean,
    amount numeric(18, 2), whole numeric(10), loose numeric, ratio real, measure double precision,
    price money, happened timestamp, happened_ms timestamp(3), updated_at timestamptz NOT NULL,
    on_day date, at_time time, span interval, code char(3), body text, ref uuid, doc jsonb, raw bytea,
    tags integer[], state mood, positive gov.positive, cents gov.cents
"""


def _spec(tmp_path: Path, url: str, table: str) -> Path:
    data = {
        "name": "toy", "kind": "sql",
        "connection": {"url": {"env": "IEHUB_TOY_PG_URL"}, "default_url": url},
        "streams": {"items": {"entity": "notice", "table": table, "primary_key": "Item_ID",
                              "cursor_column": "updated_at",
                              "mapping": {"fields": {"notice_id": "Item_ID", "title": "title"}}}},
    }
    path = tmp_path / f"spec-{table.replace('.', '-')}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory):
    with fresh_database("postgresql", tmp_path_factory.mktemp("pg")) as url:
        engine = sa.create_engine(url)
        with engine.begin() as con:
            for statement in (
                "CREATE SCHEMA gov",
                "CREATE TYPE mood AS ENUM ('ok', 'bad')",
                "CREATE DOMAIN gov.positive AS integer CHECK (VALUE > 0)",
                "CREATE DOMAIN gov.cents AS numeric(12, 2)",
                f'CREATE TABLE gov."项目 Items" ({COLUMNS})',
                f"CREATE TABLE plain_items ({COLUMNS})",
                "INSERT INTO plain_items (\"Item_ID\", title, amount, whole, loose, updated_at, flag, cents) VALUES "
                "(1, '标题', 12.34, 7, 0.1234567891, '2026-01-01 08:00:00+00', true, 5.5)",
            ):
                con.exec_driver_sql(statement)
        engine.dispose()
        yield url


@pytest.mark.parametrize("table", ['gov."项目 Items"', "plain_items", "public.plain_items"])
def test_the_catalog_read_types_columns_as_sqlalchemy_reflection_did(database: str, tmp_path: Path, table: str) -> None:
    stream = open_stream(load_spec(_spec(tmp_path, database, table.replace('"', ""))), "items")
    try:
        assert stream.backend_choice == "auto"
        by_catalog = stream._reflect_postgres()
        assert stream.backend is not None  # the connection the rows are read on
        assert list(by_catalog.items()) == list(stream._reflect().items())
    finally:
        stream.close()
    assert by_catalog["amount"] == pa.decimal128(18, 2) and by_catalog["whole"] == pa.decimal128(10, 0)
    assert by_catalog["loose"] == pa.decimal128(38, 10) and by_catalog["updated_at"] == pa.timestamp("us", tz="UTC")
    assert by_catalog["Item_ID"] == pa.int64() and by_catalog["happened_ms"] == pa.timestamp("us")


def test_the_rows_read_in_the_types_read_from_the_catalog(database: str, tmp_path: Path) -> None:
    stream = open_stream(load_spec(_spec(tmp_path, database, "plain_items")), "items")
    stream.prepare(state=None, work_dir=tmp_path, known_keys=lambda: pa.array([], pa.string()))
    try:
        table = pa.concat_tables(p.table for p in stream.read(None))
    finally:
        stream.close()
    row = table.to_pylist()[0]
    assert (row["Item_ID"], row["title"], row["amount"], row["whole"], row["loose"], row["flag"], row["cents"]) == (
        1, "标题", Decimal("12.34"), Decimal("7"), Decimal("0.1234567891"), True, "5.50")
    assert row["updated_at"] == datetime(2026, 1, 1, 8, tzinfo=timezone.utc)
    assert stream.stats()["backend"] == "adbc"


def test_a_table_the_server_cannot_find_says_what_to_fix(database: str, tmp_path: Path) -> None:
    stream = open_stream(load_spec(_spec(tmp_path, database, "gov.itemz")), "items")
    try:
        with pytest.raises(FatalError) as exc:
            stream._source_schema()
    finally:
        stream.close()
    assert "gov.itemz" in str(exc.value) and "check the spec's table name" in str(exc.value)
