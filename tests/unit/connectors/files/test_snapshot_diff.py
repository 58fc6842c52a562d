"""The snapshot diff (digests, unchanged rows, keys gone), against a plain-Python reading of the same rows."""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.files.stream import diff_snapshot, row_digests


def python_digest(cells: list[str | None]) -> str:
    """The recipe spelt out: cells joined in Python, DuckDB's hash() of the text as 16 hex characters."""
    text = "\x1f".join("\x00" if c is None else c for c in cells)
    (value,) = duckdb.execute("SELECT hash(?::VARCHAR)", [text]).fetchone()
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
