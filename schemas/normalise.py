"""Normalisers: turn values as sources write them into canonical values.

Two layers, one logic. The scalar functions (``parse_date``, ``wan_to_yuan``…) are the rules,
written once in plain Python. The Arrow normalisers in ``NORMALISERS`` apply those rules to
whole columns: a vectorised Arrow cast handles the clean values, and only values it cannot
handle are parsed in Python, once per distinct value, then mapped back. Clean data stays fast
and messy data gets the same answer as the scalar rule.

Arrow normalisers never raise on bad data: they return a null value and a reason per row.
Reasons are predicates without the value ("is not a real date"), so the caller decides
whether the value may be shown (it must not be for personal fields).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Context, Decimal, localcontext
from typing import Callable
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.codes import CODE_LISTS, CodeList
from schemas.unicode import utf8_units

try:  # the byte loops in C (built by setup.py); without a compiler the numpy passes below do the same
    from schemas import _utf8
except ImportError:  # the tests run both ways, setting _utf8 to None
    _utf8 = None

__all__ = [
    "NormResult",
    "Normaliser",
    "NORMALISERS",
    "to_halfwidth",
    "clean_text",
    "parse_date",
    "excel_serial_to_date",
    "wan_to_yuan",
    "parse_yuan",
    "parse_int",
    "parse_bool",
    "parse_local_timestamp",
    "parse_utc_timestamp",
    "coerce",
    "get_normaliser",
]

MONEY = pa.decimal128(18, 2)
TIMESTAMP = pa.timestamp("us", tz="UTC")
SHANGHAI = "Asia/Shanghai"


class _Reject(ValueError):
    """A value-free reason; the scalar API prefixes the value, the Arrow API does not."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _raise_with_value(value: object, exc: _Reject) -> None:
    shown = value if not isinstance(value, str) or len(value) <= 60 else value[:60] + "…"
    raise ValueError(f"{shown!r} {exc.reason}") from None


# --- text -----------------------------------------------------------------------------------

_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def to_halfwidth(s: str) -> str:
    """Full-width ASCII forms (Ａ１，) and the ideographic space to their ASCII equivalents.

    Chinese input methods produce full-width digits and letters in IDs, codes and amounts.
    Chinese punctuation outside the full-width block (。、) is left alone.
    """
    return s.translate(_FULLWIDTH)


def clean_text(s: str) -> str:
    """Trim, drop zero-width characters and collapse whitespace runs (incl. U+3000, nbsp) to one space."""
    return " ".join(s.translate(_ZERO_WIDTH).split())


# --- dates and times -----------------------------------------------------------------------------

_DATE_FORMS = (
    re.compile(r"([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})"),
    re.compile(r"([0-9]{4})()([0-9]{2})([0-9]{2})"),
    re.compile(r"([0-9]{4})\s*(年)\s*([0-9]{1,2})\s*月\s*([0-9]{1,2})\s*日"),
)
_DATE_HINT = "is not a recognised date (expected e.g. 2023-04-27, 2023/4/27, 20230427, 2023年4月27日)"


def _date(s: str) -> date:
    text = to_halfwidth(s).strip()
    for form in _DATE_FORMS:
        m = form.fullmatch(text)
        if m:
            year, month, day = int(m.group(1)), int(m.group(3)), int(m.group(4))
            break
    else:
        raise _Reject(_DATE_HINT)
    if year < 1900:
        raise _Reject("is before 1900")
    try:
        return date(year, month, day)
    except ValueError:
        raise _Reject("is not a real date") from None


def parse_date(s: str) -> date:
    """Parse the date forms Chinese sources write; ValueError with a reason otherwise."""
    if not isinstance(s, str):
        raise TypeError(f"parse_date expects text, got {type(s).__name__}")
    try:
        return _date(s)
    except _Reject as exc:
        _raise_with_value(s, exc)
        raise  # unreachable, keeps type checkers happy


_EXCEL_EPOCH = date(1899, 12, 30)
_EXCEL_MAX = 2958465  # 9999-12-31


def _excel(n: float) -> date:
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise _Reject("is not an Excel date serial number")
    if not math.isfinite(n) or n < 1 or n >= _EXCEL_MAX + 1:
        raise _Reject("is out of range for an Excel date serial number")
    serial = int(math.floor(n))
    if serial == 60:
        raise _Reject("is 1900-02-29, a day that does not exist (Excel's Lotus leap-year bug)")
    # Before the phantom 1900-02-29 every serial is one day later than the epoch suggests.
    return _EXCEL_EPOCH + timedelta(days=serial + (1 if serial < 60 else 0))


def excel_serial_to_date(n: float) -> date:
    """Date of an Excel 1900-system serial (time of day dropped).

    Excel counts 1900-02-29, which never existed (inherited from Lotus 1-2-3): serials 1-59
    are 1900-01-01…1900-02-28, 60 is the phantom day (rejected), 61 is 1900-03-01.
    Only for cells typed numeric by the reader: a string of digits is not a serial.
    """
    try:
        return _excel(n)
    except _Reject as exc:
        _raise_with_value(n, exc)
        raise


_LOCAL_TS = re.compile(
    r"([0-9]{4})([-/])([0-9]{1,2})\2([0-9]{1,2})[ T]+([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?"
)


def _local_ts(s: str, tz: str = SHANGHAI) -> datetime:
    m = _LOCAL_TS.fullmatch(to_halfwidth(s).strip())
    if not m:
        raise _Reject("is not a recognised local time (expected yyyy-MM-dd HH:mm:ss)")
    y, mo, d, hh, mi = (int(m.group(i)) for i in (1, 3, 4, 5, 6))
    ss = int(m.group(7) or 0)
    us = int((m.group(8) or "0").ljust(6, "0"))
    try:
        local = datetime(y, mo, d, hh, mi, ss, us, tzinfo=ZoneInfo(tz))
    except ValueError:
        raise _Reject("is not a real date and time") from None
    if y < 1900:
        raise _Reject("is before 1900")
    return local.astimezone(timezone.utc)


