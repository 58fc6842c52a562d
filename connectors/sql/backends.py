"""Ways of getting a query's rows out as Arrow: ADBC, connectorx, or SQLAlchemy `fetchmany`.

Measured on this stack for 1M project rows from PostgreSQL (bench/municipal_sync.py prints the
current figures): ADBC streams record batches over COPY in ~3.5 s with flat memory and exact
types (NUMERIC arrives as text, TIMESTAMPTZ as UTC); connectorx takes ~4.1 s and materialises
the whole result (so it is only used in LIMITed pages) and turns NUMERIC into decimal(38,10);
SQLAlchemy is slowest but works on every dialect. On SQLite (1M rows) ADBC reads ~3x faster than
SQLAlchemy, but it fixes a column's type from its first rows and fails ("Type mismatch in column
0: expected INT64 but got DOUBLE") when a NUMERIC column held only whole amounts (SQLite keeps
4010000.00 as an integer) before 12915.95 (a real); connectorx refuses REAL in NUMERIC outright.
`auto` therefore means ADBC on PostgreSQL and SQLite, SQLAlchemy elsewhere, and a stream that
meets such a mismatch carries on through SQLAlchemy after the last row read (`TypeMismatch`).
`bench/municipal_sync.py --backends N` prints the comparison.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

import pyarrow as pa
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

FETCH_ROWS = 50_000


class Backend:
    """Runs one SELECT and yields its rows as Arrow tables, in order, holding at most a batch."""

    name = "?"
    paged = False  # True: the whole result is materialised, so the stream asks in LIMITed pages

    def batches(self, sql: str) -> Iterator[pa.Table]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class AdbcBackend(Backend):
    name = "adbc"
    batch_bytes = 8 << 20  # PostgreSQL: bytes per record batch the driver hands over (memory per batch)

    def __init__(self, url: URL) -> None:
        if url.get_backend_name() == "postgresql":
            import adbc_driver_postgresql.dbapi as driver

            uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
        elif url.get_backend_name() == "sqlite":
            import adbc_driver_sqlite.dbapi as driver  # type: ignore[no-redef]

            uri = url.database or ":memory:"
        else:
            raise ValueError(f"no ADBC driver for {url.get_backend_name()}")
        self.conn = driver.connect(uri)
        self.postgres = url.get_backend_name() == "postgresql"

    def batches(self, sql: str) -> Iterator[pa.Table]:
        cur = self.conn.cursor()
        try:
            if self.postgres:
                cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(self.batch_bytes)})
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            for batch in reader:
                yield pa.Table.from_batches([batch])
        finally:
            cur.close()

    def close(self) -> None:
        self.conn.close()


class ConnectorxBackend(Backend):
    name = "connectorx"
    paged = True

    def __init__(self, url: URL) -> None:
        backend = url.get_backend_name()
        if backend not in ("postgresql", "sqlite", "mysql", "mariadb"):
            raise ValueError(f"connectorx does not read {backend}")
        scheme = {"mariadb": "mysql"}.get(backend, backend)
        if backend == "sqlite":
            self.uri = f"sqlite://{url.database}"
        else:
            self.uri = url.set(drivername=scheme).render_as_string(hide_password=False)

    def batches(self, sql: str) -> Iterator[pa.Table]:
        import connectorx as cx

        yield cx.read_sql(self.uri, sql, return_type="arrow")


class SqlAlchemyBackend(Backend):
    """Any dialect: a server-side cursor read with `fetchmany`, so memory holds one fetch."""

    name = "sqlalchemy"

    def __init__(self, url: URL) -> None:
        self.engine = create_engine(url, poolclass=NullPool)
        self.conn = self.engine.connect()

    def batches(self, sql: str) -> Iterator[pa.Table]:
        result = self.conn.execution_options(stream_results=True).exec_driver_sql(sql)
        try:
            names = list(result.keys())
            while rows := result.fetchmany(FETCH_ROWS):
                columns = list(zip(*rows))
                yield pa.table({name: _array(list(values)) for name, values in zip(names, columns)})
        finally:
            result.close()
            self.conn.rollback()

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def _array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def choose(url: URL, wanted: str) -> str:
    """The backend for `url` when the spec says `wanted` (auto: the fastest exact one measured)."""
    if wanted != "auto":
        return wanted
    return "adbc" if url.get_backend_name() in ("postgresql", "sqlite") else "sqlalchemy"


def is_type_mismatch(exc: BaseException) -> bool:
    """ADBC SQLite gave up on a column whose stored types vary (SQLite's per-value typing)."""
    return "type mismatch in column" in str(exc).lower()


def open_backend(url: str | URL, wanted: str = "auto") -> Backend:
    url = make_url(url)
    name = choose(url, wanted)
    cls = {"adbc": AdbcBackend, "connectorx": ConnectorxBackend, "sqlalchemy": SqlAlchemyBackend}[name]
    return cls(url)


_DROPPED_WORDS = ("connection", "terminat", "server closed", "lost", "broken pipe", "reset by peer", "gone away",
                  "timeout", "timed out", "shutdown", "eof")


def is_dropped_connection(exc: BaseException) -> bool:
    """Whether `exc` looks like a connection that went away (retry) rather than a wrong query (fail)."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig or exc
    kind = type(exc).__name__
    if kind in ("ProgrammingError", "IntegrityError", "DataError", "NotSupportedError"):
        return False
    text = str(exc).lower()
    return kind in ("OperationalError", "InterfaceError", "ConnectionError", "BrokenPipeError") or \
        any(word in text for word in _DROPPED_WORDS)
