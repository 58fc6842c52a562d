"""Consumer keys: creation, scopes, hashing at rest, expiry, revocation, the grant cache."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from feeds.keys import KEY_PREFIX, AuthError, KeyStore, KeyStoreError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyStore]:
    s = KeyStore(f"sqlite:///{tmp_path / 'feeds.db'}")
    yield s
    s.dispose()


def test_create_returns_a_random_token_once_and_stores_only_its_hash(store: KeyStore, tmp_path: Path) -> None:
    grant, token = store.create("杨浦区产教融合平台", ["trainee", "project"], ["310110"])
    other_grant, other = store.create("杨浦区产教融合平台", ["trainee"], ["310110"])
    assert token.startswith(f"{KEY_PREFIX}{grant.key_id}.") and token != other
    secret = token.split(".", 1)[1]
    assert len(secret) >= 43  # token_urlsafe(32): 256 random bits
    assert grant.datasets == frozenset({"trainee", "project"}) and grant.districts == frozenset({"310110"})
    assert not grant.personal and grant.expires_at is not None
    dump = "\n".join(sqlite3.connect(tmp_path / "feeds.db").iterdump())
    assert secret not in dump and token not in dump
    assert grant.key_id in dump


def test_authenticate_returns_the_grant_derived_from_the_key(store: KeyStore) -> None:
    created, token = store.create("浦东新区平台", None, ["310115"], personal=True)
    grant = store.authenticate(token)
    assert grant == created
    assert grant.datasets is None and grant.allows_dataset("teacher")
    assert grant.districts == frozenset({"310115"}) and grant.personal


@pytest.mark.parametrize("token", [None, "", "Bearer x", "iehub_0123456789abcdef", "iehub_zz.abc",
                                   "iehub_0123456789abcdef." + "A" * 43])
def test_malformed_or_unknown_tokens_are_refused_without_echoing_them(store: KeyStore, token: str | None) -> None:
    with pytest.raises(AuthError) as info:
        store.authenticate(token)
    if token:
        assert token not in str(info.value)


def test_a_wrong_secret_for_a_real_key_id_is_unknown(store: KeyStore) -> None:
    grant, token = store.create("闵行区平台", ["trainee"], ["310112"])
    store.authenticate(token)  # cached now: the wrong secret must still miss
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthError, match="unknown API key"):
        store.authenticate(forged)


def test_expired_key_is_refused(store: KeyStore) -> None:
    grant, token = store.create("嘉定区平台", ["project"], "all", expires_in=timedelta(seconds=1))
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE feed_keys SET expires_at = :t WHERE key_id = :k"),
                     {"t": (datetime.now(timezone.utc) - timedelta(seconds=5)).replace(tzinfo=None), "k": grant.key_id})
    fresh = KeyStore(store.url)
    with pytest.raises(AuthError, match="expired"):
        fresh.authenticate(token)
    assert fresh.get(grant.key_id).status() == "expired"
    fresh.dispose()


def test_expiry_is_checked_even_for_a_cached_grant(store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    grant, token = store.create("嘉定区平台", ["project"], "all", expires_in=timedelta(hours=1))
    store.authenticate(token)
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    monkeypatch.setattr("feeds.keys._now", lambda: later)
    with pytest.raises(AuthError, match="expired"):
        store.authenticate(token)


def test_revocation_is_immediate_in_process_and_bounded_by_the_cache_elsewhere(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feeds.db'}"
    admin, api = KeyStore(url), KeyStore(url, cache_seconds=0)
    cached_api = KeyStore(url, cache_seconds=3600)
    grant, token = admin.create("临港集团", ["talent_demand"], ["310115"])
    admin.authenticate(token)
    cached_api.authenticate(token)
    info = admin.revoke(grant.key_id)
    assert info.status() == "revoked" and info.revoked_at is not None
    with pytest.raises(AuthError, match="revoked"):
        admin.authenticate(token)  # the revoking process dropped its cached grant
    with pytest.raises(AuthError, match="revoked"):
        api.authenticate(token)  # no cache: the next request sees it
    assert cached_api.authenticate(token).key_id == grant.key_id  # documented: at most cache_seconds late
    assert admin.revoke(grant.key_id).revoked_at == info.revoked_at  # idempotent
    for s in (admin, api, cached_api):
        s.dispose()


def test_last_used_is_recorded(store: KeyStore) -> None:
    grant, token = store.create("奉贤区平台", ["notice"], ["310120"])
    assert store.get(grant.key_id).last_used_at is None
    store.authenticate(token)
    assert store.get(grant.key_id).last_used_at is not None


@pytest.mark.parametrize(
    ("datasets", "districts", "message"),
    [
        (["trainee", "students"], ["310110"], "unknown datasets 'students'"),
        (["trainee"], ["310110", "310199"], "unknown districts '310199'"),
        (["trainee"], ["杨浦区"], "unknown districts '杨浦区'"),
        ([], ["310110"], "at least one"),
        (["all", "trainee"], ["310110"], "cannot be combined"),
    ],
)
def test_bad_scopes_are_refused_naming_the_value(store: KeyStore, datasets: list[str], districts: list[str],
                                                message: str) -> None:
    with pytest.raises(KeyStoreError, match=message):
        store.create("某平台", datasets, districts)
    assert store.list() == []


def test_bad_consumer_expiry_and_key_ids_are_refused(store: KeyStore) -> None:
    with pytest.raises(KeyStoreError, match="consumer"):
        store.create("  ", ["notice"], "all")
    with pytest.raises(KeyStoreError, match="positive"):
        store.create("x", ["notice"], "all", expires_in=timedelta(0))
    _, token = store.create("x", ["notice"], "all")
    with pytest.raises(KeyStoreError, match="not the key itself"):
        store.revoke(token)
    with pytest.raises(KeyStoreError, match="no key with id"):
        store.revoke("0123456789abcdef")


def test_list_shows_scopes_and_status_without_secrets(store: KeyStore) -> None:
    a, _ = store.create("杨浦区平台", ["trainee"], ["310110"])
    b, _ = store.create("市级平台", "all", "all", personal=True, expires_in=None)
    store.revoke(a.key_id)
    listed = {k.key_id: k for k in store.list()}
    assert listed[a.key_id].status() == "revoked" and listed[a.key_id].districts == frozenset({"310110"})
    assert listed[b.key_id].status() == "active" and listed[b.key_id].datasets is None
    assert listed[b.key_id].expires_at is None and listed[b.key_id].personal
    assert not any(hasattr(k, "secret_sha256") for k in listed.values())
