"""Keys and the audit chain on the real PostgreSQL server (127.0.0.1:5432), in a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from feeds.audit import AuditError, AuditLog
from feeds.keys import AuthError, KeyStore, KeyStoreError
from tests.integration.sql_helpers import fresh_database
from tests.unit.feeds.test_audit import append, append_concurrently, tamper

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


def test_audit_chain_on_postgres_refuses_edits_and_detects_tampering(pg_url: str, tmp_path: Path) -> None:
    log = AuditLog(pg_url, tmp_path)  # the key and anchors live in tmp_path, outside the database
    AuditLog(pg_url, tmp_path).dispose()  # a second start keeps the chain head and the guard trigger
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
    report = AuditLog(pg_url, tmp_path, read_only=True).verify()
    assert not report.ok and report.first_bad_seq == 3 and "edited" in (report.reason or "")
    log.dispose()


def test_concurrent_appends_from_two_workers_keep_one_chain(pg_url: str, tmp_path: Path) -> None:
    logs = [AuditLog(pg_url, tmp_path) for _ in range(2)]
    assert append_concurrently(logs, 6, 20) == []
    report = logs[0].verify()
    assert report.ok and report.rows == 120
    for audit in logs:
        audit.dispose()


def test_audit_store_on_postgres_refuses_truncate_and_moving_the_head(pg_url: str, tmp_path: Path) -> None:
    """Row triggers do not fire on TRUNCATE, and the head row had no guard: both were open doors."""
    log = AuditLog(pg_url, tmp_path)
    append(log, 3)
    engine = sa.create_engine(pg_url)
    for statement in ("TRUNCATE feed_audit", "TRUNCATE feed_audit_head", "DELETE FROM feed_audit_head",
                      "UPDATE feed_audit_head SET seq = 1", "INSERT INTO feed_audit SELECT * FROM feed_audit "
                      "WHERE seq = 2"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with engine.begin() as conn:
                conn.exec_driver_sql(statement)
    engine.dispose()
    assert log.verify().ok
    log.dispose()


def test_verify_on_postgres_reads_only_and_catches_a_tail_cut_with_the_head_moved_back(pg_url: str,
                                                                                       tmp_path: Path) -> None:
    log = AuditLog(pg_url, tmp_path)
    append(log, 6)
    log.dispose()  # the writer's closing anchor pins row 6
    reader = AuditLog(pg_url, tmp_path, read_only=True)
    with reader.engine.connect() as conn, conn.begin():
        assert conn.exec_driver_sql("SHOW transaction_read_only").scalar_one() == "on"
    assert reader.verify().ok
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER feed_audit_append_only ON feed_audit")
        conn.exec_driver_sql("DROP TRIGGER feed_audit_head_forward ON feed_audit_head")
        conn.exec_driver_sql("DELETE FROM feed_audit WHERE seq > 4")
        conn.exec_driver_sql("UPDATE feed_audit_head SET seq = 4, row_hash = (SELECT row_hash FROM feed_audit "
                             "WHERE seq = 4)")
    engine.dispose()
    report = reader.verify()
    assert not report.ok and report.first_bad_seq == 5 and "cut from the end" in (report.reason or "")
    with pytest.raises(AuditError, match="read-only"):
        append(reader, 1)
    reader.dispose()


def test_anchors_kept_in_a_postgres_catalog_catch_a_cut_even_when_the_anchor_file_is_gone(pg_url: str,
                                                                                          tmp_path: Path) -> None:
    """The insider owns the feeds folder (feeds.db and audit.anchors) but not the catalog database."""
    store = f"sqlite:///{tmp_path / 'feeds.db'}"
    log = AuditLog(store, anchor_url=pg_url)
    append(log, 5)
    log.dispose()
    engine = sa.create_engine(pg_url)
    for statement in ("UPDATE feed_audit_anchors SET record = '{}'", "DELETE FROM feed_audit_anchors",
                      "TRUNCATE feed_audit_anchors"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with engine.begin() as conn:
                conn.exec_driver_sql(statement)
    engine.dispose()
    assert AuditLog(store, read_only=True, anchor_url=pg_url).verify().ok
    tamper(store, "DELETE FROM feed_audit WHERE seq > 2",
           "UPDATE feed_audit_head SET seq = 2, row_hash = (SELECT row_hash FROM feed_audit WHERE seq = 2)")
    (tmp_path / "audit.anchors").unlink()
    report = AuditLog(store, read_only=True, anchor_url=pg_url).verify()
    assert not report.ok and report.first_bad_seq == 3 and "cut from the end" in (report.reason or "")
    with pytest.raises(AuditError, match="names the audit store itself"):
        AuditLog(pg_url, tmp_path, anchor_url=pg_url)
