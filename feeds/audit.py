"""The feed audit log: one append-only row per data response, sealed by a keyed chain and anchored outside.

Each row records who read what (consumer and key id, dataset, endpoint, parameters, snapshot),
how much (row count, fields), whether personal data was in it, and a digest of the response
body. ``row_hash`` is HMAC-SHA256, under the audit key (:mod:`feeds.audit_keys`, kept outside
this database), of a canonical JSON of the row, which includes ``seq``, the previous row's
hash (``prev_hash``) and the id of the key that sealed it (``mac_key_id``). Guarantees, and
against whom:

- Anyone who can write the audit store but cannot read the audit key cannot edit a row and
  recompute the hashes after it, nor add a row of their own: the seals would not verify. (The
  first version chained plain SHA-256, which anyone could recompute; that is why it is keyed.)
- Cutting rows off the end and moving the head row back leaves a valid shorter chain, so the
  writer also records checkpoints of (seq, head hash) in anchor sinks outside the store
  (:mod:`feeds.audit_anchors`): after the first commit, then every ``anchor_rows`` rows or
  ``anchor_seconds`` seconds, and when the log is closed. A cut is caught when an anchor names
  a row the store no longer has, or a different hash for it. Rows written after the last
  anchor can still be cut unseen: that window is what the two settings bound.
- The database refuses UPDATE, DELETE and TRUNCATE on ``feed_audit``, rows inserted at or
  below the head, and moving the head row back or deleting it (triggers on SQLite and
  PostgreSQL), so tampering needs the triggers dropped first; the seals and anchors are there
  to catch those who do.
- :meth:`AuditLog.verify` (``iehub audit verify``) opens the store read-only (SQLite
  ``mode=ro``; a READ ONLY transaction on PostgreSQL) and never creates or repairs anything.
  The write side never restarts a chain either: a missing head row over existing rows or
  anchors makes every append fail, so the API answers 503 instead of serving unaudited data.

Appends are group-committed: the requests of one API worker queue their rows, and whichever
finds no write in progress writes everything queued so far in one transaction that reads the
head (``BEGIN IMMEDIATE`` on SQLite; ``SELECT … FOR UPDATE`` on the head row on PostgreSQL,
which also orders the workers of other processes), chains the rows in queue order, and
commits once. Each ``append`` returns only when its own row is committed, so "audited before
sent" holds row by row; what the batching saves is one durable commit, and one wait for the
write lock, per request: under 8 concurrent clients the append had become a third of a page's
latency. An HMAC costs about a microsecond and an anchor one small fsynced append every
``anchor_seconds``, so sealing keeps that design. Any failure raises :class:`AuditError` for
every row of the batch, and the API then serves nothing: no unaudited data leaves the hub.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from warehouse.sqlstore import UtcDateTime

from feeds.audit_anchors import ANCHOR_FILE, ANCHOR_URL_ENV, Anchor, AnchorSink, FileAnchorSink, SqlAnchorSink
from feeds.audit_keys import AUDIT_DIR_ENV, AuditKeyError, Keyring
from feeds.keys import feed_engine

if TYPE_CHECKING:
    from feeds.config import FeedConfig

__all__ = ["ANCHOR_ROWS", "ANCHOR_SECONDS", "AuditError", "AuditLog", "AuditReport", "GENESIS"]

log = logging.getLogger(__name__)

GENESIS = "0" * 64
#: Most rows one group commit writes; the rest wait for the next (a bound on one transaction's size).
MAX_BATCH = 256
#: A writer anchors the head after this many rows, or this many seconds, since its last anchor.
ANCHOR_ROWS = 1000
ANCHOR_SECONDS = 30.0
_HEAD_ID = 1
_HASHED = ("seq", "at", "key_id", "consumer", "dataset", "endpoint", "params", "rows", "fields", "personal",
           "digest", "snapshot", "prev_hash")

metadata = sa.MetaData()

feed_audit = sa.Table(
    "feed_audit",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),  # the consumer's feed key, not the audit key
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
    # Id of the audit key that sealed row_hash; NULL only on rows from before keyed audit.
    sa.Column("mac_key_id", sa.String(16), nullable=True),
)

feed_audit_head = sa.Table(
    "feed_audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("row_hash", sa.String(64), nullable=False),
)

_SQLITE_GUARDS = [
    *(f"CREATE TRIGGER IF NOT EXISTS feed_audit_no_{op.lower()} BEFORE {op} ON feed_audit "
      "BEGIN SELECT RAISE(ABORT, 'feed_audit is append-only'); END" for op in ("UPDATE", "DELETE")),
    "CREATE TRIGGER IF NOT EXISTS feed_audit_no_back_insert BEFORE INSERT ON feed_audit "
    f"WHEN NEW.seq <= (SELECT seq FROM feed_audit_head WHERE id = {_HEAD_ID}) "
    "BEGIN SELECT RAISE(ABORT, 'feed_audit is append-only: new rows go after the chain head'); END",
    "CREATE TRIGGER IF NOT EXISTS feed_audit_head_no_delete BEFORE DELETE ON feed_audit_head "
    "BEGIN SELECT RAISE(ABORT, 'feed_audit_head is append-only: the chain head only moves forward'); END",
    "CREATE TRIGGER IF NOT EXISTS feed_audit_head_forward BEFORE UPDATE ON feed_audit_head "
    "WHEN NEW.seq < OLD.seq OR NEW.id <> OLD.id "
    "BEGIN SELECT RAISE(ABORT, 'feed_audit_head is append-only: the chain head only moves forward'); END",
]
_PG_GUARDS = [
    "CREATE OR REPLACE FUNCTION feed_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'feed_audit is append-only'; END $$",
    "CREATE OR REPLACE TRIGGER feed_audit_append_only BEFORE UPDATE OR DELETE ON feed_audit "
    "FOR EACH ROW EXECUTE FUNCTION feed_audit_append_only()",
    # Row triggers do not fire on TRUNCATE: it needs its own statement trigger.
    "CREATE OR REPLACE TRIGGER feed_audit_no_truncate BEFORE TRUNCATE ON feed_audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION feed_audit_append_only()",
    "CREATE OR REPLACE FUNCTION feed_audit_after_head() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN IF NEW.seq <= (SELECT seq FROM feed_audit_head WHERE id = {_HEAD_ID}) THEN "
    "RAISE EXCEPTION 'feed_audit is append-only: new rows go after the chain head'; END IF; RETURN NEW; END $$",
    "CREATE OR REPLACE TRIGGER feed_audit_no_back_insert BEFORE INSERT ON feed_audit "
    "FOR EACH ROW EXECUTE FUNCTION feed_audit_after_head()",
    "CREATE OR REPLACE FUNCTION feed_audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seq >= OLD.seq THEN RETURN NEW; END IF; "
    "RAISE EXCEPTION 'feed_audit_head is append-only: the chain head only moves forward'; END $$",
    "CREATE OR REPLACE TRIGGER feed_audit_head_forward BEFORE UPDATE OR DELETE ON feed_audit_head "
    "FOR EACH ROW EXECUTE FUNCTION feed_audit_head_forward()",
    "CREATE OR REPLACE TRIGGER feed_audit_head_no_truncate BEFORE TRUNCATE ON feed_audit_head "
    "FOR EACH STATEMENT EXECUTE FUNCTION feed_audit_head_forward()",
]


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
    """The result of :meth:`AuditLog.verify`: ``first_bad_seq`` and ``reason`` are None when ok.

    ``first_bad_seq`` is also None when what is wrong is not one row (the head row is gone, an
    anchor record was forged); ``reason`` then says what.
    """

    ok: bool
    rows: int
    first_bad_seq: int | None
    reason: str | None
    head_hash: str
    head_seq: int = 0
    anchors: int = 0


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _row_body(row: dict[str, Any]) -> dict[str, Any]:
    body = {name: row[name] for name in _HASHED}
    body["at"] = row["at"].astimezone(timezone.utc).isoformat(timespec="microseconds")
    body["personal"] = bool(row["personal"])
    return body


def _legacy_row_hash(row: dict[str, Any]) -> str:
    """The first version's unkeyed SHA-256: still checked on rows written before keyed audit."""
    return hashlib.sha256(_canonical_json(_row_body(row)).encode("utf-8")).hexdigest()


