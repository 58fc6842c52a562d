"""The warehouse build: merge semantics, comments, ops tables, atomicity and the lock."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

import warehouse.build as build_module
from tests.unit.warehouse.warehouse_fixtures import NOTICE, ORGANIZATION, REGISTRY, land, notice_rows
from warehouse.build import BuildError, build
from warehouse.catalog import Catalog
from warehouse.landing import ParquetSink
from warehouse.layout import Lake

UTC = timezone.utc


def query(home: Path, sql: str) -> list[tuple]:
    """Rows via Arrow: DuckDB's Python fetch of TIMESTAMPTZ would need pytz, Arrow does not."""
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        table = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    return [tuple(row.values()) for row in table.to_pylist()]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_latest_version_wins_and_deletes_become_tombstones(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "2025-03-01", notice_rows("lingang", [
        {"notice_id": "N1", "title": "临港新片区产教融合项目申报通知"},
        {"notice_id": "N2", "title": "人才需求征集"},
        {"notice_id": "N3", "title": "校企合作签约"},
        {"notice_id": "N4", "title": "旧标题"},
        {"notice_id": "N4", "title": "同一文件中较后的版本"},  # later row in the same file wins
    ]))
    land(home, catalog, "lingang", "2025-03-02", notice_rows("lingang", [
        {"notice_id": "N1", "title": "临港新片区产教融合项目申报通知（更正）"},
        {"notice_id": "N2", "_is_deleted": True, "updated_at": datetime(2025, 3, 2, 9, 30, tzinfo=UTC)},
        {"notice_id": "N3", "_is_deleted": True},  # no updated_at: deleted_at falls back to _extracted_at
    ], extracted=datetime(2025, 3, 2, 10, 0, tzinfo=UTC)))
    # The same notice id from another source is another key.
    land(home, catalog, "municipal", "2025-03-01", notice_rows("municipal", [{"notice_id": "N2", "title": "市级通知"}]))

    result = build(home, catalog, registry=REGISTRY)

    assert query(home, "SELECT _source, notice_id, title FROM core.notice ORDER BY _source, notice_id") == [
        ("lingang", "N1", "临港新片区产教融合项目申报通知（更正）"),
        ("lingang", "N4", "同一文件中较后的版本"),
        ("municipal", "N2", "市级通知"),
    ]
    tombstones = query(home, "SELECT entity, natural_key, _source, deleted_at FROM core._tombstones ORDER BY natural_key")
    assert [(e, json.loads(k), s, d) for e, k, s, d in tombstones] == [
        ("notice", {"_source": "lingang", "notice_id": "N2"}, "lingang", datetime(2025, 3, 2, 9, 30, tzinfo=UTC)),
        ("notice", {"_source": "lingang", "notice_id": "N3"}, "lingang", datetime(2025, 3, 2, 10, 0, tzinfo=UTC)),
    ]
    assert result.entities["notice"].rows == 3
    assert result.entities["notice"].files == 3
    assert result.entities["notice"].tombstones == 2


