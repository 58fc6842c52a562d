"""The GX-free checks the Arrow engine runs: the regex prefilter and the scalar/vector pairs."""
from __future__ import annotations

import re
from datetime import date

import pyarrow as pa

from quality.checks import (
    REGEX_REQUIRED_BYTES,
    age_on,
    age_valid_mask,
    district_problem,
    district_valid_mask,
    rows_containing,
)
from quality.suites import MOJIBAKE
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


def test_rows_containing_finds_values_by_their_bytes() -> None:
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
