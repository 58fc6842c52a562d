"""The snapshot diff (digests, unchanged rows, keys gone), against a plain-Python reading of the same rows."""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.files.stream import diff_snapshot, row_digests


def python_digest(cells: list[str | None]) -> str:
    """The recipe spelt out: cells joined in Python, DuckDB's hash() of the text as 16 hex characters."""
    text = "\x1f".join("\x00" if c is None else c for c in cells)
    # a connection of its own: a fetchone() on DuckDB's module-level connection left its result open,
    # and the next test to use that connection (duckdb.sql) failed with "unfinished result"
    with duckdb.connect() as con:
        (value,) = con.execute("SELECT hash(?::VARCHAR)", [text]).fetchone()
    return f"{value:016x}"


def snapshot(rows: list[tuple[str | None, str | None]]) -> tuple[pa.Table, pa.Array]:
    table = pa.table({"项目编号": pa.array([r[0] for r in rows], pa.string()),
                      "项目名称": pa.array([r[1] for r in rows], pa.string())})
    return table, table.column("项目编号").combine_chunks()


def test_unchanged_rows_and_keys_gone_in_their_order() -> None:
    before_table, before_keys = snapshot([("YP001", "产教融合实训基地"), ("YP002", "智能制造工坊"),
                                          ("YP003", "集成电路学院"), ("YP004", "生物医药联合实验室")])
    before = row_digests(before_table, ["项目编号", "项目名称"])
    table, keys = snapshot([("YP004", "生物医药联合实验室"), ("YP002", "智能制造工坊（二期）"), ("YP005", "新能源汽车学院"),
                            (None, "无编号的行"), ("YP001", "产教融合实训基地")])
    diff = diff_snapshot(table, ["项目编号", "项目名称"], keys, before, before_keys)
    assert diff.digests.to_pylist() == [python_digest(list(r.values())) for r in table.to_pylist()]
    assert diff.unchanged is not None and diff.unchanged.to_pylist() == [True, False, False, False, True]
    assert sorted(diff.present.to_pylist()) == ["YP001", "YP002", "YP004", "YP005"]  # no NULL key
    assert diff.gone.to_pylist() == ["YP003"]


def test_without_the_previous_digests_every_row_counts_as_changed() -> None:
    table, keys = snapshot([("YP001", "a"), ("YP001", "a")])
    diff = diff_snapshot(table, ["项目编号", "项目名称"], keys, None, pa.array(["YP009", "YP001"], pa.string()))
    assert diff.unchanged is None and diff.present.to_pylist() == ["YP001"] and diff.gone.to_pylist() == ["YP009"]
    assert diff.repeated is not None and diff.repeated.to_pylist() == [True, True]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["K1", "K2", "K3", "K4", None]), st.sampled_from(["甲", "乙", None])),
                max_size=30),
       st.lists(st.sampled_from(["K1", "K2", "K3", "K5", "K6"]), unique=True),
       st.integers(0, 1000))
def test_matches_a_plain_reading_and_keeps_the_row_order(rows: list[tuple[str | None, str | None]],
                                                         live: list[str], seed: int) -> None:
    random.Random(seed).shuffle(rows)
    table, keys = snapshot(rows)
    before = pa.array([python_digest(["K1", "甲"]), python_digest(["K2", None])], pa.string())
    diff = diff_snapshot(table, ["项目编号", "项目名称"], keys, before, pa.array(live, pa.string()))
    digests = [python_digest([k, v]) for k, v in rows]
    assert diff.digests.to_pylist() == digests
    assert diff.unchanged is not None and diff.unchanged.to_pylist() == [d in before.to_pylist() for d in digests]
    present = {k for k, _ in rows if k is not None}
    assert set(diff.present.to_pylist()) == present and len(diff.present) == len(present)
    assert diff.gone.to_pylist() == [k for k in live if k not in present]
    twice = {k for k in present if [r[0] for r in rows].count(k) > 1}
    assert (diff.repeated.to_pylist() if diff.repeated is not None else [False] * len(rows)) == \
        [k in twice for k, _ in rows]


def test_many_batches_keep_the_row_order_and_the_printf_form_of_the_recipe() -> None:
    rows = [(f"YP{i:05d}", None if i % 7 == 0 else f"项目{i}") for i in range(3000)]
    table, keys = snapshot(rows)
    table = pa.Table.from_batches(table.to_batches(max_chunksize=7))  # DuckDB's threads take batches apart
    con = duckdb.connect()
    con.register("t", table.append_column("_i", pa.array(range(len(rows)), pa.int64())))
    expected = [d for (d,) in con.execute(
        "SELECT printf('%016x', hash(concat_ws(chr(31), coalesce(项目编号, chr(0)), coalesce(项目名称, chr(0))))) "
        "FROM t ORDER BY _i").fetchall()]
    before = pa.array([None if i % 3 else d for i, d in enumerate(expected)], pa.string())  # every third kept
    diff = diff_snapshot(table, ["项目编号", "项目名称"], keys, before, keys)
    assert diff.digests.to_pylist() == expected == row_digests(table, ["项目编号", "项目名称"]).to_pylist()
    assert diff.unchanged is not None and diff.unchanged.to_pylist() == [i % 3 == 0 for i in range(len(rows))]


def test_previous_digests_of_another_form_are_refused_not_compared() -> None:
    table, keys = snapshot([("YP001", "a")])
    md5_like = pa.array(["0123456789abcdef0123456789abcdef"], pa.string())  # never equal: would drop nothing
    with pytest.raises(ValueError, match="not 16 hex characters each.*snapshot_digests"):
        diff_snapshot(table, ["项目编号", "项目名称"], keys, md5_like, keys)