def test_rerun_of_an_older_window_wins_because_it_landed_later(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1", "title": "v1"}]))
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N1", "title": "v2"}]))
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1", "title": "v1 rerun"}]))
    build(home, catalog, registry=REGISTRY)
    assert query(home, "SELECT title FROM core.notice") == [("v1 rerun",)]


def test_deleted_then_recreated_key_is_current_again(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1", "_is_deleted": True}]))
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N1", "title": "恢复发布"}]))
    build(home, catalog, registry=REGISTRY)
    assert query(home, "SELECT title FROM core.notice") == [("恢复发布",)]
    assert query(home, "SELECT count(*) FROM core._tombstones") == [(0,)]


def test_unledgered_orphan_file_is_ignored(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1", "title": "已入账"}]))
    orphan = Lake(home).std_path("notice", "lingang", date(2025, 3, 1), "lingang-notice-0000000000000000")
    with ParquetSink(orphan, NOTICE.arrow_schema()) as sink:  # landed, but its run died before the ledger
        sink.write(notice_rows("lingang", [{"notice_id": "N1", "title": "孤儿"}, {"notice_id": "N9"}]))
    build(home, catalog, registry=REGISTRY)
    assert query(home, "SELECT notice_id, title FROM core.notice") == [("N1", "已入账")]


def test_every_entity_is_present_typed_and_commented(home: Path, catalog: Catalog) -> None:
    result = build(home, catalog, registry=REGISTRY)  # nothing landed at all
    assert result.entities["organization"].rows == 0
    columns = query(home, """
        SELECT table_name, column_name, data_type, comment FROM duckdb_columns()
        WHERE schema_name = 'core' AND table_name IN ('notice', 'organization') ORDER BY table_name, column_index
    """)
    by_table: dict[str, list[tuple]] = {}
    for table, *rest in columns:
        by_table.setdefault(table, []).append(tuple(rest))
    expected_notice = [f.name for f in NOTICE.arrow_schema()][:-1] + ["change_version"]  # without _is_deleted
    assert [c[0] for c in by_table["notice"]] == expected_notice
    assert [c[0] for c in by_table["organization"]] == [f.name for f in ORGANIZATION.arrow_schema()][:-1] + ["change_version"]
    types = {c[0]: c[1] for c in by_table["notice"]}
    assert types["budget_amount"] == "DECIMAL(18,2)"
    assert types["publish_date"] == "DATE"
    assert types["updated_at"] == "TIMESTAMP WITH TIME ZONE"
    comments = {c[0]: c[2] for c in by_table["notice"]}
    assert comments["title"] == "标题 / title"
    assert comments["contact_phone"] == "联系电话 / contact phone. PII: personal"
    assert all(comments.values()), comments
    tables = dict(query(home, "SELECT schema_name || '.' || table_name, comment FROM duckdb_tables()"))
    assert "Grain: one row per source and notice" in tables["core.notice"]
    assert tables["core.notice"].startswith("通知公告 / notice published on the platform")
    assert set(tables) >= {"core.notice", "core.organization", "core._tombstones", "ops.batches", "ops.sync_state", "ops.builds"}
    assert all(tables.values()), tables


def test_values_keep_their_types(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [
        {"notice_id": "N1", "budget_amount": Decimal("35000000.00"), "updated_at": datetime(2025, 3, 1, 1, 2, 3, tzinfo=UTC)},
    ]))
    build(home, catalog, registry=REGISTRY)
    assert query(home, "SELECT budget_amount, publish_date, updated_at FROM core.notice") == [
        (Decimal("35000000.00"), date(2025, 3, 1), datetime(2025, 3, 1, 1, 2, 3, tzinfo=UTC)),
    ]


def test_ops_tables_copy_the_catalog_and_log_builds(home: Path, catalog: Catalog) -> None:
    bid, seq = land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]),
                    state={"updated_since": "2025-03-01 00:00:00"})
    catalog.record_failure("lingang-notice-failed", "lingang", "notice", datetime.now(UTC), "token expired")
    build(home, catalog, registry=REGISTRY)
    build(home, catalog, registry=REGISTRY)
    assert query(home, "SELECT batch_id, status, landed_seq FROM ops.batches ORDER BY batch_id") == [
        (bid, "landed", seq),
        ("lingang-notice-failed", "failed", None),
    ]
    assert query(home, "SELECT source, entity, cursor FROM ops.sync_state") == [
        ("lingang", "notice", '{"updated_since": "2025-03-01 00:00:00"}'),
    ]
    builds = query(home, "SELECT entities, rows FROM ops.builds ORDER BY started_at")
    assert builds == [(["notice", "organization"], 1), (["notice", "organization"], 1)]