def parse_local_timestamp(s: str, tz: str = SHANGHAI) -> datetime:
    """Local wall-clock time (``yyyy-MM-dd HH:mm:ss``, ``/`` or ``T`` accepted) → aware UTC datetime.

    The Lingang platform sends Asia/Shanghai times without a zone.
    """
    try:
        return _local_ts(s, tz)
    except _Reject as exc:
        _raise_with_value(s, exc)
        raise


def _utc_ts(s: str) -> datetime:
    text = to_halfwidth(s).strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _Reject("is not an ISO 8601 date and time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    if parsed.year < 1900:
        raise _Reject("is before 1900")
    return parsed.astimezone(timezone.utc)


def parse_utc_timestamp(s: str) -> datetime:
    """ISO 8601 time; an offset (Z, +08:00) is honoured, a bare time is taken as UTC."""
    try:
        return _utc_ts(s)
    except _Reject as exc:
        _raise_with_value(s, exc)
        raise


# --- numbers --------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")
_CENT = Decimal("0.01")
_MONEY_LIMIT = Decimal(10) ** 16  # decimal(18, 2) holds 16 integer digits
_WIDE = Context(prec=100)


def _decimal(value: object, factor: int, suffixes: tuple[str, ...]) -> Decimal:
    if isinstance(value, bool):
        raise _Reject("is not a number")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Reject("is not a number")
        number = Decimal(repr(value))  # shortest repr: 12.5 stays 12.5, not 12.4999…
    elif isinstance(value, str):
        text = "".join(to_halfwidth(value).split())
        for suffix in suffixes:
            if text.endswith(suffix):
                text = text[: -len(suffix)]
                break
        if len(text) > 40 or not _NUMBER.fullmatch(text):
            raise _Reject("is not a number")
        number = Decimal(text.replace(",", ""))
    else:
        raise _Reject("is not a number")
    if not number.is_finite():
        raise _Reject("is not a number")
    with localcontext(_WIDE):
        yuan = number * factor
        if abs(yuan) >= _MONEY_LIMIT:
            raise _Reject("is too large for decimal(18, 2) yuan")
        cents = yuan.quantize(_CENT)
        if cents != yuan:
            raise _Reject("needs more than 2 decimal places in yuan")
    return cents


def wan_to_yuan(s: str | Decimal) -> Decimal:
    """Amount in 万元 → exact yuan with 2 decimals (12.5 → 125000.00).

    Thousands separators, full-width digits and a trailing 万/万元 are accepted; anything
    that would need rounding is rejected, because silently rounding money is a defect.
    """
    try:
        return _decimal(s, 10000, ("万元", "万"))
    except _Reject as exc:
        _raise_with_value(s, exc)
        raise


def parse_yuan(s: str | Decimal | int | float) -> Decimal:
    """Amount in yuan → Decimal with 2 decimals; same rules as :func:`wan_to_yuan`."""
    try:
        return _decimal(s, 1, ("元",))
    except _Reject as exc:
        _raise_with_value(s, exc)
        raise


def _int(value: object) -> int:
    if isinstance(value, bool):
        raise _Reject("is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value != math.floor(value):
            raise _Reject("is not a whole number")
        return int(value)
    if isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise _Reject("is not a whole number")
        return int(value)
    if not isinstance(value, str):
        raise _Reject("is not a whole number")
    text = "".join(to_halfwidth(value).split())
    if len(text) > 40 or not _NUMBER.fullmatch(text):
        raise _Reject("is not a whole number")
    number = Decimal(text.replace(",", ""))
    if number != number.to_integral_value():
        raise _Reject("is not a whole number")
    return int(number)


def parse_int(s: str | int | float) -> int:
    """Whole number from text such as ``1,234``, ``12.0`` or full-width ``１２``."""
    try:
        return _int(s)
    except _Reject as exc:
        _raise_with_value(s, exc)
        raise


_TRUE = frozenset({"1", "true", "t", "y", "yes", "是", "有", "对", "√"})
_FALSE = frozenset({"0", "false", "f", "n", "no", "否", "无", "不是", "×"})


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        key = to_halfwidth(value).strip().casefold()
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
    raise _Reject("is not a recognised yes/no value (1/0, true/false, 是/否, Y/N)")


def parse_bool(s: str | int | bool) -> bool:
    """Yes/no from 1/0, true/false, Y/N, 是/否 (case and width insensitive)."""
    try:
        return _bool(s)
    except _Reject as exc:
        _raise_with_value(s, exc)
        raise


# --- Arrow layer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormResult:
    """Normalised values and, per row, why a value could not be normalised (null where fine)."""

    values: pa.Array
    errors: pa.Array | None = None


Normaliser = Callable[[pa.Array], NormResult]


class _FastPathMiss(Exception):
    """The vectorised path declines; the per-value path decides."""


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array; dictionary and large strings decoded so kernels see plain types."""
    if isinstance(arr, pa.ChunkedArray):
        if arr.num_chunks == 1:
            arr = arr.chunk(0)  # no copy
        else:
            arr = arr.combine_chunks() if arr.num_chunks else pa.array([], type=arr.type)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _result(values: pa.Array, errors: pa.Array | None) -> NormResult:
    if errors is not None and errors.null_count == len(errors):
        errors = None
    return NormResult(values, errors)


def _all_rows_error(arr: pa.Array, out_type: pa.DataType, reason: str) -> NormResult:
    errors = pc.if_else(pc.is_valid(arr), pa.scalar(reason), pa.scalar(None, pa.string()))
    return _result(pa.nulls(len(arr), out_type), errors)


def _per_unique(
    arr: pa.Array, mask: pa.Array, out_type: pa.DataType, rule: Callable[[object], object]
) -> tuple[pa.Array, pa.Array]:
    """Apply a Python rule to the distinct values under ``mask``; values and reasons per row.

    One dictionary-encoding pass finds the distinct values and each row's index into them, so
    the rule runs once per distinct value (code lists, repeated dates) and the answers are
    gathered back with a take; rows outside ``mask`` come back null.
    """
    every = pc.all(pc.fill_null(mask, False)).as_py() if len(arr) else True
    subset = arr if every else arr.filter(mask)
    encoded = pc.dictionary_encode(subset)
    outs: list[object] = []
    reasons: list[str | None] = []
    for value in encoded.dictionary.to_pylist():
        try:
            outs.append(rule(value))
            reasons.append(None)
        except _Reject as exc:
            outs.append(None)
            reasons.append(exc.reason)
    values = pc.take(pa.array(outs, type=out_type), encoded.indices)
    if not every:
        mask = pc.fill_null(mask, False)
        values = pc.replace_with_mask(pa.nulls(len(arr), out_type), mask, values)
    # Most columns have no value the rule refuses: their reasons are nulls made at once, not gathered
    # row by row (code lists and dates of a million 杨浦 rows: ~10 ms).
    if all(r is None for r in reasons):
        return values, pa.nulls(len(arr), pa.string())
    why = pc.take(pa.array(reasons, type=pa.string()), encoded.indices)
    return values, why if every else pc.replace_with_mask(pa.nulls(len(arr), pa.string()), mask, why)


FAST_SPLIT_MIN_ROWS = 16  # a failing block this small goes the slow way whole


def _np_mask(mask: pa.Array) -> np.ndarray:
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _fast_where_it_holds(
    fast: Callable[[pa.Array], pa.Array], arr: pa.Array, out_type: pa.DataType
) -> tuple[pa.Array, np.ndarray]:
    """``fast(arr)`` and the rows it could not convert (True; their values null).

    An Arrow cast fails a whole array for one bad value (2023-02-30 among a million clean dates),
    so a failing array is halved until the failing values sit in blocks of a few rows; only
    those go to the per-value rule. One bad value costs a few dozen small casts, where it used to
    send every value of the column through Python.
    """
    try:
        return fast(arr).cast(out_type), np.zeros(len(arr), dtype=bool)
    except pa.ArrowInvalid:
        if len(arr) <= FAST_SPLIT_MIN_ROWS:
            return pa.nulls(len(arr), out_type), np.ones(len(arr), dtype=bool)
    half = len(arr) // 2
    head, head_missed = _fast_where_it_holds(fast, arr.slice(0, half), out_type)
    tail, tail_missed = _fast_where_it_holds(fast, arr.slice(half), out_type)
    return pa.concat_arrays([head, tail]), np.concatenate([head_missed, tail_missed])


@functools.cache
def _shapes() -> dict[str, int]:
    """The patterns :func:`_convert` screens with that ``_utf8.shapes`` decides itself, by its constant."""
    assert _utf8 is not None
    return {_ISO_DATE: _utf8.ISO_DATE, _ISO_LOCAL: _utf8.ISO_LOCAL, _ISO_UTC: _utf8.ISO_UTC,
            _PLAIN_NUMBER: _utf8.PLAIN_NUMBER, _INT18: _utf8.INT18}


def _has_shape(arr: pa.Array, pattern: str) -> pa.Array:
    """Whether each value matches ``pattern`` (a null: False). The screening patterns go through one C
    pass over the bytes (0.1 s of RE2 per million dates, per column, before); others through RE2."""
    shape = _shapes().get(pattern) if _utf8 is not None and arr.type == pa.string() else None
    if shape is None:
        return pc.fill_null(pc.match_substring_regex(arr, pattern), False)
    offsets, values = _utf8_buffers(arr)
    matched = np.frombuffer(_utf8.shapes(values, offsets, shape), dtype=np.bool_)
    return pc.and_(pc.is_valid(arr), pa.array(matched)) if arr.null_count else pa.array(matched)


def _convert(
    arr: pa.Array,
    out_type: pa.DataType,
    rule: Callable[[object], object],
    *,
    fast: Callable[[pa.Array], pa.Array] | None = None,
    pattern: str | None = None,
) -> NormResult:
    """Vectorised fast path for values matching ``pattern``; ``rule`` per distinct value for the rest."""
    present = pc.is_valid(arr)
    values = pa.nulls(len(arr), out_type)
    slow = present
    if fast is not None:
        candidates = present
        if pattern is not None:
            candidates = pc.and_(present, _has_shape(arr, pattern))
        if pc.any(candidates).as_py():
            try:
                fast_values, missed = _fast_where_it_holds(fast, arr.filter(candidates), out_type)
            except (pa.ArrowNotImplementedError, _FastPathMiss):
                fast_values = None  # the vectorised path declines this column: the rule decides every value
            if fast_values is not None:
                values = pc.replace_with_mask(values, candidates, fast_values)
                slow = pc.and_(present, pc.invert(candidates))
                if missed.any():  # e.g. 2023-02-30 among clean dates: the rule explains those values
                    taken = np.flatnonzero(_np_mask(candidates))
                    again = np.zeros(len(arr), dtype=bool)
                    again[taken[missed]] = True
                    slow = pc.or_(slow, pa.array(again))
    if not pc.any(slow).as_py():
        return NormResult(values)
    slow_values, slow_reasons = _per_unique(arr, slow, out_type, rule)
    values = pc.if_else(slow, slow_values, values)
    if slow_reasons.null_count == len(slow_reasons):
        return NormResult(values)
    errors = pc.if_else(slow, slow_reasons, pa.scalar(None, pa.string()))
    return _result(values, errors)


# UTF-8 at the byte level ------------------------------------------------------------------------
# Full-width forms and whitespace are a handful of fixed UTF-8 byte sequences, so they can be found
# with a few numpy passes over a string column's data buffer instead of a Python call (or an RE2
# scan, slow on CJK text) per value. A byte that starts one of these sequences never occurs inside
# another character, so a match is always a whole character of one value.


def _utf8_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets rebased to 0, value bytes) of a plain string array, without copying."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    data = arr.buffers()[2]
    base, end = int(offsets[0]), int(offsets[-1])
    values = np.frombuffer(data, dtype=np.uint8)[base:end] if data is not None else np.zeros(0, np.uint8)
    return offsets - base, values


def _from_utf8_buffers(arr: pa.Array, offsets: np.ndarray, values: np.ndarray) -> pa.Array:
    """A string array with ``arr``'s nulls over new offsets and bytes."""
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    return pa.Array.from_buffers(
        pa.string(), len(arr),
        [validity, pa.py_buffer(offsets.astype(np.int32, copy=False)), pa.py_buffer(values)],
        null_count=arr.null_count,
    )


class _Chars:
    """A set of characters, found in a UTF-8 buffer by one lookup per byte: single bytes (ASCII,
    or a 2-byte lead taken whole) directly, 3-byte characters by lead byte then continuation pair."""

    def __init__(self, chars: str, *, whole_leads: bytes = b"") -> None:
        self.first = np.zeros(256, dtype=bool)
        self.single = np.zeros(256, dtype=bool)
        self.pairs = np.zeros((256, 256, 256 // 8), dtype=np.uint8)  # lead, b1 → bitset over b2
        for c in chars:
            b = c.encode("utf-8")
            if len(b) == 1:
                self.single[b[0]] = True
            elif len(b) == 3:
                self.pairs[b[0], b[1], b[2] >> 3] |= 1 << (b[2] & 7)
            else:
                raise ValueError(f"U+{ord(c):04X}: only 1- and 3-byte characters (or whole_leads) are supported")
            self.first[b[0]] = True
        for lead in whole_leads:
            self.single[lead] = self.first[lead] = True
        self._first_bytes = bytes(self.first.astype(np.uint8))  # a bytes.translate table: byte → 0 or 1

    def starts(self, values: np.ndarray) -> np.ndarray:
        """Sorted positions where one of the characters starts."""
        # bytes.translate marks candidate bytes ~5x faster than numpy's table lookup (self.first[values]);
        # the marks (0 or 1) are read as booleans: numpy finds the nonzero positions of a bool array
        # ~30x faster than of a uint8 one (70 MB of text: 0.008 s against 0.25 s)
        pos = np.flatnonzero(np.frombuffer(values.tobytes().translate(self._first_bytes), dtype=np.bool_))
        return pos[self.at(values, pos)] if len(pos) else pos

    def at(self, values: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Whether one of the characters starts at each of the positions `pos` (character starts)."""
        lead = values[pos]
        hit = self.single[lead]
        wide = np.flatnonzero(self.first[lead] & ~hit)
        if len(wide):
            at = pos[wide]
            last = len(values) - 1
            b1, b2 = values[np.minimum(at + 1, last)], values[np.minimum(at + 2, last)]
            hit[wide] = ((self.pairs[values[at], b1, b2 >> 3] >> (b2 & 7)) & 1).astype(bool) & (at + 2 <= last)
        return hit


_FULLWIDTH_CHARS = _Chars("".join(map(chr, _FULLWIDTH)))
_FULLWIDTH_ASCII = np.zeros((256, 256), dtype=np.uint8)  # (b1, b2) → the ASCII byte it becomes
for _cp, _ascii in _FULLWIDTH.items():
    _b = chr(_cp).encode("utf-8")
    _FULLWIDTH_ASCII[_b[1], _b[2]] = _ascii


def _bmp_table(entries: dict[int, int]) -> bytes:
    """One byte per BMP code point for the C loops: the entry's value, 0 where there is none."""
    table = np.zeros(0x10000, dtype=np.uint8)
    table[list(entries)] = list(entries.values())
    return table.tobytes()


_HALFWIDTH_TABLE = _bmp_table(_FULLWIDTH)  # per full-width form, the ASCII byte it becomes


def _halfwidth_array(arr: pa.Array) -> pa.Array:
    """:func:`to_halfwidth` over a string array: each 3-byte full-width form becomes its ASCII byte."""
    if arr.null_count == len(arr):
        return arr
    offsets, values = _utf8_buffers(arr)
    if _utf8 is not None:  # one pass in C (1M 杨浦 titles: 0.07 s against 0.32 s in numpy passes)
        changed = _utf8.halfwidth(values, offsets, _HALFWIDTH_TABLE)
        if changed is None:
            return arr
        return _from_utf8_buffers(arr, np.frombuffer(changed[0], dtype=np.int32), np.frombuffer(changed[1], np.uint8))
    starts = _FULLWIDTH_CHARS.starts(values)
    if not len(starts):
        return arr
    out = values.copy()
    out[starts] = _FULLWIDTH_ASCII[values[starts + 1], values[starts + 2]]
    keep = np.ones(len(values), dtype=bool)
    keep[starts + 1] = False
    keep[starts + 2] = False
    # every dropped byte lies inside the value its sequence starts in
    shift = 2 * np.searchsorted(starts, offsets, side="left")
    return _from_utf8_buffers(arr, offsets - shift, out[keep])


# str.isspace() characters (what clean_text's str.split() splits on) and the zero-width marks it drops.
_SPACE_CHARS = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
                + "\u2028\u2029\u202f\u205f\u3000")
_ZERO_WIDTH_CHARS = "\u200b\u200c\u200d\u2060\ufeff"
assert all(c.isspace() for c in _SPACE_CHARS) and not any(c.isspace() for c in _ZERO_WIDTH_CHARS)
assert set(map(ord, _ZERO_WIDTH_CHARS)) == set(_ZERO_WIDTH)


def _re2_class(chars: str) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


_SPACE_RE2, _ZERO_WIDTH_RE2 = _re2_class(_SPACE_CHARS), _re2_class(_ZERO_WIDTH_CHARS)
# Characters that make a value unclean wherever they are: every space but ' ', and zero-width
# marks (the lead byte C2 is taken whole: a cheap superset for U+0085 and U+00A0).
_UNCLEAN_CHARS = _Chars("".join(c for c in _SPACE_CHARS + _ZERO_WIDTH_CHARS
                                if c != " " and (ord(c) < 0x80 or ord(c) >= 0x800)), whole_leads=b"\xc2")


def _rows_of(offsets: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.searchsorted(offsets, positions, side="right") - 1


#: What makes a value unclean wherever it is, as UTF-8 (for ``_utf8.contains_any``): every space but
#: ' ', a zero-width mark, two ' ' in a row; and ' ' at either end (``_utf8.ends_in``).
_UNCLEAN_NEEDLES = [c.encode("utf-8") for c in _SPACE_CHARS + _ZERO_WIDTH_CHARS if c != " "] + [b"  "]
_SPACE_TABLE = _bmp_table({0x20: 1})


def _unclean_rows(arr: pa.Array) -> np.ndarray:
    """Rows :func:`clean_text` may change: any whitespace but a lone inner ' ', or a zero-width
    mark. In C exactly those (1M municipal titles: 0.05-0.07 s against 0.13-0.22 s in numpy passes); the
    numpy passes take C2 rows whole (a cheap superset for U+0085 and U+00A0)."""
    offsets, values = _utf8_buffers(arr)
    if _utf8 is not None:
        inside = np.frombuffer(_utf8.contains_any(values, offsets, _UNCLEAN_NEEDLES), dtype=np.int64)
        edges = np.frombuffer(_utf8.ends_in(values, offsets, _SPACE_TABLE), dtype=np.int64)
        return np.union1d(inside, edges)
    found = [_UNCLEAN_CHARS.starts(values)]
    spaces = np.flatnonzero(values == 0x20)
    if len(spaces):
        rows = _rows_of(offsets, spaces)
        edge = (spaces == offsets[rows]) | (spaces + 1 == offsets[rows + 1])
        after = np.minimum(spaces + 1, len(values) - 1)
        double = (values[after] == 0x20) & (spaces + 1 < offsets[rows + 1])
        found.append(spaces[edge | double])
    unclean = np.zeros(len(arr), dtype=bool)
    unclean[_rows_of(offsets, np.concatenate(found))] = True
    return np.flatnonzero(unclean)


def _clean_text_array(arr: pa.Array) -> pa.Array:
    """:func:`clean_text` over a string array: only the rows it may change go through RE2."""
    if arr.null_count == len(arr):
        return arr
    rows = _unclean_rows(arr)
    if not len(rows):
        return arr
    idx = pa.array(rows, pa.int64())
    dirty = arr.take(idx)
    dirty = pc.replace_substring_regex(dirty, _ZERO_WIDTH_RE2 + "+", "")
    dirty = pc.utf8_trim(pc.replace_substring_regex(dirty, _SPACE_RE2 + "+", " "), characters=" ")
    mask = np.zeros(len(arr), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(arr, pa.array(mask), dirty)


# Text normalisers ------------------------------------------------------------------------------

_ZW_CHARS = "\u200b\u200c\u200d\u2060\ufeff"


# Bytes that may start a character Arrow's trims remove: ASCII whitespace, and the lead bytes of
# every non-ASCII space (U+0085 … U+3000) or zero-width mark (C2, E1, E2, E3, EF).
_TRIM_LEADS = np.zeros(256, dtype=bool)
_TRIM_LEADS[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0xC2, 0xE1, 0xE2, 0xE3, 0xEF]] = True
_TRIM_LAST = np.zeros(256, dtype=bool)  # a value's last byte when its last character is ASCII space
_TRIM_LAST[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20]] = True


def _scalars(low: int, high: int) -> np.ndarray:
    """The Unicode scalar values in [low, high): every code point but the surrogates."""
    codes = np.arange(low, high, dtype=np.uint32)
    return codes[(codes < 0xD800) | (codes > 0xDFFF)]


def _utf8_of(codes: np.ndarray) -> pa.Array:
    """Each scalar value as a one-character string, encoded by numpy (63k chr() calls took 0.2 s)."""
    width, units = utf8_units(codes)
    offsets = np.concatenate([[0], np.cumsum(width)]).astype(np.int32)
    data = np.zeros(int(offsets[-1]), dtype=np.uint8)
    data[offsets[:-1]] = units[:, 0]
    for k in range(1, 4):  # each character's byte k, where it has one
        has = width > k
        data[offsets[:-1][has] + k] = units[has, k]
    return pa.Array.from_buffers(pa.string(), len(units), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _arrow_trims(codes: np.ndarray) -> np.ndarray:
    """Per code point, whether norm_trim's Arrow trims remove it when it stands alone."""
    chars = _utf8_of(codes)
    return pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(pc.utf8_trim(chars, characters=_ZW_CHARS))), 0) \
        .to_numpy(zero_copy_only=False)


@functools.cache
def _trimmed_table() -> bytes:
    """One byte per BMP code point, 1 where Arrow's trims remove it, as Arrow itself answers (a
    test proves no character beyond the BMP is removed): for _utf8.ends_in, and the set of
    :func:`_trimmed_chars`."""
    codes = _scalars(0, 0x10000)
    table = np.zeros(0x10000, dtype=np.uint8)
    table[codes[_arrow_trims(codes)]] = 1
    return table.tobytes()


@functools.cache
def _trimmed_chars() -> _Chars:
    """The characters Arrow's trims remove, for the numpy way: the 1- and 3-byte ones exactly, the
    2-byte ones (U+0085, U+00A0) by their lead byte C2 taken whole (a superset)."""
    trimmed = np.flatnonzero(np.frombuffer(_trimmed_table(), dtype=np.uint8))
    return _Chars("".join(chr(c) for c in trimmed.tolist() if c < 0x80 or c >= 0x800), whole_leads=b"\xc2")


def _last_char_starts(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Where the last character of each non-empty value starts (back over its continuation bytes)."""
    at = ends - 1
    for _ in range(3):
        back = ((values[at] & 0xC0) == 0x80) & (at > starts)
        at = np.where(back, at - 1, at)
    return at


def _untrimmed_rows(arr: pa.Array) -> np.ndarray:
    """Rows whose first or last character Arrow's trims remove, or might (C2 characters).

    A cheap superset by byte first; the rows it finds are then looked at character by character,
    which matters for text that often ends in a full-width form: every 杨浦 title ends in '）'
    (lead byte EF, as U+FEFF's), and the whole column went through Arrow's trims.
    """
    offsets, values = _utf8_buffers(arr)
    if _utf8 is not None:  # exact, in one pass over the rows' ends in C
        return np.frombuffer(_utf8.ends_in(values, offsets, _trimmed_table()), dtype=np.int64)
    starts, ends = offsets[:-1], offsets[1:]
    length = ends - starts
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    top = len(values) - 1
    first = (length > 0) & _TRIM_LEADS[values[np.minimum(starts, top)]]
    last = (length > 0) & _TRIM_LAST[values[np.maximum(ends - 1, 0)]]
    last |= (length > 1) & (values[np.maximum(ends - 2, 0)] == 0xC2)
    last |= (length > 2) & _TRIM_LEADS[values[np.maximum(ends - 3, 0)]] & (values[np.maximum(ends - 3, 0)] >= 0xE0)
    rows = np.flatnonzero(first | last)
    if not len(rows):
        return rows
    chars = _trimmed_chars()
    exact = chars.at(values, starts[rows]) | chars.at(values, _last_char_starts(values, starts[rows], ends[rows]))
    return rows[exact]


def norm_trim(arr: pa.Array) -> NormResult:
    """Strip leading/trailing whitespace (Unicode, incl. U+3000 and nbsp) and zero-width marks.

    Only values whose ends may need it go through Arrow's trims; the rest are not copied.
    """
    arr = _plain(arr)
    if not _is_text(arr.type) or arr.null_count == len(arr):
        return NormResult(arr)
    rows = _untrimmed_rows(arr)
    if not len(rows):
        return NormResult(arr)
    if len(rows) > len(arr) // 2:
        return NormResult(pc.utf8_trim_whitespace(pc.utf8_trim(arr, characters=_ZW_CHARS)))
    trimmed = pc.utf8_trim_whitespace(pc.utf8_trim(arr.take(pa.array(rows)), characters=_ZW_CHARS))
    mask = np.zeros(len(arr), dtype=bool)
    mask[rows] = True
    return NormResult(pc.replace_with_mask(arr, pa.array(mask), trimmed))


def norm_clean_text(arr: pa.Array) -> NormResult:
    """Trim and collapse internal whitespace runs to one space; Chinese text kept as is."""
    arr = _plain(arr)
    if not _is_text(arr.type):
        return NormResult(arr)
    return NormResult(_clean_text_array(arr))


def norm_halfwidth(arr: pa.Array) -> NormResult:
    """Full-width ASCII forms to ASCII (only rows that contain any are touched)."""
    arr = _plain(arr)
    if not _is_text(arr.type):
        return NormResult(arr)
    return NormResult(_halfwidth_array(arr))


def norm_upper(arr: pa.Array) -> NormResult:
    arr = _plain(arr)
    return NormResult(pc.utf8_upper(arr) if _is_text(arr.type) else arr)


def norm_null_if_blank(arr: pa.Array) -> NormResult:
    """Empty or whitespace-only text becomes null, so 'required' means something."""
    arr = _plain(arr)
    if not _is_text(arr.type):
        return NormResult(arr)
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(arr), ""), False)
    return NormResult(pc.if_else(blank, pa.scalar(None, arr.type), arr))


# Dates and times ---------------------------------------------------------------------------------

_YEAR = "(19|[2-9][0-9])[0-9]{2}"  # 1900-9999, as the per-value rule
_ISO_DATE = "^" + _YEAR + r"-[0-9]{2}-[0-9]{2}$"


def norm_date(arr: pa.Array) -> NormResult:
    """Text (any form :func:`parse_date` accepts), dates, timestamps or yyyymmdd ints → date32."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_date(t):
        return NormResult(arr.cast(pa.date32()))
    if pa.types.is_timestamp(t):
        if t.tz is not None:  # a calendar date is a Shanghai date
            arr = pc.local_timestamp(arr.cast(pa.timestamp(t.unit, SHANGHAI)))
        return NormResult(arr.cast(pa.date32()))
    if pa.types.is_integer(t):
        arr = arr.cast(pa.string())
    elif pa.types.is_null(t):
        return NormResult(pa.nulls(len(arr), pa.date32()))
    elif not _is_text(t):
        return _all_rows_error(arr, pa.date32(), f"is a {t}, not a date")
    return _convert(arr, pa.date32(), _date, fast=lambda a: a.cast(pa.date32()), pattern=_ISO_DATE)  # type: ignore[arg-type]


_ISO_LOCAL = "^" + _YEAR + r"-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?$"
_ISO_UTC = "^" + _YEAR + r"-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?$"


def _assume_zone(naive: pa.Array, tz: str) -> pa.Array:
    # assume_timezone uses the tz database, so Shanghai's 1986-1991 summer time is honoured.
    return pc.assume_timezone(naive.cast(pa.timestamp("us")), tz).cast(TIMESTAMP)


def norm_local_timestamp(arr: pa.Array, tz: str = SHANGHAI) -> NormResult:
    """Shanghai wall-clock text (or naive timestamps) → UTC timestamp; aware timestamps converted."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            return NormResult(arr.cast(TIMESTAMP))
        try:
            return NormResult(_assume_zone(arr, tz))
        except pa.ArrowInvalid:
            # Ambiguous or skipped wall times: decide per value with zoneinfo.
            as_text = pc.strftime(arr, format="%Y-%m-%d %H:%M:%S")
            return _convert(as_text, TIMESTAMP, lambda v: _local_ts(v, tz))  # type: ignore[arg-type]
    if pa.types.is_null(t):
        return NormResult(pa.nulls(len(arr), TIMESTAMP))
    if not _is_text(t):
        return _all_rows_error(arr, TIMESTAMP, f"is a {t}, not a local time")
    return _convert(
        arr,
        TIMESTAMP,
        lambda v: _local_ts(v, tz),  # type: ignore[arg-type]
        fast=lambda a: _assume_zone(a.cast(pa.timestamp("us")), tz),
        pattern=_ISO_LOCAL,
    )


def _fast_utc(a: pa.Array) -> pa.Array:
    try:
        return a.cast(TIMESTAMP)  # strings carrying Z or an offset
    except pa.ArrowInvalid:
        return a.cast(pa.timestamp("us")).cast(TIMESTAMP)  # bare: already UTC


def norm_utc_timestamp(arr: pa.Array) -> NormResult:
    """ISO 8601 text with offset (or bare, taken as UTC) or timestamps → UTC timestamp."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_timestamp(t):
        return NormResult(arr.cast(pa.timestamp(t.unit, t.tz or "UTC")).cast(TIMESTAMP))
    if pa.types.is_null(t):
        return NormResult(pa.nulls(len(arr), TIMESTAMP))
    if not _is_text(t):
        return _all_rows_error(arr, TIMESTAMP, f"is a {t}, not a timestamp")
    return _convert(arr, TIMESTAMP, _utc_ts, fast=_fast_utc, pattern=_ISO_UTC)  # type: ignore[arg-type]


def norm_excel_date(arr: pa.Array) -> NormResult:
    """Numeric Excel 1900-system serials → date32 (see :func:`excel_serial_to_date`)."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_null(t):
        return NormResult(pa.nulls(len(arr), pa.date32()))
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
        return _all_rows_error(arr, pa.date32(), "is not a numeric Excel date serial")
    x = arr.cast(pa.float64())
    serial = pc.floor(x)
    nan = pc.fill_null(pc.is_nan(x), False)
    bad_range = pc.or_(pc.or_(nan, pc.less(x, 1.0)), pc.greater_equal(x, float(_EXCEL_MAX + 1)))
    phantom = pc.equal(serial, 60.0)
    bad = pc.fill_null(pc.or_(bad_range, phantom), False)
    days_since_1970 = pc.add(
        pc.subtract(pc.if_else(bad, 61.0, serial), 25569.0),
        pc.if_else(pc.less(serial, 60.0), 1.0, 0.0),
    )
    dates = pc.if_else(bad, pa.scalar(None, pa.date32()), days_since_1970.cast(pa.int32()).cast(pa.date32()))
    reasons = pc.if_else(
        pc.fill_null(phantom, False),
        pa.scalar("is 1900-02-29, a day that does not exist (Excel's Lotus leap-year bug)"),
        pc.if_else(
            pc.fill_null(bad_range, False),
            pa.scalar("is out of range for an Excel date serial number"),
            pa.scalar(None, pa.string()),
        ),
    )
    return _result(dates, reasons)


# Numbers ---------------------------------------------------------------------------------------------

_PLAIN_NUMBER = r"^[+-]?[0-9]+(\.[0-9]+)?$"
_INT18 = r"^[+-]?[0-9]{1,18}$"


def _money(arr: pa.Array, factor: int, suffixes: tuple[str, ...]) -> NormResult:
    arr = _plain(arr)
    t = arr.type
    rule = lambda v: _decimal(v, factor, suffixes)  # noqa: E731
    scale = 6 if factor == 10000 else 2  # 万元 with 6 decimals is yuan with 2

    def fast(a: pa.Array) -> pa.Array:
        d = a.cast(pa.decimal128(30, scale))
        if factor != 1:
            d = pc.multiply(d, pa.scalar(Decimal(factor), pa.decimal128(5, 0)))
        return d.cast(MONEY)  # safe cast: raises on overflow or lost cents → per-value rule

    if pa.types.is_null(t):
        return NormResult(pa.nulls(len(arr), MONEY))
    if _is_text(t):
        return _convert(arr, MONEY, rule, fast=fast, pattern=_PLAIN_NUMBER)
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        return _convert(arr, MONEY, rule, fast=fast)
    if pa.types.is_floating(t):
        return _convert(arr, MONEY, rule)  # floats go through repr, never binary arithmetic
    return _all_rows_error(arr, MONEY, f"is a {t}, not an amount")


def norm_wan_to_yuan(arr: pa.Array) -> NormResult:
    """Amounts in 万元 (text or numbers) → decimal128(18, 2) yuan, exactly."""
    return _money(arr, 10000, ("万元", "万"))


def norm_yuan(arr: pa.Array) -> NormResult:
    """Amounts in yuan (text or numbers) → decimal128(18, 2), exactly."""
    return _money(arr, 1, ("元",))


def norm_int(arr: pa.Array) -> NormResult:
    """Whole numbers from text (1,234 / 12.0 / full-width) or numbers → int64."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_integer(t):
        return NormResult(arr.cast(pa.int64()))
    if pa.types.is_null(t):
        return NormResult(pa.nulls(len(arr), pa.int64()))
    if _is_text(t):
        return _convert(arr, pa.int64(), _int, fast=lambda a: a.cast(pa.int64()), pattern=_INT18)
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _convert(arr, pa.int64(), _int)
    return _all_rows_error(arr, pa.int64(), f"is a {t}, not a whole number")


def norm_bool(arr: pa.Array) -> NormResult:
    """Yes/no from 1/0, true/false, Y/N, 是/否 → bool."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_boolean(t):
        return NormResult(arr)
    if pa.types.is_null(t):
        return NormResult(pa.nulls(len(arr), pa.bool_()))
    if _is_text(t) or pa.types.is_integer(t):
        return _convert(arr, pa.bool_(), _bool)
    return _all_rows_error(arr, pa.bool_(), f"is a {t}, not a yes/no value")


# Code lists ------------------------------------------------------------------------------------------


def code_normaliser(code_list: CodeList, reason: str | None = None) -> Normaliser:
    """Normaliser mapping a code, zh/en label or alias of ``code_list`` to its code."""
    why = reason or f"is not a code or label of {code_list.name}"

    def rule(value: object) -> str:
        code = code_list.code_for(value) if isinstance(value, str) else None
        if code is None:
            raise _Reject(why)
        return code

    def normalise(arr: pa.Array) -> NormResult:
        arr = _plain(arr)
        if pa.types.is_null(arr.type):
            return NormResult(pa.nulls(len(arr), pa.string()))
        if not _is_text(arr.type):
            arr = arr.cast(pa.string())
        return _convert(arr, pa.string(), rule)

    normalise.__doc__ = f"Code, label or alias of {code_list.name} ({code_list.zh}) → code."
    return normalise


NORMALISERS: dict[str, Normaliser] = {
    "trim": norm_trim,
    "clean_text": norm_clean_text,
    "halfwidth": norm_halfwidth,
    "upper": norm_upper,
    "null_if_blank": norm_null_if_blank,
    "date": norm_date,
    "local_timestamp": norm_local_timestamp,
    "utc_timestamp": norm_utc_timestamp,
    "excel_date": norm_excel_date,
    "wan_to_yuan": norm_wan_to_yuan,
    "yuan": norm_yuan,
    "int": norm_int,
    "bool": norm_bool,
    "lingang_industry": code_normaliser(CODE_LISTS["lingang_industry"], "is not a Lingang 4+2+2 industry"),
    "education_level": code_normaliser(CODE_LISTS["education_level"], "is not a known education level"),
}
# Every code list also gets "code.<list>" (e.g. code.district accepts 310115, 浦东新区, 浦东).
NORMALISERS |= {f"code.{name}": code_normaliser(lst) for name, lst in CODE_LISTS.items()}


def get_normaliser(name: str) -> Normaliser:
    """The normaliser called ``name``; KeyError listing the known ones."""
    try:
        return NORMALISERS[name]
    except KeyError:
        raise KeyError(f"unknown normaliser {name!r} (known: {', '.join(NORMALISERS)})") from None


# Final coercion to the target type ---------------------------------------------------------------

_INT_LIMITS = {
    pa.int8(): (-(2**7), 2**7 - 1),
    pa.int16(): (-(2**15), 2**15 - 1),
    pa.int32(): (-(2**31), 2**31 - 1),
    pa.int64(): (-(2**63), 2**63 - 1),
}


def coerce(arr: pa.Array, target: pa.DataType) -> tuple[str, NormResult]:
    """Cast a column to ``target`` with the natural parser; returns (rule name, result).

    Text becomes int/date/decimal/bool the way the matching normaliser reads it. Timestamps
    are not guessed: text or naive times need ``local_timestamp``/``utc_timestamp`` first,
    so a TypeError is raised (a spec problem, not a data problem).
    """
    arr = _plain(arr)
    n = len(arr)
    if arr.null_count == n:
        return "type", NormResult(pa.nulls(n, target))
    if arr.type == target:
        return "type", NormResult(arr)
    if pa.types.is_string(target):
        if pa.types.is_floating(arr.type):
            return "string", _all_rows_error(arr, target, "is a floating-point number, not text")
        return "string", NormResult(arr.cast(target))
    if pa.types.is_date(target):
        return "date", norm_date(arr)
    if pa.types.is_timestamp(target):
        if pa.types.is_timestamp(arr.type) and arr.type.tz is not None:
            return "timestamp", NormResult(arr.cast(target))
        raise TypeError(
            f"a {arr.type} column cannot become {target} without a zone: "
            "add the local_timestamp or utc_timestamp normaliser"
        )
    if pa.types.is_integer(target):
        result = norm_int(arr)
        low, high = _INT_LIMITS[target]
        values = result.values
        out_of_range = pc.fill_null(pc.or_(pc.less(values, low), pc.greater(values, high)), False)
        errors = result.errors
        if pc.any(out_of_range).as_py():
            values = pc.if_else(out_of_range, pa.scalar(None, values.type), values)
            range_reason = pc.if_else(out_of_range, pa.scalar(f"is out of range for {target}"), pa.scalar(None, pa.string()))
            errors = range_reason if errors is None else pc.coalesce(errors, range_reason)
        return "int", _result(values.cast(target), errors)
    if pa.types.is_decimal(target):
        result = norm_yuan(arr)
        return "yuan", NormResult(result.values.cast(target), result.errors)
    if pa.types.is_boolean(target):
        return "bool", norm_bool(arr)
    raise TypeError(f"no coercion to {target}")
