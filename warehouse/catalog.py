"""The ops catalog: the batch ledger and the sync state, in one transactional store.

Why not inside ``warehouse.duckdb``: source syncs run in parallel (Airflow workers, several
processes) while DuckDB allows a single writer, and the warehouse file is rebuilt and
replaced on every build. The catalog is the durable record of what has landed; the builder
copies it into ``ops.batches`` on each build.

Embedded default: SQLite at ``<home>/catalog.db`` (WAL, busy timeout, ``BEGIN IMMEDIATE``
for writes); PostgreSQL (or any SQLAlchemy URL whose dialect supports ``ON CONFLICT``) when
a URL is given.

``landed_seq`` is the merge order of the warehouse: a one-row counter bumped with
``UPDATE … RETURNING`` inside the landing transaction. The row lock it takes serialises
concurrent landings, so sequence order is also commit order, with no gaps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from warehouse.arrow_rows import table_from_columns, table_from_rows
from warehouse.sqlstore import UtcDateTime as _UtcDateTime
from warehouse.sqlstore import configure_sqlite

__all__ = [
    "BatchRecord",
    "BatchRow",
    "Catalog",
    "LedgerError",
    "OpsTables",
    "BATCHES_ARROW_SCHEMA",
    "SYNC_STATE_ARROW_SCHEMA",
]

LANDED = "landed"
FAILED = "failed"


@dataclass(frozen=True)
class OpsTables:
    """What :meth:`Catalog.ops_tables` hands the build.

    ``whole``: tables copied whole (small: cursors, the counter). ``per_batch``: ``batches`` and the
    tables keyed by ``batch_id``, holding the rows of ``batch_ids`` (``None``: every row).
    """

    whole: dict[str, pa.Table]
    per_batch: dict[str, pa.Table]
    batch_ids: list[str] | None

    @property
    def tables(self) -> dict[str, pa.Table]:
        return {**self.whole, **self.per_batch}


class LedgerError(ValueError):
    """A ledger write that would make the ledger lie (counts that do not add up, bad paths…)."""


class UtcDateTime(_UtcDateTime):
    """The ledger's UTC timestamps: a naive time is a :class:`LedgerError`."""

    cache_ok = True
    error = LedgerError


metadata = sa.MetaData()

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.String(200), primary_key=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("entity", sa.String(100), nullable=False),
    sa.Column("window_start", sa.String(100)),
    sa.Column("window_end", sa.String(100)),
    sa.Column("rows_in", sa.BigInteger, nullable=False),
    sa.Column("rows_loaded", sa.BigInteger, nullable=False),
    sa.Column("rows_quarantined", sa.BigInteger, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("raw_path", sa.String(1000)),
    sa.Column("std_path", sa.String(1000)),
    sa.Column("quarantine_path", sa.String(1000)),
    sa.Column("landed_seq", sa.BigInteger, unique=True),
    sa.Column("message", sa.Text),
    sa.CheckConstraint("status IN ('landed', 'failed')", name="batches_status"),
    sa.CheckConstraint(
        "status <> 'landed' OR rows_in = rows_loaded + rows_quarantined", name="batches_reconciled"
    ),
    sa.Index("batches_source_entity", "source", "entity"),
)

sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("source", sa.String(100), primary_key=True),
    sa.Column("entity", sa.String(100), primary_key=True),
    sa.Column("cursor", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

ledger_counter = sa.Table(
    "ledger_counter",
    metadata,
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)

_UTC_US = pa.timestamp("us", tz="UTC")

#: ``ops.batches`` as the build receives it.
BATCHES_ARROW_SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("source", pa.string()),
        ("entity", pa.string()),
        ("window_start", pa.string()),
        ("window_end", pa.string()),
        ("rows_in", pa.int64()),
        ("rows_loaded", pa.int64()),
        ("rows_quarantined", pa.int64()),
        ("started_at", _UTC_US),
        ("finished_at", _UTC_US),
        ("status", pa.string()),
        ("raw_path", pa.string()),
        ("std_path", pa.string()),
        ("quarantine_path", pa.string()),
        ("landed_seq", pa.int64()),
        ("message", pa.string()),
    ]
)

