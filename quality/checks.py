"""How the programme's own checks are computed, without Great Expectations.

Each custom expectation (quality/expectations.py, the GX declarations) has here a scalar form
(why one value fails: quarantine reasons and GX's pandas metrics) and a vectorised form over a
whole Arrow column (the Arrow engine). The identifier checks themselves live next to their
scalar validators in `schemas.validators`; this module adds the code-list and age rules.
"""
from __future__ import annotations

from datetime import date
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality.suites import CONTROL_CHARACTERS, CONTROL_CHARACTERS_MULTILINE, MOJIBAKE
from schemas import normalise
from schemas.codes import CODE_LISTS
from schemas.validators import (
    check_mobile,
    check_resident_id,
    check_uscc,
    mobile_valid_mask,
    resident_id_birth_ymd,
    resident_id_valid_mask,
    uscc_valid_mask,
)

CURRENT_DISTRICTS = sorted(CODE_LISTS["district"].codes)


def district_problem(code: str) -> str | None:
    if code in CODE_LISTS["district"]:
        return None
    if code in CODE_LISTS["retired_district"]:
        return f"{code} is a retired district code"
    return f"{code} is not a Shanghai district code (GB/T 2260)"


def age_on(number: str, today: date) -> int | None:
    """Age on `today` of the holder of an 18-character ID whose characters 7-14 are an ASCII date."""
    if len(number) != 18 or not number.isascii() or not number[6:14].isdigit():
        return None
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def age_problem(number: str, min_age: int, max_age: int, today: date) -> str | None:
    age = age_on(number, today)
    return None if age is None or min_age <= age <= max_age else "age out of range"


