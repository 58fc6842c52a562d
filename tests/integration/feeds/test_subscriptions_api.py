"""/v1/subscriptions over the feed API: a key manages its own subscriptions, never past its scope."""
from __future__ import annotations

from tests.integration.feeds.conftest import Api
from tests.integration.feeds.webhook_receiver import Receiver
from tests.unit.feeds.feed_fixtures import DISTRICTS


def _post(api: Api, key: str, path: str = "/v1/subscriptions", **body):  # type: ignore[no-untyped-def]
    return api.client.post(path, json=body, headers={"Authorization": f"Bearer {api.tokens[key]}"})


def test_a_key_subscribes_within_its_scope_and_manages_only_its_own(api: Api) -> None:
    from feeds.delivery import RetryPolicy, deliver

    receiver = Receiver()
    try:
        made = _post(api, DISTRICTS[0], url=receiver.url, datasets=["project", "trainee"], from_change_version=0,
                     batch_size=5)
        assert made.status_code == 201, made.text
        sub = made.json()
        assert sub["secret"].startswith("whsec_") and sub["districts"] == [DISTRICTS[0]]
        assert sub["datasets"] == ["project", "trainee"] and sub["status"] == "active"
        listed = api.get("/v1/subscriptions", key=DISTRICTS[0]).json()["subscriptions"]
        assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
        # never past the key; http only to loopback; others' subscriptions are not there for them
        assert _post(api, DISTRICTS[0], url=receiver.url, districts=[DISTRICTS[1]]).status_code == 403
        assert _post(api, "projects_only", url=receiver.url, datasets=["trainee"]).status_code == 403
        assert _post(api, DISTRICTS[0], url="http://example.org/hook").status_code == 400
        assert api.get(f"/v1/subscriptions/{sub['id']}", key="all").status_code == 404
        assert api.get("/v1/subscriptions", key="all").json()["subscriptions"] == []
        assert api.client.get("/v1/subscriptions").status_code == 401
        # what it receives is its key's scope, signed with the secret it was given
        receiver.secrets.append(sub["secret"])
        deliver(api.config, policy=RetryPolicy(attempts=2, base_seconds=0.01), subscription_ids=[sub["id"]])
        records = receiver.records()
        assert records[("project", "changes")] and receiver.rejected == 0
        assert {r["district_code"] for rs in records.values() for r in rs if "district_code" in r} == {DISTRICTS[0]}
        # pause, resume, replay, rotate, delete
        assert _post(api, DISTRICTS[0], f"/v1/subscriptions/{sub['id']}/pause").json()["status"] == "paused"
        assert _post(api, DISTRICTS[0], f"/v1/subscriptions/{sub['id']}/resume").json()["status"] == "active"
        replayed = _post(api, DISTRICTS[0], f"/v1/subscriptions/{sub['id']}/replay", from_change_version=1).json()
        assert replayed["acknowledged"] == {} and replayed["start_after"] == 0
        rotated = _post(api, DISTRICTS[0], f"/v1/subscriptions/{sub['id']}/rotate-secret", overlap_hours=1).json()
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != sub["secret"]
        assert rotated["previous_secret_valid_until"] is not None
        gone = api.client.delete(f"/v1/subscriptions/{sub['id']}",
                                 headers={"Authorization": f"Bearer {api.tokens[DISTRICTS[0]]}"})
        assert gone.status_code == 204
        assert api.get(f"/v1/subscriptions/{sub['id']}", key=DISTRICTS[0]).status_code == 404
    finally:
        receiver.close()


def test_a_new_subscription_starts_after_what_its_scope_sees_not_the_hub_wide_newest(api: Api) -> None:
    """The position shown to a subscriber is scoped like `/versions`: a district key learns nothing
    of other districts' activity from it (it was the hub-wide newest change version)."""
    receiver = Receiver()
    try:
        sub = _post(api, DISTRICTS[0], url=receiver.url, datasets=["project"]).json()
        scoped = api.get("/v1/feeds/project/versions", key=DISTRICTS[0]).json()["newest_change_version"]
        hub_wide = api.get("/v1/feeds/project/versions", key="all").json()["newest_change_version"]
        assert scoped < hub_wide  # the fixture's other districts changed later
        assert sub["start_after"] == scoped
        assert set(sub["acknowledged"].values()) <= {scoped}
    finally:
        receiver.close()
