"""The feed audit log: one append-only row per data response, chained by SHA-256.

Each row records who read what (consumer and key id, dataset, endpoint, parameters, snapshot),
how much (row count, fields), whether personal data was in it, and a digest of the response
body. ``row_hash`` is SHA-256 over a canonical JSON of the row, which includes ``seq`` and the
previous row's hash (``prev_hash``), so editing, deleting or reordering any row breaks the
chain from that row on. A one-row table ``feed_audit_head`` holds the last ``seq`` and hash,
so cutting rows off the end is caught too; ``iehub audit verify`` checks all of it, and prints
the head hash, which an operator can record elsewhere to make the whole chain provable.

The database also refuses UPDATE and DELETE on ``feed_audit`` (triggers), so only someone
who drops the triggers first can tamper; the chain is there to catch them.

Appends are group-committed: the requests of one API worker queue their rows, and whichever
finds no write in progress writes everything queued so far in one transaction that reads the
head (``BEGIN IMMEDIATE`` on SQLite; ``SELECT … FOR UPDATE`` on the head row on PostgreSQL,
which also orders the workers of other processes), chains the rows in queue order, and
commits once. Each ``append`` returns only when its own row is committed, so "audited before
sent" holds row by row; what the batching saves is one durable commit, and one wait for the
write lock, per request: under 8 concurrent clients the append had become a third of a page's
latency. Any failure raises :class:`AuditError` for every row of the batch, and the API then
serves nothing: no unaudited data leaves the hub.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from warehouse.sqlstore import UtcDateTime

from feeds.keys import feed_engine

__all__ = ["AuditError", "AuditLog", "AuditReport", "GENESIS"]

log = logging.getLogger(__name__)

GENESIS = "0" * 64
#: Most rows one group commit writes; the rest wait for the next (a bound on one transaction's size).
MAX_BATCH = 256
_HEAD_ID = 1
_HASHED = ("seq", "at", "key_id", "consumer", "dataset", "endpoint", "params", "rows", "fields", "personal",
           "digest", "snapshot", "prev_hash")

metadata = sa.MetaData()

feed_audit = sa.Table(
    "feed_audit",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("consumer", sa.String(200), nullable=False),
    sa.Column("dataset", sa.String(100), nullable=False),
    sa.Column("endpoint", sa.String(200), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # canonical JSON
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("fields", sa.Text, nullable=False),  # JSON list
    sa.Column("personal", sa.Boolean, nullable=False),
    sa.Column("digest", sa.String(200), nullable=False),
    sa.Column("snapshot", sa.String(100), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("row_hash", sa.String(64), nullable=False),
)

feed_audit_head = sa.Table(
    "feed_audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("row_hash", sa.String(64), nullable=False),
)

_SQLITE_GUARDS = [
    f"CREATE TRIGGER IF NOT EXISTS feed_audit_no_{op.lower()} BEFORE {op} ON feed_audit "
    "BEGIN SELECT RAISE(ABORT, 'feed_audit is append-only'); END"
    for op in ("UPDATE", "DELETE")
]
_PG_GUARD_FUNCTION = (
    "CREATE OR REPLACE FUNCTION feed_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'feed_audit is append-only'; END $$"
)
_PG_GUARD_TRIGGER = (
    "CREATE OR REPLACE TRIGGER feed_audit_append_only BEFORE UPDATE OR DELETE ON feed_audit "
    "FOR EACH ROW EXECUTE FUNCTION feed_audit_append_only()"
)


@dataclass
class _Pending:
    """One request's audit row waiting in the group commit; ``done`` once written (``row['seq']``) or failed."""

    row: dict[str, Any]
    done: bool = False
    error: AuditError | None = None


class AuditError(RuntimeError):
    """The audit row could not be written (or the log could not be read): serve nothing."""


