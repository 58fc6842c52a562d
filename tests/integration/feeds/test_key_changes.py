"""Key changes: a project renumbered at a source with a stable surrogate is a rename, not a delete + insert.

The district system keys its rows on an internal id (the spec's primary_key, landed as
``_source_key``) while the natural key is the 项目编号 it shows, which it renumbers. The build
records the rename in ``core._key_changes``; the old key leaves core without a tombstone; the
feed serves ``/v1/feeds/project/keyChanges`` (old and new key values, change version) scoped by
district; a rebuild from the lake gives the same warehouse.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from feeds.app import create_app
from feeds.config import FeedConfig
from feeds.keys import KeyStore
from tests.unit.feeds.feed_fixtures import land_rows, project
from warehouse.build import build
from warehouse.catalog import Catalog
from warehouse.publish import current_path

pytestmark = pytest.mark.integration

SOURCE = "district_jiading"


def _rows(home: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def renamed(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    try:
        first = [{**project(1, "310114"), "project_id": "JD-2024-001", "internal": "9001"},
                 {**project(2, "310114"), "project_id": "JD-2024-002", "internal": "9002"},
                 {**project(3, "310110"), "project_id": "YP-2024-003", "internal": "9003"}]
        land_rows(home, catalog, SOURCE, "project", "w1", first, source_key="internal")
        build(home, catalog)
        second = [{**first[0], "project_id": "JD-2025-101", "title": "产教融合协同育人项目1（续）"},  # renumbered
                  {**first[2], "project_id": "YP-2025-103"}]
        land_rows(home, catalog, SOURCE, "project", "w2", second, source_key="internal")
        build(home, catalog)
        yield home
    finally:
        catalog.dispose()


def test_the_build_records_a_rename_and_keeps_no_ghost_and_no_tombstone(renamed: Path) -> None:
    live = sorted(r[0] for r in _rows(renamed, "SELECT project_id FROM core.project"))
    assert live == ["JD-2024-002", "JD-2025-101", "YP-2025-103"]
    changes = _rows(renamed, "SELECT entity, old_key, new_key, change_version, _source_key, district_code "
                             "FROM core._key_changes ORDER BY change_version")
    assert [(c[0], c[1], c[2], c[4], c[5]) for c in changes] == [
        ("project", '{"_source":"district_jiading","project_id":"JD-2024-001"}',
         '{"_source":"district_jiading","project_id":"JD-2025-101"}', "9001", "310114"),
        ("project", '{"_source":"district_jiading","project_id":"YP-2024-003"}',
         '{"_source":"district_jiading","project_id":"YP-2025-103"}', "9003", "310110")]
    new_versions = dict(_rows(renamed, "SELECT project_id, change_version FROM core.project"))
    assert [c[3] for c in changes] == [new_versions["JD-2025-101"], new_versions["YP-2025-103"]]
    assert _rows(renamed, "SELECT count(*) FROM core._tombstones WHERE entity = 'project'") == [(0,)]
    history = _rows(renamed, "SELECT project_id, valid_to IS NULL FROM core.project_history ORDER BY 1")
    assert ("JD-2024-001", False) in history and ("JD-2025-101", True) in history


def test_a_rebuild_from_the_lake_gives_the_same_key_changes(renamed: Path) -> None:
    before = _rows(renamed, "SELECT entity, old_key, new_key, _source_key FROM core._key_changes ORDER BY old_key")
    live = _rows(renamed, "SELECT project_id FROM core.project ORDER BY 1")
    catalog = Catalog.for_home(renamed)
    try:
        build(renamed, catalog, full=True)
    finally:
        catalog.dispose()
    assert _rows(renamed, "SELECT entity, old_key, new_key, _source_key FROM core._key_changes ORDER BY old_key") \
        == before
    assert _rows(renamed, "SELECT project_id FROM core.project ORDER BY 1") == live
    assert _rows(renamed, "SELECT count(*) FROM core._tombstones WHERE entity = 'project'") == [(0,)]


def test_the_feed_serves_key_changes_scoped_by_district(renamed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IEHUB_FEEDS_DB_URL", "IEHUB_FEED_SECRET"):
        monkeypatch.delenv(name, raising=False)
    config = FeedConfig(renamed, rate=10_000.0, burst=10_000)
    keys = KeyStore(config.db_url, cache_seconds=0)
    _, everyone = keys.create("市级平台", ["project"], None)
    _, jiading = keys.create("嘉定区平台", ["project"], ["310114"])
    client = TestClient(create_app(config, keys=keys), raise_server_exceptions=False)
    with client:
        body = client.get("/v1/feeds/project/keyChanges", headers={"Authorization": f"Bearer {everyone}"}).json()
        assert [(r["oldKeyValues"], r["newKeyValues"]) for r in body["records"]] == [
            ({"_source": SOURCE, "project_id": "JD-2024-001"}, {"_source": SOURCE, "project_id": "JD-2025-101"}),
            ({"_source": SOURCE, "project_id": "YP-2024-003"}, {"_source": SOURCE, "project_id": "YP-2025-103"})]
        assert all(isinstance(r["change_version"], int) for r in body["records"])
        first = client.get("/v1/feeds/project/keyChanges?limit=1",
                           headers={"Authorization": f"Bearer {everyone}"}).json()
        assert first["count"] == 1 and first["next_cursor"]
        rest = client.get(f"/v1/feeds/project/keyChanges?cursor={first['next_cursor']}",
                          headers={"Authorization": f"Bearer {everyone}"}).json()
        assert [r["newKeyValues"]["project_id"] for r in rest["records"]] == ["YP-2025-103"]
        assert rest["next_cursor"] is None
        district = client.get("/v1/feeds/project/keyChanges", headers={"Authorization": f"Bearer {jiading}"}).json()
        assert [r["newKeyValues"]["project_id"] for r in district["records"]] == ["JD-2025-101"]
        deletes = client.get("/v1/feeds/project/deletes", headers={"Authorization": f"Bearer {everyone}"}).json()
        assert deletes["count"] == 0  # a rename is not a delete
        since = body["records"][0]["change_version"]
        later = client.get(f"/v1/feeds/project/keyChanges?min_change_version={since + 1}",
                           headers={"Authorization": f"Bearer {everyone}"}).json()
        assert [r["newKeyValues"]["project_id"] for r in later["records"]] == ["YP-2025-103"]
    keys.dispose()
