"""Custom Great Expectations for the programme's identifiers.

Declarations (what) are GX expectation classes whose names read like the specification; the
computation (how) is the pure validator in `schemas.validators` / `quality.checks`, applied here
to the distinct values of a pandas column for GX's own engine (`IEHUB_QUALITY_ENGINE=gx`); the
default Arrow engine runs the vectorised forms of the same checks (`quality.checks.VALID_MASKS`).
"""
from __future__ import annotations

from datetime import date
from typing import Any, Callable, ClassVar

import pandas as pd
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)

from quality.checks import age_problem, district_problem
from schemas.validators import check_mobile, check_resident_id, check_uscc


def _valid_by_distinct(column: pd.Series, check: Callable[[str], str | None]) -> pd.Series:
    """True where `check` finds nothing wrong; computed once per distinct value."""
    distinct = column.dropna().unique()
    verdict = {value: check(str(value)) is None for value in distinct}
    return column.map(verdict).fillna(True).astype(bool)


# ----------------------------------------------------------------------------- metrics (how)
class ColumnValuesValidUscc(ColumnMapMetricProvider):
    condition_metric_name = "column_values.valid_uscc"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return _valid_by_distinct(column, check_uscc)


class ColumnValuesValidResidentId(ColumnMapMetricProvider):
    condition_metric_name = "column_values.valid_resident_id"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return _valid_by_distinct(column, check_resident_id)


class ColumnValuesValidDistrictCode(ColumnMapMetricProvider):
    condition_metric_name = "column_values.valid_district_code"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return _valid_by_distinct(column, district_problem)


class ColumnValuesValidMobile(ColumnMapMetricProvider):
    condition_metric_name = "column_values.valid_mobile"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return _valid_by_distinct(column, check_mobile)


class ColumnValuesResidentIdAgeBetween(ColumnMapMetricProvider):
    condition_metric_name = "column_values.resident_id_age_between"
    condition_value_keys = ("min_age", "max_age")

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, min_age: int = 0, max_age: int = 150, **kwargs: Any) -> pd.Series:
        today = date.today()
        return _valid_by_distinct(column, lambda number: age_problem(number, min_age, max_age, today))


# ------------------------------------------------------------------------ expectations (what)
class ExpectColumnValuesToBeValidUscc(ColumnMapExpectation):
    """Values are unified social credit codes (GB 32100-2015: charset, region, both check characters)."""

    map_metric = "column_values.valid_uscc"
    success_keys = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["iehub", "identifier"], "contributors": ["iehub"]}


class ExpectColumnValuesToBeValidResidentId(ColumnMapExpectation):
    """Values are resident ID numbers (GB 11643-1999: MOD 11-2 check, real birth date, known region)."""

    map_metric = "column_values.valid_resident_id"
    success_keys = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["iehub", "identifier", "pii"], "contributors": ["iehub"]}


class ExpectColumnValuesToBeValidDistrictCode(ColumnMapExpectation):
    """Values are current Shanghai district codes (GB/T 2260); retired codes are named as such."""

    map_metric = "column_values.valid_district_code"
    success_keys = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["iehub", "code_list"], "contributors": ["iehub"]}


class ExpectColumnValuesToBeValidMobile(ColumnMapExpectation):
    """Values are mainland China mobile numbers (11 digits, 1[3-9]…, optional +86)."""

    map_metric = "column_values.valid_mobile"
    success_keys = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["iehub", "identifier", "pii"], "contributors": ["iehub"]}


class ExpectColumnValuesToBeResidentIdOfAgeBetween(ColumnMapExpectation):
    """The person a resident ID belongs to is of an age plausible for the programme."""

    map_metric = "column_values.resident_id_age_between"
    success_keys = ("min_age", "max_age", "mostly")
    min_age: int = 0
    max_age: int = 150
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["iehub", "pii"], "contributors": ["iehub"]}