@dataclass(frozen=True)
class AuditReport:
    """The result of :meth:`AuditLog.verify`: ``first_bad_seq`` and ``reason`` are None when ok."""

    ok: bool
    rows: int
    first_bad_seq: int | None
    reason: str | None
    head_hash: str


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _row_hash(row: dict[str, Any]) -> str:
    body = {name: row[name] for name in _HASHED}
    body["at"] = row["at"].astimezone(timezone.utc).isoformat(timespec="microseconds")
    body["personal"] = bool(row["personal"])
    return hashlib.sha256(_canonical_json(body).encode("utf-8")).hexdigest()


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, without SQLAlchemy's echo of the statement and its parameters."""
    orig = getattr(exc, "orig", None)
    return f"{type(orig or exc).__name__}: {str(orig).strip().splitlines()[0] if orig else type(exc).__name__}"


class AuditLog:
    """The hash-chained audit table in a SQLAlchemy database (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False
        try:
            self.engine: Engine = feed_engine(url)
            self._create()
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot open the audit log at {self}: {_reason(exc)}") from None

    def __repr__(self) -> str:
        return f"AuditLog({self.engine.url.render_as_string(hide_password=True)!r})" if hasattr(self, "engine") \
            else "AuditLog(?)"

    def __str__(self) -> str:
        return self.engine.url.render_as_string(hide_password=True) if hasattr(self, "engine") else "?"

    def dispose(self) -> None:
        self.engine.dispose()

    def _create(self) -> None:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7315100302)"))  # concurrent first starts
            metadata.create_all(conn, checkfirst=True)
            exists = conn.execute(sa.select(feed_audit_head.c.id).where(feed_audit_head.c.id == _HEAD_ID)).first()
            if exists is None:
                conn.execute(feed_audit_head.insert().values(id=_HEAD_ID, seq=0, row_hash=GENESIS))
            if conn.dialect.name == "sqlite":
                for statement in _SQLITE_GUARDS:
                    conn.exec_driver_sql(statement)
            elif conn.dialect.name == "postgresql":
                conn.exec_driver_sql(_PG_GUARD_FUNCTION)
                conn.exec_driver_sql(_PG_GUARD_TRIGGER)

    def append(
        self,
        *,
        key_id: str,
        consumer: str,
        dataset: str,
        endpoint: str,
        params: dict[str, Any],
        rows: int,
        fields: list[str],
        personal: bool,
        digest: str,
        snapshot: str,
        at: datetime | None = None,
    ) -> int:
        """Append one row to the chain and return its ``seq``; AuditError if it cannot be written."""
        try:
            params_json = _canonical_json(params)
            fields_json = _canonical_json(list(fields))
        except (TypeError, ValueError) as exc:
            raise AuditError(f"audit row for {dataset!r} has parameters or fields that are not JSON: {exc}") from None
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise AuditError(f"audit row for {dataset!r}: rows must be a count >= 0 (got {rows!r})")
        for name, value in (("key_id", key_id), ("consumer", consumer), ("dataset", dataset),
                            ("endpoint", endpoint), ("digest", digest), ("snapshot", snapshot)):
            # Checked here, not by the database: a row that cannot be written must fail alone,
            # not take down the other requests' rows committed in the same batch.
            limit = feed_audit.c[name].type.length
            if not isinstance(value, str) or len(value) > limit:
                raise AuditError(f"audit row for {dataset!r}: {name} must be text of at most {limit} characters")
        row: dict[str, Any] = {
            "key_id": key_id, "consumer": consumer, "dataset": dataset, "endpoint": endpoint,
            "params": params_json, "rows": rows, "fields": fields_json, "personal": bool(personal),
            "digest": digest, "snapshot": snapshot,
        }  # fmt: skip
        entry = _Pending(row)
        with self._cond:
            # Stamped in queue order, so within a worker ``at`` never runs backwards along the chain.
            row["at"] = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
            self._queue.append(entry)
            while not entry.done:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                self._cond.release()
                try:
                    self._write(batch)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if entry.error is not None:
            raise entry.error
        return int(row["seq"])

    def _write(self, batch: list[_Pending]) -> None:
        """Write ``batch`` as one transaction (one durable commit); every entry ends done, with seq or error."""
        try:
            with self.engine.begin() as conn:
                head = conn.execute(
                    sa.select(feed_audit_head.c.seq, feed_audit_head.c.row_hash)
                    .where(feed_audit_head.c.id == _HEAD_ID)
                    .with_for_update()
                ).first()
                if head is None:
                    raise AuditError(f"the audit log at {self} has no chain head row; it was tampered with")
                seq, prev = head.seq, head.row_hash
                for entry in batch:
                    seq += 1
                    entry.row["seq"], entry.row["prev_hash"] = seq, prev
                    prev = entry.row["row_hash"] = _row_hash(entry.row)
                conn.execute(feed_audit.insert(), [entry.row for entry in batch])
                conn.execute(feed_audit_head.update().where(feed_audit_head.c.id == _HEAD_ID)
                             .values(seq=seq, row_hash=prev))
        except AuditError as exc:
            self._fail(batch, lambda _: exc)
        except SQLAlchemyError as exc:
            reason = _reason(exc)
            self._fail(batch, lambda e: AuditError(
                f"cannot write the audit row for {e.row['dataset']!r} to {self}: {reason}"))
        except Exception as exc:  # a defect here must still wake every waiting request, with an error
            log.exception("audit: unexpected failure writing %d row(s)", len(batch))
            self._fail(batch, lambda _: AuditError(f"cannot write the audit row: {type(exc).__name__}"))
        else:
            for entry in batch:
                entry.done = True

    @staticmethod
    def _fail(batch: list[_Pending], error: Any) -> None:
        for entry in batch:
            entry.error, entry.done = error(entry), True

    def verify(self, *, batch: int = 5000) -> AuditReport:
        """Walk the chain in ``seq`` order; report the first row that is missing, edited or out of order."""
        rows = 0
        expected_prev = GENESIS
        last_seq = 0
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(iehub_read_only=True)
                with conn.begin():
                    head = conn.execute(
                        sa.select(feed_audit_head.c.seq, feed_audit_head.c.row_hash)
                        .where(feed_audit_head.c.id == _HEAD_ID)
                    ).first()
                    result = conn.execution_options(stream_results=True, yield_per=batch).execute(
                        sa.select(feed_audit).order_by(feed_audit.c.seq)
                    )
                    for record in result.mappings():
                        row = dict(record)
                        seq = int(row["seq"])
                        if seq != last_seq + 1:
                            return self._bad(rows, last_seq + 1, f"row {last_seq + 1} is missing "
                                             f"(the log jumps from {last_seq} to {seq}): rows were deleted", head)
                        if row["prev_hash"] != expected_prev:
                            return self._bad(rows, seq, "its prev_hash does not match the row before: rows were "
                                             "deleted, inserted or reordered", head)
                        if _row_hash(row) != row["row_hash"]:
                            return self._bad(rows, seq, "its content does not match its row_hash: the row was "
                                             "edited after it was written", head)
                        rows += 1
                        last_seq = seq
                        expected_prev = row["row_hash"]
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log at {self}: {_reason(exc)}") from None
        if head is None:
            return self._bad(rows, None, "the chain head row (feed_audit_head) is missing", head)
        if head.seq != last_seq or head.row_hash != expected_prev:
            if head.seq > last_seq:
                return self._bad(rows, last_seq + 1, f"the chain head records row {head.seq} but the log ends at "
                                 f"row {last_seq}: rows were deleted from the end", head)
            return self._bad(rows, head.seq + 1 if head.seq < last_seq else last_seq,
                             "the chain head does not match the last row: the head or the last rows were altered",
                             head)
        return AuditReport(True, rows, None, None, expected_prev)

    @staticmethod
    def _bad(rows: int, seq: int | None, reason: str, head: Any) -> AuditReport:
        return AuditReport(False, rows, seq, reason, head.row_hash if head is not None else GENESIS)
