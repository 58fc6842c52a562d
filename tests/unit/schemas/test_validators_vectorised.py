"""The vectorised identifier checks give the scalar validators' verdict on every value.

The quality gate runs the vectorised forms; the scalar ones give the reasons. If the two ever
disagreed, a row would be quarantined with no reason, or a bad one let through, so they are
compared value by value on the bad-input corpus, on valid identifiers and on many near-misses
(each valid identifier with one character changed, sliced, padded or decorated).
"""
from __future__ import annotations

import csv
import random
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from schemas.validators import (
    PHONE_SEPARATOR_CHARS,
    USCC_CHARSET,
    check_mobile,
    check_resident_id,
    check_uscc,
    mobile_valid_mask,
    resident_id_birth_ymd,
    resident_id_valid_mask,
    uscc_valid_mask,
)
from tests.unit.schemas.schemas_gen import AS_OF, make_id, make_uscc

CORPUS = Path(__file__).resolve().parents[2] / "data" / "bad" / "cases.csv"
CASES = list(csv.DictReader(CORPUS.open(encoding="utf-8")))
NOISE = "0123456789XxABIOZSV 　-+０１２é中"


def _mutants(rng: random.Random, valid: list[str]) -> list[str | None]:
    out: list[str | None] = [None, "", " "]
    for v in valid:
        out.append(v)
        i = rng.randrange(len(v))
        out.append(v[:i] + rng.choice(NOISE) + v[i + 1:])
        out.append(v[:i] + v[i + 1:])
        out.append(v + rng.choice(NOISE))
        out.append(v.lower())
        out.append(rng.choice(NOISE) + v[1:])
    return out


def _corpus(category: str) -> list[str]:
    return [c[k] for c in CASES if c["category"] == category for k in ("value", "twin")]


def _assert_same(values: list[str | None], mask: pa.BooleanArray, check) -> None:
    got = mask.to_pylist()
    wrong = [(v, g) for v, g in zip(values, got) if g != (v is None or check(v) is None)]
    assert not wrong, f"{len(wrong)} values judged differently, e.g. {wrong[:5]}"
    assert len(got) == len(values) and True in got and False in got, "the values must include valid and invalid ones"


def test_uscc_mask_agrees_with_check_uscc() -> None:
    rng = random.Random(11)
    valid = [make_uscc(rng) for _ in range(3000)]
    values = _corpus("uscc") + _mutants(rng, valid)
    values += ["".join(rng.choice(USCC_CHARSET) for _ in range(18)) for _ in range(3000)]
    _assert_same(values, uscc_valid_mask(pa.array(values, pa.string())), check_uscc)
    assert sum(uscc_valid_mask(pa.array(valid, pa.string())).to_pylist()) == len(valid)


@pytest.mark.parametrize("as_of", [None, AS_OF, date(1990, 1, 1)])
def test_resident_id_mask_agrees_with_check_resident_id(as_of: date | None) -> None:
    rng = random.Random(12)
    valid = [make_id(rng) for _ in range(3000)]
    values = _corpus("id") + _mutants(rng, valid)
    values += ["".join(rng.choice("0123456789") for _ in range(17)) + rng.choice("0123456789X") for _ in range(3000)]
    values += [v[:6] + "20000229" + v[14:] for v in valid[:50]] + [v[:6] + "19000229" + v[14:] for v in valid[:50]]
    mask = resident_id_valid_mask(pa.array(values, pa.string()), as_of=as_of)
    _assert_same(values, mask, lambda v: check_resident_id(v, as_of=as_of))


def test_birth_dates_are_read_only_from_real_ascii_dates() -> None:
    values = ["310115200305171234", "31011520030230123X", "3101152003O5171234", None, "3101152003051712345",
              "310115200002291234", "310115190002291234"]
    assert resident_id_birth_ymd(pa.array(values, pa.string())).to_pylist() == [
        20030517, None, None, None, None, 20000229, None]


def test_mobile_mask_agrees_with_check_mobile() -> None:
    rng = random.Random(13)
    valid = [rng.choice(["", "+86", "0086", "86", "+86 "]) + "1" + rng.choice("3456789")
             + "".join(rng.choice("0123456789") for _ in range(9)) for _ in range(2000)]
    spaced = [v[:3] + rng.choice(PHONE_SEPARATOR_CHARS) + v[3:7] + rng.choice(PHONE_SEPARATOR_CHARS) + v[7:]
              for v in valid[:500]]
    values = _corpus("phone") + _mutants(rng, valid) + spaced + ["+8686138123456789", "8613812345678", "861381234567",
                                                                  "12345678901", "021-12345678", "１３８１２３４５６７８"]
    _assert_same(values, mobile_valid_mask(pa.array(values, pa.string())), check_mobile)


def test_separator_set_is_what_python_strips() -> None:
    """RE2's \\s is ASCII-only; the vectorised form lists str.isspace() characters explicitly."""
    python_space = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert set(PHONE_SEPARATOR_CHARS) == python_space | {"-"}


def test_chunked_and_sliced_columns_give_the_same_masks() -> None:
    rng = random.Random(14)
    values = [make_uscc(rng) for _ in range(50)] + ["91310115MA1FL5XL1I", None]
    whole = uscc_valid_mask(pa.array(values, pa.string())).to_pylist()
    chunked = pa.chunked_array([pa.array(values[:20], pa.string()), pa.array(values[20:], pa.string())])
    assert uscc_valid_mask(chunked).to_pylist() == whole
    assert uscc_valid_mask(pa.array(values, pa.string()).slice(7)).to_pylist() == whole[7:]
