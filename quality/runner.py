"""Validate one batch of canonical rows: which rows fail which rule, per-rule results, verdict."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from quality import gx_engine
from quality.expectations import REASONS
from quality.policy import EntityPolicy
from quality.suites import Rule, rules_for
from schemas import get_entity

ROW = "_qrow"
MAX_REASONS_PER_ROW = 3


@dataclass
class RuleResult:
    rule: str
    expectation: str
    column: str
    action: str
    element_count: int
    unexpected_count: int
    unexpected_percent: float
    success: bool


@dataclass
class Outcome:
    """What the gate decided for one table of rows."""

    failed: dict[int, tuple[str, str]] = field(default_factory=dict)  # row position → (rule, reason)
    results: list[RuleResult] = field(default_factory=list)
    batch_failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    gx_result: Any = None  # the ExpectationSuiteValidationResult, for Data Docs


def _digits(col: pa.ChunkedArray | pa.Array, fmt: str) -> pa.Array:
    """Dates/times as YYYYMMDD[HHMMSS] integers (vectorised; see quality/suites.py for why)."""
    return pc.cast(pc.strftime(col, format=fmt), pa.int64())


def _frame(table: pa.Table, columns: list[str]) -> Any:
    """Arrow → pandas for GX: decimals as float, dates/times as digit integers, positions in `_qrow`."""
    out = {}
    for name in columns:
        col = table.column(name)
        if pa.types.is_decimal(col.type):
            col = col.cast(pa.float64())
        elif pa.types.is_date(col.type):
            col = _digits(col, "%Y%m%d")
        elif pa.types.is_timestamp(col.type):
            col = _digits(pc.cast(col, pa.timestamp("s", tz="UTC"), safe=False), "%Y%m%d%H%M%S")
        out[name] = col
    out[ROW] = pa.array(range(table.num_rows), pa.int64())
    return pa.table(out).to_pandas()


def _reason(rule: Rule, column: str, value: Any, pii: bool) -> str:
    check = REASONS.get(rule.check)
    if check is not None and value is not None:
        why = check(str(value))
        if why:
            return f"{column}: {why}" if pii else f"{column} {value!r}: {why}"
    shown = "(personal value withheld)" if pii else repr(value.isoformat() if hasattr(value, "isoformat") else value)
    return f"{column} {shown} {rule.describe}"


def _suite_name(entity: str, rules: list[Rule]) -> str:
    digest = hashlib.md5(json.dumps(sorted(r.rule_id for r in rules)).encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{entity}.{digest}"


def validate_table(entity_name: str, table: pa.Table, policy: EntityPolicy) -> Outcome:
    """Run the entity's generated suite over the live (non-deleted) rows of `table`."""
    entity = get_entity(entity_name)
    pii = {f.name for f in entity.business_fields if f.pii != "none"}
    rules = [r for r in rules_for(entity_name) if policy.action_for(r.rule_id) != "off"]
    outcome = Outcome()
    if table.num_rows == 0 or not rules:
        return outcome
    live = pc.invert(pc.fill_null(table.column("_is_deleted"), False)) if "_is_deleted" in table.column_names \
        else pa.array([True] * table.num_rows)
    positions = pc.indices_nonzero(live)
    live_table = table.take(positions)
    columns = sorted({c for r in rules for c in r.columns})
    frame = _frame(live_table, columns)
    # Only rules that quarantine need the failing rows; the rest need counts. GX finds failing
    # rows with per-row Python, so asking it only where needed keeps duplicates cheap.
    row_rules = [r for r in rules if policy.action_for(r.rule_id) == "quarantine"]
    count_rules = [r for r in rules if policy.action_for(r.rule_id) != "quarantine"]
    gx_results = []
    if row_rules:
        gx_results.append(gx_engine.run(gx_engine.suite(_suite_name(entity_name, row_rules),
                                                        [r.expectation for r in row_rules]), frame, ROW))
    if count_rules:
        gx_results.append(gx_engine.run(gx_engine.suite(_suite_name(entity_name, count_rules),
                                                        [r.expectation for r in count_rules]), frame, None))
    expectation_results = [r for result in gx_results for r in result.results]
    outcome.gx_result = gx_results[0] if len(gx_results) == 1 else gx_engine.merge(gx_results)
    by_id = {f"{entity_name}.{r.rule_id}": r for r in rules}
    pos = positions.to_pylist()
    for res in expectation_results:
        rule = by_id[res.expectation_config.meta["rule"]]
        action = policy.action_for(rule.rule_id)
        info = res.exception_info or {}
        if info.get("raised_exception"):
            outcome.batch_failures.append(f"rule {rule.rule_id} could not be evaluated: {info.get('exception_message')}")
            continue
        r = res.result
        unexpected = int(r.get("unexpected_count") or 0)
        outcome.results.append(RuleResult(rule.rule_id, res.expectation_config.type, ",".join(rule.columns), action,
                                          int(r.get("element_count") or live_table.num_rows), unexpected,
                                          float(r.get("unexpected_percent") or 0.0), bool(res.success)))
        if not unexpected:
            continue
        if action == "fail":
            outcome.batch_failures.append(f"rule {rule.rule_id} ({action}) failed on {unexpected} rows")
        elif action == "warn":
            outcome.warnings.append(f"rule {rule.rule_id} warns on {unexpected} rows")
        elif action == "quarantine":
            column = rule.columns[0]
            for item in r.get("unexpected_index_list") or []:
                row = pos[int(item[ROW])]
                reason = _reason(rule, column, item.get(column), column in pii)
                if row in outcome.failed:
                    first_rule, reasons = outcome.failed[row]
                    if reasons.count("; ") < MAX_REASONS_PER_ROW - 1:
                        outcome.failed[row] = (first_rule, f"{reasons}; {reason}")
                else:
                    outcome.failed[row] = (rule.rule_id, reason)
    return outcome
