"""HTTP contract of the Lingang sandbox: tokens, envelope, paging, updatedSince, errors, admin."""

from __future__ import annotations

import time

import pytest
import requests
from .conftest import CLIENT_ID, CLIENT_SECRET, get_token

from sandbox.lingang import MODULE_PATHS, MODULES


def _list(s: requests.Session, base: str, tok: str, module: str, **params: object) -> requests.Response:
    return s.get(f"{base}/api/v1/{MODULE_PATHS[module]}/list", params=params,
                 headers={"Authorization": f"Bearer {tok}"}, timeout=5)


def test_health_needs_no_auth(make_platform, session) -> None:
    _, base = make_platform()
    r = session.get(f"{base}/api/v1/health", timeout=5)
    assert r.status_code == 200
    assert r.json() == {"code": 0, "msg": "success", "data": {"status": "UP"}}


def test_token_form_and_json(make_platform, session) -> None:
    p, base = make_platform(token_ttl=7200)
    r = session.post(f"{base}/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, timeout=5)
    body = r.json()
    assert r.status_code == 200 and body["code"] == 0 and body["msg"] == "success"
    assert body["data"]["tokenType"] == "Bearer" and body["data"]["expiresIn"] == 7200
    assert len(body["data"]["accessToken"]) >= 16
    t2 = get_token(session, base, as_json=True)
    assert t2 != body["data"]["accessToken"]
    assert p.stats["tokens_issued"] == 2


@pytest.mark.parametrize("cid,secret", [(CLIENT_ID, "wrong"), ("other", CLIENT_SECRET), ("", "")])
def test_bad_credentials_are_http_200_code_40101(make_platform, session, cid, secret) -> None:
    _, base = make_platform()
    r = session.post(f"{base}/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": cid, "client_secret": secret}, timeout=5)
    assert r.status_code == 200
    assert r.json() == {"code": 40101, "msg": "客户端认证失败 invalid client", "data": None}


def test_missing_or_unknown_token_is_401_40103(make_platform, session) -> None:
    _, base = make_platform()
    r = session.get(f"{base}/api/v1/notice/list", timeout=5)
    assert r.status_code == 401 and r.json()["code"] == 40103 and r.json()["data"] is None
    r = _list(session, base, "made-up", "notices")
    assert r.status_code == 401 and r.json()["code"] == 40103


def test_expired_token_answers_both_ways(make_platform, session) -> None:
    _, base = make_platform(token_ttl=0.3)
    tok = get_token(session, base)
    assert _list(session, base, tok, "notices").json()["code"] == 0
    time.sleep(0.4)
    seen = set()
    for _ in range(4):
        r = _list(session, base, tok, "notices")
        assert r.json() == {"code": 40102, "msg": "令牌已过期 token expired", "data": None}
        seen.add(r.status_code)
    assert seen == {200, 401}
    assert _list(session, base, get_token(session, base), "notices").json()["code"] == 0


def test_envelope_paging_and_silent_cap(make_platform, session) -> None:
    p, base = make_platform(scale=0.3, page_cap=500)
    tok = get_token(session, base)
    truth = p.records("talent_demands")
    assert len(truth) == 1500
    r = _list(session, base, tok, "talent_demands")
    body = r.json()
    assert r.headers["Content-Type"].startswith("application/json")
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert body["code"] == 0 and body["msg"] == "success" and body["data"]["total"] == 1500
    assert body["data"]["list"] == truth[:20]  # pageSize defaults to 20
    r = _list(session, base, tok, "talent_demands", page=1, pageSize=1000).json()
    assert len(r["data"]["list"]) == 500 and r["data"]["total"] == 1500 and set(r["data"]) == {"total", "list"}
    # offset uses the capped size: page 2 of "1000" is records 500..999
    assert _list(session, base, tok, "talent_demands", page=2, pageSize=1000).json()["data"]["list"] == truth[500:1000]
    got = []
    for page in range(1, 20):
        lst = _list(session, base, tok, "talent_demands", page=page, pageSize=333).json()["data"]["list"]
        got += lst
        if len(lst) < 333:
            break
    assert got == truth
    beyond = _list(session, base, tok, "talent_demands", page=99, pageSize=100).json()
    assert beyond == {"code": 0, "msg": "success", "data": {"total": 1500, "list": []}}


