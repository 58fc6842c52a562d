"""The Great Expectations engine (`IEHUB_QUALITY_ENGINE=gx`): the rules run by GX itself.

Kept as the reference the Arrow engine is held to (tests/unit/quality/test_engines_agree.py)
and as a fallback for an expectation the Arrow engine does not compute. It costs ≈ 3-4 s of GX
import and context per process and GX's pandas round trip per batch.

Engine choice inside GX: its pandas engine on each batch chunk, in an ephemeral context. Its
SQL engine fails through duckdb_engine (GX issues 10738, 11579), and pandas is what its custom
column-map expectations run on. Two workarounds, both asserted by tests so a GX upgrade that
breaks them fails loudly: the per-batch fingerprint (an md5 over every DataFrame under 1 GB,
~1.7 s per million rows, used only for batch markers we never read) is switched off through
`HASH_THRESHOLD`, and metric progress bars are off.

The frame GX sees (`frame`): decimals as float64, dates as YYYYMMDD and times as UTC
YYYYMMDDHHMMSS integers (GX compares integers vectorised, datetimes row by row in Python; the
rules declare their bounds in the same digits), row positions in `_qrow`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality.results import Evaluation
from quality.suites import Rule

log = logging.getLogger(__name__)
ROW = "_qrow"
_lock = threading.Lock()
_context: Any = None
_batch_definition: Any = None
_suites: dict[str, Any] = {}


def _disable_fingerprint() -> None:
    import great_expectations.execution_engine.pandas_execution_engine as engine

    if not hasattr(engine, "HASH_THRESHOLD"):
        raise RuntimeError("great_expectations changed: pandas_execution_engine.HASH_THRESHOLD is gone; "
                           "revisit quality/gx_engine.py (the batch fingerprint costs ~1.7 s per million rows)")
    engine.HASH_THRESHOLD = 0


def _get_context() -> tuple[Any, Any]:
    global _context, _batch_definition
    with _lock:
        if _context is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            _disable_fingerprint()
            logging.getLogger("great_expectations").setLevel(logging.WARNING)
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            source = context.data_sources.add_pandas("iehub")
            _batch_definition = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")
            _context = context
        return _context, _batch_definition


def suite(name: str, expectations: list[Any]) -> Any:
    """An ExpectationSuite registered once per process under `name`."""
    import great_expectations as gx

    context, _ = _get_context()
    with _lock:
        if name not in _suites:
            _suites[name] = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        return _suites[name]


def _digits(col: pa.ChunkedArray | pa.Array, fmt: str) -> pa.Array:
    return pc.cast(pc.strftime(col, format=fmt), pa.int64())


def frame(table: pa.Table, columns: list[str]) -> Any:
    """Arrow → pandas for GX: decimals as float, dates/times as digit integers, positions in `_qrow`."""
    out = {}
    for name in columns:
        if name not in table.column_names:
            continue  # GX reports the expectations on a missing column as raised exceptions
        col = table.column(name)
        if pa.types.is_decimal(col.type):
            col = col.cast(pa.float64())
        elif pa.types.is_date(col.type):
            col = _digits(col, "%Y%m%d")
        elif pa.types.is_timestamp(col.type):
            col = _digits(pc.cast(col, pa.timestamp("s", tz="UTC"), safe=False), "%Y%m%d%H%M%S")
        out[name] = col
    out[ROW] = pa.array(np.arange(table.num_rows, dtype=np.int64))
    return pa.table(out).to_pandas()


def run(suite_obj: Any, df: Any, index_column: str | None) -> Any:
    """Validate a DataFrame. With `index_column`, COMPLETE results name the failing rows by it;
    without, BASIC results carry counts only (much cheaper when many rows fail)."""
    _, batch_definition = _get_context()
    batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
    if index_column is None:
        return batch.validate(suite_obj, result_format={"result_format": "BASIC", "partial_unexpected_count": 0})
    return batch.validate(suite_obj, result_format={"result_format": "COMPLETE",
                                                    "unexpected_index_column_names": [index_column],
                                                    "return_unexpected_index_query": False})


def _suite_name(rules: list[Rule]) -> str:
    """Named by the declarations themselves, so a changed bound never reuses a stale registered suite."""
    declared = sorted((r.meta.get("rule", r.rule_id), r.expectation_class, r.kwargs) for r in rules)
    digest = hashlib.md5(json.dumps(declared, default=str).encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{declared[0][0].split('.')[0]}.{digest}"


def evaluate(rules: list[Rule], table: pa.Table, *, want_rows: set[str] | None = None) -> list[Evaluation]:
    """Every rule over `table` through GX; failing row positions for the rules in `want_rows`.

    GX finds failing rows with per-row Python (COMPLETE results), so only the rules whose rows
    are wanted run that way; the rest run as BASIC (counts)."""
    df = frame(table, sorted({c for r in rules for c in r.columns}))
    row_rules = [r for r in rules if want_rows is None or r.rule_id in want_rows]
    count_rules = [r for r in rules if not (want_rows is None or r.rule_id in want_rows)]
    by_meta = {r.meta["rule"]: r for r in rules}
    out: dict[str, Evaluation] = {}
    for group, index in ((row_rules, ROW), (count_rules, None)):
        if not group:
            continue
        validation = run(suite(_suite_name(group), [r.expectation for r in group]), df, index)
        for res in validation.results:
            rule = by_meta[res.expectation_config.meta["rule"]]
            rows = None
            if index is not None:
                found = [int(item[ROW]) for item in res.result.get("unexpected_index_list") or []]
                rows = np.array(sorted(found), dtype=np.int64)
            out[rule.rule_id] = Evaluation(rule, res.to_json_dict(), rows)
    return [out[r.rule_id] for r in rules]
