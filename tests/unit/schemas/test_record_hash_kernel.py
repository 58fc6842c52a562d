"""The record hash's C loop (schemas/_md5.c) gives exactly MD5 per row, as hashlib and as DuckDB's
md5(concat_ws(...)) (the recipe's other way, used without the extension) give it."""
from __future__ import annotations

import hashlib
import random
from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from schemas import lineage
from schemas.entities import get_entity
from schemas.lineage import record_hash


def _columns(cols: list[list[str]]) -> list[tuple[bytes, np.ndarray]]:
    out = []
    for col in cols:
        encoded = [v.encode() for v in col]
        out.append((b"".join(encoded), np.cumsum([0, *map(len, encoded)]).astype(np.int32)))
    return out


def _hex(digests: bytes) -> list[str]:
    return [digests[i:i + 32].decode() for i in range(0, len(digests), 32)]


def _kernel():  # type: ignore[no-untyped-def]
    assert lineage._md5 is not None, "schemas/_md5.c was not built: run `make install`"
    return lineage._md5


def test_the_extension_was_built() -> None:
    _kernel()


@pytest.mark.parametrize("threads", [1, 2, 3, 8, 100])
def test_md5_of_every_padding_length_and_row_split(threads: int) -> None:
    # lengths around MD5's block (55, 56, 63, 64, 119, 120 …) and rows enough to split over threads
    rng = random.Random(threads)
    alphabet = "ab临港\x00\x1f🙂"
    first = ["".join(rng.choices(alphabet, k=n)) for n in range(0, 200)] * 60
    second = ["".join(rng.choices(alphabet, k=rng.randint(0, 70))) for _ in first]
    got = _hex(_kernel().hex_rows(_columns([first, second]), 0x1F, threads))
    assert got == [hashlib.md5(f"{a}\x1f{b}".encode()).hexdigest() for a, b in zip(first, second)]


def test_one_column_and_many_columns() -> None:
    cols = [[f"v{c}-{r}" * (r % 7) for r in range(500)] for c in range(20)]
    assert _hex(_kernel().hex_rows(_columns(cols[:1]), 0x1F, 2)) == [hashlib.md5(v.encode()).hexdigest() for v in cols[0]]
    assert _hex(_kernel().hex_rows(_columns(cols), 0x2C, 2)) == [
        hashlib.md5(",".join(col[r] for col in cols).encode()).hexdigest() for r in range(500)]
    assert _kernel().hex_rows(_columns([[], []]), 0x1F, 2) == b""


def test_bad_columns_are_refused_with_what_is_wrong() -> None:
    md5 = _kernel()
    good = _columns([["a", "b"]])[0]
    with pytest.raises(ValueError, match="at least one column"):
        md5.hex_rows([], 0x1F, 1)
    with pytest.raises(ValueError, match="one byte"):
        md5.hex_rows([good], 300, 1)
    with pytest.raises(ValueError, match="column 1: offsets must be int32, one more than the rows"):
        md5.hex_rows([good, (b"abc", np.array([0, 3], np.int32))], 0x1F, 1)
    with pytest.raises(ValueError, match="column 0: offsets point outside"):
        md5.hex_rows([(b"ab", np.array([0, 1, 5], np.int32))], 0x1F, 1)
    with pytest.raises(ValueError, match="column 0: offsets must not decrease"):
        md5.hex_rows([(b"ab", np.array([0, 2, 1], np.int32))], 0x1F, 1)
    with pytest.raises(TypeError, match="pair"):
        md5.hex_rows([b"ab"], 0x1F, 1)


def _projects(n: int) -> pa.Table:
    project = get_entity("project")
    rng = random.Random(n)
    cols: dict[str, pa.Array] = {}
    for f in project.business_fields:
        if pa.types.is_string(f.type):
            values = [None if rng.random() < 0.2 else "".join(rng.choices("产教融合ab1（）", k=rng.randint(0, 90)))
                      for _ in range(n)]
        elif pa.types.is_decimal(f.type):
            values = [None if rng.random() < 0.2 else Decimal(rng.randint(0, 10**9)) / 100 for _ in range(n)]
        elif pa.types.is_timestamp(f.type):
            values = [None if rng.random() < 0.2 else datetime(2024, 1, 1, tzinfo=timezone.utc).fromtimestamp(
                rng.randint(0, 2 * 10**9), timezone.utc) for _ in range(n)]
        elif pa.types.is_date(f.type):
            values = [None if rng.random() < 0.2 else datetime(2020, 1, 1).date().fromordinal(730000 + rng.randint(0, 9000))
                      for _ in range(n)]
        else:
            values = [None] * n
        cols[f.name] = pa.array(values, f.type)
    return pa.table(cols)


@pytest.mark.parametrize("rows,cut", [(1, 0), (5_000, 0), (20_000, 1_234)])
def test_record_hash_is_the_same_both_ways(rows: int, cut: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # sliced tables (non-zero offsets), nulls, decimals, dates and timestamps: the recipe's text each time
    project = get_entity("project")
    table = _projects(rows + cut).slice(cut)
    c_way = record_hash(table, project)
    monkeypatch.setattr(lineage, "_md5", None)
    duckdb_way = record_hash(table, project)
    assert c_way.type == pa.string() and len(c_way) == rows and c_way.null_count == 0
    assert c_way.to_pylist() == duckdb_way.to_pylist()
