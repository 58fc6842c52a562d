"""USCC (GB 32100), resident ID (GB 11643) and mobile validators."""

from __future__ import annotations

import random
from datetime import date

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.validators import (
    USCC_CHARSET,
    check_mobile,
    check_resident_id,
    check_uscc,
    org_code_check_char,
    resident_id_check_char,
    uscc_check_char,
    validate_array,
)
from tests.unit.schemas.schemas_gen import AS_OF, make_id, make_uscc

# Real, published codes.
REAL_USCC = [
    "91310000607206953D",  # well-known Shanghai enterprise
    "91350100M000100Y43",  # example in GB 32100 guidance
]
ID_CHARS = "0123456789X"

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _single_substitutions(code: str, alphabet: str):
    for i, original in enumerate(code):
        for c in alphabet:
            if c != original:
                yield code[:i] + c + code[i + 1 :]


def _adjacent_transpositions(code: str):
    for i in range(len(code) - 1):
        if code[i] != code[i + 1]:
            yield code[:i] + code[i + 1] + code[i] + code[i + 2 :]


# --- USCC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", REAL_USCC)
def test_real_usccs_pass(code: str) -> None:
    assert check_uscc(code) is None


@settings(max_examples=3000, deadline=None)
@given(seeds)
def test_generated_usccs_pass(seed: int) -> None:
    code = make_uscc(random.Random(seed))
    assert check_uscc(code) is None, code
    assert uscc_check_char(code[:17]) == code[17]


def test_every_single_substitution_and_adjacent_transposition_of_a_uscc_fails() -> None:
    rng = random.Random(20240427)
    for _ in range(300):
        code = make_uscc(rng)
        assert check_uscc(code) is None
        for variant in _single_substitutions(code, USCC_CHARSET):
            assert check_uscc(variant) is not None, (code, variant)
        for variant in _adjacent_transpositions(code):
            assert check_uscc(variant) is not None, (code, variant)


@pytest.mark.parametrize("code,reason", [
    ("91310000607206953", "18 characters"),
    ("91310000607206953D0", "18 characters"),
    ("91310000607206953d", "character 18"),
    ("9131000060720695OD", "character 17 'O'"),
    ("X1310000607206953D", "authority"),
    ("97310000607206953D", "organisation type"),
    ("9131A000607206953D", "6 digits"),
    ("91990000607206953D", "province"),
])  # fmt: skip
def test_uscc_reasons(code: str, reason: str) -> None:
    got = check_uscc(code)
    assert got is not None and reason in got


def test_uscc_org_code_check_is_checked_on_its_own() -> None:
    # Break the GB 11714 check char, then repair the final char: only the org code check can catch it.
    good = "91310000607206953D"
    body = good[8:16]
    wrong = next(c for c in "0123456789X" if c != org_code_check_char(body))
    first17 = good[:16] + wrong
    code = first17 + uscc_check_char(first17)
    assert "character 17" in (check_uscc(code) or "")


def test_uscc_check_char_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        uscc_check_char("ABC")


# --- Resident ID ---------------------------------------------------------------------------------


@settings(max_examples=3000, deadline=None)
@given(seeds)
def test_generated_ids_pass(seed: int) -> None:
    number = make_id(random.Random(seed))
    assert check_resident_id(number, as_of=AS_OF) is None, number
    assert resident_id_check_char(number[:17]) == number[17]


def test_every_single_substitution_and_adjacent_transposition_of_an_id_fails() -> None:
    rng = random.Random(11643)
    for _ in range(300):
        number = make_id(rng)
        assert check_resident_id(number, as_of=AS_OF) is None
        for variant in _single_substitutions(number, ID_CHARS):
            assert check_resident_id(variant, as_of=AS_OF) is not None, (number, variant)
        for variant in _adjacent_transpositions(number):
            assert check_resident_id(variant, as_of=AS_OF) is not None, (number, variant)