def _row_message(row: dict[str, Any]) -> bytes:
    body = _row_body(row)
    body["mac_key_id"] = row["mac_key_id"]
    return b"iehub-audit-row\x00" + _canonical_json(body).encode("utf-8")


def _row_hash(row: dict[str, Any], keyring: Keyring) -> str:
    """HMAC-SHA256 of the row (its ``mac_key_id`` included) under that key of ``keyring``."""
    return keyring.sign(_row_message(row), row["mac_key_id"])


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, without SQLAlchemy's echo of the statement and its parameters."""
    orig = getattr(exc, "orig", None)
    return f"{type(orig or exc).__name__}: {str(orig).strip().splitlines()[0] if orig else type(exc).__name__}"


def _read_only_engine(url: str) -> Engine:
    """An engine that cannot write: SQLite opened ``mode=ro``; PostgreSQL in READ ONLY transactions.

    Both read the whole walk in one snapshot (a deferred read transaction on SQLite's WAL;
    REPEATABLE READ on PostgreSQL), so appends running meanwhile are not mistaken for tampering.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            raise AuditError(f"cannot open the audit store {url!r} read-only: give it as sqlite:///<path>")
        path = Path(database)
        if not path.is_file():
            raise AuditError(f"no audit store at {path}: nothing was ever audited there; check IEHUB_HOME "
                             "or IEHUB_FEEDS_DB_URL")
        engine = sa.create_engine(f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true",
                                  connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # BEGIN is ours, below

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    engine = sa.create_engine(url, pool_pre_ping=True)
    if parsed.get_backend_name() == "postgresql":

        @sa.event.listens_for(engine, "begin")
        def _on_pg_begin(conn: Connection) -> None:
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    return engine


class AuditLog:
    """The sealed, anchored audit chain in a SQLAlchemy database (SQLite or PostgreSQL).

    ``directory`` holds the audit key file and the anchor file (default: the SQLite file's
    folder; required for other databases unless ``keyring`` and ``sinks`` are given).
    ``read_only`` opens the store without any write (for verify); such a log cannot append.
    ``anchor_url`` adds a database that keeps the anchors too (:class:`SqlAnchorSink`).
    """

    def __init__(
        self,
        url: str,
        directory: str | Path | None = None,
        *,
        read_only: bool = False,
        keyring: Keyring | None = None,
        sinks: Sequence[AnchorSink] | None = None,
        anchor_rows: int = ANCHOR_ROWS,
        anchor_seconds: float = ANCHOR_SECONDS,
        feed_secret: bytes | None = None,
        anchor_url: str | None = None,
    ) -> None:
        self.url = url
        self.read_only = read_only
        self.anchor_rows, self.anchor_seconds = anchor_rows, anchor_seconds
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False
        self._broken: str | None = None  # why appends are refused (set when the chain cannot be continued)
        self._key_problem: str | None = None
        self._last_seq, self._last_hash = 0, GENESIS
        self._anchored_seq = 0
        self._anchored_at = float("-inf")  # the first commit anchors
        self._shown = sa.make_url(url).render_as_string(hide_password=True)
        if directory is None and (keyring is None or sinks is None):
            database = sa.make_url(url).database if sa.make_url(url).get_backend_name() == "sqlite" else None
            if database and database.startswith("file:"):  # a SQLite URI filename (uri=true)
                database = database[len("file:"):].split("?", 1)[0]
            if not database or database == ":memory:":
                raise AuditError(f"the audit log at {self._shown} needs a folder for its key and anchors "
                                 f"(IEHUB_HOME/feeds, or {AUDIT_DIR_ENV})")
            directory = Path(database).resolve().parent
        try:
            self.keyring: Keyring | None = keyring or Keyring.load(Path(directory or "."), create=not read_only,
                                                                   feed_secret=feed_secret)
        except AuditKeyError as exc:
            if not read_only:
                raise AuditError(f"cannot open the audit log at {self}: {exc}") from None
            self.keyring, self._key_problem = None, str(exc)  # fatal only once a sealed row or anchor is met
        self.sinks: list[AnchorSink] = list(sinks) if sinks is not None else \
            [FileAnchorSink(Path(directory or ".") / ANCHOR_FILE, self.keyring)]
        if anchor_url:
            if sa.make_url(anchor_url).render_as_string(hide_password=False) == \
                    sa.make_url(url).render_as_string(hide_password=False):
                raise AuditError(f"{ANCHOR_URL_ENV} names the audit store itself ({self}); anchors must be kept "
                                 "where the audit store's writers cannot rewrite them, e.g. the catalog database")
            self.sinks.append(SqlAnchorSink(anchor_url, self.keyring))
        try:
            self.engine: Engine = _read_only_engine(url) if read_only else feed_engine(url)
            if not read_only:
                self._create()
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot open the audit log at {self}: {_reason(exc)}") from None

    @classmethod
    def from_config(cls, config: FeedConfig, *, read_only: bool = False) -> AuditLog:
        """The audit log of ``config.db_url``, its key and anchors in IEHUB_AUDIT_DIR (default ``feeds_dir``)."""
        directory = Path(os.environ.get(AUDIT_DIR_ENV) or config.feeds_dir)
        secret = None if read_only else config.secret()
        return cls(str(config.db_url), directory, read_only=read_only, feed_secret=secret,
                   anchor_url=os.environ.get(ANCHOR_URL_ENV) or None)

    def __repr__(self) -> str:
        return f"AuditLog({self._shown!r})"

    def __str__(self) -> str:
        return self._shown

    def dispose(self) -> None:
        """Anchor what this writer appended since its last anchor, then close the connections."""
        if not self.read_only and self._last_seq > self._anchored_seq:
            self._anchor(self._last_seq, self._last_hash)
        self.engine.dispose()
        for sink in self.sinks:
            if isinstance(sink, SqlAnchorSink):
                sink.dispose()

    # -- the write side ---------------------------------------------------------------------

    def _read_anchors(self) -> list[Anchor]:
        anchors: list[Anchor] = []
        for sink in self.sinks:
            try:
                found, problems = sink.read()
            except OSError as exc:  # an unreachable sink must not stop the API; verify will insist on it
                log.error("audit: cannot read the anchors in %s: %s", sink.name, exc)
                continue
            anchors.extend(found)
            for problem in problems:
                log.error("audit: %s", problem)
        return anchors

    def _create(self) -> None:
        anchors = self._read_anchors()
        pinned = max((a.seq for a in anchors), default=0)
        adopted = max((a.seq for a in anchors if a.kind == "adopt"), default=0)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7315100302)"))  # concurrent first starts
            metadata.create_all(conn, checkfirst=True)
            if "mac_key_id" not in {c["name"] for c in sa.inspect(conn).get_columns("feed_audit")}:
                # A log from before keyed audit: its rows keep their SHA-256 hashes (adopted below).
                conn.exec_driver_sql("ALTER TABLE feed_audit ADD COLUMN mac_key_id VARCHAR(16)")
            for statement in {"sqlite": _SQLITE_GUARDS, "postgresql": _PG_GUARDS}.get(conn.dialect.name, []):
                conn.exec_driver_sql(statement)
            head = conn.execute(sa.select(feed_audit_head.c.seq, feed_audit_head.c.row_hash)
                                .where(feed_audit_head.c.id == _HEAD_ID)).first()
            has_rows = conn.execute(sa.select(feed_audit.c.seq).limit(1)).first() is not None
            if head is None:
                if has_rows or anchors:
                    # Never restart a chain over an existing one: that would hide whatever removed the head.
                    self._broken = (f"the audit log at {self} has lost its chain head row while "
                                    f"{'rows' if has_rows else 'anchors'} exist; it was tampered with; "
                                    "run `iehub audit verify` and restore the store from a backup")
                else:
                    conn.execute(feed_audit_head.insert().values(id=_HEAD_ID, seq=0, row_hash=GENESIS))
            elif head.seq < pinned:
                self._broken = (f"the audit log at {self} ends at row {head.seq} but an anchor pinned row {pinned}: "
                                "rows were cut from the end; run `iehub audit verify` and restore the store")
            else:
                self._last_seq, self._last_hash = int(head.seq), str(head.row_hash)
                legacy = conn.execute(sa.select(sa.func.max(feed_audit.c.seq))
                                      .where(feed_audit.c.mac_key_id.is_(None))).scalar()
                if legacy is not None and legacy > adopted and legacy == head.seq:
                    # Rows from before keyed audit: vouch for them once, by anchoring their head.
                    self._anchor(int(head.seq), str(head.row_hash), kind="adopt", required=True)
        if self._broken:
            log.error("audit: %s", self._broken)
        self._anchored_seq = max(self._anchored_seq, pinned)

    def _anchor(self, seq: int, head: str, *, kind: str = "checkpoint", required: bool = False) -> bool:
        """Record (seq, head) in every sink; a sink that fails is logged (and raised when ``required``)."""
        anchor = Anchor(seq, head, datetime.now(timezone.utc), kind)
        ok = True
        for sink in self.sinks:
            try:
                sink.record(anchor)
            except (OSError, ValueError) as exc:
                ok = False
                log.error("audit: cannot record the anchor of row %d in %s: %s", seq, sink.name, type(exc).__name__)
                if required:
                    raise AuditError(f"cannot record the audit anchor in {sink.name}: {exc}") from None
        if ok:
            self._anchored_seq, self._anchored_at = max(self._anchored_seq, seq), time.monotonic()
        return ok

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
        if self.read_only:
            raise AuditError(f"the audit log at {self} was opened read-only (for verify); it cannot append")
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
            if self._broken is not None:
                raise AuditError(self._broken)
            assert self.keyring is not None  # a writer always has one (the constructor made sure)
            kid = self.keyring.current_id
            with self.engine.begin() as conn:
                head = conn.execute(
                    sa.select(feed_audit_head.c.seq, feed_audit_head.c.row_hash)
                    .where(feed_audit_head.c.id == _HEAD_ID)
                    .with_for_update()
                ).first()
                if head is None:
                    raise AuditError(f"the audit log at {self} has no chain head row; it was tampered with; "
                                     "run `iehub audit verify` and restore the store from a backup")
                seq, prev = head.seq, head.row_hash
                for entry in batch:
                    seq += 1
                    entry.row["seq"], entry.row["prev_hash"], entry.row["mac_key_id"] = seq, prev, kid
                    prev = entry.row["row_hash"] = _row_hash(entry.row, self.keyring)
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
            self._last_seq, self._last_hash = seq, prev
            if (seq - self._anchored_seq >= self.anchor_rows
                    or time.monotonic() - self._anchored_at >= self.anchor_seconds):
                self._anchor(seq, prev)  # after the commit: an anchor never names a row that might roll back
            for entry in batch:
                entry.done = True

    @staticmethod
    def _fail(batch: list[_Pending], error: Any) -> None:
        for entry in batch:
            entry.error, entry.done = error(entry), True

    # -- verify -----------------------------------------------------------------------------

    def anchor_head(self, report: AuditReport) -> None:
        """Record the head a successful :meth:`verify` saw (``iehub audit verify --anchor``)."""
        if not report.ok or report.head_seq == 0:
            return
        if self.keyring is None:
            raise AuditError(f"cannot anchor the audit head: {self._key_problem}")
        for sink in self.sinks:
            try:
                sink.record(Anchor(report.head_seq, report.head_hash, datetime.now(timezone.utc)))
            except (OSError, ValueError) as exc:
                raise AuditError(f"cannot record the audit anchor in {sink.name}: {exc}") from None

    def verify(self, *, batch: int = 5000) -> AuditReport:
        """Walk the chain in ``seq`` order against its seals and anchors; report the first thing wrong.

        Finds rows missing, edited, reordered, forged (a seal that does not verify, an unknown or
        retired key, an unkeyed row no adoption anchor vouches for), the tail cut with the head
        moved back (an anchor names a row the store lacks, or another hash for it), a lost head
        row and forged anchor records. Reads only: nothing is created or repaired.
        """
        anchors: list[Anchor] = []
        problems: list[str] = []  # anchor records that fail their seal: reported after the rows
        for sink in self.sinks:
            try:
                found, wrong = sink.read()
            except OSError as exc:
                raise AuditError(f"cannot read the audit anchors in {sink.name}: {exc}") from None
            if wrong and self.keyring is None:
                raise AuditError(f"cannot check the audit anchors: {self._key_problem}")
            anchors.extend(found)
            problems.extend(wrong)
        by_seq: dict[int, list[Anchor]] = {}
        for anchor in anchors:
            by_seq.setdefault(anchor.seq, []).append(anchor)
        adopted = max((a.seq for a in anchors if a.kind == "adopt"), default=0)
        rows = 0
        expected_prev = GENESIS
        last_seq = 0
        last_rank: int | None = None
        report = _Reporter(len(anchors))
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(iehub_read_only=True)
                with conn.begin():
                    head = conn.execute(
                        sa.select(feed_audit_head.c.seq, feed_audit_head.c.row_hash)
                        .where(feed_audit_head.c.id == _HEAD_ID)
                    ).first()
                    report.head = head
                    present = {c["name"] for c in sa.inspect(conn).get_columns("feed_audit")}
                    result = conn.execution_options(stream_results=True, yield_per=batch).execute(
                        sa.select(*[c for c in feed_audit.c if c.name in present]).order_by(feed_audit.c.seq)
                    )
                    for record in result.mappings():
                        row = dict(record)
                        row.setdefault("mac_key_id", None)
                        seq = int(row["seq"])
                        if seq != last_seq + 1:
                            return report.bad(rows, last_seq + 1, f"row {last_seq + 1} is missing "
                                              f"(the log jumps from {last_seq} to {seq}): rows were deleted")
                        if row["prev_hash"] != expected_prev:
                            return report.bad(rows, seq, "its prev_hash does not match the row before: rows were "
                                              "deleted, inserted or reordered")
                        kid = row["mac_key_id"]
                        if kid is None:
                            if last_rank is not None or seq > adopted:
                                return report.bad(rows, seq, "it is an unkeyed (plain SHA-256) row that no adoption "
                                                  "anchor vouches for: it was forged or rewritten with the old "
                                                  "unkeyed recipe")
                            if _legacy_row_hash(row) != row["row_hash"]:
                                return report.bad(rows, seq, "its content does not match its row_hash: the row was "
                                                  "edited after it was written")
                        else:
                            if self.keyring is None:
                                raise AuditError(f"cannot check the audit seals: {self._key_problem}")
                            rank = self.keyring.rank(kid)
                            if rank is None:
                                return report.bad(rows, seq, f"it is sealed with audit key id {kid}, which the "
                                                  f"keyring ({self.keyring.source}) does not hold: the row was "
                                                  "forged, or a key is missing from the keyring")
                            if last_rank is not None and rank < last_rank:
                                return report.bad(rows, seq, f"it is sealed with audit key id {kid}, older than "
                                                  "the row before it: forged with a retired key")
                            if not self.keyring.check(_row_message(row), kid, row["row_hash"]):
                                return report.bad(rows, seq, "its seal (HMAC) does not verify: the row was edited, "
                                                  "or forged by someone without the audit key")
                            last_rank = rank
                        for anchor in by_seq.get(seq, ()):
                            if anchor.head != row["row_hash"]:
                                return report.bad(rows, seq, f"its hash differs from the one anchored at "
                                                  f"{anchor.at:%Y-%m-%d %H:%M:%S} UTC: the chain was rewritten")
                        rows += 1
                        last_seq = seq
                        expected_prev = row["row_hash"]
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log at {self}: {_reason(exc)}") from None
        pinned = max(by_seq, default=0)
        if pinned > last_seq:
            at = max(a.at for a in by_seq[pinned])
            return report.bad(rows, last_seq + 1, f"the log ends at row {last_seq} but an anchor of "
                              f"{at:%Y-%m-%d %H:%M:%S} UTC pins row {pinned}: rows were cut from the end")
        if head is None:
            return report.bad(rows, None, "the chain head row (feed_audit_head) is missing: it was deleted")
        if head.seq != last_seq or head.row_hash != expected_prev:
            if head.seq > last_seq:
                return report.bad(rows, last_seq + 1, f"the chain head records row {head.seq} but the log ends at "
                                  f"row {last_seq}: rows were deleted from the end")
            return report.bad(rows, head.seq + 1 if head.seq < last_seq else last_seq,
                              "the chain head does not match the last row: the head or the last rows were altered")
        if problems:
            return report.bad(rows, None, problems[0])
        if rows and not anchors:
            return report.bad(rows, None, f"the log has {rows} rows but no anchor in "
                              f"{', '.join(s.name for s in self.sinks)}: the anchors were removed")
        return AuditReport(True, rows, None, None, expected_prev, last_seq, len(anchors))


class _Reporter:
    """Builds the failing :class:`AuditReport` of one verify (head and anchor count filled in)."""

    def __init__(self, anchors: int) -> None:
        self.anchors = anchors
        self.head: Any = None

    def bad(self, rows: int, seq: int | None, reason: str) -> AuditReport:
        head = self.head
        return AuditReport(False, rows, seq, reason, head.row_hash if head is not None else GENESIS,
                           int(head.seq) if head is not None else 0, self.anchors)
