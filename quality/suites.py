"""Expectation suites generated from the canonical schemas, never written out by hand.

Every rule has a stable id (`<field>.<check>`) that quarantine rows, quality results and spec
overrides all use. Adding a field to an entity adds its checks here without new code.

A rule is a Great Expectations declaration: the expectation class and its keyword arguments,
exactly what a GX ExpectationConfiguration holds. The GX instance is built only when the GX
engine or Data Docs ask for it (`Rule.expectation`), so the fast Arrow engine
(`quality.arrow_engine`) never imports Great Expectations (≈ 3 s per process).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from typing import Any

import pyarrow as pa

from schemas import get_entity
from schemas.codes import CODE_LISTS
from schemas.model import Entity

EARLIEST_DATE = date(1949, 10, 1)
MAX_AMOUNT = 1e11  # 1000 亿元: anything larger is a unit mistake (元 vs 万元)
MAX_COUNT = 1_000_000
# (later, earlier): the first must not be before the second.
ORDERED_PAIRS: tuple[tuple[str, str], ...] = (
    ("end_date", "start_date"), ("valid_until", "published_on"), ("salary_max_amount", "salary_min_amount"),
    ("period_end", "period_start"), ("term_end_on", "appointed_on"), ("due_on", "period_end"),
)
# U+FFFD, or Latin-1 letters followed by continuation-range bytes: UTF-8/GBK read as Latin-1.
MOJIBAKE = "\ufffd|[\u00c0-\u00ff][\u0080-\u00bf]|[\u00a1-\u00fe]{3,}"
AGE_RANGES: dict[str, tuple[int, int]] = {"trainee": (14, 45), "teacher": (22, 80)}
# C0 and C1 control characters and DEL. A NUL or an escape in a name is never data (it cuts
# strings in C tools, terminals and CSV readers); tab, line feed and carriage return belong only
# in fields declared multiline (free text). Written as escapes both RE2 and Python's re read.
CONTROL_CHARACTERS = r"[\x00-\x1F\x7F-\x9F]"
CONTROL_CHARACTERS_MULTILINE = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]"


# Our custom expectation classes (quality/expectations.py); every other class is GX's own.
CUSTOM_EXPECTATIONS = frozenset({
    "ExpectColumnValuesToBeValidUscc", "ExpectColumnValuesToBeValidResidentId", "ExpectColumnValuesToBeValidDistrictCode",
    "ExpectColumnValuesToBeValidMobile", "ExpectColumnValuesToBeResidentIdOfAgeBetween",
})


def expectation_type(class_name: str) -> str:
    """GX's snake-case type of an expectation class (ExpectColumnValuesToBeBetween → expect_column_values_to_be_between)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


@dataclass(frozen=True)
class Rule:
    rule_id: str            # "<field>.<check>", stable
    expectation_class: str  # the GX expectation class (the declaration: what is checked)
    kwargs: dict[str, Any]  # its keyword arguments
    columns: tuple[str, ...]
    check: str              # not_null, in_code_list, valid_uscc, between, not_before, unique, …
    describe: str           # readable reason for a failing row (values added by the runner)
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def expectation_type(self) -> str:
        return expectation_type(self.expectation_class)

    @cached_property
    def expectation(self) -> Any:
        """The GX expectation instance (imports Great Expectations on first use)."""
        if self.expectation_class in CUSTOM_EXPECTATIONS:
            from quality import expectations as module
        else:
            import great_expectations.expectations as module
        instance = getattr(module, self.expectation_class)(**self.kwargs)
        instance.meta = dict(self.meta)
        return instance

    def configuration(self) -> dict[str, Any]:
        """The expectation configuration as GX writes it in a validation result."""
        return {"type": self.expectation_type, "kwargs": dict(self.kwargs), "meta": dict(self.meta)}


def _ymd(d: date) -> int:
    return d.year * 10000 + d.month * 100 + d.day


def _business_columns(entity: Entity) -> set[str]:
    return {f.name for f in entity.business_fields}


