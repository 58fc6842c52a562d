"""Opaque, signed paging cursors that bind a pass to one snapshot, dataset, range and scope.

Why signed: the cursor carries the snapshot and the change-version window, so a consumer
that edited it could jump snapshots or widen its window mid-pass; an HMAC with the server
secret makes any edit (or a cursor from another hub) a clean 400. Why the scope digest: a
cursor handed from one key to another with other districts must not continue a pass that
was filtered for the first key.

Format: ``base64url(json) + "." + base64url(hmac_sha256(secret, json))``, no padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = ["CURSOR_VERSION", "Cursor", "CursorError", "decode", "encode", "scope_digest"]

CURSOR_VERSION = 1
MAX_CURSOR_LENGTH = 4096
Kind = Literal["changes", "deletes"]


class CursorError(ValueError):
    """A cursor that is malformed, tampered with, foreign, or for another dataset, kind or key."""


@dataclass(frozen=True)
class Cursor:
    """Where a pass stands: it read every row with change_version <= ``after`` in [min, max]."""

    snapshot: str
    dataset: str
    kind: Kind
    after: int
    min: int
    max: int
    fields: tuple[str, ...] | None
    scope: str
    v: int = CURSOR_VERSION
    #: The page size the pass asked for, so following next_cursor alone keeps it (None: the default).
    limit: int | None = None


def scope_digest(key_id: str, districts: frozenset[str] | None, personal: bool) -> str:
    """A short digest of what a key may see, so a cursor only continues under the same scope."""
    body = json.dumps([key_id, sorted(districts) if districts is not None else None, personal])
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(cursor: Cursor, secret: bytes) -> str:
    body = asdict(cursor)
    body["fields"] = list(cursor.fields) if cursor.fields is not None else None
    payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def decode(text: str, secret: bytes, *, dataset: str, kind: Kind, scope: str) -> Cursor:
    """The cursor in ``text``, checked; CursorError says what is wrong (never echoes the cursor)."""
    if len(text) > MAX_CURSOR_LENGTH:
        raise CursorError(f"cursor is longer than {MAX_CURSOR_LENGTH} characters; pass next_cursor back unchanged")
    try:
        payload_text, mac_text = text.split(".")
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (ValueError, binascii.Error):
        raise CursorError("cursor is malformed; pass next_cursor back exactly as received") from None
    if not hmac.compare_digest(mac, hmac.new(secret, payload, hashlib.sha256).digest()):
        raise CursorError("cursor signature does not match: it was altered or issued by another server")
    try:
        body = json.loads(payload)
        if body.get("v") != CURSOR_VERSION:
            raise CursorError(f"cursor version {body.get('v')!r} is not supported; restart the pass")
        fields = body["fields"]
        cursor = Cursor(
            snapshot=str(body["snapshot"]), dataset=str(body["dataset"]), kind=body["kind"],
            after=int(body["after"]), min=int(body["min"]), max=int(body["max"]),
            fields=tuple(str(f) for f in fields) if fields is not None else None, scope=str(body["scope"]),
            limit=int(body["limit"]) if body.get("limit") is not None else None,
        )
    except (ValueError, KeyError, TypeError):
        raise CursorError("cursor content is invalid; restart the pass") from None
    if cursor.dataset != dataset:
        raise CursorError(f"cursor belongs to dataset {cursor.dataset!r}, not {dataset!r}")
    if cursor.kind != kind:
        raise CursorError(f"cursor belongs to the {cursor.kind} feed, not {kind}")
    if cursor.scope != scope:
        raise CursorError("cursor was issued to another key or scope; start your own pass")
    return cursor
