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
from typing import Protocol

from feeds.audit_keys import Keyring

__all__ = ["ANCHOR_FILE", "Anchor", "AnchorSink", "FileAnchorSink"]

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
        if anchor.kind not in KINDS:
            raise ValueError(f"unknown anchor kind {anchor.kind!r}")
        fields: dict[str, object] = {
            "seq": anchor.seq, "head": anchor.head, "kind": anchor.kind, "kid": self.keyring.current_id,
            "at": anchor.at.astimezone(timezone.utc).isoformat(timespec="microseconds"),
        }  # fmt: skip
        fields["mac"] = self.keyring.sign(_message(fields))
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
        anchors: list[Anchor] = []
        problems: list[str] = []
        lines = data.split(b"\n")
        torn = lines.pop()  # "" when the file ends with a newline; else a line cut short by a crash
        del torn
        for number, raw in enumerate(lines, start=1):
            where = f"{self.path} line {number}"
            try:
                fields = json.loads(raw)
                mac = fields.pop("mac")
                kid = fields["kid"]
                anchor = Anchor(int(fields["seq"]), str(fields["head"]), datetime.fromisoformat(fields["at"]),
                                str(fields["kind"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                problems.append(f"{where} is not an anchor record: the anchor log was edited")
                continue
            if self.keyring is None:
                problems.append(f"{where} cannot be checked: no audit key")
                continue
            if not self.keyring.check(_message(fields), kid, mac):
                problems.append(f"{where} fails its seal (HMAC): the anchor log was edited or the line forged")
                continue
            anchors.append(anchor)
        return anchors, problems
