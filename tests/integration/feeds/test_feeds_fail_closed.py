"""Fail closed (#15 finding 5): a failing key or audit store is a 503 ``{"error", "message"}``, never a 500, never data.

As found: with the feeds database read-only, data requests got 503 but every request of a key
unused for a minute got 500 (its ``last_used_at`` write failed unhandled). Here the database is
opened read-only (SQLite ``mode=ro``: as root, file permissions would not stop the test's own
writes), and, separately, made unreadable under a running app.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feeds.app import create_app
from feeds.audit import AuditLog
from feeds.config import FeedConfig
from feeds.keys import KeyStore, feed_keys
from tests.unit.feeds.feed_fixtures import FeedHome

pytestmark = pytest.mark.integration

DATA = ["/v1/feeds/trainee", "/v1/feeds/trainee/deletes", "/v1/feeds/organization?format=csv",
        "/v1/feeds/project?format=parquet", "/v1/feeds/teacher?format=ndjson"]
METADATA = ["/v1/feeds", "/v1/feeds/trainee/versions", "/v1/feeds/trainee/schema"]
PERSONAL = ("张三丰", "31011519900101002X", "13812345678")


def assert_503(response, error: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == error, body
    assert not any(value in response.text for value in PERSONAL)


def stores(home: Path, url: str) -> tuple[KeyStore, dict[str, str]]:
    """Keys in a fresh feeds database at ``url``: one used just now, one last used five minutes ago."""
    store = KeyStore(url, cache_seconds=0)
    tokens = {name: store.create(name, None, None, personal=True)[1] for name in ("fresh", "stale")}
    now = datetime.now(timezone.utc)
    with store.engine.begin() as conn:
        for name, used in (("fresh", now), ("stale", now - timedelta(minutes=5))):
            conn.execute(feed_keys.update().where(feed_keys.c.consumer == name).values(last_used_at=used))
    served = create_app(FeedConfig(home, db_url=url))  # every table the app keeps exists, as on a hub that has run
    served.state.keys.dispose()
    served.state.audit.dispose()
    return store, tokens


@pytest.fixture
def read_only(built: FeedHome, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    path = tmp_path / "feeds.db"
    store, tokens = stores(built.home, f"sqlite:///{path}")
    store.dispose()
    config = FeedConfig(built.home, db_url=f"sqlite:///file:{path}?mode=ro&uri=true", rate=10_000.0, burst=10_000)
    app = create_app(config)  # the app opens its own stores, as `iehub serve` does
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, tokens
    app.state.keys.dispose()
    app.state.audit.dispose()


def get(client: TestClient, url: str, token: str):  # type: ignore[no-untyped-def]
    return client.get(url, headers={"Authorization": f"Bearer {token}"})


def test_issue_15_finding_5_a_stale_key_on_a_read_only_store_gets_503_everywhere(read_only) -> None:  # type: ignore[no-untyped-def]
    client, tokens = read_only
    for url in METADATA + DATA:
        for _ in range(2):  # and again: a refused grant is not cached
            assert_503(get(client, url, tokens["stale"]), "key_store_unavailable")


def test_a_fresh_key_on_a_read_only_store_gets_metadata_and_no_data(read_only) -> None:  # type: ignore[no-untyped-def]
    """Nothing the metadata needs failed (the key was read, its use recorded a minute ago); data needs an audit row."""
    client, tokens = read_only
    for url in METADATA:
        assert get(client, url, tokens["fresh"]).status_code == 200, url
    for url in DATA:
        assert_503(get(client, url, tokens["fresh"]), "audit_unavailable")


def test_an_unreadable_store_under_a_running_app_gets_503_everywhere(built: FeedHome, tmp_path: Path) -> None:
    path = tmp_path / "feeds.db"
    store, tokens = stores(built.home, f"sqlite:///{path}")
    audit = AuditLog(f"sqlite:///{path}")
    config = FeedConfig(built.home, db_url=f"sqlite:///{path}", rate=10_000.0, burst=10_000)
    with TestClient(create_app(config, keys=store, audit=audit), raise_server_exceptions=False) as client:
        assert get(client, "/v1/feeds/trainee?limit=1", tokens["fresh"]).status_code == 200
        for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            sidecar.unlink(missing_ok=True)
        path.write_bytes(b"this is no longer a database " * 512)  # a disk fault, a bad restore …
        store.engine.dispose()
        audit.engine.dispose()
        for token in tokens.values():
            for url in METADATA + DATA:
                assert_503(get(client, url, token), "key_store_unavailable")
    store.dispose()
    audit.dispose()
