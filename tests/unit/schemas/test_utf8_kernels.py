"""The C loops of the halfwidth and trim normalisers (schemas/_utf8.c) give exactly what the rules
give: to_halfwidth per value, Arrow's own trims; and so does the numpy fallback used without them."""
from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import normalise
from schemas.normalise import NORMALISERS, to_halfwidth

ZW = "\u200b\u200c\u200d\u2060\ufeff"
TRICKY = ("ａＢ１２（）～！　 临港ab1\u00a0\u0085\u00b7\t\n\x0b\x1c\u1680\u2000\u200a\u2028\u202f\u205f"
          "\u200b\u200d\u2060\ufeff—“”…。、€\uff5f\uff00\u3001\u30000\U0001f600\U00020000")


@contextmanager
def kernels(on: bool) -> Iterator[None]:
    """Run the normalisers with the C loops (on) or with the numpy passes that stand in without them."""
    saved = normalise._utf8
    normalise._utf8 = saved if on else None
    try:
        yield
    finally:
        normalise._utf8 = saved


def arrow_trim(arr: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(pc.utf8_trim(arr, characters=ZW))


def test_the_extension_was_built() -> None:
    # `pip install -e .` compiles schemas/_utf8.c; without it the numpy passes give the same, slower
    assert normalise._utf8 is not None, "schemas/_utf8.c was not built: run `make install`"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=TRICKY, max_size=12), st.text(max_size=6)), max_size=25),
       st.integers(min_value=0, max_value=5))
def test_both_ways_agree_with_the_rules_on_slices(values: list[str | None], cut: int) -> None:
    # slices start mid-buffer (non-zero offsets); values hold every width of UTF-8 sequence
    arr = pa.array(values, type=pa.string()).slice(min(cut, len(values)))
    kept = values[min(cut, len(values)):]
    for on in (True, False):
        with kernels(on):
            assert NORMALISERS["halfwidth"](arr).values.to_pylist() == [None if v is None else to_halfwidth(v) for v in kept]
            assert NORMALISERS["trim"](arr).values.to_pylist() == arrow_trim(arr).to_pylist()


@pytest.mark.parametrize("on", [True, False], ids=["c", "numpy"])
def test_every_code_point_at_either_end(on: bool) -> None:
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    arr = pa.array([c + "x" for c in chars] + ["x" + c for c in chars] + chars, type=pa.string())
    with kernels(on):
        assert NORMALISERS["trim"](arr).values.equals(arrow_trim(arr))
        assert NORMALISERS["halfwidth"](arr).values.to_pylist() == [to_halfwidth(v) for v in arr.to_pylist()]


def test_nothing_beyond_the_bmp_is_trimmed() -> None:
    # why the C loop's table stops at U+FFFF
    assert not normalise._arrow_trims(normalise._scalars(0x10000, 0x110000)).any()


def test_c_finds_exactly_the_rows_arrow_changes_numpy_a_superset() -> None:
    # '（' and '）' share the lead byte EF with U+FEFF; U+00B7 shares C2 with U+00A0
    titles = pa.array(["校企合作实训基地（1）", "（二期）智能制造工坊", " 前导空格", "尾随全角空格\u3000", "\ufeff带BOM", "末尾\u00b7",
                       "", None, "\u00a0"], pa.string())
    with kernels(True):
        assert normalise._untrimmed_rows(titles).tolist() == [2, 3, 4, 8]
    with kernels(False):
        assert normalise._untrimmed_rows(titles).tolist() == [2, 3, 4, 5, 8]


def test_unchanged_columns_are_not_copied() -> None:
    arr = pa.array(["上海电机学院（12）", None, "abc"], pa.string())
    assert NORMALISERS["halfwidth"](pa.array(["上海", None, "abc"])).values.to_pylist() == ["上海", None, "abc"]
    plain = pa.array(["上海", None, "abc"], pa.string())
    assert NORMALISERS["halfwidth"](plain).values is plain
    assert NORMALISERS["trim"](plain).values is plain
    assert NORMALISERS["halfwidth"](arr).values.to_pylist() == ["上海电机学院(12)", None, "abc"]


def test_a_large_random_column_both_ways() -> None:
    rng = random.Random(18)
    alphabet = list(TRICKY) + list("校企合作实训基地智能制造abcXYZ0123456789")
    values = ["".join(rng.choices(alphabet, k=rng.randint(0, 40))) if rng.random() > 0.05 else None for _ in range(20_000)]
    arr = pa.chunked_array([pa.array(values[:7_000], pa.string()), pa.array(values[7_000:], pa.string())])
    expected_hw = [None if v is None else to_halfwidth(v) for v in values]
    expected_trim = arrow_trim(arr.combine_chunks()).to_pylist()
    for on in (True, False):
        with kernels(on):
            assert NORMALISERS["halfwidth"](arr).values.to_pylist() == expected_hw
            assert NORMALISERS["trim"](arr).values.to_pylist() == expected_trim


def test_bad_buffers_are_refused_with_what_is_wrong() -> None:
    utf8 = normalise._utf8
    if utf8 is None:
        pytest.fail("schemas/_utf8.c was not built: run `make install`")
    table = bytes(0x10000)
    values = np.frombuffer("ａb".encode(), np.uint8)
    with pytest.raises(ValueError, match="65536"):
        utf8.halfwidth(values, np.array([0, 4], np.int32), b"\x00")
    with pytest.raises(ValueError, match="outside the values"):
        utf8.ends_in(values, np.array([0, 9], np.int32), table)
    with pytest.raises(ValueError, match="decrease"):
        utf8.ends_in(values, np.array([0, 3, 1], np.int32), table)
    with pytest.raises(ValueError, match="int32"):
        utf8.halfwidth(values, b"\x00\x00", table)
    # a three-byte character cut by its row's end is left as it is, never read past
    assert utf8.halfwidth(values, np.array([0, 2, 4], np.int32), normalise._HALFWIDTH_TABLE) is not None
    assert utf8.halfwidth(values[:2], np.array([0, 2], np.int32), normalise._HALFWIDTH_TABLE) is None