#: ``ops.sync_state`` as the build receives it (cursor kept as JSON text).
SYNC_STATE_ARROW_SCHEMA = pa.schema(
    [("source", pa.string()), ("entity", pa.string()), ("cursor", pa.string()), ("updated_at", _UTC_US)]
)


@dataclass(frozen=True)
class BatchRecord:
    """One landed batch as the pipeline reports it (paths relative to the hub home)."""

    batch_id: str
    source: str
    entity: str
    window_start: str | None
    window_end: str | None
    rows_in: int
    rows_loaded: int
    rows_quarantined: int
    started_at: datetime
    finished_at: datetime | None
    status: str = LANDED
    raw_path: str | None = None
    std_path: str | None = None
    quarantine_path: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class BatchRow(BatchRecord):
    """A ledger row: the record plus the merge order it was given (None for failures)."""

    landed_seq: int | None = field(default=None, kw_only=True)




def _now() -> datetime:
    return datetime.now(timezone.utc)


def _dump_cursor(source: str, entity: str, state: dict[str, Any]) -> str:
    """Cursor as stable JSON text; refuse what would not round-trip."""
    if not isinstance(state, dict):
        raise LedgerError(f"sync state for {source}/{entity} must be a dict, got {type(state).__name__}")
    try:
        return json.dumps(state, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LedgerError(
            f"sync state for {source}/{entity} is not JSON-serialisable ({exc}); "
            "store datetimes as ISO strings"
        ) from exc


class Catalog:
    """Ledger and sync state behind one SQLAlchemy engine."""

    def __init__(self, url: str) -> None:
        self.url = url
        if sa.make_url(url).get_backend_name() == "sqlite":
            self.engine: Engine = sa.create_engine(url, connect_args={"timeout": 60})
            configure_sqlite(self.engine)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)

    @classmethod
    def for_home(cls, home: Path, url: str | None = None) -> Catalog:
        """The catalog of a hub home: the given URL, else the embedded SQLite file."""
        if url is None:
            home = Path(home)
            home.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{(home / 'catalog.db').resolve()}"
        catalog = cls(url)
        catalog.create_all()
        return catalog

    def __repr__(self) -> str:
        return f"Catalog({self.engine.url.render_as_string(hide_password=True)!r})"

    def dispose(self) -> None:
        """Close pooled connections (tests, forked workers)."""
        self.engine.dispose()

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite: take the lock up front)."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction; on SQLite a deferred one, so readers do not queue behind writers."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(iehub_read_only=True)
            with conn.begin():
                yield conn

    def create_all(self) -> None:
        """Create the tables and the counter row; safe to call from many processes at once."""
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                # Concurrent CREATE TABLE IF NOT EXISTS can still collide in pg_type.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7315100201)"))
            metadata.create_all(conn, checkfirst=True)
            _insert_ignore(conn, ledger_counter, {"name": "landed_seq", "n": 0}, ["name"])

    # -- the ledger ------------------------------------------------------------------------

    def commit_batch(self, batch: BatchRecord, *, state: dict[str, Any] | None = None) -> int:
        """Record a landed batch, and its source's new cursor, in one transaction.

        A rerun of the same batch id replaces its row and gets a new ``landed_seq``, so its
        rows win the next merge. Returns the ``landed_seq``.
        """
        self._validate(batch)
        cursor = _dump_cursor(batch.source, batch.entity, state) if state is not None else None
        with self._write() as conn:
            seq = conn.execute(
                ledger_counter.update()
                .where(ledger_counter.c.name == "landed_seq")
                .values(n=ledger_counter.c.n + 1)
                .returning(ledger_counter.c.n)
            ).scalar_one()
            values = asdict(batch) | {"landed_seq": seq}
            _upsert(conn, batches, values, ["batch_id"])
            if cursor is not None:
                _upsert(
                    conn,
                    sync_state,
                    {"source": batch.source, "entity": batch.entity, "cursor": cursor, "updated_at": _now()},
                    ["source", "entity"],
                )
        return int(seq)

    @staticmethod
    def _validate(batch: BatchRecord) -> None:
        name = f"batch {batch.batch_id} ({batch.source}/{batch.entity})"
        if batch.status != LANDED:
            raise LedgerError(f"{name}: commit_batch records landed batches; use record_failure for failures")
        counts = (batch.rows_in, batch.rows_loaded, batch.rows_quarantined)
        if any(not isinstance(n, int) or n < 0 for n in counts):
            raise LedgerError(f"{name}: row counts must be non-negative integers, got {counts}")
        if batch.rows_in != batch.rows_loaded + batch.rows_quarantined:
            raise LedgerError(
                f"{name}: rows_in {batch.rows_in} != rows_loaded {batch.rows_loaded} + "
                f"rows_quarantined {batch.rows_quarantined}; rows were lost or invented between "
                "extract and landing, so the batch is not recorded"
            )
        for column in ("started_at", "finished_at"):
            _require_aware(name, column, getattr(batch, column))
        if batch.rows_loaded and not batch.std_path:
            raise LedgerError(f"{name}: {batch.rows_loaded} rows loaded but no std_path")
        for column in ("raw_path", "std_path", "quarantine_path"):
            value = getattr(batch, column)
            if value is not None:
                rel = PurePosixPath(value)
                if rel.is_absolute() or ".." in rel.parts:
                    raise LedgerError(f"{name}: {column} {value!r} must be relative to the hub home")

    def record_failure(
        self, batch_id: str, source: str, entity: str, started_at: datetime, message: str
    ) -> bool:
        """Record a failed batch so operators see it; never overwrites a landed row.

        A failed rerun must not hide data that did land under the same id. Returns False when
        a landed row was kept (the failure is then only in the caller's logs and exception).
        """
        _require_aware(f"batch {batch_id} ({source}/{entity})", "started_at", started_at)
        values = {
            "batch_id": batch_id,
            "source": source,
            "entity": entity,
            "window_start": None,
            "window_end": None,
            "rows_in": 0,
            "rows_loaded": 0,
            "rows_quarantined": 0,
            "started_at": started_at,
            "finished_at": _now(),
            "status": FAILED,
            "raw_path": None,
            "std_path": None,
            "quarantine_path": None,
            "landed_seq": None,
            "message": message,
        }
        stmt = _dialect_insert(batches, self.engine.dialect.name).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["batch_id"],
            set_={k: stmt.excluded[k] for k in values if k != "batch_id"},
            where=batches.c.status != LANDED,
        ).returning(batches.c.batch_id)
        with self._write() as conn:
            return conn.execute(stmt).first() is not None

    def landed_batches(self, entity: str | None = None, *, after: int = 0) -> list[BatchRow]:
        """Landed batches in merge order (``landed_seq`` ascending); ``after``: only those landed after it."""
        query = sa.select(batches).where(batches.c.status == LANDED).order_by(batches.c.landed_seq)
        if entity is not None:
            query = query.where(batches.c.entity == entity)
        if after:
            query = query.where(batches.c.landed_seq > after)
        with self._read() as conn:
            return [BatchRow(**row._mapping) for row in conn.execute(query)]

    def landed_entities(self) -> dict[str, int]:
        """Each entity with landed batches, and the last ``landed_seq`` among them."""
        query = (sa.select(batches.c.entity, sa.func.max(batches.c.landed_seq))
                 .where(batches.c.status == LANDED).group_by(batches.c.entity))
        with self._read() as conn:
            return {entity: int(seq) for entity, seq in conn.execute(query)}

    def get_batch(self, batch_id: str) -> BatchRow | None:
        """One ledger row, landed or failed."""
        with self._read() as conn:
            row = conn.execute(sa.select(batches).where(batches.c.batch_id == batch_id)).first()
        return BatchRow(**row._mapping) if row is not None else None

    def batches_table(self, ids: sa.Select[Any] | None = None) -> pa.Table:
        """The ledger as Arrow, for ``ops.batches`` (the build scans it, row inserts never); ``ids``:
        only the batches that query selects."""
        query = sa.select(batches).order_by(batches.c.started_at)
        if ids is not None:
            query = query.where(batches.c.batch_id.in_(ids))
        with self._read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return table_from_rows(rows, BATCHES_ARROW_SCHEMA)

    def sync_state_table(self) -> pa.Table:
        """All cursors as Arrow, for ``ops.sync_state``."""
        with self._read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(sync_state).order_by("source", "entity"))]
        return table_from_rows(rows, SYNC_STATE_ARROW_SCHEMA)

    def ops_tables(self, landed_after: int | None = None) -> OpsTables:
        """The catalog tables the build copies into ``ops``, as Arrow.

        They are the ledger's: ``batches``, ``sync_state``, ``ledger_counter``, and every other
        table here with a ``batch_id`` column (per-batch records other modules keep beside the
        ledger, such as the quality gate's results; reflected, so this module need not know them).
        Other tables are not copied: a database the hub also uses for the feed API (one PostgreSQL
        for everything) holds consumer keys, sealed webhook secrets, the audit trail and access
        requests, which no published snapshot may carry.

        ``landed_after``: the ``landed_seq`` up to which the build's ``ops.batches`` already holds
        the ledger. The per-batch tables then come as the rows of the batches landed after it, and
        of every failed batch (a failed row is rewritten in place, without a new ``landed_seq``):
        a build's cost follows the new batches, not the length of the ledger (100,000 batches and
        1M quality results took 27.8 s to copy whole on every build). ``None``: every row.
        """
        changed = (None if landed_after is None else
                   sa.select(batches.c.batch_id).where(sa.or_(batches.c.landed_seq > landed_after,
                                                              batches.c.landed_seq.is_(None))))
        whole: dict[str, pa.Table] = {"sync_state": self.sync_state_table()}
        per_batch: dict[str, pa.Table] = {"batches": self.batches_table(changed)}
        reflected = sa.MetaData()
        with self._read() as conn:
            reflected.reflect(conn)
            for name, table in sorted(reflected.tables.items()):
                if name in whole or name in per_batch or table.schema is not None:
                    continue
                if name in metadata.tables:
                    whole[name] = _arrow_rows(conn, table, sa.select(table))
                elif "batch_id" in table.columns:
                    query = sa.select(table)
                    if changed is not None:
                        query = query.where(table.c.batch_id.in_(changed))
                    per_batch[name] = _arrow_rows(conn, table, query)
        # Read last: batches only ever enter ``changed`` (landed_seq grows), so these ids cover every
        # batch whose rows the reads above took, even if a landing committed in between.
        ids = None
        if changed is not None:
            with self._read() as conn:
                ids = [r[0] for r in conn.execute(changed)]
        return OpsTables(whole, per_batch, ids)

    def summary(self) -> list[dict[str, Any]]:
        """Per source/entity: batches, last finished_at, rows totals and the last status.

        The last status is that of the most recently finished batch (failures have no
        landed_seq). The ledger holds one row per batch, so aggregating here is cheap and
        avoids aggregate-type quirks between SQLite and PostgreSQL.
        """
        query = sa.select(
            batches.c.source,
            batches.c.entity,
            batches.c.status,
            batches.c.finished_at,
            batches.c.rows_loaded,
            batches.c.rows_quarantined,
        ).order_by(batches.c.source, batches.c.entity, batches.c.finished_at)
        out: dict[tuple[str, str], dict[str, Any]] = {}
        with self._read() as conn:
            for row in conn.execute(query):
                item = out.setdefault(
                    (row.source, row.entity),
                    {
                        "source": row.source,
                        "entity": row.entity,
                        "batches": 0,
                        "last_finished_at": None,
                        "rows_loaded": 0,
                        "rows_quarantined": 0,
                        "last_status": None,
                    },
                )
                item["batches"] += 1
                item["rows_loaded"] += row.rows_loaded
                item["rows_quarantined"] += row.rows_quarantined
                if row.finished_at is not None and (
                    item["last_finished_at"] is None or row.finished_at >= item["last_finished_at"]
                ):
                    item["last_finished_at"] = row.finished_at
                    item["last_status"] = row.status
                elif item["last_status"] is None:
                    item["last_status"] = row.status
        return list(out.values())

    # -- sync state ------------------------------------------------------------------------

    def get_state(self, source: str, entity: str) -> dict[str, Any] | None:
        """The cursor committed with the last landed batch (or set by hand), if any."""
        with self._read() as conn:
            text = conn.execute(
                sa.select(sync_state.c.cursor).where(
                    sync_state.c.source == source, sync_state.c.entity == entity
                )
            ).scalar_one_or_none()
        return json.loads(text) if text is not None else None

    def set_state(self, source: str, entity: str, state: dict[str, Any]) -> None:
        """Set a cursor outside a landing (operator fix-ups, tests)."""
        cursor = _dump_cursor(source, entity, state)
        with self._write() as conn:
            _upsert(
                conn,
                sync_state,
                {"source": source, "entity": entity, "cursor": cursor, "updated_at": _now()},
                ["source", "entity"],
            )

    def reset_state(self, source: str, entity: str | None = None) -> int:
        """Forget cursors so the next sync is a full resync; returns how many were removed."""
        query = sync_state.delete().where(sync_state.c.source == source)
        if entity is not None:
            query = query.where(sync_state.c.entity == entity)
        with self._write() as conn:
            return conn.execute(query).rowcount


