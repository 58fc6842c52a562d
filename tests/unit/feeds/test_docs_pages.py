"""The feed API's /docs and /redoc load nothing from outside the hub, and still work offline."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feeds.app import create_app
from feeds.config import FeedConfig
from tests.unit.quality.test_docs_offline import URL_REFERENCE, outside_references

LOCAL_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["'](/[^/"'][^"']*)["']""")


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(FeedConfig(tmp_path)))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_no_outside_host(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    text = response.text
    assert outside_references(text) == [], URL_REFERENCE.findall(text)
    assert "fonts.googleapis" not in text and "cdn.jsdelivr" not in text
    assets = LOCAL_REFERENCE.findall(text)
    assert any(a.endswith(".js") for a in assets), text
    for asset in assets:  # every script and style the page needs is served by the hub itself
        got = client.get(asset)
        assert got.status_code == 200 and len(got.content) > 1000, asset


def test_swagger_ui_does_not_send_the_spec_to_the_public_validator(client: TestClient) -> None:
    text = client.get("/docs").text
    assert re.search(r'"validatorUrl":\s*null', text), text
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")  # the spec the local Swagger UI 5 reads


def test_the_data_dictionary_page_is_self_contained(tmp_path: Path) -> None:
    from warehouse.dictionary import write_dictionary

    page = next(p for p in write_dictionary(tmp_path) if p.suffix == ".html")
    assert outside_references(page.read_text(encoding="utf-8")) == []


def test_redoc_bundle_is_served_without_its_cdn_logo(client: TestClient) -> None:
    from feeds.docs_pages import REDOC_LOGO

    script = re.search(r'<script src="([^"]*redoc[^"]*\.js)"', client.get("/redoc").text).group(1)
    bundle = client.get(script)
    assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
    assert len(bundle.content) > 100_000 and REDOC_LOGO not in bundle.text  # the sidebar's logo came from a CDN
