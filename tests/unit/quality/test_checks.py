"""The GX-free checks the Arrow engine runs: the regex prefilter and the scalar/vector pairs."""
from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from quality.checks import (
    REGEX_REQUIRED_BYTES,
    age_on,
    age_valid_mask,
    district_problem,
    district_valid_mask,
    rows_containing,
    rows_with_control_bytes,
)
from quality.suites import CONTROL_CHARACTERS, MOJIBAKE
from quality import arrow_engine
from schemas import normalise
from tests.unit.quality.test_quality_suites import make_id


def test_every_mojibake_match_contains_a_required_byte_sequence() -> None:
    """The prefilter may skip a value only if no match can be in it: check every code point."""
    needles = REGEX_REQUIRED_BYTES[MOJIBAKE]
    pattern = re.compile(MOJIBAKE)
    missed = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF
              and pattern.search(chr(cp) * 3) and not any(n in chr(cp).encode() for n in needles)]
    assert missed == []
    # …and every alternative of the pattern is made only of such characters
    assert not pattern.search("上海临港产教融合（试点）项目 ＡＢＣ abc 123")


@contextmanager
def c_loops(on: bool) -> Iterator[None]:
    """The prefilters with schemas' C loop (on) or with the numpy passes used without it."""
    saved = normalise._utf8
    assert saved is not None, "schemas/_utf8.c was not built: run `make install`"
    normalise._utf8 = saved if on else None
    try:
        yield
    finally:
        normalise._utf8 = saved


@pytest.mark.parametrize("on", [True, False], ids=["c", "numpy"])
def test_rows_containing_finds_values_by_their_bytes(on: bool) -> None:
    with c_loops(on):
        _rows_containing_cases()


def _rows_containing_cases() -> None:
    values = ["上海电机学院", "Ã¤Â¸Â", None, "正常", "乱码\ufffd", "", "café"]
    arr = pa.array(values, pa.string())
    assert rows_containing(arr, REGEX_REQUIRED_BYTES[MOJIBAKE]).tolist() == [1, 4, 6]
    assert rows_containing(arr.slice(2), REGEX_REQUIRED_BYTES[MOJIBAKE]).tolist() == [2, 4]
    assert rows_containing(pa.array([None, None], pa.string()), (b"\xc3",)).tolist() == []
    assert rows_containing(pa.array(["", ""], pa.string()), (b"\xc3",)).tolist() == []
    assert rows_containing(pa.array(["ab\xef"], pa.string()), (b"\xef\xbf\xbd",)).tolist() == []  # ï: C3 AF


def test_district_and_age_masks_agree_with_their_scalar_forms() -> None:
    codes = ["310115", "310103", "999999", None, "", "310151"]
    assert district_valid_mask(pa.array(codes, pa.string())).to_pylist() == \
        [c is None or district_problem(c) is None for c in codes]
    today = date(2025, 6, 30)
    ids = [make_id(date(2003, 5, 17)), make_id(date(1950, 1, 1)), make_id(date(2011, 6, 30)),
           make_id(date(2011, 7, 1)), "3101152003O5171234", None, "310115200302301234", "３１０１１５２００３０５１７１２３４"]
    expected = [v is None or (a := age_on(v, today)) is None or 14 <= a <= 45 for v in ids]
    assert age_valid_mask(pa.array(ids, pa.string()), 14, 45, today).to_pylist() == expected
    assert expected == [True, False, True, False, True, True, True, True]


def test_the_c_prefilters_find_exactly_the_values_holding_a_needle_and_the_rules_agree() -> None:
    # random values from an alphabet dense in needle bytes, needles split across two values too:
    # the C loop finds exactly the values that hold one (the numpy passes a superset), and the
    # rules' outcomes are the same either way
    rng = random.Random(5)
    alphabet = ["a", "临", "（", "）", "\ufffd", "Ã", "¤", "\x00", "\x1f", "\x7f", "\x85", "é", "\t", "ef"]
    values = [None if rng.random() < 0.05 else "".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(5000)]
    values += ["ab\xef", "\xbf\xbdcd", "x\xc3", "\xa4"]  # (as text: ï, ¿½ … C3 AF, C2 BF C2 BD)
    arr = pa.array(values, pa.string()).slice(3)
    kept = values[3:]
    for needles in (REGEX_REQUIRED_BYTES[MOJIBAKE], (b"\xef\xbc\x89", b"a"), (b"\x00",)):
        with c_loops(True):
            exact = rows_containing(arr, needles).tolist()
        assert exact == [i for i, v in enumerate(kept) if v is not None and any(n in v.encode() for n in needles)]
        with c_loops(False):
            assert set(exact) <= set(rows_containing(arr, needles).tolist())
    with c_loops(True):
        control = rows_with_control_bytes(arr).tolist()
    assert control == [i for i, v in enumerate(kept) if v is not None and any(
        b < 0x20 or b in (0x7F, 0xC2) for b in v.encode())]
    table = pa.table({"t": arr})
    for regex in (MOJIBAKE, CONTROL_CHARACTERS):
        outcomes = []
        for on in (True, False):
            with c_loops(on):
                outcomes.append(arrow_engine._matches(table.column("t"), regex).tolist())
        assert outcomes[0] == outcomes[1] == [v is not None and re.search(regex, v) is not None for v in kept]


def test_the_c_prefilter_refuses_bad_needles() -> None:
    utf8 = normalise._utf8
    assert utf8 is not None
    offsets = np.array([0, 2], np.int32)
    with pytest.raises(ValueError, match="non-empty bytes"):
        utf8.contains_any(b"ab", offsets, (b"",))
    with pytest.raises(ValueError, match="1 to 256"):
        utf8.contains_any(b"ab", offsets, ())
    with pytest.raises(ValueError, match="non-empty bytes"):
        utf8.contains_any(b"ab", offsets, ("a",))
    with pytest.raises(ValueError, match="offsets point outside"):
        utf8.contains_any(b"ab", np.array([0, 3], np.int32), (b"a",))
