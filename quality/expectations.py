"""Custom Great Expectations for the programme's identifiers.

Declarations (what) are GX expectation classes whose names read like the specification; the
computation (how) is the pure validator in `schemas.validators`, applied to the distinct
values of a column so a million rows cost a few thousand checks.
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

from schemas.codes import CODE_LISTS
from schemas.validators import check_mobile, check_resident_id, check_uscc


def _valid_by_distinct(column: pd.Series, check: Callable[[str], str | None]) -> pd.Series:
    """True where `check` finds nothing wrong; computed once per distinct value."""
    distinct = column.dropna().unique()
    verdict = {value: check(str(value)) is None for value in distinct}
    return column.map(verdict).fillna(True).astype(bool)


def _district_problem(code: str) -> str | None:
    if code in CODE_LISTS["district"]:
        return None
    if code in CODE_LISTS["retired_district"]:
        return f"{code} is a retired district code"
    return f"{code} is not a Shanghai district code (GB/T 2260)"


def _age_on(number: str, today: date) -> int | None:
    if len(number) != 18 or not number[6:14].isdigit():
        return None
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


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
        return _valid_by_distinct(column, _district_problem)


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

        def problem(number: str) -> str | None:
            age = _age_on(number, today)
            return None if age is None or min_age <= age <= max_age else "age out of range"

        return _valid_by_distinct(column, problem)


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


# Why a value fails, for quarantine reasons; the same validators the expectations run.
REASONS: dict[str, Callable[[str], str | None]] = {
    "valid_uscc": check_uscc,
    "valid_resident_id": check_resident_id,
    "valid_district_code": _district_problem,
    "valid_mobile": check_mobile,
}
