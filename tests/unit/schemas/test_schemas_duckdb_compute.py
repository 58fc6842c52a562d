"""The process's shared in-memory DuckDB: one instance, cursors of their own, a new one after a fork."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from schemas import duckdb_compute


def _instance_id() -> int:
    with duckdb_compute.cursor() as con:
        con.execute("CREATE TABLE IF NOT EXISTS main.marker AS SELECT 1 AS x")  # a table of the database
        return id(duckdb_compute._INSTANCE[0][1])


def test_cursors_share_one_database_but_not_what_they_register() -> None:
    with duckdb_compute.cursor() as a:
        a.execute("CREATE OR REPLACE TABLE main.shared_rows AS SELECT 42 AS v")
        a.register("mine", pa.table({"v": [1]}))
        a.execute("CREATE TEMP TABLE scratch AS SELECT 1 AS v")
        with duckdb_compute.cursor() as b:
            assert b.sql("SELECT v FROM main.shared_rows").fetchall() == [(42,)]  # the same database
            with pytest.raises(Exception, match="mine"):
                b.sql("SELECT * FROM mine").fetchall()  # another cursor's registered table is not visible
            with pytest.raises(Exception, match="scratch"):
                b.sql("SELECT * FROM scratch").fetchall()  # nor its temp tables
    with duckdb_compute.cursor() as c:
        with pytest.raises(Exception, match="scratch"):
            c.sql("SELECT * FROM scratch").fetchall()  # closed with the cursor
        c.execute("DROP TABLE main.shared_rows")


def test_the_instance_keeps_row_order_for_projections() -> None:
    # record hashes are aligned with their rows by position
    table = pa.Table.from_batches(pa.table({"i": list(range(300_000))}).to_batches(max_chunksize=2_048))
    with duckdb_compute.cursor() as con:
        assert con.sql("SELECT current_setting('preserve_insertion_order')").fetchall() == [(True,)]
        con.register("t", table)
        out = con.sql("SELECT i * 2 AS j FROM t").to_arrow_table().column("j").to_pylist()
    assert out == [i * 2 for i in range(300_000)]


def test_threads_get_cursors_at_once() -> None:
    def work(n: int) -> int:
        with duckdb_compute.cursor() as con:
            con.register("t", pa.table({"n": list(range(n))}))
            return int(con.sql("SELECT sum(n) FROM t").fetchall()[0][0])

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(work, range(1_000, 1_040)))
    assert got == [n * (n - 1) // 2 for n in range(1_000, 1_040)]
    assert len(duckdb_compute._INSTANCE) == 1


def _child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    parent_instance = duckdb_compute._INSTANCE[0][1]
    child = _instance_id()
    queue.put((os.getpid(), child != id(parent_instance), parent_instance in duckdb_compute._INHERITED))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform")
def test_a_forked_child_opens_its_own_instance_and_leaves_the_parents_alone() -> None:
    before = _instance_id()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    pid, own, kept = queue.get(timeout=60)
    proc.join(60)
    assert proc.exitcode == 0
    assert pid != os.getpid() and own and kept
    assert _instance_id() == before  # the parent still uses its instance
