"""A failing token request is reported as the token request (its path and status), not as the data endpoint."""
from __future__ import annotations

import pytest

from connectors.errors import FatalError
from tests.unit.connectors.test_client import client_for, get  # noqa: F401  (fixture)

TOKEN_PATH = "/api/v1/auth/token"
DATA_PATH = "/api/v1/notice/list"


def _failure(client) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(FatalError) as info:
        get(client)
    return str(info.value)


def test_refused_credentials_name_the_token_request(client_for) -> None:  # noqa: F811
    client, adapter, _ = client_for([("/auth/token", 401, {"error": "invalid_client"}, {})])
    message = _failure(client)
    assert "token request" in message and TOKEN_PATH in message and "HTTP 401" in message, message
    assert DATA_PATH not in message and "to act: configuration" in message
    adapter.assert_used()


def test_a_token_endpoint_that_keeps_failing_is_named_when_giving_up(client_for) -> None:  # noqa: F811
    client, adapter, _ = client_for([("/auth/token", 503, b"busy", {})] * 6)
    message = _failure(client)
    assert "gave up after 6 attempts" in message and "token request" in message and "HTTP 503" in message
    assert f"endpoint {TOKEN_PATH}" in message and DATA_PATH not in message, message
    adapter.assert_used()


def test_a_business_error_from_the_token_endpoint_names_it(client_for) -> None:  # noqa: F811
    client, adapter, _ = client_for([("/auth/token", 200, {"code": 40101, "msg": "invalid client very-secret-1"}, {})])
    message = _failure(client)
    assert "token request" in message and TOKEN_PATH in message and "40101" in message
    assert DATA_PATH not in message and "very-secret-1" not in message
    adapter.assert_used()


def test_data_endpoint_failures_still_name_the_data_endpoint(client_for) -> None:  # noqa: F811
    client, adapter, _ = client_for([("/auth/token", 200, {"code": 0, "data": {"accessToken": "t", "expiresIn": 60}},
                                      {})] + [("/notice/list", 502, b"x", {})] * 6)
    message = _failure(client)
    assert f"endpoint {DATA_PATH}" in message and "token request" not in message and "page 1" in message