def test_partial_build_carries_other_entities_over(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1", "_is_deleted": True}, {"notice_id": "N2"}]))
    build(home, catalog, registry=REGISTRY)
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N3"}]))  # not merged below
    result = build(home, catalog, registry=REGISTRY, entities=["organization"])
    assert result.entities["notice"].carried_over
    assert query(home, "SELECT notice_id FROM core.notice") == [("N2",)]
    assert query(home, "SELECT count(*) FROM core._tombstones") == [(1,)]
    with pytest.raises(BuildError, match="unknown entities"):
        build(home, catalog, registry=REGISTRY, entities=["notices"])


def test_missing_file_fails_naming_entity_and_file_and_keeps_previous_build(home: Path, catalog: Catalog) -> None:
    first, _ = land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    build(home, catalog, registry=REGISTRY)
    before = digest(home / "warehouse.duckdb")
    current = (home / "published" / "CURRENT").readlink()
    bid, _ = land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2"}]))
    std = Lake(home).std_path("notice", "lingang", date(2025, 3, 1), bid)
    std.unlink()
    with pytest.raises(BuildError, match=rf"entity notice: std file .*{bid}\.parquet of batch {bid} is missing"):
        build(home, catalog, registry=REGISTRY)
    std.write_bytes(b"PAR1 not really")
    with pytest.raises(BuildError, match=rf"entity notice: std file .*{bid}\.parquet .* is unreadable"):
        build(home, catalog, registry=REGISTRY)
    assert digest(home / "warehouse.duckdb") == before
    assert (home / "published" / "CURRENT").readlink() == current
    assert not (home / "warehouse.duckdb.building").exists()
    # An applied batch's file is read again only by a full rebuild.
    Lake(home).std_path("notice", "lingang", date(2025, 3, 1), first).unlink()
    with pytest.raises(BuildError, match=rf"std file .*{first}\.parquet of batch {first} is missing"):
        build(home, catalog, registry=REGISTRY, full=True)


def test_file_overwritten_by_an_uncommitted_rerun_is_detected(home: Path, catalog: Catalog) -> None:
    bid, _ = land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    std = Lake(home).std_path("notice", "lingang", date(2025, 3, 1), bid)
    with ParquetSink(std, NOTICE.arrow_schema()) as sink:  # rerun landed its file, then died before the ledger
        sink.write(notice_rows("lingang", [{"notice_id": "N1"}, {"notice_id": "N2"}]))
    with pytest.raises(BuildError, match="has 2 rows but the ledger says 1"):
        build(home, catalog, registry=REGISTRY)


def _built_then_landed(home: Path, catalog: Catalog, row: dict) -> str:
    """N1 built, then ``row`` landed (not built); returns the built file's digest."""
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    build(home, catalog, registry=REGISTRY)
    before = digest(home / "warehouse.duckdb")
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [row]))
    return before


def _assert_kept(home: Path, before: str) -> None:
    """A failed build left the previous file as it was (N1 only) and nothing beside it."""
    assert digest(home / "warehouse.duckdb") == before
    assert query(home, "SELECT notice_id, title FROM core.notice") == [("N1", None)]
    assert sorted(p.name for p in home.glob("warehouse.duckdb*")) == ["warehouse.duckdb"]


