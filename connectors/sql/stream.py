"""A SQL stream: one table (or query) read in (cursor, key) order, as typed Arrow pages.

Incremental reads are keyset reads: `cursor >= anchor AND (cursor > anchor OR key > last_key)`
ordered by (cursor, key), so rows sharing a timestamp at a page or pass boundary are neither
skipped nor read twice, and a dropped connection resumes after the last row already handed
over. The pass starts `overlap_seconds` behind the stored cursor to catch rows committed late
with an older timestamp; rows that come back unchanged are dropped by the pipeline's overlap
digests. Soft deletes arrive as rows flagged `_deleted`; hard deletes are found by a key-only
diff against the keys the hub holds live (every `reconcile_every_hours`, and on every full
resync) and become tombstone rows carrying only their key.
"""
from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from connectors.base import BOOKKEEPING, RawPage, SourceStream, register_kind
from connectors.errors import Actor, ConnectorError, FatalError, SpecError
from connectors.secrets import Secret, mask, resolve_secret
from connectors.spec import interpolate_env
from connectors.sql.backends import Backend, choose, is_dropped_connection, is_type_mismatch, open_backend
from connectors.sql.spec import SqlSourceSpec
from connectors.sql.types import NAIVE_US, UTC_US, arrow_type, conform_table, from_postgres, from_sqlalchemy
from schemas import duckdb_compute

log = logging.getLogger(__name__)

DELETED = "_deleted"
CURSOR_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_STATE_RECONCILED = "reconciled_at"


def resolve_url(spec: SqlSourceSpec) -> tuple[URL, list[Secret]]:
    """The database URL: the secret if set, else the spec's embedded default; plus what to mask."""
    conn = spec.connection
    try:
        secret = resolve_secret(conn.url.as_ref(), f"source {spec.name}: connection.url")
    except SpecError:
        if conn.default_url is None:
            raise
        url = make_url(interpolate_env(conn.default_url))
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(url.database)), exist_ok=True)
        return url, []
    url = make_url(secret.reveal())
    secrets = [secret] + ([Secret(url.password)] if url.password else [])
    return url, secrets


#: The identifier quote of the dialects the hub reads with its own quoting, so that quoting a name loads
#: no SQLAlchemy dialect: PostgreSQL's imports every PostgreSQL driver's module (~27 ms of each sync's
#: fresh process, an Airflow task's included, to quote a table name for a read through ADBC).
_QUOTE_CHARS = {"postgresql": '"', "sqlite": '"', "mysql": "`", "mariadb": "`"}


def _quote(url: URL, name: str) -> str:
    """``name`` as an identifier of ``url``'s dialect. On the dialects above always quoted: the name as
    given, exactly (a quoted name is not case-folded), which is what SQLAlchemy's quoting means too (it
    quotes any name that folding would change); on any other, SQLAlchemy's own quoting."""
    quote = _QUOTE_CHARS.get(url.get_backend_name())
    if quote is None:
        return url.get_dialect()().identifier_preparer.quote(name)
    return quote + name.replace(quote, quote + quote) + quote


