"""Bulk loading generated rows into a sandbox database, the fastest way each server offers.

COPY on PostgreSQL; one executemany per chunk in one transaction on SQLite and MySQL/MariaDB
(PyMySQL turns it into multi-row INSERTs). Rows are tuples of text/number/bool/None; text
timestamps and dates are read by the server (PostgreSQL in a UTC session).
"""
from __future__ import annotations

import io
from datetime import date, datetime, timezone
from decimal import Decimal
from itertools import islice
from typing import Any, Iterable

from sqlalchemy import Engine, Table

CHUNK = 50_000


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def load_rows(engine: Engine, table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> int:
    """Append `rows` (tuples in `columns` order) to `table`; returns how many."""
    quote = engine.dialect.identifier_preparer.quote
    cols = ", ".join(quote(c) for c in columns)
    n = 0
    it = iter(rows)
    with engine.begin() as conn:
        driver = conn.connection.driver_connection
        if engine.dialect.name == "postgresql":
            with driver.cursor() as cur:
                cur.execute("SET LOCAL TimeZone = 'UTC'")
                with cur.copy(f"COPY {quote(table)} ({cols}) FROM STDIN") as copy:
                    while chunk := list(islice(it, CHUNK)):
                        buf = io.StringIO()
                        for row in chunk:
                            buf.write("\t".join(map(_copy_text, row)))
                            buf.write("\n")
                        copy.write(buf.getvalue())
                        n += len(chunk)
            return n
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(engine.dialect.paramstyle)
        if mark is None:
            raise RuntimeError(f"sandbox: no bulk load for {engine.dialect.name} ({engine.dialect.paramstyle})")
        stmt = f"INSERT INTO {quote(table)} ({cols}) VALUES ({', '.join([mark] * len(columns))})"
        cur = driver.cursor()
        while chunk := list(islice(it, CHUNK)):
            cur.executemany(stmt, chunk)
            n += len(chunk)
    return n


def python_values(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """Generated text (dates, times, amounts) → the Python values SQLAlchemy binds on any dialect.

    Times in the generated text are wall-clock values of the column's own kind: UTC for zoned
    columns, local for naive ones.
    """
    out = {}
    for name, value in values.items():
        if isinstance(value, str):
            column = table.c[name]
            kind = column.type.python_type
            if kind is datetime:
                value = datetime.fromisoformat(value)
                if getattr(column.type, "timezone", False):
                    value = value.replace(tzinfo=timezone.utc)
            elif kind is date:
                value = date.fromisoformat(value)
            elif kind is Decimal:
                value = Decimal(value)
        out[name] = value
    return out
