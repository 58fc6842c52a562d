"""Security: the key × district × dataset matrix, 401/403/429/503, hostile input never gives a 5xx."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from feeds.app import create_app
from feeds.audit import AuditLog
from feeds.config import FeedConfig
from feeds.datasets import DATASETS, ScopeRule
from feeds.keys import KeyStore
from tests.integration.feeds.conftest import Api
from tests.unit.feeds.feed_fixtures import DISTRICTS, FeedHome
from warehouse.publish import current_path

pytestmark = pytest.mark.integration

SCOPED = {**{d: frozenset({d}) for d in DISTRICTS}, "two": frozenset(DISTRICTS[:2])}


def read_all(api: Api, path: str, key: str) -> list[dict]:
    out, url = [], f"{path}?limit=7"
    while url:
        r = api.get(url, key=key)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["records"]
        url = f"{path}?cursor={body['next_cursor']}" if body["next_cursor"] else ""
    return out


def project_districts(home: Path) -> dict[tuple[str, str], str]:
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        return {(s, p): d for s, p, d in con.execute("select _source, project_id, district_code from core.project")
                .fetchall()}
    finally:
        con.close()


def count(home: Path, sql: str) -> int:
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        return con.execute(sql).fetchall()[0][0]
    finally:
        con.close()


@pytest.mark.parametrize("key", list(SCOPED))
def test_every_key_district_and_dataset_returns_no_foreign_row(api: Api, key: str) -> None:
    districts = SCOPED[key]
    owner = project_districts(api.config.home)
    codes = ", ".join(f"'{d}'" for d in sorted(districts))
    for name, ds in DATASETS.items():
        if ds.scope is ScopeRule.ALL_DISTRICTS_ONLY:
            for path in (f"/v1/feeds/{name}", f"/v1/feeds/{name}/deletes", f"/v1/feeds/{name}/versions",
                         f"/v1/feeds/{name}/schema"):
                assert api.get(path, key=key).status_code == 403, path
            continue
        rows = read_all(api, f"/v1/feeds/{name}", key)
        if ds.scope is ScopeRule.COLUMN:
            foreign = [r for r in rows if r["district_code"] not in districts]
            expected = count(api.config.home, f"select count(*) from core.{name} where district_code in ({codes})")
        else:
            foreign = [r for r in rows if owner.get((r["_source"], r["project_id"])) not in districts]
            expected = count(api.config.home, f"select count(*) from core.{name} t join core.project p "
                                              f"using (_source, project_id) where p.district_code in ({codes})")
        assert foreign == [], (key, name)
        assert len(rows) == expected, (key, name)  # and none of its own missing
        for tomb in read_all(api, f"/v1/feeds/{name}/deletes", key):
            assert tomb.get("district_code", next(iter(districts))) in districts


def test_districts_come_from_the_key_not_from_parameters(api: Api) -> None:
    r = api.get(f"/v1/feeds/project?district_code={DISTRICTS[1]}", key=DISTRICTS[0])
    assert r.status_code == 400 and "district_code" in r.json()["message"]


def test_datasets_out_of_scope_are_403(api: Api) -> None:
    assert api.get("/v1/feeds/project", key="projects_only").status_code == 200
    for name in ("trainee", "notice", "teacher"):
        r = api.get(f"/v1/feeds/{name}", key="projects_only")
        assert r.status_code == 403 and r.json()["error"] == "forbidden" and name in r.json()["message"]


@pytest.mark.parametrize("path", ["/v1/feeds", "/v1/feeds/project", "/v1/feeds/project/deletes",
                                  "/v1/feeds/project/versions", "/v1/feeds/project/schema"])
def test_unknown_expired_revoked_or_missing_keys_are_401(api: Api, path: str) -> None:
    token = api.tokens["all"]
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"},
                    {"Authorization": f"Bearer {token[:-2]}xx"}, {"Authorization": "Bearer iehub_0000000000000000.x"},
                    {"Authorization": f"Bearer {api.tokens['expired']}"},
                    {"Authorization": f"Bearer {api.tokens['revoked']}"}):
        r = api.client.get(path, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"] == "unauthorized" and token.split(".")[1] not in r.text
        assert r.headers["www-authenticate"].startswith("Bearer")


INJECTIONS = ["' OR '1'='1", "1; DROP TABLE core.project; --", "../../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd",
              "%00", "\x00", "${jndi:ldap://x}", "<script>alert(1)</script>", "district_code) OR (1=1",
              "title FROM core.teacher --", "9" * 400, "-1", "1e9", "NaN", "张三", "*", ",", "\"", "\\", "a" * 5000]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_hostile_values_in_every_parameter_get_4xx_never_5xx(api: Api, payload: str) -> None:
    from urllib.parse import quote

    q = quote(payload, safe="")
    urls = [f"/v1/feeds/{q}", f"/v1/feeds/{q}/deletes", f"/v1/feeds/{q}/versions", f"/v1/feeds/{q}/schema",
            f"/v1/feeds/project?min_change_version={q}", f"/v1/feeds/project?max_change_version={q}",
            f"/v1/feeds/project?limit={q}", f"/v1/feeds/project?cursor={q}", f"/v1/feeds/project?fields={q}",
            f"/v1/feeds/project?fields=title,{q}", f"/v1/feeds/project?format={q}",
            f"/v1/feeds/project/deletes?cursor={q}", f"/v1/feeds/project?{q}=1"]
    for url in urls:
        r = api.get(url)
        assert 400 <= r.status_code < 500, (url, r.status_code, r.text[:200])
        if r.headers.get("content-type", "").startswith("application/json"):
            assert set(r.json()) == {"error", "message"}
    for header in ("Accept", "If-None-Match"):
        safe = payload.encode("latin-1", "replace").decode("latin-1").replace("\x00", "")
        r = api.get("/v1/feeds/project?limit=1", headers={header: safe})
        assert r.status_code in (200, 304, 406), (header, r.status_code)
    r = api.client.get("/v1/feeds/project", headers={"Authorization": f"Bearer {q[:300]}"})
    assert r.status_code == 401


def test_bad_parameters_say_which_and_why(api: Api) -> None:
    cases = {
        "/v1/feeds/project?limit=0": "limit",
        "/v1/feeds/project?limit=10001": "limit",
        "/v1/feeds/project?min_change_version=-1": "min_change_version",
        "/v1/feeds/project?min_change_version=9&max_change_version=3": "greater than",
        "/v1/feeds/project?fields=title,nope": "'nope'",
        "/v1/feeds/project?fields=title,,budget_amount": "empty entries",
        "/v1/feeds/project?limit=5&limit=6": "more than once",
        "/v1/feeds/project?format=xml": "format",
        "/v1/feeds/project/deletes?fields=title": "unknown query parameter",
    }
    for url, needle in cases.items():
        r = api.get(url)
        assert r.status_code == 400, url
        assert r.json()["error"] == "bad_parameter" and needle in r.json()["message"], (url, r.json())
    for url in ("/v1/feeds/nope", "/v1/feeds/nope/versions", "/v1/feeds/project_report"):  # 404, as documented
        r = api.get(url)
        assert r.status_code == 404 and r.json()["error"] == "not_found" and "dataset" in r.json()["message"], url
    assert api.get("/v1/feeds/project", headers={"Accept": "application/xml"}).status_code == 406


def test_cursors_cannot_cross_datasets_kinds_or_keys(api: Api) -> None:
    body = api.get("/v1/feeds/project?limit=2").json()
    nxt = body["next_cursor"]
    for url, key in ((f"/v1/feeds/notice?cursor={nxt}", "all"), (f"/v1/feeds/project/deletes?cursor={nxt}", "all"),
                     (f"/v1/feeds/project?cursor={nxt}", DISTRICTS[0]), (f"/v1/feeds/project?cursor={nxt}", "personal"),
                     (f"/v1/feeds/project?cursor={nxt[:-3]}abc", "all"),
                     (f"/v1/feeds/project?cursor={nxt}&min_change_version=0&max_change_version=1", "all"),
                     (f"/v1/feeds/project?cursor={nxt}&fields=title", "all")):
        r = api.get(url, key=key)
        assert r.status_code == 400, (url, key, r.text)
        assert "cursor" in r.json()["message"]
    assert api.get(f"/v1/feeds/project?cursor={nxt}&limit=9").status_code == 200  # limit may change mid-pass


def test_rate_limit_is_per_key_with_retry_after(built: FeedHome) -> None:
    config = FeedConfig(built.home, rate=0.5, burst=2)
    store = KeyStore(config.db_url, cache_seconds=0)
    first = store.create("ratelimited-a", None, None)[1]
    second = store.create("ratelimited-b", None, None)[1]
    with TestClient(create_app(config, keys=store), raise_server_exceptions=False) as client:
        codes = [client.get("/v1/feeds/project/versions", headers={"Authorization": f"Bearer {first}"})
                 for _ in range(3)]
        assert [c.status_code for c in codes] == [200, 200, 429]
        assert codes[2].json()["error"] == "rate_limited" and int(codes[2].headers["retry-after"]) >= 1
        assert client.get("/v1/feeds/project/versions",
                          headers={"Authorization": f"Bearer {second}"}).status_code == 200
    store.dispose()


def test_no_data_leaves_when_the_audit_row_cannot_be_written(built: FeedHome, tmp_path: Path) -> None:
    config = FeedConfig(built.home)
    store = KeyStore(config.db_url, cache_seconds=0)
    token = store.create("audit-broken", None, None, personal=True)[1]
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    audit = AuditLog(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE feed_audit"))
    engine.dispose()
    with TestClient(create_app(config, keys=store, audit=audit), raise_server_exceptions=False) as client:
        r = client.get("/v1/feeds/trainee?limit=5", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 503 and r.json()["error"] == "audit_unavailable"
        assert "张三丰" not in r.text and "31011519900101002X" not in r.text
        assert client.get("/v1/feeds/trainee/versions", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    store.dispose()
    audit.dispose()


def test_before_the_first_build_the_api_says_so(tmp_path: Path) -> None:
    config = FeedConfig(tmp_path / "empty")
    store = KeyStore(config.db_url, cache_seconds=0)
    token = store.create("early", None, None)[1]
    with TestClient(create_app(config, keys=store), raise_server_exceptions=False) as client:
        r = client.get("/v1/feeds/project", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 503 and "iehub build" in r.json()["message"]
    store.dispose()


def test_errors_never_contain_personal_data_or_the_key(api: Api) -> None:
    r = api.get("/v1/feeds/trainee?fields=name,张三丰")
    assert r.status_code == 400
    body = json.dumps(r.json(), ensure_ascii=False)
    assert api.tokens["all"] not in body and "31011519900101002X" not in body
