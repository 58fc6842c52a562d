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
    with pytest.raises(ValueError, match="column 1: every column must have the same rows"):
        md5.hex_rows([good, (b"abc", np.array([0, 3], np.int32))], 0x1F, 1)
    with pytest.raises(ValueError, match="column 0: offsets point outside"):
        md5.hex_rows([(b"ab", np.array([0, 1, 5], np.int32))], 0x1F, 1)
    with pytest.raises(ValueError, match="column 0: offsets must not decrease"):
        md5.hex_rows([(b"ab", np.array([0, 2, 1], np.int32))], 0x1F, 1)
    with pytest.raises(TypeError, match="pair"):
        md5.hex_rows([b"ab"], 0x1F, 1)
    days = np.array([0, 1], np.int32).view(np.uint8)
    with pytest.raises(ValueError, match="column 1: kind must be"):
        md5.hex_rows([good, (99, days, None, 0)], 0x1F, 1)
    with pytest.raises(ValueError, match="column 0: an INT column's param is its width"):
        md5.hex_rows([(md5.INT, days, None, 3)], 0x1F, 1)
    with pytest.raises(ValueError, match="column 0: a DECIMAL column's scale must be 0-6"):
        md5.hex_rows([(md5.DECIMAL, bytes(32), None, 7)], 0x1F, 1)
    with pytest.raises(ValueError, match="column 0: data is not a whole number of values"):
        md5.hex_rows([(md5.DATE, bytes(7), None, 0)], 0x1F, 1)
    with pytest.raises(ValueError, match="column 0: nulls must have one byte per row"):
        md5.hex_rows([(md5.DATE, days, bytes(3), 0)], 0x1F, 1)
    with pytest.raises(ValueError, match="column 0: a date outside the years 0000-9999"):
        md5.hex_rows([(md5.DATE, np.array([0, 2932897], np.int32).view(np.uint8), None, 0)], 0x1F, 1)
    # a null row's date is never read: Arrow leaves whatever was there
    assert len(md5.hex_rows([(md5.DATE, np.array([0, 2932897], np.int32).view(np.uint8), bytes([0, 1]), 0)],
                            0x1F, 1)) == 64
    with pytest.raises(TypeError, match="\\(kind, data, nulls, param\\)"):
        md5.hex_rows([(1, 2, 3)], 0x1F, 1)


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


def _typed_cases() -> list[pa.Array]:
    """Arrays of every type the loop writes itself, with the edges of each and nulls."""
    rng = random.Random(7)
    ints = [-2**63, 2**63 - 1, 0, -1, 1, 9, 10, -10, *(rng.randint(-2**63, 2**63 - 1) for _ in range(300))]
    cases = [pa.array([*ints, None], pa.int64())]
    for width in (8, 16, 32):
        low, high = -2 ** (width - 1), 2 ** (width - 1) - 1
        cases.append(pa.array([low, high, 0, -1, *(rng.randint(low, high) for _ in range(300)), None],
                              getattr(pa, f"int{width}")()))
    days = [-719528, 2932896, 0, -1, 59, 60, -719528 + 59, -719528 + 60, 11016, 10957,
            *(rng.randint(-719528, 2932896) for _ in range(2000))]
    cases.append(pa.array([*days, None], pa.int32()).cast(pa.date32()))
    for scale in range(7):
        for precision in (18, 38):
            top = 10**precision - 1
            values = [0, 1, -1, 5, -5, top, -top, 10**scale, -(10**scale), 10**scale - 1,
                      *(rng.randint(-top, top) for _ in range(300)), *(rng.randint(-10**7, 10**7) for _ in range(300))]
            cases.append(pa.array([Decimal(f"{v}E-{scale}") for v in values] + [None], pa.decimal128(precision, scale)))
    cases.append(pa.array([True, False, None, *(rng.random() < 0.5 for _ in range(100))], pa.bool_()))
    stamps = pa.array([0, -1, 1, 2**62, -2**62, *(rng.randint(-2**62, 2**62) for _ in range(100)), None],
                      pa.timestamp("us", tz="UTC"))
    cases += [stamps, stamps.cast(pa.timestamp("ms", tz="Asia/Shanghai"), safe=False)]
    return cases


@pytest.mark.parametrize("column", _typed_cases(), ids=lambda c: str(c.type))
def test_typed_columns_are_written_as_arrows_cast_writes_them(column: pa.Array) -> None:
    # the text the loop writes itself for a date, number, timestamp or boolean is exactly the text
    # lineage._hash_text gets from Arrow's cast (a null as the null mark), whole and sliced
    for part in (column, column.slice(3), column.slice(1, 50)):
        typed = lineage._c_column(part)
        assert typed is not None
        text = lineage._hash_text(part).to_pylist()
        got = _hex(_kernel().hex_rows([(b"x" * len(part), np.arange(len(part) + 1, dtype=np.int32)), typed], 0x1F, 2))
        assert got == [hashlib.md5(f"x\x1f{v}".encode()).hexdigest() for v in text]


def test_columns_the_loop_does_not_write_go_through_arrows_cast(monkeypatch: pytest.MonkeyPatch) -> None:
    # years past 9999 (Arrow writes five digits), scales past 6 (Arrow writes an exponent), floats,
    # unsigned integers: cast to text first, and the hash is the same as the DuckDB way's
    assert lineage._c_column(pa.array([0, 2932897], pa.date32())) is None
    assert lineage._c_column(pa.array([Decimal("1E-7")], pa.decimal128(20, 7))) is None
    assert lineage._c_column(pa.array([1.5], pa.float64())) is None
    assert lineage._c_column(pa.array([1], pa.uint32())) is None
    assert lineage._c_column(pa.array([None, None], pa.date32())) is not None  # all null: nothing to check
    project = get_entity("project")
    table = _projects(300)
    dates = [f.name for f in project.business_fields if pa.types.is_date(f.type)]
    table = table.set_column(table.schema.get_field_index(dates[0]), dates[0],
                             pa.array([3_000_000 + i for i in range(300)], pa.int32()).cast(pa.date32()))
    c_way = record_hash(table, project)
    monkeypatch.setattr(lineage, "_md5", None)
    assert c_way.to_pylist() == record_hash(table, project).to_pylist()
