"""Validators for the identifiers of the programme: USCC, resident ID, mobile number.

Each returns None when the value is valid, else a short English reason. Reasons never echo
the value (ID numbers and phones are personal data that must not reach logs or quarantine
reasons); they point at a position instead. ``validate_array`` runs a validator over an
Arrow column, calling Python once per distinct value. The ``*_valid_mask`` functions at the
end are the same rules vectorised over a whole column (the quality gate's hot path).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.codes import PROVINCE_CODES, district_for_prefix

__all__ = [
    "USCC_CHARSET",
    "uscc_check_char",
    "org_code_check_char",
    "check_uscc",
    "resident_id_check_char",
    "check_resident_id",
    "check_mobile",
    "validate_array",
    "uscc_valid_mask",
    "resident_id_valid_mask",
    "resident_id_birth_ymd",
    "mobile_valid_mask",
    "fixed_width_bytes",
    "PHONE_SEPARATOR_CHARS",
    "VALIDATORS",
    "Check",
]

Check = Callable[[str], "str | None"]

# --- USCC, GB 32100-2015 --------------------------------------------------------------------

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 chars: no I, O, Z, S, V
_USCC_VALUE = {c: i for i, c in enumerate(USCC_CHARSET)}
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1, 3, 9, 27, 19, 26, …

# Registration authority (character 1) -> allowed organisation type codes (character 2).
_USCC_AUTHORITIES: dict[str, frozenset[str]] = {
    "1": frozenset("1239"),  # 机构编制: 机关, 事业单位, 群众团体, 其他
    "2": frozenset("19"),  # 外交
    "3": frozenset("1234569"),  # 司法行政: 律所, 公证处, 基层法律服务所, 司法鉴定, 仲裁委, 其他
    "4": frozenset("19"),  # 文化
    "5": frozenset("1239"),  # 民政: 社会团体, 民办非企业单位, 基金会, 其他
    "6": frozenset("129"),  # 旅游
    "7": frozenset("129"),  # 宗教
    "8": frozenset("19"),  # 工会
    "9": frozenset("123"),  # 工商/市场监管: 企业, 个体工商户, 农民专业合作社
    "A": frozenset("19"),  # 中央军委改革和编制办公室
    "N": frozenset("1239"),  # 农业: 组级/村级/乡镇级集体经济组织, 其他
    "Y": frozenset("1"),  # 其他
}
_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def uscc_check_char(first17: str) -> str:
    """The 18th character of a USCC (MOD 31-3 over the first 17)."""
    if len(first17) != 17 or any(c not in _USCC_VALUE for c in first17):
        raise ValueError("uscc_check_char needs 17 characters from the GB 32100 charset")
    total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, _USCC_WEIGHTS))
    return USCC_CHARSET[(31 - total % 31) % 31]


def org_code_check_char(first8: str) -> str:
    """The 9th character of an organisation code (GB 11714), digits or X."""
    if len(first8) != 8 or not all(c.isascii() and c.isalnum() for c in first8):
        raise ValueError("org_code_check_char needs 8 ASCII letters or digits")
    total = sum(int(c, 36) * w for c, w in zip(first8.upper(), _ORG_CODE_WEIGHTS))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def check_uscc(code: str) -> str | None:
    """Reason a unified social credit code is invalid, or None."""
    if not isinstance(code, str):
        return "USCC must be text"
    if len(code) != 18:
        return f"USCC must be 18 characters, got {len(code)}"
    for i, c in enumerate(code):
        if c not in _USCC_VALUE:
            return f"USCC character {i + 1} {c!r} is not allowed (0-9, A-Z without I O Z S V)"
    types = _USCC_AUTHORITIES.get(code[0])
    if types is None:
        return f"USCC registration authority code {code[0]!r} (character 1) is not defined"
    if code[1] not in types:
        return f"USCC organisation type {code[1]!r} (character 2) is not defined for authority {code[0]!r}"
    region = code[2:8]
    if not region.isdigit():
        return "USCC administrative division (characters 3-8) must be 6 digits"
    if region[:2] not in PROVINCE_CODES and region != "100000":
        return f"USCC administrative division {region} is not in a known province"
    org_code = code[8:17]
    if org_code[8] != org_code_check_char(org_code[:8]):
        return "USCC organisation code check character (character 17) does not match"
    if code[17] != uscc_check_char(code[:17]):
        return "USCC check character (character 18) does not match"
    return None


# --- Resident ID, GB 11643-1999 ---------------------------------------------------------------

_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))  # 7, 9, 10, 5, 8, 4, 2, 1, 6, 3, …
_ID_CHECK = "10X98765432"


def resident_id_check_char(first17: str) -> str:
    """The 18th character of a resident ID number (ISO 7064 MOD 11-2)."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("resident_id_check_char needs 17 ASCII digits")
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS))
    return _ID_CHECK[total % 11]


