"""The delivery DAG through Airflow itself: dag.test() delivers a published snapshot to a loopback receiver."""
from __future__ import annotations

from pathlib import Path

import pytest

from feeds.config import FeedConfig
from feeds.keys import KeyStore
from feeds.subscriptions import SubscriptionStore
from iehub import orchestration
from iehub.config import Settings
from tests.integration.feeds.webhook_receiver import Receiver
from tests.unit.feeds.feed_fixtures import DISTRICTS, make_feed_home
from warehouse.catalog import Catalog

pytestmark = pytest.mark.airflow


def test_delivery_dag_delivers_the_snapshot_to_a_loopback_receiver(iehub_home: Path) -> None:
    catalog = Catalog.for_home(iehub_home)
    make_feed_home(iehub_home, catalog)
    catalog.dispose()
    config = FeedConfig(iehub_home)
    keys = KeyStore(config.db_url)
    store = SubscriptionStore(str(config.db_url), config.secret(), keys)
    grant, _ = keys.create("district-pudong", ["project", "trainee"], [DISTRICTS[0]])
    receiver = Receiver()
    try:
        sub, secret = store.create(keys.get(grant.key_id), receiver.url, batch_size=4)  # from version 0: everything
        receiver.secrets.append(secret)
        receiver.plan(["500"])  # one failure first: the task retries it itself and still succeeds
        settings = Settings.from_env(iehub_home).ensure()
        log = settings.logs / "airflow-test.log"
        orchestration.ensure_airflow_db(settings, log)
        orchestration.run_dag(settings, "iehub_delivery", log, {"IEHUB_DELIVERY_BACKOFF": "0.01"})
        assert "IEHUB_DAG_RESULT iehub_delivery" in log.read_text(encoding="utf-8")
        records = receiver.records()
        assert receiver.rejected == 0 and set(records) >= {("project", "changes"), ("trainee", "deletes"),
                                                             ("trainee", "changes")}
        assert all(r["district_code"] == DISTRICTS[0] for r in records[("project", "changes")])
        assert all("*" in r["id_number"] for r in records[("trainee", "changes")])  # masked: no personal grant
        after = store.get(sub.subscription_id)
        assert after.status == "active" and after.last_success_at is not None and after.failing_since is None
        assert after.acked("project", "changes") >= max(r["change_version"] for r in records[("project", "changes")])
    finally:
        receiver.close()
        store.dispose()
        keys.dispose()
