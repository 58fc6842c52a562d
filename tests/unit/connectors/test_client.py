"""The REST client's policy, against a scripted transport that fails when a script line is unused."""
from __future__ import annotations

from collections import deque
from typing import Any

import orjson
import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from connectors.errors import FatalError
from connectors.rest.client import RestClient
from connectors.spec import load_spec

TOKEN = {"code": 0, "msg": "success", "data": {"accessToken": "tok-1", "expiresIn": 3600}}
PAGE = {"code": 0, "msg": "success", "data": {"total": 1, "list": [{"id": "NT1"}]}}


class ScriptedAdapter(BaseAdapter):
    """Answers requests from a script: (path suffix, status, body|exception, headers)."""

    def __init__(self, script: list[tuple[str, int, Any, dict[str, str]]]) -> None:
        super().__init__()
        self.script = deque(script)
        self.seen: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert self.script, f"unexpected request {request.method} {request.url}"
        suffix, status, body, headers = self.script.popleft()
        assert request.path_url.split("?")[0].endswith(suffix), f"expected …{suffix}, got {request.path_url}"
        self.seen.append(request)
        if isinstance(body, Exception):
            raise body
        resp = requests.Response()
        resp.status_code = status
        resp._content = body if isinstance(body, bytes) else orjson.dumps(body)
        resp.headers = CaseInsensitiveDict(headers)
        resp.request, resp.url = request, request.url
        return resp

    def close(self) -> None:
        pass

    def assert_used(self) -> None:
        assert not self.script, f"scripted responses never used: {list(self.script)}"


@pytest.fixture
def client_for(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IEHUB_LINGANG_CLIENT_ID", "client-a")
    monkeypatch.setenv("IEHUB_LINGANG_CLIENT_SECRET", "very-secret-1")
    monkeypatch.setenv("IEHUB_LINGANG_BASE_URL", "http://platform.test")
    sleeps: list[float] = []

    def make(script):
        adapter = ScriptedAdapter(script)
        session = requests.Session()
        session.mount("http://", adapter)
        client = RestClient(load_spec("lingang_platform"), session=session, sleep=sleeps.append)
        return client, adapter, sleeps

    return make


def get(client: RestClient) -> dict:
    return client.get("/api/v1/notice/list", {"page": 1}, stream="notices", page=1)


def test_token_then_page(client_for) -> None:
    client, adapter, _ = client_for([("/auth/token", 200, TOKEN, {}), ("/notice/list", 200, PAGE, {})])
    assert get(client)["data"]["list"] == [{"id": "NT1"}]
    assert adapter.seen[1].headers["Authorization"] == "Bearer tok-1"
    assert b"client_secret=very-secret-1" in adapter.seen[0].body.encode() if isinstance(adapter.seen[0].body, str) \
        else b"client_secret=very-secret-1" in adapter.seen[0].body
    adapter.assert_used()


@pytest.mark.parametrize("expired", [
    (401, {"code": 40102, "msg": "令牌已过期 token expired"}),
    (200, {"code": 40102, "msg": "令牌已过期 token expired"}),
])
def test_expired_token_is_refreshed_in_both_forms(client_for, expired) -> None:
    status, body = expired
    client, adapter, _ = client_for([("/auth/token", 200, TOKEN, {}), ("/notice/list", status, body, {}),
                                     ("/auth/token", 200, TOKEN, {}), ("/notice/list", 200, PAGE, {})])
    assert get(client) == PAGE
    assert client.stats.token_refreshes == 2
    adapter.assert_used()


def test_transient_failures_are_retried_with_retry_after(client_for) -> None:
    client, adapter, sleeps = client_for([
        ("/auth/token", 503, b"<html>busy</html>", {}), ("/auth/token", 200, TOKEN, {}),
        ("/notice/list", 429, {"code": 429}, {"Retry-After": "2"}),
        ("/notice/list", 200, b'{"code":0,"msg":"success","data":{"total":1,"li', {}),
        ("/notice/list", 0, requests.ConnectionError("reset by peer"), {}),
        ("/notice/list", 0, requests.ReadTimeout("slow"), {}),
        ("/notice/list", 200, PAGE, {}),
    ])
    assert get(client) == PAGE
    assert 2.0 in sleeps
    assert client.stats.retries == 5
    adapter.assert_used()


def test_gbk_body_is_decoded(client_for) -> None:
    body = '{"code":0,"msg":"成功","data":{"total":1,"list":[{"id":"NT1","title":"临港通知"}]}}'.encode("gbk")
    client, adapter, _ = client_for([("/auth/token", 200, TOKEN, {}), ("/notice/list", 200, body, {})])
    assert get(client)["data"]["list"][0]["title"] == "临港通知"


def test_gives_up_with_a_clear_error(client_for) -> None:
    client, adapter, _ = client_for([("/auth/token", 200, TOKEN, {})] + [("/notice/list", 502, b"bad gateway", {})] * 6)
    with pytest.raises(FatalError) as info:
        get(client)
    message = str(info.value)
    assert "gave up after 6 attempts" in message and "HTTP 502" in message
    assert "source lingang_platform" in message and "/api/v1/notice/list" in message and "page 1" in message
    adapter.assert_used()


def test_bad_credentials_are_fatal_and_masked(client_for) -> None:
    client, adapter, _ = client_for([
        ("/auth/token", 200, {"code": 40101, "msg": "客户端认证失败 very-secret-1 invalid client"}, {})])
    with pytest.raises(FatalError) as info:
        get(client)
    assert "40101" in str(info.value) and "very-secret-1" not in str(info.value)
    adapter.assert_used()


def test_parameter_error_is_not_retried(client_for) -> None:
    client, adapter, _ = client_for([("/auth/token", 200, TOKEN, {}),
                                     ("/notice/list", 200, {"code": 40001, "msg": "参数错误: pageSize"}, {})])
    with pytest.raises(FatalError, match="40001"):
        get(client)
    assert client.stats.retries == 0


def test_retry_budget_bounds_a_whole_pass(client_for, monkeypatch: pytest.MonkeyPatch) -> None:
    client, adapter, _ = client_for([("/auth/token", 200, TOKEN, {})] + [("/notice/list", 500, b"x", {})] * 3)
    client.spec = client.spec.model_copy(update={"http": client.spec.http.model_copy(update={"retry_budget": 2})})
    with pytest.raises(FatalError, match="retry budget of 2"):
        get(client)