def rules_for(entity_name: str) -> list[Rule]:
    entity = get_entity(entity_name)
    names = _business_columns(entity)
    today = datetime.now(timezone.utc).date()
    rules: list[Rule] = []
    key = [k for k in entity.key]

    def add(rule_id: str, expectation_class: str, kwargs: dict[str, Any], columns: tuple[str, ...], check: str,
            describe: str) -> None:
        rules.append(Rule(rule_id, expectation_class, kwargs, columns, check, describe,
                          meta={"rule": f"{entity.name}.{rule_id}"}))

    for f in entity.business_fields:
        col, t = f.name, f.type
        if f.required or col in key:
            add(f"{col}.not_null", "ExpectColumnValuesToNotBeNull", {"column": col}, (col,), "not_null",
                "is required but missing")
        if f.code_list == "district":
            add(f"{col}.valid_district_code", "ExpectColumnValuesToBeValidDistrictCode", {"column": col}, (col,),
                "valid_district_code", "is not a current Shanghai district code")
        elif f.code_list and f.code_list in CODE_LISTS:
            codes = sorted(CODE_LISTS[f.code_list].codes)
            add(f"{col}.in_code_list", "ExpectColumnValuesToBeInSet", {"column": col, "value_set": codes}, (col,),
                "in_code_list", f"is not in code list {f.code_list}")
        if col.endswith("_uscc") or col == "uscc":  # org_id is a USCC only when one exists
            add(f"{col}.valid_uscc", "ExpectColumnValuesToBeValidUscc", {"column": col}, (col,), "valid_uscc",
                "is not a valid unified social credit code")
        if col == "id_number":
            add(f"{col}.valid_resident_id", "ExpectColumnValuesToBeValidResidentId", {"column": col}, (col,),
                "valid_resident_id", "is not a valid resident ID number")
            if entity.name in AGE_RANGES:
                lo, hi = AGE_RANGES[entity.name]
                add(f"{col}.plausible_age", "ExpectColumnValuesToBeResidentIdOfAgeBetween",
                    {"column": col, "min_age": lo, "max_age": hi}, (col,), "plausible_age",
                    f"gives an age outside {lo}–{hi} for a {entity.name}")
        if pa.types.is_string(t) and (col.endswith("name") or col == "title"):
            add(f"{col}.readable_text", "ExpectColumnValuesToNotMatchRegex", {"column": col, "regex": MOJIBAKE}, (col,),
                "readable_text", "looks garbled (text decoded with the wrong encoding)")
        if pa.types.is_string(t):
            # Text hygiene on every text field: declared per field in schemas/entities.py.
            add(f"{col}.no_control_characters", "ExpectColumnValuesToNotMatchRegex",
                {"column": col, "regex": CONTROL_CHARACTERS_MULTILINE if f.multiline else CONTROL_CHARACTERS},
                (col,), "control_characters", "contains a control character")
            if f.max_length is not None:
                add(f"{col}.max_length", "ExpectColumnValueLengthsToBeBetween",
                    {"column": col, "max_value": f.max_length}, (col,), "max_length",
                    f"is longer than {f.max_length:,} characters")
        if col == "phone":
            add(f"{col}.valid_mobile", "ExpectColumnValuesToBeValidMobile", {"column": col}, (col,), "valid_mobile",
                "is not a mainland mobile number")
        if pa.types.is_date(t):
            # Dates are declared as YYYYMMDD integers (and reach GX so): GX compares datetimes row
            # by row in Python, integers in one vectorised pass, and the bounds read well in Data Docs.
            lo, hi = EARLIEST_DATE, today + timedelta(days=366 * 10)
            add(f"{col}.sane_date", "ExpectColumnValuesToBeBetween",
                {"column": col, "min_value": _ymd(lo), "max_value": _ymd(hi)}, (col,), "between", f"is outside {lo}–{hi}")
        elif pa.types.is_timestamp(t):
            # a whole hour, so the declaration (and GX's registered suite) changes hourly, not every second
            hi_ts = (datetime.now(timezone.utc) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
            add(f"{col}.sane_time", "ExpectColumnValuesToBeBetween",
                {"column": col, "min_value": 20000101000000, "max_value": int(hi_ts.strftime("%Y%m%d%H%M%S"))},
                (col,), "between", "is before 2000 or in the future")
        elif pa.types.is_decimal(t):
            add(f"{col}.sane_amount", "ExpectColumnValuesToBeBetween", {"column": col, "min_value": 0,
                "max_value": MAX_AMOUNT}, (col,), "between", "is negative or above 1000 亿元 (a unit mistake?)")
        elif pa.types.is_integer(t):
            lo, hi = (1990, today.year + 6) if col.endswith("_year") else (0, MAX_COUNT)
            add(f"{col}.sane_count", "ExpectColumnValuesToBeBetween", {"column": col, "min_value": lo, "max_value": hi},
                (col,), "between", f"is outside {lo}–{hi}")
    for later, earlier in ORDERED_PAIRS:
        if later in names and earlier in names:
            add(f"{later}.not_before.{earlier}", "ExpectColumnPairValuesAToBeGreaterThanB",
                {"column_A": later, "column_B": earlier, "or_equal": True, "ignore_row_if": "either_value_is_missing"},
                (later, earlier), "not_before", f"is before {earlier}")
    # GX's compound check wants two columns or more; a one-column key (organization.org_id) uses the column check
    if len(key) > 1:
        add("_key.unique", "ExpectCompoundColumnsToBeUnique", {"column_list": key}, tuple(key), "unique",
            "repeats a natural key already in this batch")
    else:
        add("_key.unique", "ExpectColumnValuesToBeUnique", {"column": key[0]}, tuple(key), "unique",
            "repeats a natural key already in this batch")
    return rules


def rule_ids(entity_name: str) -> set[str]:
    return {r.rule_id for r in rules_for(entity_name)}