def test_failure_late_in_a_build_leaves_the_previous_file_unchanged(
    home: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _built_then_landed(home, catalog, {"notice_id": "N2"})

    def broken_ops(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("killed while writing ops")

    monkeypatch.setattr(build_module, "build_ops", broken_ops)
    with pytest.raises(RuntimeError, match="killed while writing ops"):
        build(home, catalog, registry=REGISTRY)
    _assert_kept(home, before)


def test_a_copy_the_disk_refuses_fails_the_build_and_publishes_nothing(
    home: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy an incremental build starts from is flushed on a background thread; its error reaches the build."""
    before = _built_then_landed(home, catalog, {"notice_id": "N2"})
    flushed: list[int] = []

    def refused(fd: int) -> None:
        flushed.append(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(build_module.os, "fdatasync", refused)
    with pytest.raises(BuildError, match=r"cannot write the copy of the warehouse to disk .*Input/output error"):
        build(home, catalog, registry=REGISTRY)
    assert flushed, "the copied file was never flushed"
    _assert_kept(home, before)


def test_an_error_inside_the_incremental_transaction_is_the_one_reported(
    home: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An incremental build's core and marts are one DuckDB transaction: a failed statement in an
    entity's merge aborts it, and the build reports that statement's error (not the aborted
    transaction's refusals of the clean-up after it), keeping the previous file."""
    import warehouse.versions as versions_module

    before = _built_then_landed(home, catalog, {"notice_id": "N1", "title": "改"})
    calls: list[str] = []
    original = versions_module._apply_rows

    def failing_apply(con, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(con, *args, **kwargs)
        calls.append("apply")
        con.execute("SELECT * FROM core.no_such_table")

    monkeypatch.setattr(versions_module, "_apply_rows", failing_apply)
    with pytest.raises(BuildError, match=r"entity notice: merge failed: .*no_such_table"):
        build(home, catalog, registry=REGISTRY)
    assert "apply" in calls
    _assert_kept(home, before)
    land(home, catalog, "lingang", "w3", notice_rows("lingang", [{"notice_id": "N2"}]))
    monkeypatch.undo()
    build(home, catalog, registry=REGISTRY)
    assert query(home, "SELECT notice_id, title FROM core.notice ORDER BY 1") == [("N1", "改"), ("N2", None)]


def test_leftover_of_a_killed_build_is_discarded(home: Path, catalog: Catalog) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "warehouse.duckdb.building").write_bytes(b"half a build")
    build(home, catalog, registry=REGISTRY)
    assert query(home, "SELECT count(*) FROM core.notice") == [(0,)]
    assert not (home / "warehouse.duckdb.building").exists()


def test_reader_of_the_old_file_is_not_disturbed_by_a_new_build(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    build(home, catalog, registry=REGISTRY)
    reader = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2"}]))
        build(home, catalog, registry=REGISTRY)
        assert reader.execute("SELECT count(*) FROM core.notice").fetchall() == [(1,)]
    finally:
        reader.close()
    assert query(home, "SELECT count(*) FROM core.notice") == [(2,)]


HOLD_LOCK = """
import fcntl, os, sys, time
handle = open(sys.argv[1], "a+")
fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
handle.seek(0); handle.truncate(); handle.write(str(os.getpid())); handle.flush()
print("locked", flush=True)
sys.stdin.read()
"""


def test_lock_prevents_two_builders(home: Path, catalog: Catalog) -> None:
    home.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(home / "warehouse.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(BuildError, match=rf"another warehouse build holds .*warehouse\.lock \(pid {holder.pid}\)"):
            build(home, catalog, registry=REGISTRY)
        assert not (home / "warehouse.duckdb").exists()
    finally:
        holder.communicate(input="", timeout=30)
    build(home, catalog, registry=REGISTRY)  # released: the next build proceeds
    assert (home / "warehouse.duckdb").exists()


def test_builds_with_the_real_schema_registry(home: Path, catalog: Catalog) -> None:
    """Every canonical entity gets its (empty) core table with the lineage columns."""
    from schemas import ENTITIES

    result = build(home, catalog)
    names = [e.name for e in (ENTITIES.values() if isinstance(ENTITIES, dict) else ENTITIES)]
    assert len(names) == 13
    assert sorted(result.entities) == sorted(names)
    tables = {t for (t,) in query(home, "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'core'")}
    history = {"organization_history", "project_history", "cooperation_history", "training_base_history"}
    identity = {"organization_source", "organization_match", "_organization_mentions", "_uscc_checked"}
    assert tables == set(names) | {"_tombstones", "_key_changes"} | history | identity
    lineage = query(home, "SELECT DISTINCT column_name FROM duckdb_columns() WHERE schema_name = 'core' "
                          "AND table_name = 'notice' AND column_name LIKE '\\_%' ESCAPE '\\'")
    assert {c for (c,) in lineage} == {"_source", "_source_key", "_batch_id", "_extracted_at", "_record_hash"}


def test_a_build_runs_at_a_lower_priority_and_so_do_duckdbs_workers(monkeypatch) -> None:
    """IEHUB_BUILD_NICE: the build thread and the DuckDB threads it starts yield the CPU; the caller does not."""
    import os
    import threading

    import duckdb

    from warehouse import build as b

    def nice_of(tid: int) -> int:
        return int(open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()[16])

    seen: dict[str, object] = {}

    def fake_build(*args, **kwargs):  # type: ignore[no-untyped-def]
        before = set(os.listdir("/proc/self/task"))
        con = duckdb.connect(config={"threads": 2})
        con.execute("SELECT sum(range) FROM range(1000000)").fetchall()
        workers = set(os.listdir("/proc/self/task")) - before
        seen["own"] = nice_of(threading.get_native_id())
        seen["workers"] = {nice_of(int(t)) for t in workers}
        con.close()
        return "built"

    monkeypatch.setenv("IEHUB_BUILD_NICE", "7")
    caller = nice_of(threading.get_native_id())
    assert b.at_build_priority(fake_build)(Path("/nonexistent"), None) == "built"
    assert seen["own"] == min(19, caller + 7)
    assert seen["workers"] and seen["workers"] == {seen["own"]}
    assert nice_of(threading.get_native_id()) == caller


def test_memory_freed_before_a_build_is_released_on_the_callers_thread(monkeypatch) -> None:
    """The Arrow pool (mimalloc) returns only the calling thread's freed pages: the release must run
    on the thread that synced, before the build's own thread starts."""
    import threading

    from warehouse import build as b

    released: list[str] = []
    monkeypatch.setattr(b, "_release_memory", lambda: released.append(threading.current_thread().name))
    monkeypatch.setenv("IEHUB_BUILD_NICE", "7")
    assert b.at_build_priority(lambda *a, **k: "built")(Path("/nonexistent"), None) == "built"
    assert released == [threading.current_thread().name]


def test_memory_release_collects_cyclic_garbage_only_after_arrow_held_much(monkeypatch) -> None:
    """A process that never held much Arrow memory (a build on its own) skips the gc pass (20-35 ms);
    one whose Arrow pool passed the threshold (a sync, then its build) still collects."""
    import pyarrow as pa

    from warehouse import build as b

    collected: list[int] = []
    monkeypatch.setattr(b.gc, "collect", lambda *a: collected.append(1) or 0)
    monkeypatch.setattr(b, "_COLLECT_AFTER_BYTES", pa.default_memory_pool().max_memory() + 2**30)
    b._release_memory()
    assert collected == []
    monkeypatch.setattr(b, "_COLLECT_AFTER_BYTES", 0)
    b._release_memory()
    assert collected == [1]


def test_a_build_releases_memory_once(home: Path, catalog: Catalog, monkeypatch) -> None:
    """At a lower priority the caller's thread releases before the build's thread starts, and the build
    does not release again (a gc pass and malloc_trim, ~10 ms); at priority 0 the build releases itself."""
    import threading

    from warehouse import build as b

    released: list[str] = []
    monkeypatch.setattr(b, "_release_memory", lambda: released.append(threading.current_thread().name))
    monkeypatch.setenv("IEHUB_BUILD_NICE", "7")
    build(home, catalog, registry=REGISTRY)
    assert released == [threading.current_thread().name]
    released.clear()
    monkeypatch.setenv("IEHUB_BUILD_NICE", "0")
    build(home, catalog, registry=REGISTRY)
    assert released == [threading.current_thread().name]


def test_a_failing_build_raises_in_the_callers_thread_and_a_bad_nice_is_named(monkeypatch) -> None:
    from warehouse import build as b

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise b.BuildError("entity project: merge failed")

    with pytest.raises(b.BuildError, match="merge failed"):
        b.at_build_priority(boom)(Path("/nonexistent"), None)
    with pytest.raises(b.BuildError, match="IEHUB_BUILD_NICE='high'"):
        b.build_nice("high")
    assert b.build_nice("0") == 0


def test_a_build_says_where_its_time_went_and_counts_rows_per_entity(home: Path, catalog: Catalog) -> None:
    """BuildResult.stages names every stage once (the benchmarks print them); rows and tombstones per entity."""
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [
        {"notice_id": "N1", "title": "申报通知"}, {"notice_id": "N2", "title": "人才需求"}]))
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2", "_is_deleted": True}]))
    result = build(home, catalog, registry=REGISTRY)
    assert list(result.stages) == ["open", "core", "marts", "ops", "checkpoint", "replace", "publish"]
    assert all(v >= 0 for v in result.stages.values())
    assert (result.entities["notice"].rows, result.entities["notice"].tombstones) == (1, 1)
    # An incremental build with nothing new keeps the counts (read in one query, not per entity).
    again = build(home, catalog, registry=REGISTRY)
    assert (again.entities["notice"].rows, again.entities["notice"].tombstones) == (1, 1)
    assert again.entities["notice"].changes == 0


def test_ops_tables_are_refreshed_in_place_with_their_comments(home: Path, catalog: Catalog) -> None:
    """A later build replaces ops.batches' rows (the new batch is there) and keeps its comments."""
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1", "title": "申报通知"}]))
    build(home, catalog, registry=REGISTRY)
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2", "title": "人才需求"}]))
    build(home, catalog, registry=REGISTRY)
    assert query(home, "SELECT count(*), count(DISTINCT batch_id) FROM ops.batches") == [(2, 2)]
    comments = query(home, "SELECT comment FROM duckdb_columns() WHERE schema_name = 'ops' AND table_name = 'batches' "
                           "AND column_name = 'landed_seq'")
    assert comments == [("落地序号 / merge order: later landings win",)]
    assert query(home, "SELECT comment FROM duckdb_tables() WHERE schema_name = 'ops' AND table_name = 'batches'")[0][0] \
        .startswith("批次台账")


def test_the_checkpoint_compacts_deleted_rows_only_past_a_share(tmp_path: Path) -> None:
    # A 1% change leaves its deleted rows in place (no whole-table rewrite per build); past the
    # share (or a row group's worth) the checkpoint compacts them, and a wholly deleted row group goes anyway.
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        con.execute("CREATE TABLE t AS SELECT range AS i FROM range(400000)")
        con.execute("CREATE TABLE small AS SELECT range AS i FROM range(1000)")
        con.execute("CHECKPOINT")
        con.execute("DELETE FROM small WHERE i < 900")  # a small table's dead rows never trigger it
        assert not build_module.needs_vacuum(con)
        con.execute("DELETE FROM t WHERE i % 100 = 0")  # 1%
        assert not build_module.needs_vacuum(con)
        con.execute("SET max_vacuum_tasks = 0")
        con.execute("CHECKPOINT")
        con.execute("DELETE FROM t WHERE i % 100 BETWEEN 1 AND 10")  # now 11% of the stored rows are dead
        assert build_module.needs_vacuum(con)
    finally:
        con.close()


def test_dead_rows_are_counted_inside_the_builds_transaction(tmp_path: Path) -> None:
    # An incremental build decides before its commit, inside its transaction, where DuckDB's stored
    # size leaves out the rows the transaction appended: an update of 11% (new versions in, old
    # rows deleted) must still count as 11% dead, and 1% as 1%.
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        con.execute("CREATE TABLE t AS SELECT range AS i, range + 1 AS change_version FROM range(400000)")
        con.execute("CHECKPOINT")
        for share, expected in ((1, False), (11, True)):
            con.execute("BEGIN TRANSACTION")
            con.execute(f"INSERT INTO t SELECT i, 400000 + i + 1 FROM t WHERE i % 100 < {share}")
            con.execute(f"DELETE FROM t WHERE i % 100 < {share} AND change_version <= 400000")
            assert con.execute("SELECT count(*) FROM t").fetchall() == [(400000,)]
            assert build_module.needs_vacuum(con, since=400000) is expected, f"{share}% updated"
            con.execute("ROLLBACK")
    finally:
        con.close()


def test_the_building_file_is_a_reflink_where_the_filesystem_has_them_else_a_copy(tmp_path: Path) -> None:
    """build_module.clone_or_copy: the same bytes either way; a clone exactly where coreutils can make one."""
    source = tmp_path / "warehouse.duckdb"
    source.write_bytes(hashlib.sha256(b"iehub").digest() * 40_000)
    probe = subprocess.run(["cp", "--reflink=always", str(source), str(tmp_path / "probe")], capture_output=True)
    cloned = build_module.clone_or_copy(source, tmp_path / "building.duckdb")
    assert cloned == (probe.returncode == 0)
    assert (tmp_path / "building.duckdb").read_bytes() == source.read_bytes()


def test_a_filesystem_without_reflinks_gets_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def no_reflinks(fd: int, request: int, arg: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(build_module.fcntl, "ioctl", no_reflinks)
    source = tmp_path / "warehouse.duckdb"
    source.write_bytes(b"DUCK" * 100_000)
    (tmp_path / "building.duckdb").write_bytes(b"a killed build's leftover, longer than the copy" * 10_000)
    assert build_module.clone_or_copy(source, tmp_path / "building.duckdb") is False
    assert (tmp_path / "building.duckdb").read_bytes() == source.read_bytes()
    with pytest.raises(FileNotFoundError):  # a real fault is the copy's own error
        build_module.clone_or_copy(tmp_path / "missing.duckdb", tmp_path / "other.duckdb")


def test_an_incremental_build_on_a_reflink_equals_one_on_a_copy(home: Path, catalog: Catalog,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever way the building file was made, the build's result is the same (copy-on-write leaves
    the published file as it was)."""
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1", "title": "通知"}]))
    build(home, catalog, registry=REGISTRY)
    published = (home / "warehouse.duckdb").read_bytes()
    calls: list[bool] = []
    real = build_module.clone_or_copy
    monkeypatch.setattr(build_module, "clone_or_copy", lambda s, t: calls.append(real(s, t)) or calls[-1])
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2", "title": "更正"}]))
    build(home, catalog, registry=REGISTRY)
    assert len(calls) == 1
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT notice_id FROM core.notice ORDER BY 1").fetchall() == [("N1",), ("N2",)]
    finally:
        con.close()
    snapshots = sorted((home / "published").glob("*/warehouse.duckdb"))
    assert published in [p.read_bytes() for p in snapshots]  # the earlier snapshot is untouched


def test_an_incremental_build_attaches_its_copy_under_the_name_a_direct_open_gives(
        home: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DuckDB instance starts while the file is copied, then attaches it: under the name DuckDB
    gives the building file opened directly, so the build's SQL (current_database()) reads the same."""
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1", "title": "通知"}]))
    build(home, catalog, registry=REGISTRY)
    lake = Lake(home)
    con = build_module._connect_to_copy(lake)
    try:
        assert con.execute("SELECT current_database()").fetchall() == [(build_module._BUILDING_DB,)]
        assert con.execute("SELECT notice_id FROM core.notice").fetchall() == [("N1",)]
        path = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
        assert path == [(str(lake.building_path),)]
    finally:
        con.close()
    direct = duckdb.connect(str(lake.building_path))
    try:
        assert direct.execute("SELECT current_database()").fetchall() == [(build_module._BUILDING_DB,)]
    finally:
        direct.close()
    lake.building_path.unlink()


def test_a_copy_that_fails_fails_the_build_with_the_file_named(home: Path, catalog: Catalog,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1", "title": "通知"}]))
    build(home, catalog, registry=REGISTRY)

    def full_disk(source: Path, target: Path) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build_module, "clone_or_copy", full_disk)
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2", "title": "更正"}]))
    with pytest.raises(BuildError, match=r"cannot copy .*warehouse\.duckdb .*No space left on device"):
        build(home, catalog, registry=REGISTRY)
    assert not Lake(home).building_path.exists()
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT notice_id FROM core.notice").fetchall() == [("N1",)]
    finally:
        con.close()
