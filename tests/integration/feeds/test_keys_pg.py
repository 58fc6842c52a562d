"""Keys and the audit chain on the real PostgreSQL server (127.0.0.1:5432), in a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from feeds.audit import AuditLog
from feeds.keys import AuthError, KeyStore, KeyStoreError
from tests.integration.sql_helpers import fresh_database
from tests.unit.feeds.test_audit import append, append_concurrently

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path) as url:
        yield url


def test_keys_round_trip_with_scopes_expiry_and_revocation(pg_url: str) -> None:
    store = KeyStore(pg_url, cache_seconds=0)
    again = KeyStore(pg_url)  # a second start on the same database: tables already there
    grant, token = store.create("杨浦区产教融合平台", ["trainee", "project"], ["310110"], expires_in=timedelta(days=30))
    assert again.authenticate(token) == grant
    info = store.get(grant.key_id)
    assert info.created_at.tzinfo is not None and info.expires_at is not None
    assert (info.expires_at - info.created_at) == timedelta(days=30)
    with pytest.raises(KeyStoreError, match="unknown districts '999999'"):
        store.create("x", ["trainee"], ["999999"])
    store.revoke(grant.key_id)
    with pytest.raises(AuthError, match="revoked"):
        store.authenticate(token)
    assert [k.status() for k in again.list()] == ["revoked"]
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT secret_sha256 FROM feed_keys").scalar_one()
    engine.dispose()
    assert token.split(".", 1)[1] not in stored and len(stored) == 64
    store.dispose()
    again.dispose()


def test_audit_chain_on_postgres_refuses_edits_and_detects_tampering(pg_url: str) -> None:
    log = AuditLog(pg_url)
    AuditLog(pg_url).dispose()  # a second start keeps the chain head and the guard trigger
    append(log, 4)
    assert log.verify().ok and log.verify().rows == 4
    engine = sa.create_engine(pg_url)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE feed_audit SET rows = 0 WHERE seq = 2")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER feed_audit_append_only ON feed_audit")
        conn.exec_driver_sql("UPDATE feed_audit SET consumer = '别人' WHERE seq = 3")
    engine.dispose()
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 3 and "edited" in (report.reason or "")
    log.dispose()


def test_concurrent_appends_from_two_workers_keep_one_chain(pg_url: str) -> None:
    logs = [AuditLog(pg_url) for _ in range(2)]
    assert append_concurrently(logs, 6, 20) == []
    report = logs[0].verify()
    assert report.ok and report.rows == 120
    for audit in logs:
        audit.dispose()
