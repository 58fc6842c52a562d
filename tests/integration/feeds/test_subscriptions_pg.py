"""Subscriptions in a PostgreSQL feed database (IEHUB_FEEDS_DB_URL): leases, guarded acks, a real delivery."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feeds.config import FeedConfig
from feeds.delivery import RetryPolicy, deliver
from feeds.keys import KeyStore
from feeds.subscriptions import SubscriptionStore
from tests.integration.feeds.webhook_receiver import Receiver
from tests.integration.sql_helpers import fresh_database
from tests.unit.feeds.feed_fixtures import DISTRICTS, make_feed_home
from warehouse.catalog import Catalog

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path) as url:
        yield url


def test_subscriptions_on_postgres_lease_ack_and_deliver(pg_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    make_feed_home(home, catalog)
    catalog.dispose()
    config = FeedConfig(home, db_url=pg_url)
    keys = KeyStore(pg_url, cache_seconds=0)
    store = SubscriptionStore(pg_url, config.secret(), keys)
    SubscriptionStore(pg_url, config.secret(), keys).dispose()  # a second start: tables already there
    grant, _ = keys.create("district-pudong", ["project"], [DISTRICTS[0]])
    receiver = Receiver()
    try:
        sub, secret = store.create(keys.get(grant.key_id), receiver.url, batch_size=3)
        receiver.secrets.append(secret)
        # one deliverer at a time: a second owner cannot take a live lease
        assert store.claim(sub.subscription_id, "a", 60) is not None
        assert store.claim(sub.subscription_id, "b", 60) is None
        store.release(sub.subscription_id, "a")
        # an ack from before a replay is refused: the replay's cursors stand
        stale = store.get(sub.subscription_id)
        store.replay(sub.subscription_id, 5)
        assert store.acknowledge(stale, "project", {"changes": 99, "deletes": 99}) is None
        assert store.get(sub.subscription_id).acked("project", "changes") == 4
        report = deliver(config, policy=RetryPolicy(attempts=2, base_seconds=0.01))
        assert report.summary()["failed"] == [] and receiver.rejected == 0
        records = receiver.records()[("project", "changes")]
        assert records and all(r["change_version"] >= 5 and r["district_code"] == DISTRICTS[0] for r in records)
        assert store.get(sub.subscription_id).acked("project", "changes") >= max(r["change_version"] for r in records)
        # a revoked key stops its subscriptions: paused, with the reason
        keys.revoke(grant.key_id)
        receiver.clear()
        store.replay(sub.subscription_id, 0)
        deliver(config, policy=RetryPolicy(attempts=2, base_seconds=0.01))
        paused = store.get(sub.subscription_id)
        assert receiver.messages() == [] and paused.status == "paused" and "revoked" in (paused.paused_reason or "")
    finally:
        receiver.close()
        store.dispose()
        keys.dispose()
