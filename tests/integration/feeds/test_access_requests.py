"""The access-request life cycle for 有条件共享 data, and 不予共享 data never leaving the hub.

A district platform's key reads unconditional datasets only; it files a request for trainees
through the API, the request goes overdue, an approver approves it with an expiry through the
CLI, the key reads trainees of its district, the approval expires and the key is refused again;
a second request is rejected with a reason. Every step is in the audit chain, which verifies.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from feeds.app import create_app
from feeds.audit import AuditLog
from feeds.config import FeedConfig
from feeds.export import ExportError, export
from feeds.keys import KeyStore
from feeds.sharing import AccessStore, servable
from iehub.cli import main
from tests.unit.feeds.feed_fixtures import DISTRICTS, FeedHome, make_feed_home
from warehouse.catalog import Catalog

pytestmark = pytest.mark.integration

YANGPU = DISTRICTS[1]  # 310110


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedHome]:
    home = tmp_path_factory.mktemp("access") / "home"
    catalog = Catalog.for_home(home)
    yield make_feed_home(home, catalog)
    catalog.dispose()


@pytest.fixture
def world(built: FeedHome, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, FeedConfig, KeyStore]]:
    for name in ("IEHUB_FEEDS_DB_URL", "IEHUB_FEED_SECRET", "IEHUB_ACCESS_DECISION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    config = FeedConfig(built.home, rate=10_000.0, burst=10_000)
    keys = KeyStore(config.db_url, cache_seconds=0)
    audit = AuditLog.from_config(config)
    access = AccessStore(config.db_url, audit=audit, cache_seconds=0)
    client = TestClient(create_app(config, keys=keys, audit=audit, access=access), raise_server_exceptions=False)
    with client:
        yield client, config, keys
    access.dispose()
    keys.dispose()
    audit.dispose()


def iehub(home: Path, *args: str):  # -> click.testing.Result
    return CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)


def _sql(config: FeedConfig, statement: str, **params: object) -> None:
    engine = sa.create_engine(config.db_url)
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)
    engine.dispose()


def test_request_overdue_approve_use_expire_and_reject(world: tuple[TestClient, FeedConfig, KeyStore]) -> None:
    client, config, keys = world
    _, token = keys.create("杨浦区产教融合平台", ["notice", "project"], [YANGPU])
    auth = {"Authorization": f"Bearer {token}"}
    refused = client.get("/v1/feeds/trainee", headers=auth)
    assert refused.status_code == 403 and "有条件共享" in refused.json()["message"]
    listed = [d["identifier"] for d in client.get("/v1/feeds", headers=auth).json()["datasets"]]
    assert listed == ["project", "notice"]

    filed = client.post("/v1/access-requests", headers=auth,
                        json={"datasets": ["trainee"], "purpose": "学员就业跟踪统计（区人社局）"})
    assert filed.status_code == 201, filed.text
    request_id = filed.json()["request_id"]
    assert filed.json()["status"] == "pending" and filed.json()["districts"] == [YANGPU]
    assert client.get("/v1/feeds/trainee", headers=auth).status_code == 403  # pending grants nothing
    bad = client.post("/v1/access-requests", headers=auth, json={"datasets": ["project_report"], "purpose": "项目监督检查"})
    assert bad.status_code == 400 and "不予共享" in bad.json()["message"]

    fresh = iehub(config.home, "access", "list")
    assert fresh.exit_code == 0 and "pending" in fresh.stdout and "OVERDUE" not in fresh.stdout
    _sql(config, "UPDATE access_requests SET requested_at = :t WHERE request_id = :i",
         t=datetime.now(timezone.utc) - timedelta(days=11), i=request_id)
    late = iehub(config.home, "access", "list")
    assert late.exit_code == 0 and "OVERDUE" in late.stdout and "1 overdue (> 10 days" in late.stdout

    approved = iehub(config.home, "access", "approve", str(request_id), "--reason", "用途明确，范围限本区",
                     "--expires-days", "30")
    assert approved.exit_code == 0, approved.output
    again = iehub(config.home, "access", "approve", str(request_id), "--reason", "再批")
    assert again.exit_code == 1 and "already approved" in again.stderr
    page = client.get("/v1/feeds/trainee?limit=100", headers=auth)
    assert page.status_code == 200, page.text
    rows = page.json()["records"]
    assert rows and {r["district_code"] for r in rows} == {YANGPU}  # within the key's and the request's districts
    assert all(r["name"] != "张三丰" for r in rows)  # still masked: an approval is no personal grant
    catalogue = client.get("/v1/feeds", headers=auth).json()["datasets"]
    trainee = next(d for d in catalogue if d["identifier"] == "trainee")
    assert trainee["shareClass"] == {"code": "conditional", "zh": "有条件共享", "en": "conditional"}
    mine = client.get("/v1/access-requests", headers=auth).json()
    assert [(r["request_id"], r["status"]) for r in mine] == [(request_id, "approved")]
    expires = datetime.fromisoformat(mine[0]["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(timezone.utc) <= timedelta(days=30)

    _sql(config, "UPDATE access_requests SET expires_at = :t WHERE request_id = :i",
         t=datetime.now(timezone.utc) - timedelta(seconds=1), i=request_id)  # thirty days later
    assert client.get("/v1/feeds/trainee", headers=auth).status_code == 403
    assert "trainee" not in [d["identifier"] for d in client.get("/v1/feeds", headers=auth).json()["datasets"]]
    assert client.get("/v1/access-requests", headers=auth).json()[0]["status"] == "expired"

    second = client.post("/v1/access-requests", headers=auth,
                         json={"datasets": ["teacher"], "districts": [YANGPU], "purpose": "师资库对接"}).json()
    rejected = iehub(config.home, "access", "reject", str(second["request_id"]), "--reason", "teacher 无区县，区级平台不可申请")
    assert rejected.exit_code == 0, rejected.output
    theirs = client.get("/v1/access-requests", headers=auth).json()
    assert theirs[1]["status"] == "rejected" and theirs[1]["reason"].startswith("teacher 无区县")
    assert client.get("/v1/feeds/teacher", headers=auth).status_code == 403

    log = AuditLog.from_config(config, read_only=True)
    try:
        assert log.verify().ok
    finally:
        log.dispose()
    engine = sa.create_engine(config.db_url)
    with engine.connect() as conn:
        steps = conn.execute(sa.text("SELECT endpoint, params FROM feed_audit WHERE dataset = 'access' "
                                     "ORDER BY seq")).all()
    engine.dispose()
    assert [s.endpoint for s in steps] == ["access.request", "access.approve", "access.request", "access.reject"]
    assert all("学员就业" not in s.params and "用途明确" not in s.params for s in steps)  # digests, not the text


def test_keys_create_grants_conditional_data_only_against_an_approved_request(
        world: tuple[TestClient, FeedConfig, KeyStore]) -> None:
    client, config, keys = world
    home = config.home
    refused = iehub(home, "keys", "create", "--consumer", "闵行区平台", "--datasets", "trainee,project",
                    "--districts", "310112")
    assert refused.exit_code == 1 and "有条件共享" in refused.stderr and "--approved-request" in refused.stderr
    assert refused.stdout == ""
    everything = iehub(home, "keys", "create", "--consumer", "闵行区平台", "--datasets", "all", "--districts", "all")
    assert everything.exit_code == 1 and "teacher, trainee" in everything.stderr  # 'all' holds conditional data
    never = iehub(home, "keys", "create", "--consumer", "闵行区平台", "--datasets", "project_report",
                  "--districts", "310112")
    assert never.exit_code == 1 and "不予共享" in never.stderr
    filed = iehub(home, "access", "request", "--consumer", "闵行区平台", "--datasets", "trainee",
                  "--districts", "310112", "--purpose", "实习学员保险登记")
    assert filed.exit_code == 0, filed.output
    request_id = filed.stdout.strip()
    pending = iehub(home, "keys", "create", "--consumer", "闵行区平台", "--datasets", "trainee", "--districts",
                    "310112", "--approved-request", request_id)
    assert pending.exit_code == 1 and "pending, not approved" in pending.stderr
    assert iehub(home, "access", "approve", request_id, "--reason", "合规", "--expires-days", "7").exit_code == 0
    wider = iehub(home, "keys", "create", "--consumer", "闵行区平台", "--datasets", "trainee", "--districts",
                  "310112,310110", "--approved-request", request_id)
    assert wider.exit_code == 1 and "asks for more" in wider.stderr
    other = iehub(home, "keys", "create", "--consumer", "别的平台", "--datasets", "trainee", "--districts", "310112",
                  "--approved-request", request_id)
    assert other.exit_code == 1 and "is for '闵行区平台'" in other.stderr
    issued = iehub(home, "keys", "create", "--consumer", "闵行区平台", "--datasets", "trainee,project",
                   "--districts", "310112", "--approved-request", request_id)
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    grant = keys.authenticate(token)
    assert grant.expires_at is not None and grant.expires_at - datetime.now(timezone.utc) <= timedelta(days=7)
    page = client.get("/v1/feeds/trainee", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200 and {r["district_code"] for r in page.json()["records"]} == {"310112"}


def test_not_shared_data_never_leaves_by_pull_push_or_export(world: tuple[TestClient, FeedConfig, KeyStore],
                                                              tmp_path: Path) -> None:
    client, config, keys = world
    assert not servable("project_report")
    _, token = keys.create("市级平台", None, None, personal=True)  # every dataset, every district, personal
    auth = {"Authorization": f"Bearer {token}"}
    for path in ("/v1/feeds/project_report", "/v1/feeds/project_report/deletes", "/v1/feeds/project_report/versions",
                 "/v1/feeds/project_report/schema"):
        r = client.get(path, headers=auth)
        assert r.status_code == 404 and r.json()["error"] == "not_found", path
    assert "project_report" not in [d["identifier"] for d in client.get("/v1/feeds", headers=auth).json()["datasets"]]
    spec = client.get("/openapi.json").json()
    assert "project_report" not in str(spec)
    # push: a subscription cannot name it, and what one on an 'all' key receives never holds it
    from feeds.sharing import effective_grant, served_datasets
    from feeds.subscriptions import SubscriptionError, SubscriptionStore

    assert "project_report" not in served_datasets()
    assert effective_grant(keys.authenticate(token), "project_report") is None
    subscriptions = SubscriptionStore(config.db_url, config.secret(), keys)
    try:
        key = keys.get(keys.authenticate(token).key_id)
        with pytest.raises(SubscriptionError, match="project_report"):
            subscriptions.create(key, "http://127.0.0.1:9/hook", ["project_report"])
        every, _ = subscriptions.create(key, "http://127.0.0.1:9/hook")
        assert "project_report" not in subscriptions.readable(key, None) and "trainee" in subscriptions.readable(key, None)
        assert every.datasets is None  # 'all' — and still nothing 不予共享 reaches it
    finally:
        subscriptions.dispose()
    # export: named, refused; by default, left out
    with pytest.raises(ExportError, match="不予共享"):
        export(config.home, ["project_report"], tmp_path / "out", secret=config.secret())
    done = export(config.home, None, tmp_path / "all", secret=config.secret())
    assert "project_report" not in {r.dataset for r in done} and not list((tmp_path / "all").glob("project_report*"))
    cli = iehub(config.home, "export", "project_report", "--out", str(tmp_path / "cli"))
    assert cli.exit_code == 1 and "不予共享" in cli.stderr


def test_a_field_declared_not_shared_is_in_no_page_schema_or_export(built: FeedHome, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from schemas import ENTITIES

    project = ENTITIES["project"]
    withheld = tuple(dataclasses.replace(f, share_class="not_shared") if f.name == "budget_amount" else f
                     for f in project.fields)
    monkeypatch.setitem(ENTITIES, "project", dataclasses.replace(project, fields=withheld))
    for name in ("IEHUB_FEEDS_DB_URL", "IEHUB_FEED_SECRET"):
        monkeypatch.delenv(name, raising=False)
    config = FeedConfig(built.home, rate=10_000.0, burst=10_000)
    keys = KeyStore(config.db_url, cache_seconds=0)
    _, token = keys.create("市级平台", ["project"], None, personal=True)
    auth = {"Authorization": f"Bearer {token}"}
    client = TestClient(create_app(config, keys=keys), raise_server_exceptions=False)
    with client:
        page = client.get("/v1/feeds/project?limit=5", headers=auth).json()
        assert page["records"] and all("budget_amount" not in r for r in page["records"])
        asked = client.get("/v1/feeds/project?fields=title,budget_amount", headers=auth)
        assert asked.status_code == 400 and "budget_amount" in asked.json()["message"]
        schema = client.get("/v1/feeds/project/schema", headers=auth).json()
        assert "budget_amount" not in [f["name"] for f in schema["fields"]] and "title" in [f["name"] for f in schema["fields"]]
    done = export(config.home, ["project"], tmp_path / "out", secret=config.secret(), personal=True)
    assert "budget_amount" not in (done[0].directory / "project.csv").read_text(encoding="utf-8").splitlines()[0]
    keys.dispose()
