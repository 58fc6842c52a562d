"""Fixtures for the feed API tests: a built home shared per module, keys of several scopes, a client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feeds.app import create_app
from feeds.config import FeedConfig
from feeds.keys import KeyStore
from tests.unit.feeds.feed_fixtures import DISTRICTS, FeedHome, make_feed_home
from warehouse.catalog import Catalog


@dataclass
class Api:
    """A running app (TestClient), its config, home and named keys."""

    client: TestClient
    config: FeedConfig
    fh: FeedHome
    tokens: dict[str, str]
    store: KeyStore

    def get(self, path: str, key: str = "all", **kwargs):  # type: ignore[no-untyped-def]
        headers = dict(kwargs.pop("headers", {}) or {})
        if key:
            headers["Authorization"] = f"Bearer {self.tokens[key]}"
        return self.client.get(path, headers=headers, **kwargs)


def make_keys(store: KeyStore) -> dict[str, str]:
    """Keys: every scope the API must tell apart."""
    tokens = {}
    tokens["all"] = store.create("municipal-platform", None, None)[1]
    tokens["personal"] = store.create("municipal-hr", None, None, personal=True)[1]
    for district in DISTRICTS:
        tokens[district] = store.create(f"district-{district}", None, [district])[1]
    tokens["two"] = store.create("two-districts", None, [DISTRICTS[0], DISTRICTS[1]])[1]
    tokens["projects_only"] = store.create("projects-only", ["project", "project_participant"], None)[1]
    tokens["expired"] = store.create("expired", None, None, expires_in=timedelta(microseconds=1))[1]
    grant, tokens["revoked"] = store.create("revoked", None, None)
    store.revoke(grant.key_id)
    return tokens


def open_api(home: Path, fh: FeedHome, **config: object) -> Api:
    settings: dict[str, object] = {"rate": 10_000.0, "burst": 10_000, **config}
    cfg = FeedConfig(home, **settings)  # type: ignore[arg-type]
    store = KeyStore(cfg.db_url, cache_seconds=0)
    tokens = make_keys(store)
    client = TestClient(create_app(cfg, keys=store), raise_server_exceptions=False)
    return Api(client, cfg, fh, tokens, store)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedHome]:
    """One built home per test module (read-only tests share it)."""
    home = tmp_path_factory.mktemp("feeds") / "home"
    catalog = Catalog.for_home(home)
    yield make_feed_home(home, catalog)
    catalog.dispose()


@pytest.fixture(scope="module")
def api(built: FeedHome) -> Iterator[Api]:
    a = open_api(built.home, built)
    with a.client:
        yield a
    a.store.dispose()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Api]:
    """A home of its own, for tests that land, build and publish while they read."""
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    fh = make_feed_home(home, catalog)
    a = open_api(home, fh)
    with a.client:
        yield a
    a.store.dispose()
    catalog.dispose()