def check_resident_id(number: str, *, as_of: date | None = None) -> str | None:
    """Reason a resident ID number is invalid, or None. Never echoes the number."""
    if not isinstance(number, str):
        return "ID number must be text"
    if len(number) == 15 and number.isascii() and number.isdigit():
        return "15-digit ID numbers are not accepted"
    if len(number) != 18:
        return f"ID number must be 18 characters, got {len(number)}"
    for i, c in enumerate(number[:17]):
        if not ("0" <= c <= "9"):
            return f"ID number character {i + 1} is not a digit"
    last = number[17]
    if not ("0" <= last <= "9" or last == "X"):
        return "ID number character 18 must be a digit or uppercase X"
    if number[:2] not in PROVINCE_CODES:
        return "ID number region (characters 1-2) is not a known province"
    if number[:2] == "31" and district_for_prefix(number[:6]) is None:
        return "ID number region (characters 1-6) is not a known Shanghai district"
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return "ID number birth date (characters 7-14) is not a real date"
    if born.year < 1900:
        return "ID number birth date (characters 7-14) is before 1900"
    if born > (as_of or date.today()):
        return "ID number birth date (characters 7-14) is in the future"
    if last != resident_id_check_char(number[:17]):
        return "ID number check character (character 18) does not match"
    return None


# --- Mobile ---------------------------------------------------------------------------------

_PHONE_SEPARATORS = re.compile(r"[\s\-]+")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")


def check_mobile(phone: str) -> str | None:
    """Reason a mainland mobile number is invalid, or None.

    Tolerates how people write numbers: spaces and dashes, and a +86 / 0086 / 86 prefix
    (``+86 138 1234 5678``). Landlines and other countries are rejected.
    """
    if not isinstance(phone, str):
        return "mobile number must be text"
    digits = _PHONE_SEPARATORS.sub("", phone)
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            digits = digits[len(prefix) :]
            break
    else:
        if len(digits) == 13 and digits.startswith("86"):
            digits = digits[2:]
    if not digits.isascii() or not digits.isdigit():
        return "mobile number may contain only digits, spaces, dashes and a +86 prefix"
    if len(digits) != 11:
        return f"mobile number must have 11 digits, got {len(digits)}"
    if not _MOBILE.fullmatch(digits):
        return "mobile number must start with 13-19"
    return None


VALIDATORS: dict[str, Check] = {
    "uscc": check_uscc,
    "resident_id": check_resident_id,
    "mobile": check_mobile,
}


