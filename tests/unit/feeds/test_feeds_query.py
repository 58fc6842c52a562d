"""Keyset paging, district scope and projection over a real built snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from feeds.datasets import DATASETS, DISTRICT_SCOPE, ScopeRule, get_dataset
from feeds.query import (
    FieldError,
    NoSnapshot,
    SnapshotGone,
    SnapshotPool,
    Window,
    coverage,
    fetch_changes,
    fetch_deletes,
    newest_change_version,
    resolve_fields,
    scope_sql,
    tombstone_scope_sql,
    versions,
)
from schemas import ENTITIES
from tests.unit.feeds.feed_fixtures import DISTRICTS, FeedHome, make_feed_home
from warehouse.catalog import Catalog
from warehouse.publish import current_path

BIG = 2**62


@pytest.fixture(scope="module")
def fh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedHome]:
    home = tmp_path_factory.mktemp("query") / "home"
    catalog = Catalog.for_home(home)
    yield make_feed_home(home, catalog)
    catalog.dispose()


@pytest.fixture
def pool(fh: FeedHome) -> Iterator[SnapshotPool]:
    p = SnapshotPool(fh.home, size=2)
    yield p
    p.close()


def sql(fh: FeedHome, query: str) -> list[tuple]:
    con = duckdb.connect(str(current_path(fh.home)), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_the_scope_table_covers_every_entity_and_fits_its_columns() -> None:
    assert set(DISTRICT_SCOPE) == set(ENTITIES)
    for name, rule in DISTRICT_SCOPE.items():
        fields = {f.name for f in ENTITIES[name].fields}
        if rule is ScopeRule.COLUMN:
            assert "district_code" in fields, name
        else:
            assert "district_code" not in fields, name
        if rule is ScopeRule.PROJECT:
            assert "project_id" in fields, name


def test_scope_sql_binds_districts_as_parameters() -> None:
    assert scope_sql(DATASETS["project"], None) == ("TRUE", [])
    where, params = scope_sql(DATASETS["project"], frozenset({"310115", "310110"}))
    assert where == "t.district_code IN (?, ?)" and params == ["310110", "310115"]
    where, params = scope_sql(DATASETS["project_participant"], frozenset({"310115"}))
    assert "core.project" in where and "p.project_id = t.project_id" in where and params == ["310115"]
    assert scope_sql(DATASETS["teacher"], frozenset({"310115"})) == ("FALSE", [])
    assert scope_sql(DATASETS["teacher"], None) == ("TRUE", [])
    assert scope_sql(DATASETS["project"], frozenset()) == ("FALSE", [])
    assert tombstone_scope_sql(DATASETS["project"], frozenset({"310115"}), has_district=False) == ("FALSE", [])
    assert tombstone_scope_sql(DATASETS["project"], None, has_district=False) == ("TRUE", [])


def test_resolve_fields_keeps_key_and_version_and_names_unknown_fields() -> None:
    ds = get_dataset("trainee")
    columns = ["trainee_id", "name", "id_number", "phone", "_source", "change_version"]
    derived = {"id_pseudonym": "id_number"}
    read, out = resolve_fields(ds, columns, None, derived)
    assert read == columns and out == ["trainee_id", "name", "id_number", "id_pseudonym", "phone", "_source",
                                       "change_version"]
    read, out = resolve_fields(ds, columns, ["id_pseudonym"], derived)
    assert read == ["trainee_id", "id_number", "_source", "change_version"]
    assert out == ["trainee_id", "id_pseudonym", "_source", "change_version"]
    with pytest.raises(FieldError, match=r"'nope'.*known: trainee_id"):
        resolve_fields(ds, columns, ["name", "nope"], derived)


def walk(pool: SnapshotPool, name: str, districts: frozenset[str] | None, limit: int) -> list[int]:
    version = pool.current()
    high = newest_change_version(pool, version)
    after, seen = -1, []
    while True:
        page, _ = fetch_changes(pool, version, DATASETS[name], Window(after, 0, high, limit), requested=None,
                                districts=districts)
        seen += page.table.column("change_version").to_pylist()
        if not page.has_more:
            return seen
        after = page.last_change_version


@pytest.mark.parametrize("limit", [1, 4, 1000])
def test_keyset_pages_cover_every_row_once_in_order(fh: FeedHome, pool: SnapshotPool, limit: int) -> None:
    seen = walk(pool, "project", None, limit)
    expected = [v for (v,) in sql(fh, "select change_version from core.project order by 1")]
    assert seen == expected


@pytest.mark.parametrize("district", DISTRICTS)
def test_district_scope_on_own_column_and_through_the_project(fh: FeedHome, pool: SnapshotPool, district: str) -> None:
    only = frozenset({district})
    version = pool.current()
    page, _ = fetch_changes(pool, version, DATASETS["project"], Window(-1, 0, BIG, 1000),
                            requested=None, districts=only)
    assert set(page.table.column("district_code").to_pylist()) == {district}
    assert page.count == sql(fh, f"select count(*) from core.project where district_code = '{district}'")[0][0]
    parts, _ = fetch_changes(pool, version, DATASETS["project_participant"], Window(-1, 0, BIG, 1000), requested=None,
                             districts=only)
    expected = {k for (k,) in sql(fh, "select pp.participant_id from core.project_participant pp join core.project p "
                                      f"using (_source, project_id) where p.district_code = '{district}'")}
    assert set(parts.table.column("participant_id").to_pylist()) == expected and expected
    teachers, _ = fetch_changes(pool, version, DATASETS["teacher"], Window(-1, 0, BIG, 1000), requested=None,
                                districts=only)
    assert teachers.count == 0


def test_change_version_window_is_inclusive(pool: SnapshotPool) -> None:
    version = pool.current()
    all_versions = walk(pool, "project", None, 1000)
    low, high = all_versions[2], all_versions[5]
    page, _ = fetch_changes(pool, version, DATASETS["project"], Window(low - 1, low, high, 1000), requested=["title"],
                            districts=None)
    assert page.table.column("change_version").to_pylist() == all_versions[2:6]
    assert page.table.column_names == ["project_id", "title", "_source", "change_version"]


def test_deletes_carry_the_natural_key(fh: FeedHome, pool: SnapshotPool) -> None:
    page = fetch_deletes(pool, pool.current(), DATASETS["project"], Window(-1, 0, BIG, 10), districts=None)
    keys = page.table.column("key").to_pylist()
    assert keys == [{"_source": "municipal_db", "project_id": "P00001"},
                    {"_source": "municipal_db", "project_id": "P00002"}]
    has_district = bool(sql(fh, "select count(*) from duckdb_columns() where schema_name = 'core' "
                                "and table_name = '_tombstones' and column_name = 'district_code'")[0][0])
    scoped = fetch_deletes(pool, pool.current(), DATASETS["project"], Window(-1, 0, BIG, 10),
                           districts=frozenset({DISTRICTS[1]}))
    # P00001 was in DISTRICTS[1]; a tombstone without a district is for all-district keys only.
    expected = [{"_source": "municipal_db", "project_id": "P00001"}] if has_district else []
    assert scoped.table.column("key").to_pylist() == expected


def test_versions_and_coverage(fh: FeedHome, pool: SnapshotPool) -> None:
    version = pool.current()
    v = versions(pool, version, DATASETS["project"], None)
    low, high = sql(fh, "select min(v), max(v) from (select change_version as v from core.project union all "
                        "select change_version from core._tombstones where entity = 'project')")[0]
    assert (v["oldest_change_version"], v["newest_change_version"]) == (low, high)
    assert high < sql(fh, "select max(last_change_version) from ops.change_sequence")[0][0]  # not hub-wide
    cov = coverage(pool, version, DATASETS["project"], frozenset({DISTRICTS[0]}))
    assert cov["start"] <= cov["end"] and cov["start"].startswith("2025-03")
    for district in DISTRICTS:  # scoped like the data: only the district's rows and deletes count
        mine = versions(pool, version, DATASETS["project"], frozenset({district}))
        rows = sql(fh, f"select min(v), max(v) from (select change_version as v from core.project where "
                       f"district_code = '{district}' union all select change_version from core._tombstones "
                       f"where entity = 'project' and district_code = '{district}')")[0]
        assert (mine["oldest_change_version"], mine["newest_change_version"]) == rows
        assert cov_of(pool, version, district) == rows
        participants = versions(pool, version, DATASETS["project_participant"], frozenset({district}))
        seen = walk(pool, "project_participant", frozenset({district}), 1000)
        assert (participants["oldest_change_version"], participants["newest_change_version"]) == (seen[0], seen[-1])
    assert versions(pool, version, DATASETS["project"], frozenset()) == {"oldest_change_version": None,
                                                                         "newest_change_version": 0}


def cov_of(pool: SnapshotPool, version: str, district: str) -> tuple[int, int]:
    cov = coverage(pool, version, DATASETS["project"], frozenset({district}))
    return cov["oldest_change_version"], cov["newest_change_version"]


def test_pool_keeps_leased_snapshots_open_so_prune_cannot_take_them(fh: FeedHome) -> None:
    versions_on_disk = sorted(p.name for p in (fh.home / "published").iterdir()
                              if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
    pool = SnapshotPool(fh.home, size=1, lease=3600, max_open=len(versions_on_disk))
    try:
        entries = []
        for version in versions_on_disk:
            with pool.cursor(version) as (_, entry):
                entries.append(entry)
        assert not any(e.evicted for e in entries)  # all read within the lease: all stay open
        for entry in entries:
            assert entry.con.execute("select 1").fetchall() == [(1,)]
        with pool.cursor(versions_on_disk[0]) as (_, entry):
            pass
        assert entry is entries[0]  # served from the lease, not reopened
    finally:
        pool.close()
    capped = SnapshotPool(fh.home, size=1, lease=3600, max_open=1)
    with capped.cursor(versions_on_disk[0]) as (_, first):
        pass
    with capped.cursor(versions_on_disk[1]):
        pass
    assert first.evicted  # more leased snapshots than max_open: the least recent goes
    capped.close()


def test_pool_evicts_least_recent_and_reports_gone_or_missing(fh: FeedHome, tmp_path: Path) -> None:
    pool = SnapshotPool(fh.home, size=1, lease=0)
    versions_on_disk = sorted(p.name for p in (fh.home / "published").iterdir()
                              if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
    assert len(versions_on_disk) >= 2
    with pool.cursor(versions_on_disk[0]) as (cur, first):
        with pool.cursor(versions_on_disk[1]) as _:
            pass  # evicts the first, which stays open while in use
        assert cur.execute("select 1").fetchall() == [(1,)]
        assert first.evicted
    with pytest.raises(duckdb.ConnectionException):
        first.con.execute("select 1")  # closed once its last user left
    for bad in ("20990101T000000000000Z", "../published", ".hidden"):
        with pytest.raises(SnapshotGone, match="restart the pass"):
            with pool.cursor(bad):
                pass
    pool.close()
    with pytest.raises(NoSnapshot, match="iehub build"):
        SnapshotPool(tmp_path / "empty").current()
