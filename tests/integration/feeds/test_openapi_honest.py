"""The OpenAPI says what the server does: no 422 it never sends, 404 for an unknown dataset, and a
``next_cursor`` that keeps the page's ``limit`` when followed alone (as the JSON body hands it over)."""

from __future__ import annotations

import pytest

from tests.integration.feeds.conftest import Api

pytestmark = pytest.mark.integration


def test_no_operation_documents_422_and_unknown_datasets_answer_the_documented_404(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (method, path)
            if "{dataset}" in path:
                assert "404" in operation["responses"], (method, path)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path in ("/v1/feeds/nope", "/v1/feeds/nope/deletes", "/v1/feeds/nope/schema", "/v1/feeds/nope/versions"):
        r = api.get(path)
        assert r.status_code == 404 and r.json()["error"] == "not_found", path


@pytest.mark.parametrize(("kind", "size"), [("", 2), ("/deletes", 1)])
def test_following_next_cursor_alone_keeps_the_page_size(api: Api, kind: str, size: int) -> None:
    whole = api.get(f"/v1/feeds/project{kind}").json()
    assert whole["next_cursor"] is None and whole["count"] > size  # the default page holds them all
    body = api.get(f"/v1/feeds/project{kind}?limit={size}").json()
    pages = [body["count"]]
    while body["next_cursor"]:
        body = api.get(f"/v1/feeds/project{kind}?cursor={body['next_cursor']}").json()  # no limit sent
        pages.append(body["count"])
    assert sum(pages) == whole["count"] and max(pages) == size and len(pages) >= 2
    first = api.get(f"/v1/feeds/project{kind}?limit={size}").json()
    assert api.get(f"/v1/feeds/project{kind}?cursor={first['next_cursor']}&limit={size + 1}").json()["count"] \
        == min(size + 1, whole["count"] - size)  # an explicit limit still wins