def _id(first17: str) -> str:
    return first17 + resident_id_check_char(first17)


def test_id_check_char_x() -> None:
    # The standard's own worked example ends in X.
    assert resident_id_check_char("11010519491231002") == "X"
    assert check_resident_id("11010519491231002X") is None


@pytest.mark.parametrize("number,reason", [
    ("310115850427123", "15-digit ID numbers are not accepted"),
    ("3101158504271234", "18 characters"),
    (_id("31011519850427123")[:17] + "x", "uppercase X"),
    ("3101A5198504271234", "character 5 is not a digit"),
    (_id("99011519850427123"), "province"),
    (_id("31019919850427123"), "Shanghai district"),
    (_id("31011519850230123"), "not a real date"),
    (_id("31011518991231123"), "before 1900"),
    (_id("31011520990101123"), "in the future"),
])  # fmt: skip
def test_id_reasons(number: str, reason: str) -> None:
    got = check_resident_id(number, as_of=AS_OF)
    assert got is not None and reason in got
    assert number not in got and number[6:14] not in got  # never echo the number


def test_old_shanghai_codes_are_accepted() -> None:
    for region in ("310103", "310108", "310230", "310225", "310100", "310200"):
        assert check_resident_id(_id(region + "19700101123"), as_of=AS_OF) is None
    assert check_resident_id(_id("44030519900101123"), as_of=AS_OF) is None  # any Shenzhen code
    assert check_resident_id(_id("81000019900101123"), as_of=AS_OF) is None  # Hong Kong residents


def test_future_birth_is_relative_to_as_of() -> None:
    number = _id("31011520240101123")
    assert check_resident_id(number, as_of=date(2025, 1, 1)) is None
    assert check_resident_id(number, as_of=date(2023, 12, 31)) is not None


# --- Mobile ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("phone", [
    "13812345678", "+86 138 1234 5678", "+8613812345678", "008613812345678", "8613812345678",
    "138-1234-5678", " 19912345678 ", "166 0000 1111",
])  # fmt: skip
def test_mobile_ok(phone: str) -> None:
    assert check_mobile(phone) is None


@pytest.mark.parametrize("phone,reason", [
    ("12812345678", "start with 13-19"),
    ("1381234567", "11 digits"),
    ("138123456789", "11 digits"),
    ("021-58001234", "start with 13-19"),
    ("138l2345678", "only digits"),
    ("１３８１２３４５６７８", "only digits"),
    ("+1 138 1234 5678", "only digits"),
])  # fmt: skip
def test_mobile_rejects(phone: str, reason: str) -> None:
    got = check_mobile(phone)
    assert got is not None and reason in got
    assert "1234" not in got


@settings(max_examples=500, deadline=None)
@given(st.sampled_from("3456789"), st.text("0123456789", min_size=9, max_size=9))
def test_generated_mobiles_pass(second: str, rest: str) -> None:
    assert check_mobile("1" + second + rest) is None


# --- Arrow -----------------------------------------------------------------------------------------


def test_validate_array_maps_reasons_back_and_keeps_nulls_valid() -> None:
    good = "91310000607206953D"
    arr = pa.array([good, "bad", None, good, "bad"])
    valid, reasons = validate_array(arr, check_uscc)
    assert valid.to_pylist() == [True, False, True, True, False]
    assert reasons.to_pylist()[0] is None and reasons.to_pylist()[2] is None
    assert "18 characters" in reasons.to_pylist()[1]
    assert reasons.to_pylist()[1] == reasons.to_pylist()[4]


def test_validate_array_calls_check_once_per_distinct_value() -> None:
    calls: list[str] = []

    def check(value: str) -> str | None:
        calls.append(value)
        return None if value == "ok" else "bad"

    arr = pa.chunked_array([["ok", "x"] * 500, ["x", None]])
    valid, reasons = validate_array(arr, check)
    assert sorted(calls) == ["ok", "x"]
    assert len(valid) == 1002 and valid.false_count == 501
