"""Change versions, tombstones, history and incremental builds on hand-made std batches."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from schemas import get_entity
from tests.unit.warehouse.warehouse_fixtures import REGISTRY, land, notice_rows, with_record_hash
from tests.unit.warehouse.warehouse_fixtures import query_current as rows
from warehouse.build import build
from warehouse.catalog import Catalog

UTC = timezone.utc
PROJECT = get_entity("project")


def project_rows(items: list[dict], *, extracted: datetime) -> pa.Table:
    full = []
    for r in items:
        full.append({f.name: r.get(f.name) for f in PROJECT.arrow_schema()} | {
            "_source": "municipal_db", "_source_key": r["project_id"], "_batch_id": "b",
            "_extracted_at": extracted, "_record_hash": "", "_is_deleted": r.get("_is_deleted", False)})
    return with_record_hash(pa.Table.from_pylist(full, schema=PROJECT.arrow_schema()), PROJECT)


def test_versions_come_from_one_sequence_and_unchanged_rows_get_none(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [
        {"notice_id": "N1", "title": "申报通知"}, {"notice_id": "N2", "title": "人才需求"}]))
    first = build(home, catalog, registry=REGISTRY)
    assert (first.first_change_version, first.last_change_version) == (1, 2)
    assert rows(home, "SELECT notice_id, change_version FROM core.notice ORDER BY 1") == [("N1", 1), ("N2", 2)]

    # Re-sent identical N1, changed N2, new N3: two changes, numbered after the last version.
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [
        {"notice_id": "N1", "title": "申报通知"}, {"notice_id": "N2", "title": "人才需求（更正）"},
        {"notice_id": "N3", "title": "新公告"}]))
    second = build(home, catalog, registry=REGISTRY)
    assert second.entities["notice"].changes == 2 and second.entities["notice"].files == 1
    assert rows(home, "SELECT notice_id, change_version FROM core.notice ORDER BY 1") == [
        ("N1", 1), ("N2", 3), ("N3", 4)]

    # Nothing new landed: nothing applied, no version spent, but a new snapshot is published.
    third = build(home, catalog, registry=REGISTRY)
    assert third.changes == 0 and third.last_change_version == 4
    assert third.snapshot is not None and third.snapshot.version != second.snapshot.version
    assert rows(home, "SELECT last_change_version FROM ops.change_sequence") == [(4,)]
    builds = rows(home, "SELECT changes, first_change_version, last_change_version FROM ops.builds ORDER BY started_at")
    assert builds == [(2, 1, 2), (2, 3, 4), (0, None, 4)]


def test_deletes_become_tombstones_with_key_version_and_time_then_revive(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}, {"notice_id": "N2"}]))
    build(home, catalog, registry=REGISTRY)
    deleted_at = datetime(2025, 3, 5, 2, 0, tzinfo=UTC)
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [
        {"notice_id": "N2", "_is_deleted": True, "updated_at": deleted_at}]))
    build(home, catalog, registry=REGISTRY)
    assert rows(home, "SELECT notice_id FROM core.notice") == [("N1",)]
    ((entity, key, version, at, source),) = rows(
        home, "SELECT entity, natural_key, change_version, deleted_at, _source FROM core._tombstones")
    assert (entity, json.loads(key), version, at, source) == (
        "notice", {"_source": "lingang", "notice_id": "N2"}, 3, deleted_at, "lingang")

    # The same delete sent again is no change; a re-created N2 leaves the tombstones.
    land(home, catalog, "lingang", "w3", notice_rows("lingang", [{"notice_id": "N2", "_is_deleted": True}]))
    assert build(home, catalog, registry=REGISTRY).changes == 0
    land(home, catalog, "lingang", "w4", notice_rows("lingang", [{"notice_id": "N2", "title": "重新发布"}]))
    build(home, catalog, registry=REGISTRY)
    assert rows(home, "SELECT count(*) FROM core._tombstones") == [(0,)]
    assert rows(home, "SELECT notice_id, title, change_version FROM core.notice ORDER BY 1") == [
        ("N1", None, 1), ("N2", "重新发布", 4)]


def test_incremental_equals_full_rebuild_and_the_sequence_continues(home: Path, catalog: Catalog) -> None:
    for i, window in enumerate(["w1", "w2", "w3"]):
        land(home, catalog, "lingang", window, notice_rows("lingang", [
            {"notice_id": f"N{j}", "title": f"v{i}-{j % 2}"} for j in range(i, i + 4)]))
        build(home, catalog, registry=REGISTRY)
    land(home, catalog, "lingang", "w4", notice_rows("lingang", [{"notice_id": "N0", "_is_deleted": True}]))
    build(home, catalog, registry=REGISTRY)
    incremental = rows(home, "SELECT notice_id, title FROM core.notice ORDER BY 1")
    tombstones = rows(home, "SELECT natural_key FROM core._tombstones ORDER BY 1")
    last = rows(home, "SELECT last_change_version FROM ops.change_sequence")[0][0]
    full = build(home, catalog, registry=REGISTRY, full=True)
    assert rows(home, "SELECT notice_id, title FROM core.notice ORDER BY 1") == incremental
    assert rows(home, "SELECT natural_key FROM core._tombstones ORDER BY 1") == tombstones
    assert full.full and full.first_change_version == last + 1
    assert rows(home, f"SELECT min(change_version) > {last} FROM core.notice") == [(True,)]


def test_history_answers_what_a_project_looked_like_on_a_date(home: Path, catalog: Catalog) -> None:
    registry = {"project": PROJECT}
    t1, t2, t3 = (datetime(2025, m, 1, tzinfo=UTC) for m in (3, 7, 9))
    land(home, catalog, "municipal_db", "w1", project_rows([
        {"project_id": "P1", "title": "智能制造产教融合实训中心", "status": "立项", "updated_at": t1},
        {"project_id": "P2", "title": "集成电路订单班", "status": "立项", "updated_at": t1},
    ], extracted=t1), entity=PROJECT)
    build(home, catalog, registry=registry)
    # One batch holding two versions of P1 keeps both in history; P2 is deleted.
    land(home, catalog, "municipal_db", "w2", project_rows([
        {"project_id": "P1", "title": "智能制造产教融合实训中心", "status": "在建", "updated_at": t2},
        {"project_id": "P1", "title": "智能制造产教融合实训中心", "status": "结项", "updated_at": t3},
        {"project_id": "P2", "_is_deleted": True, "updated_at": t2},
    ], extracted=t3), entity=PROJECT)
    build(home, catalog, registry=registry)

    def on(day: str) -> list[tuple]:
        return rows(home, f"""SELECT project_id, status FROM core.project_history
            WHERE valid_from <= TIMESTAMPTZ '{day} 00:00:00+00'
              AND (valid_to IS NULL OR valid_to > TIMESTAMPTZ '{day} 00:00:00+00') ORDER BY 1""")

    assert on("2025-06-30") == [("P1", "立项"), ("P2", "立项")]
    assert on("2025-08-01") == [("P1", "在建")]
    assert on("2025-12-31") == [("P1", "结项")]
    history = rows(home, "SELECT project_id, status, change_version, valid_from, valid_to, _batch_id "
                         "FROM core.project_history ORDER BY project_id, change_version")
    assert [(p, s, f, t) for p, s, _, f, t, _ in history] == [
        ("P1", "立项", t1, t2), ("P1", "在建", t2, t3), ("P1", "结项", t3, None), ("P2", "立项", t1, t2)]
    assert len({v for _, _, v, _, _, _ in history}) == 4 and all(b.startswith("municipal_db-project-") for *_, b in history)
    assert rows(home, "SELECT status, change_version FROM core.project") == [("结项", history[2][2])]


def test_history_never_runs_backwards_when_a_correction_carries_an_older_time(home: Path, catalog: Catalog) -> None:
    registry = {"project": PROJECT}
    t1, t2, t3 = (datetime(2025, m, 1, tzinfo=UTC) for m in (3, 7, 9))
    land(home, catalog, "municipal_db", "w1", project_rows([
        {"project_id": "P1", "title": "订单班", "status": "立项", "updated_at": t2}], extracted=t2), entity=PROJECT)
    build(home, catalog, registry=registry)
    # a correction stamped earlier than the open row, then a later change, in one batch
    land(home, catalog, "municipal_db", "w2", project_rows([
        {"project_id": "P1", "title": "订单班", "status": "在建", "updated_at": t1},
        {"project_id": "P1", "title": "订单班", "status": "结项", "updated_at": t3}], extracted=t3), entity=PROJECT)
    build(home, catalog, registry=registry)
    history = rows(home, "SELECT status, valid_from, valid_to FROM core.project_history ORDER BY change_version")
    assert history == [("立项", t2, t2), ("在建", t2, t3), ("结项", t3, None)]
    froms = [f for _, f, _ in history]
    assert froms == sorted(froms)  # intervals never overlap, never go back


def test_each_live_key_has_one_open_history_row_its_core_row_was_read_from(home: Path, catalog: Catalog) -> None:
    """Incremental builds find a key's open history row by its core row's change version: updates,
    a delete, a revival and a key changed twice in one batch leave exactly the rows a rebuild makes."""
    registry = {"project": PROJECT}
    t = [datetime(2025, m, 1, tzinfo=UTC) for m in range(1, 9)]
    batches = [
        [{"project_id": p, "title": "订单班", "status": "立项", "updated_at": t[0]} for p in ("P1", "P2", "P3")],
        [{"project_id": "P1", "title": "订单班", "status": "在建", "updated_at": t[1]},
         {"project_id": "P2", "_is_deleted": True, "updated_at": t[1]}],
        [{"project_id": "P2", "title": "订单班", "status": "重启", "updated_at": t[2]},
         {"project_id": "P3", "title": "订单班", "status": "在建", "updated_at": t[2]},
         {"project_id": "P3", "title": "订单班", "status": "结项", "updated_at": t[3]}],
        [{"project_id": "P1", "title": "订单班", "status": "结项", "updated_at": t[4]},
         {"project_id": "P3", "_is_deleted": True, "updated_at": t[4]}],
    ]
    for i, items in enumerate(batches):
        land(home, catalog, "municipal_db", f"w{i}", project_rows(items, extracted=t[i + 4]), entity=PROJECT)
        build(home, catalog, registry=registry)
        assert rows(home, """SELECT count(*) FROM core.project AS c FULL JOIN
            (SELECT * FROM core.project_history WHERE valid_to IS NULL) AS h USING (project_id)
            WHERE c.change_version IS DISTINCT FROM h.change_version""") == [(0,)], f"after batch {i}"
    history = "SELECT project_id, status, valid_from, valid_to FROM core.project_history ORDER BY project_id, valid_from, status"
    incremental = rows(home, history)
    assert [(p, s, f, u) for p, s, f, u in incremental if p == "P2"] == [
        ("P2", "立项", t[0], t[1]), ("P2", "重启", t[2], None)]
    assert rows(home, "SELECT project_id, status FROM core.project ORDER BY 1") == [("P1", "结项"), ("P2", "重启")]
    build(home, catalog, registry=registry, full=True)
    assert rows(home, history) == incremental


def test_a_rename_inside_the_first_build_is_recorded_like_one_across_builds(tmp_path: Path) -> None:
    """Core is empty in a first build (or a rebuild): renames are still found among the new rows.

    The first build skips the surrogate ranking only when every row's ``_source_key`` is its own
    key; a renumbered project (same internal id, new 项目编号) arriving before any build must
    still become one live row and one key change, as when the two batches are built apart.
    """
    from tests.unit.feeds.feed_fixtures import land_rows, project

    def land_both(home: Path, catalog: Catalog, *, build_between: bool) -> None:
        first = [{**project(1, "310114"), "project_id": "JD-2024-001", "internal": "9001"},
                 {**project(2, "310114"), "project_id": "JD-2024-002", "internal": "9002"}]
        land_rows(home, catalog, "district_jiading", "project", "w1", first, source_key="internal")
        if build_between:
            build(home, catalog, registry={"project": PROJECT})
        land_rows(home, catalog, "district_jiading", "project", "w2",
                  [{**first[0], "project_id": "JD-2025-101"}], source_key="internal")
        build(home, catalog, registry={"project": PROJECT})

    answers = []
    for build_between in (False, True):
        home = tmp_path / f"home-{build_between}"
        catalog = Catalog.for_home(home)
        try:
            land_both(home, catalog, build_between=build_between)
        finally:
            catalog.dispose()
        answers.append((
            rows(home, "SELECT project_id FROM core.project ORDER BY 1"),
            rows(home, "SELECT old_key, new_key FROM core._key_changes"),
            rows(home, "SELECT count(*) FROM core._tombstones"),
            rows(home, "SELECT project_id, valid_to IS NULL FROM core.project_history ORDER BY 1"),
        ))
    assert answers[0] == answers[1]
    live, renames, tombstones, history = answers[0]
    assert live == [("JD-2024-002",), ("JD-2025-101",)]
    assert [(json.loads(o)["project_id"], json.loads(n)["project_id"]) for o, n in renames] == [
        ("JD-2024-001", "JD-2025-101")]
    assert tombstones == [(0,)]
    assert history == [("JD-2024-001", False), ("JD-2024-002", True), ("JD-2025-101", True)]


def test_a_rename_is_found_when_core_held_only_own_keyed_rows(tmp_path: Path) -> None:
    """``ops.build_state.own_keyed`` lets a build skip the surrogate scan of core only while every row,
    old and new, carries its own key as ``_source_key``: the first row that does not is still a rename."""
    from tests.unit.feeds.feed_fixtures import land_rows, project

    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    try:
        old = {**project(1, "310114"), "project_id": "JD-2024-001", "internal": "JD-2024-001"}
        land_rows(home, catalog, "district_jiading", "project", "w1", [old], source_key="internal")
        build(home, catalog, registry={"project": PROJECT})
        assert rows(home, "SELECT own_keyed FROM ops.build_state WHERE entity = 'project'") == [(True,)]
        # renumbered at the source: the new key arrives under the old key's id as its surrogate
        land_rows(home, catalog, "district_jiading", "project", "w2",
                  [{**old, "project_id": "JD-2025-101"}], source_key="internal")
        build(home, catalog, registry={"project": PROJECT})
    finally:
        catalog.dispose()
    assert rows(home, "SELECT project_id FROM core.project") == [("JD-2025-101",)]
    assert [(json.loads(o)["project_id"], json.loads(n)["project_id"])
            for o, n in rows(home, "SELECT old_key, new_key FROM core._key_changes")] == [("JD-2024-001", "JD-2025-101")]
    assert rows(home, "SELECT own_keyed FROM ops.build_state WHERE entity = 'project'") == [(False,)]


def test_core_read_back_in_slices_equals_one_sort_and_is_stored_in_version_order(
        home: Path, catalog: Catalog, tmp_path: Path, monkeypatch) -> None:
    """A build too big to sort core's rows in memory at once writes them slice by slice of change
    versions (versions._sorted_slices): the same rows, still stored in change-version order."""
    import shutil

    from warehouse import versions

    registry = {"project": PROJECT}
    t1, t2 = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)
    # keys landed out of key order, so version order differs from file order
    land(home, catalog, "municipal_db", "w1", project_rows([
        {"project_id": f"P{(i * 7) % 40:02d}", "title": f"项目{i}", "status": "立项", "updated_at": t1}
        for i in range(40)], extracted=t1), entity=PROJECT)
    land(home, catalog, "municipal_db", "w2", project_rows([
        {"project_id": f"P{i:02d}", "title": f"项目{i}", "status": "在建", "updated_at": t2} for i in range(0, 40, 3)]
        + [{"project_id": "P05", "_is_deleted": True, "updated_at": t2}], extracted=t2), entity=PROJECT)
    sliced_home = tmp_path / "sliced"
    shutil.copytree(home, sliced_home)
    build(home, catalog, registry=registry)
    monkeypatch.setattr(versions, "SORT_BYTES_PER_ROW", 10**15)  # a slice per change version
    monkeypatch.setattr(versions, "_MIN_SLICE_ROWS", 1)
    sliced_catalog = Catalog.for_home(sliced_home)
    try:
        assert len(versions._sorted_slices(duckdb.connect(), 0, 53)) == 53
        build(sliced_home, sliced_catalog, registry=registry)
    finally:
        sliced_catalog.dispose()
    table = "SELECT * EXCLUDE (_batch_id, _extracted_at) FROM core.project ORDER BY project_id"
    assert rows(sliced_home, table) == rows(home, table) and len(rows(home, table)) == 39
    assert rows(sliced_home, "SELECT project_id, status FROM core.project_history ORDER BY change_version") == rows(
        home, "SELECT project_id, status FROM core.project_history ORDER BY change_version")
    stored = [v for (v,) in rows(sliced_home, "SELECT change_version FROM core.project ORDER BY rowid")]
    assert stored == sorted(stored)


def _built(home: Path, registry: dict, batches: list[list[dict]], extracted: datetime, core_columns: str) -> tuple:
    """Land each batch (a window each) and build after each; then core (``core_columns``, in stored
    order), the history and the tombstones."""
    catalog = Catalog.for_home(home)
    try:
        for n, batch in enumerate(batches):
            land(home, catalog, "municipal_db", f"w{n}", project_rows(batch, extracted=extracted), entity=PROJECT)
            build(home, catalog, registry=registry)
    finally:
        catalog.dispose()
    return (rows(home, f"SELECT {core_columns} FROM core.project ORDER BY rowid"),
            rows(home, "SELECT project_id, status, change_version, valid_from, valid_to FROM core.project_history "
                       "ORDER BY change_version"),
            rows(home, "SELECT natural_key, change_version, deleted_at FROM core._tombstones ORDER BY ALL"))


def test_a_first_load_of_unique_keys_is_numbered_in_landing_order(tmp_path: Path) -> None:
    """A first load whose keys each arrive once takes one numbering sort instead of the windows
    (versions._apply_rows), in the order its rows were landed, and is written in that order; a key
    sent twice takes the general way, numbered by key. Both give the same rows, history intervals
    and tombstones for the keys they share."""
    registry = {"project": PROJECT}
    t1, t2 = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)
    items = [{"project_id": "P04", "title": "订单班", "status": "立项", "updated_at": t1},
             {"project_id": "P01", "title": "实训基地", "status": "在建", "updated_at": None},
             {"project_id": "P05", "title": "产业学院", "status": "立项", "updated_at": t1},
             {"project_id": "P03", "_is_deleted": True, "updated_at": t2},
             {"project_id": "P02", "title": "协同育人", "status": "结项", "updated_at": t2}]
    repeated = [*items, {"project_id": "P05", "title": "产业学院", "status": "在建", "updated_at": t2}]
    seen = {}
    for name, batch in (("unique", items), ("repeated", repeated)):
        seen[name] = _built(tmp_path / name, registry, [batch], t2, "project_id, status, change_version")
    core, history, tombstones = seen["unique"]
    assert core == [("P04", "立项", 1), ("P01", "在建", 2), ("P05", "立项", 3), ("P02", "结项", 5)]
    assert [(p, v, f, to) for p, _s, v, f, to in history] == [
        ("P04", 1, t1, None), ("P01", 2, t2, None), ("P05", 3, t1, None), ("P02", 5, t2, None)]
    assert [(v, at) for _, v, at in tombstones] == [(4, t2)]
    core_r, history_r, tombstones_r = seen["repeated"]
    assert core_r == [("P01", "在建", 1), ("P02", "结项", 2), ("P04", "立项", 4), ("P05", "在建", 6)]

    def unversioned(rows: list[tuple]) -> list[tuple]:
        return sorted((p, s, f, to) for p, s, _v, f, to in rows if p != "P05")

    assert unversioned(history_r) == unversioned(history)
    assert [(at,) for _, _v, at in tombstones_r] == [(t2,)] and tombstones_r[0][1] == 3
    assert [(p, s, v, f, to) for p, s, v, f, to in history_r if p == "P05"] == [
        ("P05", "立项", 5, t1, t2), ("P05", "在建", 6, t2, None)]


def test_a_large_first_load_is_numbered_in_landing_order_on_every_thread(tmp_path: Path, monkeypatch) -> None:
    """The first load numbers its rows in merge order (batch, then row in the file) and writes
    history and core in that order with no sort (versions._apply_rows): keys landed far out of key
    order, in two batches of several row groups each, read by four threads, are numbered exactly in
    the order they were landed, stored in change-version order, and each history row opens at its
    own event time and stays open."""
    import random

    monkeypatch.setenv("IEHUB_BUILD_THREADS", "4")
    t1 = datetime(2025, 3, 1, tzinfo=UTC)
    ids = [f"P{i:06d}" for i in range(150_000)]
    random.Random(7).shuffle(ids)
    items = [{"project_id": pid, "title": "协同育人", "status": "在建", "updated_at": t1 if n % 2 else None}
             for n, pid in enumerate(ids)]
    catalog = Catalog.for_home(tmp_path)
    try:
        land(tmp_path, catalog, "municipal_db", "w1", project_rows(items[:90_000], extracted=t1), entity=PROJECT)
        land(tmp_path, catalog, "municipal_db", "w2", project_rows(items[90_000:], extracted=t1), entity=PROJECT)
        result = build(tmp_path, catalog, registry={"project": PROJECT})
    finally:
        catalog.dispose()
    assert (result.first_change_version, result.last_change_version) == (1, 150_000)
    for table in ("project", "project_history"):
        assert [r[0] for r in rows(tmp_path, f"SELECT project_id FROM core.{table} ORDER BY change_version")] == ids
        stored_out_of_order = ("SELECT count(*) FROM (SELECT change_version, row_number() OVER (ORDER BY rowid) AS n "
                               f"FROM core.{table}) WHERE change_version <> n")
        assert rows(tmp_path, stored_out_of_order) == [(0,)], table
    assert rows(tmp_path, "SELECT count(*), count(*) FILTER (WHERE valid_to IS NULL AND valid_from = "
                          "coalesce(updated_at, _extracted_at)) FROM core.project_history") == [(150_000, 150_000)]


def test_a_first_load_without_history_is_numbered_and_stored_in_landing_order(home: Path, catalog: Catalog) -> None:
    """An entity without history (notices) takes the first load's way too: core is written straight
    from the files in merge order (versions._apply_rows), numbered in it, a delete in the load
    numbered in its place and tombstoned, and the rows stored in change-version order."""
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [
        {"notice_id": "N9", "title": "申报通知"}, {"notice_id": "N2", "_is_deleted": True},
        {"notice_id": "N5", "title": "人才需求"}]))
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [
        {"notice_id": "N1", "title": "校企合作"}, {"notice_id": "N7", "title": "技术服务"}]))
    result = build(home, catalog, registry=REGISTRY)
    assert (result.first_change_version, result.last_change_version) == (1, 5)
    assert rows(home, "SELECT notice_id, change_version FROM core.notice ORDER BY rowid") == [
        ("N9", 1), ("N5", 3), ("N1", 4), ("N7", 5)]
    assert rows(home, "SELECT natural_key, change_version FROM core._tombstones") == [
        ('{"_source":"lingang","notice_id":"N2"}', 2)]


def test_an_incremental_apply_of_keys_that_arrive_once_equals_the_windows(tmp_path: Path, monkeypatch) -> None:
    """Each key once in the new batches: the apply compares in a join (versions._apply_rows), and
    gives the same versions, history intervals, tombstones and core as the windows for every kind
    of step: an update, an identical re-send, a delete, a repeated delete, a revival, a new key, a
    delete of a key never seen, a correction with an older time. Then a batch repeating a key
    (the windows) on top of both."""
    from warehouse import versions

    registry = {"project": PROJECT}
    t1, t2, t3, t0 = (datetime(2025, m, 1, tzinfo=UTC) for m in (3, 7, 9, 1))
    first = [{"project_id": f"P{i}", "title": f"项目{i}", "status": "立项", "updated_at": t1} for i in range(1, 7)]
    steps = [
        first,
        [{"project_id": "P6", "_is_deleted": True, "updated_at": t2}],
        [{"project_id": "P1", "title": "项目1", "status": "在建", "updated_at": t2},      # update
         {"project_id": "P2", "title": "项目2", "status": "立项", "updated_at": t1},      # identical re-send
         {"project_id": "P3", "_is_deleted": True, "updated_at": t2},                    # delete
         {"project_id": "P6", "_is_deleted": True, "updated_at": t3},                    # deleted again
         {"project_id": "P7", "title": "项目7", "status": "立项", "updated_at": t2},      # new
         {"project_id": "P9", "_is_deleted": True, "updated_at": t2},                    # never seen
         {"project_id": "P4", "title": "项目4（更正）", "status": "立项", "updated_at": t0}],  # older time
        [{"project_id": "P6", "title": "项目6", "status": "在建", "updated_at": t3},      # revived
         {"project_id": "P5", "title": "项目5", "status": "结项", "updated_at": t3}],
        [{"project_id": "P1", "title": "项目1", "status": "结项", "updated_at": t3},      # P1 twice: windows
         {"project_id": "P1", "title": "项目1", "status": "验收", "updated_at": t3}],
    ]
    seen = {}
    for joined in (True, False):
        monkeypatch.setattr(versions, "JOIN_WHEN_KEYS_ARRIVE_ONCE", joined)
        seen[joined] = _built(tmp_path / f"joined-{joined}", registry, steps, t3,
                              "project_id, title, status, change_version")
    assert seen[True] == seen[False]
    core, history, tombstones = seen[True]
    assert [p for p, *_ in core] == ["P2", "P4", "P7", "P5", "P6", "P1"]
    assert [json.loads(k)["project_id"] for k, *_ in tombstones] == ["P3", "P9"]
    # the correction's older time does not run the history backwards
    assert [h for h in history if h[0] == "P4"] == [("P4", "立项", 4, t1, t1), ("P4", "立项", 10, t1, None)]
    assert [h[1:] for h in history if h[0] == "P1"] == [
        ("立项", 1, t1, t2), ("在建", 8, t2, t3), ("结项", 15, t3, t3), ("验收", 16, t3, None)]


def _directory(home: Path, entity: str) -> tuple[int, int, str]:
    """(entries of the entity's key directory, rows of its core table, the directory's comment)."""
    ((entries, live),) = rows(home, f"SELECT (SELECT count(*) FROM ops.keys_{entity}), "
                                    f"(SELECT count(*) FROM core.{entity})")
    ((comment,),) = rows(home, f"SELECT comment FROM duckdb_tables() WHERE table_name = 'keys_{entity}'")
    return entries, live, comment


def _change_notices(home: Path, catalog: Catalog, window: str, title: str) -> None:
    land(home, catalog, "lingang", window, notice_rows("lingang", [
        {"notice_id": f"N{j}", "title": f"{title}-{j}"} for j in range(4)]))
    build(home, catalog, registry=REGISTRY)


def test_the_key_directory_lists_every_row_written_and_finds_the_live_one(home: Path, catalog: Catalog) -> None:
    _change_notices(home, catalog, "w1", "a")
    entries, live, comment = _directory(home, "notice")
    assert (entries, live) == (4, 4)
    assert 'core."notice": hash("_source", "notice_id") of DuckDB ' + duckdb.__version__ in comment
    # two rows changed: their new versions are listed beside the old ones, and the next apply still
    # replaces each key's live row (one row per key, the latest title)
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [
        {"notice_id": "N1", "title": "b-1"}, {"notice_id": "N2", "title": "b-2"}]))
    build(home, catalog, registry=REGISTRY)
    assert _directory(home, "notice")[:2] == (6, 4)
    _change_notices(home, catalog, "w3", "c")
    assert rows(home, "SELECT notice_id, title FROM core.notice ORDER BY 1") == [
        ("N0", "c-0"), ("N1", "c-1"), ("N2", "c-2"), ("N3", "c-3")]


def test_a_gap_in_the_key_directory_is_counted(home: Path, catalog: Catalog) -> None:
    from warehouse.versions import directory_gaps

    _change_notices(home, catalog, "w1", "a")
    path = home / "warehouse.duckdb"
    path.chmod(0o644)
    con = duckdb.connect(str(path))
    try:
        assert directory_gaps(con, "notice") == 0 and directory_gaps(con, "project") is None
        con.execute("DELETE FROM ops.keys_notice WHERE change_version = 2")
        assert directory_gaps(con, "notice") == 1
    finally:
        con.close()


def test_a_missing_directory_is_made_from_core_and_a_foreign_one_rewritten(
        home: Path, catalog: Catalog, monkeypatch) -> None:
    import warehouse.versions as versions

    # hashed by "another DuckDB": the next apply does not trust it and rewrites it from core
    monkeypatch.setattr(versions.duckdb, "__version__", "0.0.0-other")
    _change_notices(home, catalog, "w1", "a")
    assert "of DuckDB 0.0.0-other" in _directory(home, "notice")[2]
    monkeypatch.undo()
    _change_notices(home, catalog, "w2", "b")
    entries, live, comment = _directory(home, "notice")
    assert f"of DuckDB {duckdb.__version__}" in comment and (entries, live) == (8, 4)
    # a warehouse from before directories: made from core's rows at the next apply
    path = home / "warehouse.duckdb"
    path.chmod(0o644)
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE ops.keys_notice")
    _change_notices(home, catalog, "w3", "c")
    assert _directory(home, "notice")[:2] == (8, 4)  # 4 from core, then the 4 rows this apply wrote
    assert rows(home, "SELECT notice_id, title FROM core.notice ORDER BY 1") == [
        ("N0", "c-0"), ("N1", "c-1"), ("N2", "c-2"), ("N3", "c-3")]


def test_a_directory_grown_past_its_slack_is_rewritten_with_the_live_rows(
        home: Path, catalog: Catalog, monkeypatch) -> None:
    import warehouse.versions as versions

    monkeypatch.setattr(versions, "DIRECTORY_SLACK", 1)
    monkeypatch.setattr(versions, "DIRECTORY_ALLOWANCE", 2)
    _change_notices(home, catalog, "w1", "a")
    _change_notices(home, catalog, "w2", "b")  # 4 entries for 4 rows: kept, then 4 more appended
    assert _directory(home, "notice")[:2] == (8, 4)
    _change_notices(home, catalog, "w3", "c")  # 8 > 1 x 4 + 2: rewritten (4), then 4 appended
    assert _directory(home, "notice")[:2] == (8, 4)
    assert rows(home, "SELECT count(DISTINCT notice_id) FROM core.notice") == [(4,)]