def validate_array(arr: pa.Array | pa.ChunkedArray, check: Check) -> tuple[pa.BooleanArray, pa.Array]:
    """Run ``check`` over a column: (valid mask, reasons with null where valid).

    Nulls count as valid: whether a value may be missing is the schema's rule, not the
    validator's. ``check`` runs once per distinct value, which keeps repeated codes cheap.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    uniques = pc.unique(arr)
    unique_reasons = pa.array(
        [None if v is None else check(v) for v in uniques.to_pylist()],
        type=pa.string(),
    )
    reasons = pc.take(unique_reasons, pc.index_in(arr, value_set=uniques))
    return pc.is_null(reasons), reasons


# --- Vectorised forms -------------------------------------------------------------------------
# The same rules as the scalar checks above, over a whole Arrow column at once: the quality gate
# runs them on every batch, where a Python call per value (resident IDs are nearly all distinct)
# would cost seconds per million rows. A column is dictionary-encoded first (credit codes repeat
# across thousands of rows) and each distinct fixed-width value becomes a row of an (n, 18) byte
# matrix read straight from the Arrow data buffer, so each check character is a few numpy array
# operations. Nulls count as valid, as in ``validate_array``.
# tests/unit/schemas/test_validators_vectorised.py holds both forms to the same verdicts.

_INVALID = 255
_USCC_BYTE_VALUE = np.full(256, _INVALID, dtype=np.uint8)
for _i, _c in enumerate(USCC_CHARSET):
    _USCC_BYTE_VALUE[ord(_c)] = _i
_BASE36_BYTE_VALUE = np.zeros(256, dtype=np.int32)  # int(c, 36), as org_code_check_char reads 0-9 and A-Z
for _c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _BASE36_BYTE_VALUE[ord(_c)] = int(_c, 36)
_USCC_AUTHORITY_TYPE = np.zeros((256, 256), dtype=bool)
for _authority, _types in _USCC_AUTHORITIES.items():
    for _t in _types:
        _USCC_AUTHORITY_TYPE[ord(_authority), ord(_t)] = True
# Every 31xxxx prefix district_for_prefix knows (current and retired), from that one definition.
_SHANGHAI_NUMBERS = np.array([i for i in range(310000, 320000) if district_for_prefix(str(i)) is not None],
                             dtype=np.int32)
_PROVINCE_BY_NUMBER = np.zeros(100, dtype=bool)
for _p in PROVINCE_CODES:
    _PROVINCE_BY_NUMBER[int(_p)] = True
_USCC_CHARSET_BYTES = np.frombuffer(USCC_CHARSET.encode("ascii"), dtype=np.uint8)
_ORG_CHECK_BYTES = np.frombuffer(b"0123456789X0", dtype=np.uint8)  # by 11 - total % 11 (1..11)
_ID_CHECK_BYTES = np.frombuffer(_ID_CHECK.encode("ascii"), dtype=np.uint8)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int32)
# str.isspace() characters, which the scalar check's ``[\s\-]+`` strips; RE2's \s is ASCII-only.
PHONE_SEPARATOR_CHARS = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
                         + "\u2028\u2029\u202f\u205f\u3000-")
_PHONE_SEPARATORS_RE2 = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in PHONE_SEPARATOR_CHARS) + "]+"
_MOBILE_AFTER_CLEANING = r"^(?:\+86|0086|86)?1[3-9][0-9]{9}$"


def _as_string_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return arr


def fixed_width_bytes(arr: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions, (m, width) uint8 matrix) of the non-null values of a string array exactly
    `width` bytes long. Values of another byte length (including shorter non-ASCII text) are not
    in the matrix; every check that uses it treats them as failing the length rule."""
    same = pc.fill_null(pc.equal(pc.binary_length(arr), width), False)
    positions = pc.indices_nonzero(same).to_numpy()
    picked = arr.take(pa.array(positions, pa.int64())) if len(positions) != len(arr) else arr
    if len(picked) == 0:
        return positions, np.zeros((0, width), dtype=np.uint8)
    offsets = np.frombuffer(picked.buffers()[1], dtype=np.int32)
    start = int(offsets[picked.offset])
    data = np.frombuffer(picked.buffers()[2], dtype=np.uint8)[start:start + width * len(picked)]
    return positions, data.reshape(len(picked), width)


def _fixed_width_check(arr: pa.Array | pa.ChunkedArray, valid_rows: Callable[[np.ndarray], np.ndarray], *,
                       distinct: bool) -> pa.BooleanArray:
    """Run an 18-byte check over a column: `valid_rows` gets the byte matrix of the 18-byte values;
    any other non-null value fails. With `distinct`, it runs once per distinct value (codes that
    repeat); without, once per row (personal IDs, nearly all distinct, where encoding costs more)."""
    arr = _as_string_array(arr)
    if distinct:
        encoded = pc.dictionary_encode(arr)
        values, indices = encoded.dictionary, encoded.indices
    else:
        values, indices = arr, None
    positions, matrix = fixed_width_bytes(values, 18)
    verdict = np.zeros(len(values), dtype=bool)
    verdict[positions] = valid_rows(matrix)
    mask = pa.array(verdict, pa.bool_())
    if indices is not None:
        return pc.fill_null(pc.take(mask, indices), True)
    return pc.or_(mask, pc.is_null(arr))


