"""Cursors: what a pass may carry between pages, and every way a cursor must be refused."""

from __future__ import annotations

import base64
import json

import pytest

from feeds.cursors import MAX_CURSOR_LENGTH, Cursor, CursorError, decode, encode, scope_digest

SECRET = b"s" * 32
SCOPE = scope_digest("k1", frozenset({"310115"}), False)


def cursor(**changes: object) -> Cursor:
    base = dict(snapshot="20250601T000000000000Z", dataset="project", kind="changes", after=41, min=0, max=99,
                fields=("title",), scope=SCOPE)
    base.update(changes)
    return Cursor(**base)  # type: ignore[arg-type]


def test_round_trip_keeps_every_part() -> None:
    c = cursor()
    assert decode(encode(c, SECRET), SECRET, dataset="project", kind="changes", scope=SCOPE) == c
    none_fields = cursor(fields=None)
    assert decode(encode(none_fields, SECRET), SECRET, dataset="project", kind="changes", scope=SCOPE) == none_fields


def test_cursor_is_opaque_url_safe_text() -> None:
    text = encode(cursor(), SECRET)
    assert "=" not in text and "+" not in text and "/" not in text


def test_tampered_payload_is_refused() -> None:
    payload, mac = encode(cursor(), SECRET).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["after"] = 0  # rewind the pass
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(CursorError, match="signature"):
        decode(f"{forged}.{mac}", SECRET, dataset="project", kind="changes", scope=SCOPE)


def test_cursor_of_another_server_is_refused() -> None:
    with pytest.raises(CursorError, match="another server"):
        decode(encode(cursor(), b"o" * 32), SECRET, dataset="project", kind="changes", scope=SCOPE)


@pytest.mark.parametrize(("dataset", "kind", "scope", "message"), [
    ("notice", "changes", SCOPE, "belongs to dataset 'project'"),
    ("project", "deletes", SCOPE, "changes feed, not deletes"),
    ("project", "changes", scope_digest("k2", frozenset({"310115"}), False), "another key"),
    ("project", "changes", scope_digest("k1", None, False), "another key"),
    ("project", "changes", scope_digest("k1", frozenset({"310115"}), True), "another key"),
])
def test_cursor_only_continues_its_own_pass(dataset: str, kind: str, scope: str, message: str) -> None:
    with pytest.raises(CursorError, match=message):
        decode(encode(cursor(), SECRET), SECRET, dataset=dataset, kind=kind, scope=scope)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "abc", "a.b.c", "!!!.???", "eyJ9.", "x" * (MAX_CURSOR_LENGTH + 1),
                                  "../../etc/passwd", "' OR 1=1 --"])
def test_garbage_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(CursorError) as info:
        decode(text, SECRET, dataset="project", kind="changes", scope=SCOPE)
    assert text not in str(info.value) or not text


def test_signed_but_wrong_version_or_shape_is_refused() -> None:
    import hashlib
    import hmac

    for body in ({"v": 2}, {"v": 1, "snapshot": "x"}):
        payload = json.dumps(body).encode()
        mac = hmac.new(SECRET, payload, hashlib.sha256).digest()
        text = (base64.urlsafe_b64encode(payload).rstrip(b"=") + b"."
                + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
        with pytest.raises(CursorError, match="restart the pass"):
            decode(text, SECRET, dataset="project", kind="changes", scope=SCOPE)
