"""Push subscriptions end to end: a real sync with 1 % changes, a real build, real receivers on loopback.

The municipal sandbox database (SQLite) is synced and built, subscriptions are made, the
source changes about 1 % of its rows, and a second sync and build publish a snapshot. The
receivers verify every request with the Standard Webhooks reference library. What each one
holds after de-duplication by webhook-id is compared with what the pull API serves the same
key for the same versions (so push and pull must mask identically), and must be in
change-version order, each record once, whatever faults the receiver answered on the way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from feeds.app import create_app
from feeds.audit import feed_audit
from feeds.config import FeedConfig
from feeds.delivery import RetryPolicy, deliver
from feeds.keys import KeyStore
from feeds.query import SnapshotPool, newest_change_version
from feeds.subscriptions import PAUSED, SubscriptionError, SubscriptionStore
from iehub import pipeline
from iehub.config import Settings
from sandbox import municipal
from tests.integration.feeds.webhook_receiver import Receiver
from tests.integration.sql_helpers import core_rows, spec_with
from tests.integration.test_municipal_sync import execute
from warehouse.build import build

pytestmark = pytest.mark.integration

SOURCE = "municipal_projects"
FAST = RetryPolicy(attempts=6, base_seconds=0.02, cap_seconds=0.2)


def _sync_and_build(home: Path) -> None:
    settings = Settings.from_env(home)
    spec = spec_with(SOURCE)
    for stream in spec.streams:
        pipeline.sync_stream(settings, SOURCE, stream, spec=spec)
    build(home, settings.catalog())


def _pull(client: TestClient, token: str, dataset: str, kind: str, low: int) -> list[dict[str, Any]]:
    """Every record the pull API serves ``token`` of ``dataset`` from change version ``low`` on."""
    path = f"/v1/feeds/{dataset}" + ("/deletes" if kind == "deletes" else "")
    params: dict[str, Any] = {"min_change_version": low, "limit": 10_000}
    out: list[dict[str, Any]] = []
    while True:
        got = client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        if got.status_code in (403, 404):  # out of the key's scope, or never shared
            return []
        assert got.status_code == 200, got.text
        body = got.json()
        out.extend(body["records"])
        if not body["next_cursor"]:
            return out
        params = {"cursor": body["next_cursor"], "limit": 10_000}


def _expected(client: TestClient, token: str, low: int) -> dict[tuple[str, str], list[dict[str, Any]]]:
    from feeds.datasets import DATASETS

    out = {}
    for dataset in DATASETS:
        for kind in ("changes", "deletes"):
            records = _pull(client, token, dataset, kind, low)
            if records:
                out[(dataset, kind)] = records
    return out


def _assert_in_order(receiver: Receiver) -> None:
    """Per dataset, batches follow each other in change-version order, and within a batch too."""
    last: dict[str, int] = {}
    for message in receiver.unique():
        data = message.payload["data"]
        versions = sorted(r["change_version"] for kind in ("changes", "deletes") for r in data[kind])
        for kind in ("changes", "deletes"):
            own = [r["change_version"] for r in data[kind]]
            assert own == sorted(own), f"{data['dataset']} {kind} out of order within {message.msg_id}"
        assert versions[0] > last.get(data["dataset"], -1), f"{data['dataset']}: batch {message.msg_id} goes back"
        assert versions[-1] <= data["change_versions"]["upto"]
        last[data["dataset"]] = data["change_versions"]["upto"]


def _identity(records: dict[tuple[str, str], list[dict[str, Any]]]) -> set[tuple[str, str, int]]:
    return {(d, k, r["change_version"]) for (d, k), rs in records.items() for r in rs}


@pytest.fixture
def hub(iehub_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'municipal.db'}"
    municipal.seed(url, scale=0.05, seed=11)
    monkeypatch.setenv("IEHUB_MUNICIPAL_DB_URL", url)
    _sync_and_build(iehub_home)
    config = FeedConfig(iehub_home, rate=10_000.0, burst=10_000)
    keys = KeyStore(config.db_url, cache_seconds=0)
    store = SubscriptionStore(str(config.db_url), config.secret(), keys)
    receivers: list[Receiver] = []
    yield {"url": url, "config": config, "keys": keys, "store": store, "receivers": receivers}
    for r in receivers:
        r.close()
    store.dispose()
    keys.dispose()


def _receiver(hub: dict[str, Any], secrets: list[str] | None = None) -> Receiver:
    r = Receiver(secrets or [])
    hub["receivers"].append(r)
    return r


def test_changes_and_deletes_arrive_once_in_order_masked_and_scoped_through_faults(hub: dict[str, Any],
                                                                                   iehub_home: Path) -> None:
    config, keys, store = hub["config"], hub["keys"], hub["store"]
    districts = [d for (d,) in core_rows(iehub_home, "select district_code from core.project where district_code "
                                                     "is not null group by 1 order by count(*) desc")]
    mine, other = districts[:2], districts[2]
    pool = SnapshotPool(iehub_home)
    start = newest_change_version(pool, pool.current())
    pool.close()

    grant, token = keys.create("district-platform", None, mine)
    whole, whole_token = keys.create("municipal-platform", ["project", "teacher"], None)
    far, far_token = keys.create("far-district", None, [other])
    with pytest.raises(SubscriptionError, match="outside the key's scope"):
        store.create(keys.get(grant.key_id), "http://127.0.0.1:9/x", districts=[other])
    with pytest.raises(SubscriptionError, match="https"):
        store.create(keys.get(grant.key_id), "http://example.org/hooks")

    a, b, c, d, e = (_receiver(hub) for _ in range(5))
    sub_a, secret_a = store.create(keys.get(grant.key_id), a.url, from_version=start + 1, batch_size=3,
                                   timeout_seconds=0.5)
    sub_b, secret_b = store.create(keys.get(whole.key_id), b.url, from_version=start + 1, batch_size=2)
    sub_c, secret_c = store.create(keys.get(far.key_id), c.url, from_version=start + 1)
    sub_d, secret_d = store.create(keys.get(grant.key_id), d.url, from_version=start + 1, batch_size=5)
    sub_e, secret_e = store.create(keys.get(grant.key_id), e.url, from_version=start + 1, pause_after_seconds=0)
    a.secrets.append(secret_a)
    b.secrets.append(secret_b)
    c.secrets.append(secret_c)
    d.secrets.append(secret_d)
    e.secrets.append(secret_e)
    store.pause(sub_d.subscription_id, "consumer on holiday")

    changed = municipal.mutate(hub["url"], changed=0.01, seed=5)
    assert sum(t["updated"] + t["inserted"] + t["soft_deleted"] for t in changed.values()) > 0
    # At this scale 1 % holds no delete: the source also withdraws two projects in the subscriber's districts.
    gone = [p for (p,) in core_rows(iehub_home, "select project_id from core.project where district_code in (?, ?) "
                                                "order by project_id limit 2", mine)]
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    execute(hub["url"], f"UPDATE projects SET deleted_at = :t, updated_at = :t WHERE project_id IN "
                        f"({', '.join(str(int(p)) for p in gone)})", {"t": later})
    _sync_and_build(iehub_home)

    # A keeps failing for a while (500, 429 with Retry-After, a time-out), then recovers; E never does.
    a.plan(["500", "429:1", "timeout:1.5", "500"])
    e.plan(["500"] * 100)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        __import__("time").sleep(seconds)

    report = deliver(config, policy=FAST, sleep=sleep)
    outcomes = {o.subscription_id: o for o in report.outcomes}
    assert outcomes[sub_a.subscription_id].status == "delivered", outcomes[sub_a.subscription_id]
    assert any(w >= 1.0 for w in waits), f"Retry-After: 1 not honoured (waits {waits})"
    assert a.rejected == b.rejected == c.rejected == 0

    client = TestClient(create_app(config, keys=keys), raise_server_exceptions=False)
    with client:
        expected_a = _expected(client, token, start + 1)
        expected_b = _expected(client, whole_token, start + 1)
        expected_c = _expected(client, far_token, start + 1)
    assert expected_a, "the 1 % change touched nothing in the subscriber's districts"
    assert len(expected_a[("project", "deletes")]) == 2

    # A: exactly the pull API's records for its key (masked the same), each once, in order
    ids = [r.msg_id for r in a.messages()]
    assert len(ids) > len(set(ids)), "the time-out should have made the hub send one batch twice (same id)"
    assert a.records() == expected_a
    _assert_in_order(a)
    assert expected_b and b.records() == expected_b and all(ds in ("project", "teacher") for ds, _ in b.records())
    teachers = [r for r in b.records().get(("teacher", "changes"), [])]
    assert all("*" in (t["id_number"] or "*") and "*" in (t["name"] or "*") for t in teachers)  # masked grant
    _assert_in_order(b)
    # C (another district) holds nothing of A's, and only its own district
    assert c.records() == expected_c
    assert not (_identity(c.records()) & _identity(a.records()))
    assert all(r.get("district_code") in (None, other) for rs in c.records().values() for r in rs)
    # D was paused: nothing yet; E failed throughout and is paused with the reason recorded
    assert d.messages() == []
    paused = store.get(sub_e.subscription_id)
    assert paused.status == PAUSED and "answered 500" in (paused.paused_reason or "")
    assert e.requests == FAST.attempts

    # Every attempt is in the audit chain: one row before it, one with its status after it.
    engine = sa.create_engine(config.db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(feed_audit.c.endpoint, feed_audit.c.params, feed_audit.c.consumer)
                            .where(feed_audit.c.endpoint.in_(["push", "push.result"]))).all()
    engine.dispose()
    of_a = [(r.endpoint, json.loads(r.params)) for r in rows if json.loads(r.params)["subscription"]
            == sub_a.subscription_id]
    results = [p for ep, p in of_a if ep == "push.result"]
    assert len(results) == len([p for ep, p in of_a if ep == "push"]) == a.requests
    assert {p["status"] for p in results} >= {500, 429, "timeout", 204}
    assert {p["batch"] for p in results} == {r.msg_id for r in a.messages()}

    # D resumed: the same set as A, from its last acknowledged version
    store.resume(sub_d.subscription_id)
    deliver(config, policy=FAST)
    assert d.records() == expected_a
    _assert_in_order(d)

    # A replayed from the first new version, after a secret rotation: the same set again, verified
    # by a receiver that knows only the old secret and by one that knows only the new one.
    _, new_secret = store.rotate_secret(sub_a.subscription_id)
    before = {r.msg_id for r in a.messages()}
    a.clear()
    a.secrets[:] = [secret_a, new_secret]
    store.replay(sub_a.subscription_id, start + 1)
    deliver(config, policy=FAST, subscription_ids=[sub_a.subscription_id])
    assert a.rejected == 0 and a.records() == expected_a
    assert not ({r.msg_id for r in a.messages()} & before), "a replay is a new delivery: new batch ids"
    # nothing more to send: the next run delivers nothing new
    a.clear()
    deliver(config, policy=FAST)
    assert a.messages() == [] and d.records() == expected_a
