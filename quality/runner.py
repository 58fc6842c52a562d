"""Validate one batch of canonical rows: which rows fail which rule, per-rule results, verdict.

Two engines compute the same GX suite: the Arrow engine (default; vectorised, no GX import)
and Great Expectations itself (`IEHUB_QUALITY_ENGINE=gx`). They hand back the same GX-shaped
results (`quality.results`), so everything after this point does not know which one ran.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality.checks import REASONS, control_character_problem, length_problem
from quality.policy import EntityPolicy
from quality.results import Evaluation, suite_result
from quality.suites import CONTROL_CHARACTERS_MULTILINE, Rule, rules_for
from schemas import get_entity

ENGINE_ENV = "IEHUB_QUALITY_ENGINE"
ENGINES = ("arrow", "gx")
MAX_REASONS_PER_ROW = 3
MAX_SHOWN_CHARS = 80  # of a failing value quoted in a reason


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
    gx_result: Any = None  # the ExpectationSuiteValidationResult document (GX JSON), for Data Docs


def engine_name(engine: str | None = None) -> str:
    """The engine to run: the argument, else IEHUB_QUALITY_ENGINE, else the Arrow engine."""
    name = (engine or os.environ.get(ENGINE_ENV) or "arrow").strip().lower()
    if name not in ENGINES:
        raise ValueError(f"{ENGINE_ENV}={name!r} is not a quality engine; use one of {', '.join(ENGINES)}")
    return name


def evaluate(rules: list[Rule], table: pa.Table, *, want_rows: set[str] | None = None,
             engine: str | None = None) -> list[Evaluation]:
    """The rules over `table` with the chosen engine (GX is imported only for the gx engine)."""
    if engine_name(engine) == "gx":
        from quality import gx_engine

        return gx_engine.evaluate(rules, table, want_rows=want_rows)
    from quality import arrow_engine

    return arrow_engine.evaluate(rules, table, want_rows=want_rows, today=date.today())


def _reason(rule: Rule, column: str, value: Any, pii: bool) -> str:
    if rule.check == "max_length" and value is not None:
        return f"{column} {length_problem(str(value), rule.kwargs['max_value'])}"
    if rule.check == "control_characters" and value is not None:
        multiline = rule.kwargs["regex"] == CONTROL_CHARACTERS_MULTILINE
        return f"{column} {control_character_problem(str(value), multiline) or rule.describe}"
    check = REASONS.get(rule.check)
    if check is not None and value is not None:
        why = check(str(value))
        if why:
            return f"{column}: {why}" if pii else f"{column} {_shown(value)}: {why}"
    shown = "(personal value withheld)" if pii else _shown(value.isoformat() if hasattr(value, "isoformat") else value)
    return f"{column} {shown} {rule.describe}"


def _shown(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """A value as a reason quotes it, cut short: a reason is one line, whatever the cell holds."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(str(value)):,} characters)"


def _rule_columns(rules: list[Rule], table: pa.Table) -> list[str]:
    """The columns of `table` that `rules` read (every column when a rule names none: a table-level rule)."""
    needed: set[str] = set()
    for rule in rules:
        named = [*rule.columns, *(rule.kwargs.get(k) for k in ("column", "column_A", "column_B")),
                 *rule.kwargs.get("column_list", ())]
        if not rule.columns:
            return table.column_names
        needed.update(c for c in named if isinstance(c, str))
    return [c for c in table.column_names if c in needed]


def validate_table(entity_name: str, table: pa.Table, policy: EntityPolicy, *, engine: str | None = None) -> Outcome:
    """Run the entity's generated suite over the live (non-deleted) rows of `table`."""
    entity = get_entity(entity_name)
    pii = {f.name for f in entity.business_fields if f.pii != "none"}
    rules = [r for r in rules_for(entity_name) if policy.action_for(r.rule_id) != "off"]
    outcome = Outcome()
    if table.num_rows == 0 or not rules:
        return outcome
    positions: np.ndarray | None = None  # live row → table row, when some rows are deletions
    live_table = table
    if "_is_deleted" in table.column_names:
        deleted = pc.fill_null(table.column("_is_deleted"), False)
        if pc.any(deleted).as_py():
            positions = pc.indices_nonzero(pc.invert(deleted)).to_numpy()
            # only the columns the rules read are copied (the whole mapped table took 0.9 s per
            # million rows, the rules' columns a fraction of it)
            live_table = table.select(_rule_columns(rules, table)).take(pa.array(positions, pa.int64()))
    if live_table.num_rows == 0:
        return outcome
    # Only rules that quarantine need the failing rows; the rest need counts.
    row_rules = {r.rule_id for r in rules if policy.action_for(r.rule_id) == "quarantine"}
    evaluations = evaluate(rules, live_table, want_rows=row_rules, engine=engine)
    outcome.gx_result = suite_result(entity_name, [e.result for e in evaluations], engine=engine_name(engine))
    for ev in evaluations:
        rule = ev.rule
        action = policy.action_for(rule.rule_id)
        if ev.raised:
            outcome.batch_failures.append(f"rule {rule.rule_id} could not be evaluated: {ev.raised}")
            continue
        r = ev.result["result"]
        unexpected = int(r.get("unexpected_count") or 0)
        outcome.results.append(RuleResult(rule.rule_id, rule.expectation_type, ",".join(rule.columns), action,
                                          int(r.get("element_count") or live_table.num_rows), unexpected,
                                          float(r.get("unexpected_percent") or 0.0), bool(ev.result["success"])))
        if not unexpected:
            continue
        if action == "fail":
            outcome.batch_failures.append(f"rule {rule.rule_id} ({action}) failed on {unexpected} rows")
        elif action == "warn":
            outcome.warnings.append(f"rule {rule.rule_id} warns on {unexpected} rows")
        elif action == "quarantine" and ev.unexpected_rows is not None and len(ev.unexpected_rows):
            live_rows = ev.unexpected_rows
            rows = positions[live_rows] if positions is not None else live_rows
            column = rule.columns[0]
            values = live_table.column(column).take(pa.array(live_rows, pa.int64())).to_pylist()
            for row, value in zip(rows.tolist(), values):
                reason = _reason(rule, column, value, column in pii)
                if row in outcome.failed:
                    first_rule, reasons = outcome.failed[row]
                    if reasons.count("; ") < MAX_REASONS_PER_ROW - 1:
                        outcome.failed[row] = (first_rule, f"{reasons}; {reason}")
                else:
                    outcome.failed[row] = (rule.rule_id, reason)
    return outcome