# ------------------------------------------------------------------------- vectorised forms
def district_valid_mask(arr: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """`district_problem(v) is None` per value, nulls True."""
    return pc.or_(pc.is_in(arr, value_set=pa.array(CURRENT_DISTRICTS, pa.string())), pc.is_null(arr))


def age_valid_mask(arr: pa.Array | pa.ChunkedArray, min_age: int, max_age: int, today: date) -> pa.BooleanArray:
    """`age_problem(v, …) is None` per value, nulls True: the age from the birth date in the ID."""
    born = resident_id_birth_ymd(arr).to_numpy(zero_copy_only=False)  # float with NaN where no date
    have = ~np.isnan(born)
    ymd = np.where(have, born, 0).astype(np.int64)
    age = today.year - ymd // 10000 - ((today.month * 100 + today.day) < ymd % 10000)
    return pa.array(~have | ((age >= min_age) & (age <= max_age)), pa.bool_())


# Byte sequences that every match of a regex contains, so the Arrow engine runs the regex only on
# the values holding one (found with a numpy scan of the column's UTF-8 buffer). Mojibake is made
# of U+0080-U+00FF (UTF-8 lead bytes C2/C3) or U+FFFD (EF BF BD); clean Chinese text has neither.
# test_checks.py proves the claim for every code point.
REGEX_REQUIRED_BYTES: dict[str, tuple[bytes, ...]] = {MOJIBAKE: (b"\xc2", b"\xc3", b"\xef\xbf\xbd")}


def rows_containing(arr: pa.Array, needles: tuple[bytes, ...]) -> np.ndarray:
    """Positions of the values of a string array whose UTF-8 bytes contain one of `needles`.

    With schemas' C loops, one pass over the values that finds exactly those holding a needle
    (1M 杨浦 titles, most ending in '）' = EF BC 89: 0.28 s of numpy passes and gathers at every
    EF byte before); without them, numpy passes over the whole buffer that may also count a
    needle spanning two values (a superset, which the regex then confirms row by row).
    """
    if len(arr) == 0 or arr.null_count == len(arr) or arr.buffers()[2] is None:
        return np.zeros(0, dtype=np.int64)
    if normalise._utf8 is not None:
        offsets, values = normalise._utf8_buffers(arr)
        return np.frombuffer(normalise._utf8.contains_any(values, offsets, needles), dtype=np.int64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    firsts = sorted({needle[0] for needle in needles})
    lead = data == firsts[0]
    for byte in firsts[1:]:
        lead |= data == byte
    starts = np.flatnonzero(lead)  # few in clean text: the rest of each needle is checked only there
    ok = np.zeros(len(starts), dtype=bool)
    for needle in needles:
        found = data[starts] == needle[0]
        for j in range(1, len(needle)):
            inside = starts + j < len(data)
            found &= inside & (data[np.minimum(starts + j, len(data) - 1)] == needle[j])
        ok |= found
    rows = np.searchsorted(offsets, starts[ok] + offsets[0], side="right") - 1
    return np.unique(rows)


_CONTROL_BYTES = tuple(bytes([b]) for b in (*range(0x20), 0x7F, 0xC2))


def rows_with_control_bytes(arr: pa.Array) -> np.ndarray:
    """Positions of the values whose UTF-8 bytes hold one below 0x20, 0x7F or 0xC2.

    A superset of the values with a control character (C0, DEL, and C1 = C2 80-9F in UTF-8),
    found in one C pass (:func:`rows_containing`) or three numpy passes over the buffer, so the
    control-character regex runs only on the few candidates; clean Chinese text has none of these bytes.
    """
    if normalise._utf8 is not None:
        return rows_containing(arr, _CONTROL_BYTES)
    if len(arr) == 0 or arr.null_count == len(arr) or arr.buffers()[2] is None:
        return np.zeros(0, dtype=np.int64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    starts = np.flatnonzero((data < 0x20) | (data == 0x7F) | (data == 0xC2))
    rows = np.searchsorted(offsets, starts + offsets[0], side="right") - 1
    return np.unique(rows)


# Per regex, a cheap pass that finds every value that could match (the regex confirms).
REGEX_PREFILTERS: dict[str, Callable[[pa.Array], np.ndarray]] = {
    MOJIBAKE: lambda arr: rows_containing(arr, REGEX_REQUIRED_BYTES[MOJIBAKE]),
    CONTROL_CHARACTERS: rows_with_control_bytes,
    CONTROL_CHARACTERS_MULTILINE: rows_with_control_bytes,
}


def control_character_problem(text: str, multiline: bool = False) -> str | None:
    """Which control character a value holds and where (never the value: it may be personal)."""
    allowed = "\t\n\r" if multiline else ""
    for i, ch in enumerate(text):
        code = ord(ch)
        if (code < 0x20 or 0x7F <= code <= 0x9F) and ch not in allowed:
            return f"contains control character U+{code:04X} at character {i + 1:,}"
    return None


def length_problem(text: str, max_length: int) -> str | None:
    """How long a value is against its declared limit (never the value itself: it may be megabytes)."""
    n = len(text)
    return f"is {n:,} characters long, above its limit of {max_length:,}" if n > max_length else None


# Why a value fails, for quarantine reasons; the same validators both engines run.
REASONS: dict[str, Callable[[str], str | None]] = {
    "valid_uscc": check_uscc,
    "valid_resident_id": check_resident_id,
    "valid_district_code": district_problem,
    "valid_mobile": check_mobile,
}
# The vectorised form of each custom expectation, by class name (kwargs are the declaration's).
VALID_MASKS: dict[str, Callable[..., pa.BooleanArray]] = {
    "ExpectColumnValuesToBeValidUscc": lambda col, today: uscc_valid_mask(col),
    "ExpectColumnValuesToBeValidResidentId": lambda col, today: resident_id_valid_mask(col, as_of=today),
    "ExpectColumnValuesToBeValidDistrictCode": lambda col, today: district_valid_mask(col),
    "ExpectColumnValuesToBeValidMobile": lambda col, today: mobile_valid_mask(col),
    "ExpectColumnValuesToBeResidentIdOfAgeBetween":
        lambda col, today, min_age=0, max_age=150: age_valid_mask(col, min_age, max_age, today),
}
