"""The default quality engine: each GX expectation as one vectorised pass over the Arrow table.

Great Expectations stays the declaration (the rules in `quality.suites` are GX expectation
classes and kwargs) and the result format (`quality.results`); this module computes them. Each
rule becomes a failing-row mask from Arrow compute (null tests, `is_in`, RE2 regex, comparisons,
hash encoding for keys) or from the vectorised identifier checks (`quality.checks.VALID_MASKS`),
so a million rows cost tens of milliseconds per rule instead of GX's pandas round trip, and
Great Expectations is never imported on this path.

The semantics are GX's pandas engine's, including its frame conventions (quality/gx_engine.py):
map expectations ignore missing values and report percentages over the non-missing rows;
dates are compared as YYYYMMDD and times as UTC YYYYMMDDHHMMSS (truncated to the second) the
way the rules declare their bounds; decimals as float64; key uniqueness flags every row of a
repeated key, nulls equal, a compound key ignored only when all its parts are missing.
tests/unit/quality/test_engines_agree.py runs the bad-input corpus through both engines and
requires the same counts and the same failing rows for every rule.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality.checks import REGEX_PREFILTERS, VALID_MASKS
from quality.results import PARTIAL_UNEXPECTED_COUNT, Evaluation, map_result, raised_result
from quality.suites import Rule

Mask = np.ndarray  # bool, one per row
MAX_THREADS = 4
PARALLEL_FROM_ROWS = 50_000  # below this, thread hand-offs cost more than they save


class UnsupportedExpectation(ValueError):
    """A rule declares an expectation this engine does not compute; run it with IEHUB_QUALITY_ENGINE=gx."""


def _np(mask: pa.Array | pa.ChunkedArray) -> Mask:
    """A boolean Arrow mask (nulls False) as a numpy bool array."""
    mask = pc.fill_null(mask, False)
    if isinstance(mask, pa.ChunkedArray):
        return np.concatenate([c.to_numpy(zero_copy_only=False) for c in mask.chunks]) if mask.num_chunks \
            else np.zeros(0, dtype=bool)
    return mask.to_numpy(zero_copy_only=False)


def _comparable(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Values as GX's frame holds them, for order comparisons: decimals as float64, times in seconds."""
    if pa.types.is_decimal(col.type):
        return pc.cast(col, pa.float64())
    if pa.types.is_timestamp(col.type):
        return pc.cast(col, pa.timestamp("s", tz=col.type.tz), safe=False)
    return col


