"""Audit anchors: checkpoints of the chain's (sequence, head hash) kept where the audit store cannot reach.

Why: a keyed chain stops anyone without the key from editing or forging rows, but not from
cutting rows off the end and moving the head row back: what is left is still a valid chain.
Only a record outside the store, saying "the chain once reached row N with hash H", shows
that rows N and before must still be there, unchanged. The feed API writes one every so many
rows or seconds (see :mod:`feeds.audit`), ``iehub audit verify --anchor`` adds one for the
head it verified, and verify checks every anchor against the store.

An :class:`AnchorSink` is anything that can keep such records: the shipped one is an
append-only file of HMAC-sealed JSON lines (``IEHUB_AUDIT_DIR/audit.anchors``, default
``IEHUB_HOME/feeds``); a trusted timestamping service (RFC 3161) or a write-once bucket
would be another sink with the same two methods. A line whose seal does not verify is
reported as tampering; a last line cut short (a crash while appending) is ignored.
Removing whole lines from the file is not detectable from the file alone, which is why it
belongs on storage the audit store's writers cannot write (another host, ``chattr +a``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterable
from typing import Protocol

from feeds.audit_keys import Keyring

__all__ = ["ANCHOR_FILE", "ANCHOR_URL_ENV", "Anchor", "AnchorSink", "FileAnchorSink", "SqlAnchorSink"]

#: A database (e.g. the PostgreSQL catalog's URL) that also keeps the anchors: one place all
#: machines of a many-worker deployment share, where the anchor files are per machine.
ANCHOR_URL_ENV = "IEHUB_AUDIT_ANCHOR_URL"

ANCHOR_FILE = "audit.anchors"
#: ``checkpoint``: the chain reached this head. ``adopt``: rows up to here predate keyed audit
#: (plain SHA-256) and are vouched for by this anchor, taken when the keyed chain first started.
KINDS = ("checkpoint", "adopt")


@dataclass(frozen=True)
class Anchor:
    """The chain reached row ``seq`` with hash ``head`` at ``at`` (UTC)."""

    seq: int
    head: str
    at: datetime
    kind: str = "checkpoint"


class AnchorSink(Protocol):
    """Somewhere anchors are kept apart from the audit store; ``name`` says where, for messages."""

    name: str

    def record(self, anchor: Anchor) -> None:
        """Keep ``anchor`` durably; raise OSError (or the sink's own error) when it could not."""

    def read(self) -> tuple[list[Anchor], list[str]]:
        """Every anchor kept, and a description of each record that failed its seal (tampering)."""


def _message(fields: dict[str, object]) -> bytes:
    body = json.dumps(fields, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return b"iehub-audit-anchor\x00" + body.encode("ascii")


def _sealed(anchor: Anchor, keyring: Keyring) -> dict[str, object]:
    """The anchor's record, with ``mac``: HMAC-SHA256 under the current audit key of everything else."""
    if anchor.kind not in KINDS:
        raise ValueError(f"unknown anchor kind {anchor.kind!r}")
    fields: dict[str, object] = {
        "seq": anchor.seq, "head": anchor.head, "kind": anchor.kind, "kid": keyring.current_id,
        "at": anchor.at.astimezone(timezone.utc).isoformat(timespec="microseconds"),
    }  # fmt: skip
    fields["mac"] = keyring.sign(_message(fields))
    return fields


def _unsealed(fields: dict[str, object], keyring: Keyring | None, where: str) -> Anchor | str:
    """The anchor of a stored record, or why it cannot be trusted (a description naming ``where``)."""
    fields = dict(fields)
    try:
        mac = fields.pop("mac")
        kid = str(fields["kid"])
        anchor = Anchor(int(fields["seq"]), str(fields["head"]),  # type: ignore[call-overload]
                        datetime.fromisoformat(str(fields["at"])), str(fields["kind"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{where} is not an anchor record: the anchor log was edited"
    if keyring is None:
        return f"{where} cannot be checked: no audit key"
    if not keyring.check(_message(fields), kid, mac):  # type: ignore[arg-type]
        return f"{where} fails its seal (HMAC): the anchor log was edited or the line forged"
    return anchor


def _read_records(records: Iterable[tuple[str, str | bytes]], keyring: Keyring | None) -> tuple[list[Anchor], list[str]]:
    """Sealed anchor records, each named by where it was read, into anchors and problems (one reading for every sink)."""
    anchors: list[Anchor] = []
    problems: list[str] = []
    for where, raw in records:
        try:
            fields = json.loads(raw)
        except ValueError:
            fields = None
        found = _unsealed(fields, keyring, where) if isinstance(fields, dict) else \
            f"{where} is not an anchor record: the anchor log was edited"
        (anchors if isinstance(found, Anchor) else problems).append(found)  # type: ignore[arg-type]
    return anchors, problems


class FileAnchorSink:
    """Anchors as JSON lines appended to a 0600 file, each sealed with the audit key (HMAC-SHA256).

    Appends use O_APPEND and one ``write`` of one short line, so the API's worker processes
    can share the file without locking; each append is fsynced (it happens every few seconds
    at most, not per request).
    """

    def __init__(self, path: Path, keyring: Keyring | None) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.keyring = keyring

    def __repr__(self) -> str:
        return f"FileAnchorSink({self.name!r})"

    def record(self, anchor: Anchor) -> None:
        if self.keyring is None:
            raise OSError(f"no audit key to seal anchors in {self.path}")
        fields = _sealed(anchor, self.keyring)
        line = (json.dumps(fields, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> tuple[list[Anchor], list[str]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], []
        lines = data.split(b"\n")
        lines.pop()  # "" when the file ends with a newline; else a line cut short by a crash
        return _read_records(((f"{self.path} line {n}", raw) for n, raw in enumerate(lines, start=1)),
                             self.keyring)


class SqlAnchorSink:
    """Anchors as sealed rows of ``feed_audit_anchors`` in another database (``IEHUB_AUDIT_ANCHOR_URL``).

    Meant for the PostgreSQL catalog (or any database the audit store's writers cannot write):
    every machine of a many-worker deployment anchors there, and the table refuses UPDATE,
    DELETE and TRUNCATE like the audit table does. Pointing it at the audit store itself would
    defeat its purpose, so :class:`feeds.audit.AuditLog` refuses that.
    """

    def __init__(self, url: str, keyring: Keyring | None) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.name = sa.make_url(url).render_as_string(hide_password=True)
        self.keyring = keyring
        self._table = sa.Table(
            "feed_audit_anchors", sa.MetaData(),
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
            sa.Column("record", sa.Text, nullable=False),  # the sealed JSON record, as in the anchor file
        )
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._ready = False  # the table is made by the first record(); read() never creates it

    def __repr__(self) -> str:
        return f"SqlAnchorSink({self.name!r})"

    def _create(self) -> None:
        with self.engine.begin() as conn:
            dialect = conn.dialect.name
            if dialect == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7315100303)")
            self._table.create(conn, checkfirst=True)
            if dialect == "sqlite":
                for op in ("UPDATE", "DELETE"):
                    conn.exec_driver_sql(
                        f"CREATE TRIGGER IF NOT EXISTS feed_audit_anchors_no_{op.lower()} BEFORE {op} ON "
                        "feed_audit_anchors BEGIN SELECT RAISE(ABORT, 'feed_audit_anchors is append-only'); END")
            elif dialect == "postgresql":
                conn.exec_driver_sql(
                    "CREATE OR REPLACE FUNCTION feed_audit_anchors_append_only() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN RAISE EXCEPTION 'feed_audit_anchors is append-only'; END $$")
                conn.exec_driver_sql(
                    "CREATE OR REPLACE TRIGGER feed_audit_anchors_append_only BEFORE UPDATE OR DELETE ON "
                    "feed_audit_anchors FOR EACH ROW EXECUTE FUNCTION feed_audit_anchors_append_only()")
                conn.exec_driver_sql(
                    "CREATE OR REPLACE TRIGGER feed_audit_anchors_no_truncate BEFORE TRUNCATE ON "
                    "feed_audit_anchors FOR EACH STATEMENT EXECUTE FUNCTION feed_audit_anchors_append_only()")
        self._ready = True

    def record(self, anchor: Anchor) -> None:
        if self.keyring is None:
            raise OSError(f"no audit key to seal anchors in {self.name}")
        try:
            if not self._ready:
                self._create()
            with self.engine.begin() as conn:
                conn.execute(self._table.insert().values(record=json.dumps(_sealed(anchor, self.keyring),
                                                                           sort_keys=True)))
        except self._sa.exc.SQLAlchemyError as exc:
            raise OSError(f"cannot record the anchor in {self.name}: {type(exc).__name__}") from None

    def read(self) -> tuple[list[Anchor], list[str]]:
        sa = self._sa
        try:
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table("feed_audit_anchors"):
                    return [], []
                records = conn.execute(sa.select(self._table.c.id, self._table.c.record)
                                       .order_by(self._table.c.id)).all()
        except sa.exc.SQLAlchemyError as exc:
            raise OSError(f"cannot read the anchors in {self.name}: {type(exc).__name__}") from None
        return _read_records(((f"{self.name} feed_audit_anchors row {record_id}", text)
                              for record_id, text in records), self.keyring)

    def dispose(self) -> None:
        self.engine.dispose()
