"""Validators for the identifiers of the programme: USCC, resident ID, mobile number.

Each returns None when the value is valid, else a short English reason. Reasons never echo
the value (ID numbers and phones are personal data that must not reach logs or quarantine
reasons); they point at a position instead. ``validate_array`` runs a validator over an
Arrow column, calling Python once per distinct value.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Callable

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