def _literal(value: Any, dialect: str) -> str:
    """A cursor or key value as SQL text; values come from the database or a validated cursor, never a user."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        text = value.astimezone(timezone.utc).strftime(CURSOR_FORMAT) if value.tzinfo else value.strftime(CURSOR_FORMAT)
        return f"'{text}+00'" if dialect == "postgresql" and value.tzinfo else f"'{text}'"
    return "'" + str(value).replace("'", "''") + "'"


class SqlSourceStream(SourceStream):
    """The SQL kind as the pipeline sees it: raw rows are the source's columns, typed as declared."""

    cursor_format = CURSOR_FORMAT

    def __init__(self, spec: SqlSourceSpec, name: str) -> None:
        self.spec, self.stream = spec, spec.streams[name]
        self.source, self.name, self.entity = spec.name, name, self.stream.entity
        self.cursor_format = CURSOR_FORMAT if self.stream.cursor_column else None  # type: ignore[assignment]
        self.overlap_seconds = spec.overlap_seconds
        self.url, self.secrets = resolve_url(spec)
        self.dialect = self.url.get_backend_name()
        self.backend: Backend | None = None
        self.backend_choice = spec.connection.backend  # may fall back to sqlalchemy (see backends.py)
        self.columns: pa.Schema | None = None
        self._stats: dict[str, Any] = {"backend": None, "queries": 0, "reconnects": 0, "tombstones": 0,
                                       "reconciled": False}
        self._reconciled_at: str | None = None
        self._full_floor: str | None = None
        self.state: dict[str, Any] | None = None

    # ------------------------------------------------------------------ errors
    def _error(self, message: str, exc: BaseException | None = None, actor: Actor = Actor.SOURCE) -> ConnectorError:
        text = mask(f"{message}: {exc}" if exc else message, self.secrets)
        where = f"{self.url.get_backend_name()} {self.stream.table or 'query'}"
        return FatalError(text, source=self.source, stream=self.name, endpoint=where, actor=actor)

    # ------------------------------------------------------------------ schema
    def _source_schema(self) -> pa.Schema:
        """Reflected (table) or declared (query) column types, as Arrow."""
        if self.stream.query is not None:
            return pa.schema([(n, arrow_type(t)) for n, t in self.stream.columns.items()])
        if self.dialect == "postgresql" and choose(self.url, self.backend_choice) == "adbc":
            declared = self._reflect_postgres()
        else:
            declared = self._reflect()
        for name, kind in self.stream.columns.items():  # a spec may pin a type (e.g. naive → timestamptz)
            declared[name] = arrow_type(kind)
        return pa.schema(list(declared.items()))

    def _reflect(self) -> dict[str, pa.DataType]:
        """The table's columns as SQLAlchemy reflects them, typed by :func:`from_sqlalchemy`."""
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            schema, _, table_name = (self.stream.table or "").rpartition(".")
            # the columns alone: a Table's autoload also reflects keys, indexes and constraints, several
            # catalog queries more (PostgreSQL, 1M projects: 55-67 ms a sync instead of 17-28)
            reflected = inspect(engine).get_columns(table_name, schema=schema or None)
            if not reflected:  # SQLite reports a missing table as one without columns
                raise LookupError(f"no table {self.stream.table!r}")
        except Exception as exc:  # noqa: BLE001 - any reflection failure is reported with where and what to do
            raise self._reflection_error(exc) from None
        finally:
            engine.dispose()
        return {c["name"]: from_sqlalchemy(c["type"]) for c in reflected}

    def _reflect_postgres(self) -> dict[str, pa.DataType]:
        """The table's columns read from PostgreSQL's catalog over the connection the rows are then read on,
        typed as :meth:`_reflect` types them (:func:`from_postgres`): no second connection and no second
        driver (SQLAlchemy's psycopg) for one catalog query (1% incremental sync of 1M projects: 50-90 ms).
        The name resolves as the server resolves it in the query (``to_regclass``, the search path)."""
        name = ".".join(_quote(self.url, part) for part in (self.stream.table or "").split("."))
        sql = ("SELECT a.attname, t.typname, information_schema._pg_numeric_precision(a.atttypid, a.atttypmod), "
               "information_schema._pg_numeric_scale(a.atttypid, a.atttypmod) "
               "FROM pg_catalog.pg_attribute AS a JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid "
               f"WHERE a.attrelid = to_regclass({_literal(name, self.dialect)}) AND a.attnum > 0 "
               "AND NOT a.attisdropped ORDER BY a.attnum")
        try:
            if self.backend is None:
                self.backend = self._connect()
            parts = [p for p in self.backend.batches(sql) if p.num_rows]
        except ConnectorError:
            raise
        except Exception as exc:  # noqa: BLE001 - any reflection failure is reported with where and what to do
            self._drop_backend()
            raise self._reflection_error(exc) from None
        rows = [r for p in parts for r in zip(*(p.column(i).to_pylist() for i in range(4)))]
        if not rows:
            raise self._reflection_error(LookupError(f"no table {self.stream.table!r}"))
        return {n: from_postgres(t, precision, scale) for n, t, precision, scale in rows}

    def _reflection_error(self, exc: BaseException) -> ConnectorError:
        if is_dropped_connection(exc):
            return self._error("cannot connect to the database; check the URL and that the server is up",
                               getattr(exc, "orig", None) or exc, Actor.CONFIGURATION)
        return self._error(f"cannot read the columns of table {self.stream.table!r}; check the spec's table name "
                           "and the database URL", exc, Actor.CONFIGURATION)

    @property
    def raw_schema(self) -> pa.Schema:  # type: ignore[override]
        if self.columns is None:
            self.columns = self._source_schema()
            for needed in (self.stream.primary_key, self.stream.cursor_column,
                           self.stream.soft_delete.column if self.stream.soft_delete else None):
                if needed and needed not in self.columns.names:
                    raise self._error(f"column {needed!r} named in the spec is not in {self.stream.table or 'the query'}"
                                      f" (columns: {', '.join(self.columns.names)})", actor=Actor.CONFIGURATION)
            cur = self.stream.cursor_column
            if cur and not pa.types.is_timestamp(self.columns.field(cur).type):
                raise self._error(f"cursor_column {cur!r} is {self.columns.field(cur).type}; the cursor must be a "
                                  "timestamp column (NOT NULL, indexed together with the key)",
                                  actor=Actor.CONFIGURATION)
        return pa.schema([*BOOKKEEPING, (DELETED, pa.bool_()), *self.columns])

    # ------------------------------------------------------------------ SQL
    def _relation(self) -> str:
        if self.stream.query is not None:
            return f"({self.stream.query}) AS iehub_q"
        return ".".join(_quote(self.url, part) for part in (self.stream.table or "").split("."))

    def _select(self, after: tuple[Any, Any] | None, anchor: str | None, limit: int | None,
                by_key: bool = False) -> str:
        """The page query: by key for full reads (the primary key index is the cheap order), else
        by (cursor, key) from the anchor; `after` resumes behind the last row already read."""
        q = lambda n: _quote(self.url, n)  # noqa: E731
        cols = ", ".join(q(n) for n in self.raw_schema.names[len(BOOKKEEPING) + 1:])
        key, cur = q(self.stream.primary_key), self.stream.cursor_column
        where: list[str] = []
        if cur is None or by_key:
            order = key
            if after is not None:
                where.append(f"{key} > {_literal(after[1], self.dialect)}")
        else:
            c = q(cur)
            order = f"{c}, {key}"
            if after is not None:
                t, k = _literal(after[0], self.dialect), _literal(after[1], self.dialect)
                # the first conjunct is a plain range on the (cursor, key) index; the second settles ties
                where.append(f"{c} >= {t} AND ({c} > {t} OR {key} > {k})")
            elif anchor is not None:
                moment = datetime.strptime(anchor, CURSOR_FORMAT)
                if self.columns is not None and self.columns.field(cur).type == UTC_US:
                    moment = moment.replace(tzinfo=timezone.utc)
                where.append(f"{c} >= {_literal(moment, self.dialect)}")
        sql = f"SELECT {cols} FROM {self._relation()}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        if limit:
            sql += f" LIMIT {limit}"
        return sql

    # ------------------------------------------------------------------ reading
    def _connect(self) -> Backend:
        """A connection, tried again (with backoff) while the failure looks like a network drop."""
        attempts = self.spec.connection.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                backend = open_backend(self.url, self.backend_choice)
            except Exception as exc:  # noqa: BLE001 - drivers raise their own types; all are classified here
                if attempt < attempts and is_dropped_connection(exc):
                    self._stats["reconnects"] += 1
                    time.sleep(self.spec.connection.backoff_seconds * attempt)
                    continue
                raise self._error(f"cannot connect to the database ({attempt} attempt(s)); check the URL and that "
                                  "the server is up", exc, Actor.CONFIGURATION) from None
            self._stats["backend"] = backend.name
            return backend
        raise AssertionError("unreachable")

    def _rows(self, anchor: str | None, by_key: bool = False) -> Iterator[pa.Table]:
        """Conformed tables in (cursor, key) order; resumes after the last row yielded when the connection drops."""
        schema = self.columns
        assert schema is not None
        conn_spec = self.spec.connection
        after: tuple[Any, Any] | None = None
        attempt = 0
        while True:
            if self.backend is None:
                self.backend = self._connect()
            paged = self.backend.paged
            limit = conn_spec.batch_rows if paged else None
            sql = self._select(after, anchor, limit, by_key)
            got = 0
            try:
                self._stats["queries"] += 1
                for part in self.backend.batches(sql):
                    try:
                        table = conform_table(part, schema)
                    except (KeyError, pa.ArrowException) as exc:
                        raise self._error("a column does not hold its declared type; fix the spec's columns "
                                          "or the source", exc) from None
                    if table.num_rows == 0:
                        continue
                    got += table.num_rows
                    last = table.slice(table.num_rows - 1)
                    after = (last.column(self.stream.cursor_column).to_pylist()[0]
                             if self.stream.cursor_column and not by_key else None,
                             last.column(self.stream.primary_key).to_pylist()[0])
                    yield table
            except ConnectorError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified right here: dropped connection or not
                self._drop_backend()
                if is_type_mismatch(exc) and self.backend_choice != "sqlalchemy":
                    log.info("%s.%s: %s; carrying on through SQLAlchemy after the last row read", self.source,
                             self.name, str(exc)[:200])
                    self.backend_choice = "sqlalchemy"
                    continue
                attempt += 1
                if not is_dropped_connection(exc) or attempt >= conn_spec.max_attempts:
                    raise self._error(f"reading failed after {attempt} attempt(s)" if is_dropped_connection(exc)
                                      else "the query failed", exc) from None
                self._stats["reconnects"] += 1
                log.warning("%s.%s: connection dropped (%s); resuming after the last row read (attempt %d)",
                            self.source, self.name, mask(str(exc), self.secrets)[:200], attempt + 1)
                time.sleep(conn_spec.backoff_seconds * attempt)
                continue
            if not paged or got < (limit or 0):
                return

    def _drop_backend(self) -> None:
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception:  # noqa: BLE001 - closing a dead connection may fail; it is dropped anyway
                log.debug("closing a dropped connection failed", exc_info=True)
            self.backend = None

    def _bookkeeping(self, table: pa.Table, deleted: pa.Array | None = None, stored: str | None = None) -> pa.Table:
        """Key, cursor text, digest and delete flag in front of the source columns.

        Digests serve only the overlap bookkeeping, so they are computed only for rows that can
        take part in it: rows at or before the stored cursor (re-read by the overlap) and rows
        within the overlap window behind this page's newest cursor (the next boundary). Rows in
        between can be neither, because the pass reads in cursor order.
        """
        keys = table.column(self.stream.primary_key).cast(pa.string())
        cur = self.stream.cursor_column
        if cur is None:
            cursors = pa.nulls(table.num_rows, pa.string())
            needed = None
        else:
            cursors = _cursor_text(table.column(cur))
            needed = None
            if self._full_floor is not None:  # a full read in key order: the floor was asked up front
                floor = self._full_floor
            else:
                newest = pc.max(cursors).as_py()
                floor = self.overlap_floor(newest) if newest else None
            if floor is not None:
                mask = pc.greater_equal(cursors, floor)
                if stored is not None:
                    mask = pc.or_(mask, pc.less_equal(cursors, stored))
                needed = pc.fill_null(mask, False)
        if deleted is None:
            deleted = self._soft_deleted(table)
        if needed is None:
            digests = _digests(table)
        else:
            idx = pc.indices_nonzero(needed)
            some = _digests(table.take(idx)) if len(idx) else pa.array([], pa.string())
            digests = pc.replace_with_mask(pa.nulls(table.num_rows, pa.string()), needed, some) if len(idx) \
                else pa.nulls(table.num_rows, pa.string())
        return pa.Table.from_arrays([keys, cursors, digests, deleted, *table.columns], schema=self.raw_schema)

    def _soft_deleted(self, table: pa.Table) -> pa.Array:
        rule = self.stream.soft_delete
        if rule is None:
            return pa.repeat(pa.scalar(False), table.num_rows)
        col = table.column(rule.column)
        if rule.values is None:
            return pc.is_valid(col)
        return pc.fill_null(pc.is_in(pc.utf8_trim_whitespace(col.cast(pa.string())),
                                     value_set=pa.array(rule.values, pa.string())), False)

    def read(self, cursor: str | None) -> Iterator[RawPage]:
        self.raw_schema  # reflect before the first query, with a clear error
        anchor = self.start_anchor(cursor)
        batch_rows = self.spec.connection.batch_rows
        by_key = cursor is None and self.stream.cursor_column is not None
        if by_key:
            newest = self._newest_cursor()
            self._full_floor = self.overlap_floor(newest) if newest else None
        number = 0
        pending: list[pa.Table] = []
        pending_rows = 0
        for table in self._rows(anchor, by_key):
            pending.append(table)
            pending_rows += table.num_rows
            while pending_rows >= batch_rows:
                whole = pa.concat_tables(pending)
                number += 1
                yield RawPage(number, self._bookkeeping(whole.slice(0, batch_rows), stored=cursor))
                rest = whole.slice(batch_rows)
                pending, pending_rows = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
        if pending_rows:
            number += 1
            yield RawPage(number, self._bookkeeping(pa.concat_tables(pending), stored=cursor))
        tombstones = self._hard_deletes(full=cursor is None)
        if tombstones is not None and tombstones.num_rows:
            number += 1
            yield RawPage(number, tombstones)
        self._drop_backend()

    def _newest_cursor(self) -> str | None:
        """The source's newest cursor value now (one index lookup), as cursor text."""
        assert self.columns is not None and self.stream.cursor_column
        c = self.stream.cursor_column
        sql = f"SELECT MAX({_quote(self.url, c)}) AS {_quote(self.url, c)} FROM {self._relation()}"
        if self.backend is None:
            self.backend = self._connect()
        try:
            self._stats["queries"] += 1
            parts = [p for p in self.backend.batches(sql) if p.num_rows]
        except Exception as exc:  # noqa: BLE001 - the read that follows retries; this is an optimisation
            log.warning("%s.%s: could not ask the newest cursor (%s)", self.source, self.name,
                        mask(str(exc), self.secrets)[:200])
            self._drop_backend()
            return None
        if not parts:
            return None
        value = conform_table(parts[0], pa.schema([self.columns.field(c)])).column(0)
        return _cursor_text(value)[0].as_py()

    # ------------------------------------------------------------------ hard deletes
    def _reconcile_due(self, full: bool) -> bool:
        every = self.stream.reconcile_every_hours
        if full:
            return True
        if every is None:
            return False
        last = (self.state or {}).get(_STATE_RECONCILED)
        if last is None:
            return True
        elapsed = (datetime.now(timezone.utc) - datetime.fromisoformat(last)).total_seconds()
        return elapsed >= every * 3600

    def _hard_deletes(self, *, full: bool) -> pa.Table | None:
        """Tombstones for keys the hub holds live that the source no longer has (a key-only diff)."""
        self._reconciled_at = (self.state or {}).get(_STATE_RECONCILED)
        if not self._reconcile_due(full):
            return None
        started = datetime.now(timezone.utc).isoformat()
        live = self.known_keys()
        self._reconciled_at = started
        self._stats["reconciled"] = True
        if len(live) == 0:
            return None
        source_keys = self._source_keys()
        gone = live.filter(pc.invert(pc.is_in(live, value_set=source_keys)))
        self._stats["tombstones"] = len(gone)
        if len(gone) == 0:
            return None
        assert self.columns is not None
        n = len(gone)
        columns = [pa.nulls(n, f.type) if f.name != self.stream.primary_key else gone.cast(f.type)
                   for f in self.columns]
        table = pa.Table.from_arrays(columns, schema=self.columns)
        return self._bookkeeping(table, deleted=pa.repeat(pa.scalar(True), n))

    def _source_keys(self) -> pa.Array:
        """Every key the source holds now, as text, read as one narrow column."""
        key = _quote(self.url, self.stream.primary_key)
        sql = f"SELECT {key} FROM {self._relation()}"
        for attempt in range(1, self.spec.connection.max_attempts + 1):
            if self.backend is None:
                self.backend = self._connect()
            try:
                self._stats["queries"] += 1
                parts = list(self.backend.batches(sql))  # one narrow column: fits at any realistic size
                arrays = [p.column(0).cast(pa.string()) for p in parts if p.num_rows]
                return pa.chunked_array(arrays, pa.string()).combine_chunks() if arrays else pa.array([], pa.string())
            except Exception as exc:  # noqa: BLE001 - classified right here
                self._drop_backend()
                if not is_dropped_connection(exc) or attempt >= self.spec.connection.max_attempts:
                    raise self._error("the key-only reconciliation query failed", exc) from None
                self._stats["reconnects"] += 1
                time.sleep(self.spec.connection.backoff_seconds * attempt)
        raise AssertionError("unreachable")

    def state_extra(self) -> dict[str, Any]:
        return {_STATE_RECONCILED: self._reconciled_at} if self._reconciled_at else {}

    # ------------------------------------------------------------------ pure column access
    @classmethod
    def source_columns(cls, raw: pa.Table, names: list[str]) -> pa.Table:
        missing = [n for n in names if n not in raw.column_names]
        present = [n for n in names if n in raw.column_names]
        table = raw.select(present)
        for n in missing:  # the mapping reads a missing column as nulls; drift shows in quarantine
            table = table.append_column(n, pa.nulls(raw.num_rows, pa.string()))
        return table

    @classmethod
    def raw_fields(cls, raw_path: str) -> set[str] | None:
        """Source columns of a staged raw file, plus the `_deleted` flag this kind derives."""
        import pyarrow.parquet as pq

        return {n for n in pq.read_schema(raw_path).names if not n.startswith("_") or n == DELETED}

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    def close(self) -> None:
        self._drop_backend()


def _cursor_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Cursor values as fixed-width sortable text (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC for zoned times)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        # casting is ~20x faster than strftime; the wall time of a zoned value is its UTC time
        return column.cast(pa.timestamp(column.type.unit, tz="UTC") if column.type.tz else column.type) \
            .cast(pa.int64()).cast(pa.timestamp(column.type.unit)).cast(NAIVE_US).cast(pa.string())
    return column.cast(pa.string())


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _digests(table: pa.Table) -> pa.Array:
    """A short digest of each row as received (for overlap re-reads), hashed in DuckDB."""
    n = table.num_rows
    if n == 0:
        return pa.array([], pa.string())
    with duckdb_compute.cursor() as con:
        con.register("rows_in", table)
        parts = ", ".join(f"coalesce(CAST({_ident(c)} AS VARCHAR), chr(0))" for c in table.column_names)
        result = con.sql(f"SELECT left(md5(concat_ws(chr(31), {parts})), 16) AS d FROM rows_in").to_arrow_table()
    return result.column(0).combine_chunks().cast(pa.string())


register_kind("sql", SqlSourceStream)