def _as_utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value


def _arrow_column(column_type: sa.types.TypeEngine[Any]) -> tuple[pa.DataType, Any]:
    """The Arrow type of a reflected column and a converter for its Python values."""
    if isinstance(column_type, sa.Boolean):
        return pa.bool_(), bool
    if isinstance(column_type, sa.Integer):
        return pa.int64(), int
    if isinstance(column_type, sa.Float):
        return pa.float64(), float
    if isinstance(column_type, sa.Numeric):
        return pa.float64(), float
    if isinstance(column_type, sa.DateTime):
        return _UTC_US, _as_utc
    if isinstance(column_type, sa.Date):
        return pa.date32(), lambda v: v
    if isinstance(column_type, sa.JSON):
        return pa.string(), lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)
    if isinstance(column_type, sa.LargeBinary):
        return pa.binary(), bytes
    return pa.string(), lambda v: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (dict, list)) else str(v)


def _arrow_rows(conn: Connection, table: sa.Table, query: sa.Select[Any]) -> pa.Table:
    """A reflected table's rows as Arrow, typed from its column types (:func:`_arrow_column`)."""
    rows = conn.execute(query).all()
    fields, values = [], {}
    for i, column in enumerate(table.columns):
        arrow_type, convert = _arrow_column(column.type)
        values[column.name] = [None if r[i] is None else convert(r[i]) for r in rows]
        fields.append(pa.field(column.name, arrow_type))
    return table_from_columns(values, pa.schema(fields))


def _require_aware(name: str, column: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise LedgerError(f"{name}: {column} is a naive datetime; the ledger takes timezone-aware UTC times")


def _dialect_insert(table: sa.Table, name: str) -> Any:
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise LedgerError(f"the ops catalog supports SQLite and PostgreSQL, not {name}")
    return insert(table)


def _upsert(conn: Connection, table: sa.Table, values: dict[str, Any], keys: list[str]) -> None:
    stmt = _dialect_insert(table, conn.dialect.name).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={k: stmt.excluded[k] for k in values if k not in keys}
    )
    conn.execute(stmt)


def _insert_ignore(conn: Connection, table: sa.Table, values: dict[str, Any], keys: list[str]) -> None:
    conn.execute(_dialect_insert(table, conn.dialect.name).values(**values).on_conflict_do_nothing(index_elements=keys))
