"""SQLAlchemy plumbing shared by the hub's small transactional stores (the catalog, feed keys, audit).

Kept apart from :mod:`warehouse.catalog` so readers of other rooms (``feeds``) can use the same
timestamp type and SQLite settings without importing the ledger's write side.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import TypeDecorator

__all__ = ["UtcDateTime", "configure_sqlite"]


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and handed back timezone-aware on every backend.

    SQLite has no timezone type, so without this a value would come back naive and be
    compared wrongly against aware values elsewhere in the hub.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True
    error: type[Exception] = ValueError  #: raised for a naive datetime; stores name their own

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise self.error(f"naive datetime {value!r}: this store takes timezone-aware UTC times")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout, durable commits and ``BEGIN IMMEDIATE`` for writers.

    pysqlite's own transaction handling begins lazily with a deferred BEGIN, which lets two
    writers both read and then deadlock on upgrade; we take over BEGIN ourselves.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("iehub_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