# The shapes: the screening regular expressions before a vectorised cast, decided in C -------------

SHAPE_SAMPLES = ["2024-03-01", "1999-12-31", "1899-12-31", "0999-01-01", "2024-3-01", "2024-03-01 08:30:00",
                 "2024-03-01T08:30:00.123456", "2024-03-01 08:30:00.1234567", "2024-03-01 08:30", "2024-03-01T08:30Z",
                 "2024-03-01 08:30:00+08:00", "2024-03-01 08:30:00.5-0530", "2024-03-01T08:30:00.Z", "2024-03-01 08:30+8",
                 "0", "-12", "+3.50", "1.", ".5", "12.3.4", "1e5", "123456789012345678", "1234567890123456789",
                 "-000000000000000001", "", "+", "-", "２０２４-03-01", "2024-03-01\n", " 2024-03-01", "１２"]
SHAPE_ALPHABET = "0123456789-:. TZ+e１\n"


def _mutations(rng: random.Random) -> list[str]:
    """Every sample, and each with a character replaced, inserted or removed somewhere."""
    out = list(SHAPE_SAMPLES)
    for value in SHAPE_SAMPLES:
        for i in range(len(value) + 1):
            out.append(value[:i] + rng.choice(SHAPE_ALPHABET) + value[i + 1:])
            out.append(value[:i] + rng.choice(SHAPE_ALPHABET) + value[i:])
            out.append(value[:i] + value[i + 1:])
    return out


@pytest.mark.parametrize("pattern", ["_ISO_DATE", "_ISO_LOCAL", "_ISO_UTC", "_PLAIN_NUMBER", "_INT18"])
def test_shapes_match_exactly_what_the_patterns_match(pattern: str) -> None:
    regex = getattr(normalise, pattern)
    assert regex in normalise._shapes()  # the pattern _convert is given is the one the C loop stands for
    values = _mutations(random.Random(pattern)) + [None]
    arr = pa.array(values, type=pa.string())
    want = pc.fill_null(pc.match_substring_regex(arr, regex), False).to_pylist()
    assert sum(want) > 5 and not all(want)
    for part, expected in ((arr, want), (arr.slice(7), want[7:])):
        with kernels(True):
            assert normalise._has_shape(part, regex).to_pylist() == expected
        with kernels(False):
            assert normalise._has_shape(part, regex).to_pylist() == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=SHAPE_ALPHABET, max_size=30),
                          *(st.from_regex(r, fullmatch=True) for r in (
                              normalise._ISO_DATE, normalise._ISO_LOCAL, normalise._ISO_UTC,
                              normalise._PLAIN_NUMBER, normalise._INT18))), max_size=20))
def test_shapes_agree_with_re2_on_any_text_of_their_characters(values: list[str | None]) -> None:
    arr = pa.array(values, type=pa.string())
    for regex in normalise._shapes():
        with kernels(True):
            assert normalise._has_shape(arr, regex).to_pylist() == \
                pc.fill_null(pc.match_substring_regex(arr, regex), False).to_pylist()


def test_shapes_refuse_bad_input() -> None:
    utf8 = normalise._utf8
    assert utf8 is not None
    with pytest.raises(ValueError, match="shape must be one of"):
        utf8.shapes(b"ab", np.array([0, 2], np.int32), 99)
    with pytest.raises(ValueError, match="offsets point outside"):
        utf8.shapes(b"ab", np.array([0, 5], np.int32), utf8.ISO_DATE)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=TRICKY + "  ", max_size=12), st.text(max_size=6)), max_size=25),
       st.integers(min_value=0, max_value=5))
def test_clean_text_both_ways_agrees_with_the_rule_on_slices(values: list[str | None], cut: int) -> None:
    arr = pa.array(values, type=pa.string()).slice(min(cut, len(values)))
    kept = values[min(cut, len(values)):]
    for on in (True, False):
        with kernels(on):
            assert NORMALISERS["clean_text"](arr).values.to_pylist() == [
                None if v is None else normalise.clean_text(v) for v in kept]


@pytest.mark.parametrize("on", [True, False], ids=["c", "numpy"])
def test_clean_text_on_every_code_point_between_and_at_either_end(on: bool) -> None:
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    values = [c + "x" for c in chars] + ["x" + c for c in chars] + ["x" + c + "x" for c in chars] + chars
    with kernels(on):
        assert NORMALISERS["clean_text"](pa.array(values, pa.string())).values.to_pylist() == [
            normalise.clean_text(v) for v in values]


def test_c_finds_exactly_the_rows_clean_text_changes_numpy_a_superset() -> None:
    # U+00B7 shares the lead byte C2 with U+00A0 and U+0085; '（' shares EF with U+FEFF
    values = pa.array(["a  b", " a", "a ", "a\u3000b", "\u00b7", "x\u00a0", "a b", None, "", " ", "\ufeff", "（1）",
                       "x\u200by", "\t"], pa.string())
    changed = [i for i, v in enumerate(values.to_pylist()) if v is not None and normalise.clean_text(v) != v]
    with kernels(True):
        assert normalise._unclean_rows(values).tolist() == changed
    with kernels(False):
        assert normalise._unclean_rows(values).tolist() == sorted(changed + [4])