def _bound(col: pa.ChunkedArray, value: Any) -> pa.Scalar:
    """A declared bound in the column's own domain (bounds on dates and times are digit integers)."""
    t = col.type
    if pa.types.is_date(t) and isinstance(value, int):
        text = f"{value:08d}"
        return pa.scalar(date(int(text[:4]), int(text[4:6]), int(text[6:8])), t)
    if pa.types.is_timestamp(t) and isinstance(value, int):
        moment = datetime.strptime(f"{value:014d}", "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
        return pa.scalar(moment, pa.timestamp("s", tz=t.tz or "UTC"))
    if pa.types.is_decimal(t):
        return pa.scalar(float(value), pa.float64())
    return pa.scalar(value)


def _between(col: pa.ChunkedArray, kw: dict[str, Any]) -> Mask:
    values = _comparable(col)
    bad = np.zeros(len(col), dtype=bool)
    if kw.get("min_value") is not None:
        below = pc.less_equal if kw.get("strict_min") else pc.less
        bad |= _np(below(values, _bound(col, kw["min_value"])))
    if kw.get("max_value") is not None:
        above = pc.greater_equal if kw.get("strict_max") else pc.greater
        bad |= _np(above(values, _bound(col, kw["max_value"])))
    return bad


def _constant(col: pa.Array) -> bool:
    return col.null_count == 0 and len(col) > 0 and bool(pc.all(pc.equal(col, col[0])).as_py())


def _same_as_next(cols: list[pa.Array]) -> np.ndarray:
    """Row i equals row i+1 on every column (nulls equal to nulls), for rows 0..m-2."""
    m = len(cols[0])
    same = np.ones(max(m - 1, 0), dtype=bool)
    for col in cols:
        a, b = col.slice(0, m - 1), col.slice(1)
        eq = _np(pc.equal(a, b))
        if col.null_count:
            eq |= _np(pc.and_(pc.is_null(a), pc.is_null(b)))
        same &= eq
    return same


def _duplicated(columns: list[pa.ChunkedArray], ignore: Mask) -> Mask:
    """Rows whose combination of values occurs more than once among the rows not ignored
    (nulls equal to each other, like pandas' `duplicated(keep=False)`).

    By order, not hashing: a column constant over the batch (the `_source` of a compound key)
    cannot tell rows apart and is skipped; a batch already in key order (full SQL passes read in
    primary-key order) needs one neighbour comparison; any other is sorted first.
    """
    n = len(ignore)
    kept = np.flatnonzero(~ignore)
    cols = [c.combine_chunks() for c in columns]
    if len(kept) != n:
        cols = [c.take(pa.array(kept, pa.int64())) for c in cols]
    out = np.zeros(n, dtype=bool)
    if len(kept) < 2:
        return out
    varying = [c for c in cols if not _constant(c)]
    if not varying:
        out[kept] = True
        return out
    order = None
    if not (len(varying) == 1 and varying[0].null_count == 0
            and bool(pc.all(pc.greater_equal(varying[0].slice(1), varying[0].slice(0, len(kept) - 1))).as_py())):
        order = pc.sort_indices(pa.table({str(i): c for i, c in enumerate(varying)}),
                                sort_keys=[(str(i), "ascending", "at_end") for i in range(len(varying))])
        varying = [c.take(order) for c in varying]
    same = _same_as_next(varying)
    if not same.any():
        return out
    dup = np.zeros(len(kept), dtype=bool)
    dup[:-1] |= same
    dup[1:] |= same
    if order is not None:
        unsorted = np.zeros(len(kept), dtype=bool)
        unsorted[order.to_numpy()] = dup
        dup = unsorted
    out[kept] = dup
    return out


def _matches(col: pa.ChunkedArray, regex: str) -> Mask:
    """Rows whose value contains a match of `regex` (RE2); only candidate rows are searched when
    the regex has a byte-level prefilter (quality.checks.REGEX_PREFILTERS)."""
    prefilter = REGEX_PREFILTERS.get(regex)
    if prefilter is None or not pa.types.is_string(col.type):
        return _np(pc.match_substring_regex(col, regex))
    arr = col.combine_chunks()
    out = np.zeros(len(arr), dtype=bool)
    candidates = prefilter(arr)
    if len(candidates):
        out[candidates] = _np(pc.match_substring_regex(arr.take(pa.array(candidates, pa.int64())), regex))
    return out


def _null(col: pa.ChunkedArray) -> Mask:
    return _np(pc.is_null(col))


def _evaluate(rule: Rule, table: pa.Table, today: date) -> tuple[Mask, Mask | None]:
    """(unexpected rows, missing rows or None for the not-null expectation) for one rule."""
    kw = rule.kwargs
    cls = rule.expectation_class
    if cls == "ExpectColumnPairValuesAToBeGreaterThanB":
        a, b = table.column(kw["column_A"]), table.column(kw["column_B"])
        ignore_if = kw.get("ignore_row_if", "both_values_are_missing")
        na, nb = _null(a), _null(b)
        missing = (na | nb) if ignore_if == "either_value_is_missing" else (na & nb) \
            if ignore_if == "both_values_are_missing" else np.zeros(len(a), dtype=bool)
        fails = pc.less if kw.get("or_equal") else pc.less_equal
        return _np(fails(_comparable(a), _comparable(b))) & ~missing, missing
    if cls == "ExpectCompoundColumnsToBeUnique":
        cols = [table.column(c) for c in kw["column_list"]]
        missing = np.logical_and.reduce([_null(c) for c in cols])
        return _duplicated(cols, missing), missing
    col = table.column(kw["column"])
    missing = _null(col)
    if cls == "ExpectColumnValuesToNotBeNull":
        return missing, None
    if cls == "ExpectColumnValuesToBeUnique":
        return _duplicated([col], missing), missing
    if cls == "ExpectColumnValuesToBeInSet":
        return ~_np(pc.is_in(col, value_set=pa.array(kw["value_set"], col.type))) & ~missing, missing
    if cls == "ExpectColumnValuesToNotMatchRegex":
        return _matches(col, kw["regex"]), missing
    if cls == "ExpectColumnValuesToBeBetween":
        return _between(col, kw), missing
    if cls == "ExpectColumnValueLengthsToBeBetween":
        lengths = pc.utf8_length(col)
        bad = np.zeros(len(col), dtype=bool)
        if kw.get("min_value") is not None:
            bad |= _np(pc.less(lengths, kw["min_value"]))
        if kw.get("max_value") is not None:
            bad |= _np(pc.greater(lengths, kw["max_value"]))
        return bad, missing
    check: Callable[..., pa.Array] | None = VALID_MASKS.get(cls)
    if check is not None:
        extra = {k: v for k, v in kw.items() if k not in ("column", "mostly")}
        return ~_np(check(col, today, **extra)) & ~missing, missing
    raise UnsupportedExpectation(f"the Arrow quality engine does not compute {cls} (rule {rule.rule_id}); "
                                 "add it to quality/arrow_engine.py or set IEHUB_QUALITY_ENGINE=gx")


def _partial(rule: Rule, table: pa.Table, rows: np.ndarray) -> list[Any]:
    """The first unexpected values, shaped as GX lists them (value, [A, B] pair, or {column: value})."""
    first = pa.array(rows[:PARTIAL_UNEXPECTED_COUNT], pa.int64())
    if not len(first):
        return []
    kw = rule.kwargs
    if "column_A" in kw:
        a = table.column(kw["column_A"]).take(first).to_pylist()
        b = table.column(kw["column_B"]).take(first).to_pylist()
        return [[x, y] for x, y in zip(a, b)]
    if "column_list" in kw:
        picked = table.select(kw["column_list"]).take(first).to_pylist()
        return picked
    return table.column(kw["column"]).take(first).to_pylist()


def evaluate(rules: list[Rule], table: pa.Table, *, want_rows: set[str] | None = None,
             today: date | None = None) -> list[Evaluation]:
    """Every rule over `table`; failing row positions for the rules in `want_rows` (rule ids)."""
    today = today or date.today()

    def one(rule: Rule) -> Evaluation:
        absent = [c for c in rule.columns if c not in table.column_names]
        if absent:
            return Evaluation(rule, raised_result(rule, f"column(s) {', '.join(absent)} not in the batch"), None)
        try:
            unexpected, missing = _evaluate(rule, table, today)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, ValueError) as exc:
            return Evaluation(rule, raised_result(rule, f"{type(exc).__name__}: {exc}"), None)
        rows = np.flatnonzero(unexpected)
        result = map_result(rule, element_count=table.num_rows,
                            missing_count=None if missing is None else int(missing.sum()),
                            unexpected_count=len(rows), partial=_partial(rule, table, rows))
        wanted = want_rows is None or rule.rule_id in want_rows
        return Evaluation(rule, result, rows if wanted else None)

    # Arrow and numpy kernels release the GIL: rules run side by side on the machine's cores.
    workers = min(len(rules), os.cpu_count() or 1, MAX_THREADS)
    if workers <= 1 or table.num_rows < PARALLEL_FROM_ROWS:
        return [one(rule) for rule in rules]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="iehub-quality") as pool:
        return list(pool.map(one, rules))