def test_every_module_path(make_platform, session) -> None:
    p, base = make_platform()
    tok = get_token(session, base)
    for m in MODULES:
        body = _list(session, base, tok, m, pageSize=500).json()
        assert body["data"]["list"] == p.records(m)
        assert body["data"]["total"] == len(p.records(m))


def test_updated_since_inclusive_and_ordered(make_platform, session) -> None:
    p, base = make_platform(scale=0.2)
    tok = get_token(session, base)
    truth = p.records("cooperations")
    pivot = truth[len(truth) // 2]["updateTime"]
    expected = [r for r in truth if r["updateTime"] >= pivot]
    body = _list(session, base, tok, "cooperations", pageSize=500, updatedSince=pivot).json()
    assert body["data"]["total"] == len(expected)
    assert body["data"]["list"] == expected
    assert body["data"]["list"][0]["updateTime"] == pivot  # inclusive
    keys = [(r["updateTime"], r["id"]) for r in body["data"]["list"]]
    assert keys == sorted(keys)
    future = _list(session, base, tok, "cooperations", updatedSince="2030-01-01 00:00:00").json()
    assert future["data"] == {"total": 0, "list": []}


@pytest.mark.parametrize("params,which", [
    ({"page": "abc"}, "page"), ({"page": 0}, "page"), ({"page": -1}, "page"), ({"pageSize": "x"}, "pageSize"),
    ({"pageSize": 0}, "pageSize"), ({"pageSize": "1.5"}, "pageSize"), ({"updatedSince": "2025-01-01"}, "updatedSince"),
    ({"updatedSince": "2025-02-30 00:00:00"}, "updatedSince"), ({"updatedSince": "yesterday"}, "updatedSince"),
])
def test_parameter_errors_are_http_200_code_40001(make_platform, session, params, which) -> None:
    _, base = make_platform()
    r = _list(session, base, get_token(session, base), "notices", **params)
    assert r.status_code == 200
    assert r.json() == {"code": 40001, "msg": f"参数错误: {which}", "data": None}


def test_unknown_path_is_404_envelope(make_platform, session) -> None:
    _, base = make_platform()
    tok = get_token(session, base)
    r = session.get(f"{base}/api/v1/students/list", headers={"Authorization": f"Bearer {tok}"}, timeout=5)
    assert r.status_code == 404 and r.json()["code"] == 40400 and r.json()["data"] is None


def test_keep_alive_single_connection(make_platform) -> None:
    import http.client
    p, base = make_platform()
    port = int(base.rsplit(":", 1)[1])
    s = requests.Session()
    tok = get_token(s, base)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for page in range(1, 6):
        conn.request("GET", f"/api/v1/notice/list?page={page}&pageSize=10", headers={"Authorization": f"Bearer {tok}"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Connection") == "keep-alive"
        resp.read()
    sock = conn.sock
    assert sock is not None  # still the same open socket after 5 requests
    conn.close()


def test_mutate_over_http_and_soft_deletes_listed(make_platform, session) -> None:
    p, base = make_platform(scale=0.2)
    tok = get_token(session, base)
    before = p.records("talent_supplies")
    newest = before[-1]["updateTime"]
    r = session.post(f"{base}/sandbox/mutate", json={"changed": 0.05, "seed": 3}, timeout=10)
    counts = r.json()
    assert set(counts) == set(MODULES) and counts["talent_supplies"]["soft_deleted"] > 0
    body = _list(session, base, tok, "talent_supplies", pageSize=500, updatedSince=newest).json()["data"]
    changed = [x for x in body["list"] if x["updateTime"] > newest]
    c = counts["talent_supplies"]
    assert len(changed) == c["updated"] + c["inserted"] + c["soft_deleted"]
    assert sum(x["isDeleted"] for x in changed) == c["soft_deleted"]
    stats = session.get(f"{base}/sandbox/stats", timeout=5).json()
    assert stats["requests"] >= 3 and stats["records_served"] >= len(body["list"]) and stats["tokens_issued"] == 1