def _digits(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = matrix - np.uint8(ord("0"))  # wraps below '0', so a non-digit lands above 9
    return values, values <= 9


def _number(values: np.ndarray, start: int, stop: int) -> np.ndarray:
    out = np.zeros(len(values), dtype=np.int32)
    for i in range(start, stop):
        out = out * 10 + values[:, i]
    return out


def _real_ymd(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_ok = (month >= 1) & (month <= 12)
    days = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    return (year >= 1) & month_ok & (day >= 1) & (day <= days)


def _birth_ymd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(YYYYMMDD, is a real date written in ASCII digits) from characters 7-14 of 18-byte IDs."""
    values, digits = _digits(matrix[:, 6:14])
    year, month, day = _number(values, 0, 4), _number(values, 4, 6), _number(values, 6, 8)
    return year * 10000 + month * 100 + day, digits.all(axis=1) & _real_ymd(year, month, day)


def resident_id_birth_ymd(arr: pa.Array | pa.ChunkedArray) -> pa.Int32Array:
    """YYYYMMDD of the birth date in characters 7-14 of each 18-character value whose characters
    7-14 are ASCII digits forming a real date; null for every other value."""
    arr = _as_string_array(arr)
    positions, matrix = fixed_width_bytes(arr, 18)
    ymd, real = _birth_ymd(matrix)
    out = np.zeros(len(arr), dtype=np.int32)
    have = np.zeros(len(arr), dtype=bool)
    out[positions] = ymd
    have[positions] = real
    return pa.array(out, pa.int32(), mask=~have)


def resident_id_valid_mask(arr: pa.Array | pa.ChunkedArray, *, as_of: date | None = None) -> pa.BooleanArray:
    """``check_resident_id(v) is None`` for every value of a column, nulls True."""
    today = as_of or date.today()
    latest = today.year * 10000 + today.month * 100 + today.day

    def valid(matrix: np.ndarray) -> np.ndarray:
        values, digits = _digits(matrix)
        last = matrix[:, 17]
        ok = digits[:, :17].all(axis=1) & (digits[:, 17] | (last == ord("X")))
        province = np.where(ok, values[:, 0].astype(np.int32) * 10 + values[:, 1], 0)
        ok &= _PROVINCE_BY_NUMBER[province]
        ok &= (province != 31) | np.isin(_number(values, 0, 6), _SHANGHAI_NUMBERS)
        ymd, real = _birth_ymd(matrix)
        ok &= real & (ymd >= 19000101) & (ymd <= latest)
        total = values[:, :17].astype(np.int32) @ np.array(_ID_WEIGHTS, dtype=np.int32)
        return ok & (_ID_CHECK_BYTES[total % 11] == last)

    return _fixed_width_check(arr, valid, distinct=False)


def uscc_valid_mask(arr: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """``check_uscc(v) is None`` for every value of a column, nulls True."""

    def valid(matrix: np.ndarray) -> np.ndarray:
        values = _USCC_BYTE_VALUE[matrix]
        ok = (values.max(axis=1) != _INVALID) & _USCC_AUTHORITY_TYPE[matrix[:, 0], matrix[:, 1]]
        ok &= values[:, 2:8].max(axis=1) <= 9
        province = np.where(ok, values[:, 2].astype(np.int32) * 10 + values[:, 3], 0)
        ok &= _PROVINCE_BY_NUMBER[province] | (matrix[:, 2:8] == np.frombuffer(b"100000", np.uint8)).all(axis=1)
        org_total = _BASE36_BYTE_VALUE[matrix[:, 8:16]] @ np.array(_ORG_CODE_WEIGHTS, dtype=np.int32)
        ok &= _ORG_CHECK_BYTES[11 - org_total % 11] == matrix[:, 16]
        total = values[:, :17].astype(np.int32) @ np.array(_USCC_WEIGHTS, dtype=np.int32)
        return ok & (_USCC_CHARSET_BYTES[(31 - total % 31) % 31] == matrix[:, 17])

    return _fixed_width_check(arr, valid, distinct=True)


def mobile_valid_mask(arr: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """``check_mobile(v) is None`` for every value of a column, nulls True.

    Plain 11-digit numbers (nearly all of them) are judged on the byte matrix; only the rest go
    through the separator-stripping regex (Arrow's RE2)."""
    arr = _as_string_array(arr)
    positions, matrix = fixed_width_bytes(arr, 11)
    values, digits = _digits(matrix)
    plain = digits.all(axis=1) & (values[:, 0] == 1) & (values[:, 1] >= 3)
    verdict = np.zeros(len(arr), dtype=bool)
    verdict[positions[plain]] = True
    verdict |= pc.is_null(arr).to_numpy(zero_copy_only=False)
    rest = np.flatnonzero(~verdict)
    if len(rest):
        cleaned = pc.replace_substring_regex(arr.take(pa.array(rest, pa.int64())), _PHONE_SEPARATORS_RE2, "")
        verdict[rest] = pc.match_substring_regex(cleaned, _MOBILE_AFTER_CLEANING).to_numpy(zero_copy_only=False)
    return pa.array(verdict, pa.bool_())
