"""The one module that knows how Great Expectations is driven.

Engine choice: GX's pandas engine on each batch chunk, in an ephemeral context. Its SQL engine
fails through duckdb_engine (GX issues 10738, 11579), and pandas is what its custom column-map
expectations run on. Two workarounds, both asserted by tests so a GX upgrade that breaks them
fails loudly: the per-batch fingerprint (an md5 over every DataFrame under 1 GB, ~1.7 s per
million rows, used only for batch markers we never read) is switched off through
`HASH_THRESHOLD`, and metric progress bars are off.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)
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


def run(suite_obj: Any, frame: pd.DataFrame, index_column: str | None) -> Any:
    """Validate a DataFrame. With `index_column`, COMPLETE results name the failing rows by it;
    without, BASIC results carry counts only (much cheaper when many rows fail)."""
    _, batch_definition = _get_context()
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    if index_column is None:
        return batch.validate(suite_obj, result_format={"result_format": "BASIC", "partial_unexpected_count": 0})
    return batch.validate(suite_obj, result_format={"result_format": "COMPLETE",
                                                    "unexpected_index_column_names": [index_column],
                                                    "return_unexpected_index_query": False})


def merge(results: list[Any]) -> Any:
    """One validation result out of several runs over the same batch (for Data Docs)."""
    first = results[0]
    for other in results[1:]:
        first.results.extend(other.results)
        first.success = first.success and other.success
    first.statistics = {**first.statistics,
                        "evaluated_expectations": len(first.results),
                        "successful_expectations": sum(1 for r in first.results if r.success),
                        "unsuccessful_expectations": sum(1 for r in first.results if not r.success)}
    if first.results:
        first.statistics["success_percent"] = 100.0 * first.statistics["successful_expectations"] / len(first.results)
    return first
