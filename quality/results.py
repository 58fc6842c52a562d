"""Validation results in Great Expectations' own JSON shape, whichever engine computed them.

Both engines (`quality.arrow_engine`, `quality.gx_engine`) hand the runner one `Evaluation` per
rule: the ExpectationValidationResult document GX would write (`to_json_dict()` form: success,
expectation_config, result with element_count / unexpected_count / unexpected_percent /
missing_count / partial_unexpected_list …, exception_info) and, when asked, the failing row
positions. The suite-level document is GX's ExpectationSuiteValidationResult, so the results
store and Data Docs read the Arrow engine's results exactly as they read GX's.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from importlib.metadata import version
from typing import Any

import numpy as np

from quality.suites import Rule

PARTIAL_UNEXPECTED_COUNT = 20  # GX's default for partial_unexpected_list
BATCH_ID = "iehub-batch"


@dataclass
class Evaluation:
    """One rule over one table: GX's result document and, if requested, the failing rows."""

    rule: Rule
    result: dict[str, Any]                 # ExpectationValidationResult.to_json_dict() shape
    unexpected_rows: np.ndarray | None     # int64 positions in the validated table, ascending

    @property
    def raised(self) -> str | None:
        """Why the rule could not be evaluated, or None. GX keeps exception_info either flat or,
        when a metric failed, as one such entry per metric id."""
        info = self.result.get("exception_info") or {}
        entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
        for entry in entries:
            if entry.get("raised_exception"):
                return entry.get("exception_message") or "unknown error"
        return None


def jsonable(value: Any) -> Any:
    """A value as GX's JSON would carry it (dates as ISO text, decimals as floats)."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def expectation_config(rule: Rule) -> dict[str, Any]:
    config = rule.configuration()
    return {**config, "kwargs": {"batch_id": BATCH_ID, **config["kwargs"]}, "id": None, "severity": "critical"}


def map_result(rule: Rule, *, element_count: int, missing_count: int | None, unexpected_count: int,
               partial: list[Any]) -> dict[str, Any]:
    """GX's map-expectation result: percentages over the non-missing rows, as `_format_map_output` does.

    `missing_count` None is the not-null expectation, where missing values are the unexpected ones.
    """
    result: dict[str, Any] = {"element_count": element_count, "unexpected_count": unexpected_count}
    if missing_count is None:
        result["unexpected_percent"] = 100.0 * unexpected_count / element_count if element_count else None
        result["partial_unexpected_list"] = jsonable(partial)
    else:
        nonmissing = element_count - missing_count
        percent = 100.0 * unexpected_count / nonmissing if nonmissing else None
        result.update({
            "unexpected_percent": percent, "partial_unexpected_list": jsonable(partial),
            "missing_count": missing_count,
            "missing_percent": 100.0 * missing_count / element_count if element_count else None,
            "unexpected_percent_total": 100.0 * unexpected_count / element_count if element_count else None,
            "unexpected_percent_nonmissing": percent})
    # GX's `mostly`: the share of non-missing rows that must pass (all of them unless declared)
    checked = element_count if missing_count is None else element_count - missing_count
    mostly = float(rule.kwargs.get("mostly", 1.0))
    success = unexpected_count == 0 or (checked > 0 and (checked - unexpected_count) / checked >= mostly)
    return {"success": success, "expectation_config": expectation_config(rule), "result": result,
            "meta": {}, "exception_info": {"raised_exception": False, "exception_traceback": None,
                                           "exception_message": None}}


def raised_result(rule: Rule, message: str) -> dict[str, Any]:
    """A rule that could not be evaluated (a missing column, a type it cannot compare): GX's shape."""
    return {"success": False, "expectation_config": expectation_config(rule), "result": {}, "meta": {},
            "exception_info": {"raised_exception": True, "exception_traceback": None, "exception_message": message}}


@lru_cache(maxsize=1)
def _gx_version() -> str:
    return version("great_expectations")  # package metadata only: no GX import


def suite_result(suite_name: str, results: list[dict[str, Any]], *, engine: str) -> dict[str, Any]:
    """GX's ExpectationSuiteValidationResult document over the rule results of one table."""
    passed = sum(1 for r in results if r["success"])
    return {
        "success": passed == len(results), "results": results, "suite_name": suite_name, "suite_parameters": {},
        "statistics": {"evaluated_expectations": len(results), "successful_expectations": passed,
                       "unsuccessful_expectations": len(results) - passed,
                       "success_percent": 100.0 * passed / len(results) if results else None},
        "meta": {"great_expectations_version": _gx_version(), "engine": engine,
                 "batch_spec": {"batch_data": "ArrowTable" if engine == "arrow" else "PandasDataFrame"},
                 "batch_markers": {"ge_load_time": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")},
                 "active_batch_definition": {"datasource_name": "iehub", "data_connector_name": "fluent",
                                             "data_asset_name": "batch", "batch_identifiers": {}}},
        "id": None,
    }
