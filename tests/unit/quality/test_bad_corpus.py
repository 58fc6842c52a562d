"""The bad-input corpus (tests/data/bad/cases.csv): each case trips its labelled rule, each twin passes.

Cases go through the same two gates a landed row does: the mapping engine (normalisers and
types) and the generated Great Expectations suite.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from quality.policy import policy_for
from quality.runner import validate_table
from schemas import get_entity
from schemas.lineage import add_lineage
from schemas.mapping import apply_mapping, parse_mapping
from tests.unit.quality.test_quality_suites import _row

CORPUS = Path(__file__).resolve().parents[2] / "data" / "bad" / "cases.csv"
CASES = list(csv.DictReader(CORPUS.open(encoding="utf-8")))
# How each corpus field is read, as a source spec would map it.
NORMALISE = {"start_date": ["date"], "budget_amount": ["wan_to_yuan"]}


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def standardised(entity: str, field: str, values: list[str]) -> tuple[pa.Table, dict[int, str], list[int]]:
    """The corpus values in `field` of otherwise valid rows, through the mapping engine: (canonical
    table with lineage, row index → mapping rule for rows the mapping rejected, row index of each
    canonical row)."""
    ent = get_entity(entity)
    base = {k: _text(v) for k, v in _row(entity).items()}
    raw = pa.table({name: pa.array([v if name == field else base[name] for v in values]
                                   if name != ent.key[-1] else [f"k{i}" for i in range(len(values))], pa.string())
                    for name in base})
    fields = {}
    for f in ent.business_fields:
        t = f.type
        norm = NORMALISE.get(f.name) or (["date"] if pa.types.is_date(t) else ["utc_timestamp"] if pa.types.is_timestamp(t)
                                          else ["yuan"] if pa.types.is_decimal(t) else ["int"] if pa.types.is_integer(t)
                                          else ["bool"] if pa.types.is_boolean(t) else [])
        fields[f.name] = {"from": f.name, "normalise": norm} if norm else f.name
    mapping = parse_mapping(entity, {"fields": fields}, "corpus")
    result = apply_mapping(raw, mapping)
    stopped = {int(r["row_index"]): r["rule"] for r in result.rejects.to_pylist()}
    std = add_lineage(result.table, ent, source="corpus", batch_id="b", extracted_at=datetime.now(timezone.utc))
    return std, stopped, result.accepted.to_pylist()


def _run(entity: str, field: str, values: list[str], engine: str | None = None) -> dict[int, str]:
    """Row index → the rule that stopped it (absent: it passed both gates)."""
    std, stopped, accepted = standardised(entity, field, values)
    outcome = validate_table(entity, std, policy_for(entity), engine=engine)
    for pos, (rule, _reason) in outcome.failed.items():
        stopped[accepted[pos]] = f"quality.{rule}"
    return stopped


def test_corpus_is_big_enough_and_labelled() -> None:
    assert len(CASES) >= 300
    assert {c["category"] for c in CASES} >= {"id", "uscc", "phone", "date", "district", "amount", "encoding"}
    assert all(c["expected_rule"] and c["twin"] for c in CASES)


GROUPS: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
for case in CASES:
    GROUPS[(case["entity"], case["field"])].append(case)


@pytest.mark.parametrize("engine", ["arrow", "gx"])
@pytest.mark.parametrize("entity,field", sorted(GROUPS))
def test_every_case_trips_its_rule_and_every_twin_passes(entity: str, field: str, engine: str) -> None:
    cases = GROUPS[(entity, field)]
    got = _run(entity, field, [c["value"] for c in cases], engine)
    wrong = [(c["case_id"], c["note"], c["expected_rule"], got.get(i)) for i, c in enumerate(cases)
             if got.get(i) != c["expected_rule"]]
    assert not wrong, f"{len(wrong)} cases did not trip their rule: {wrong[:10]}"
    twins = _run(entity, field, [c["twin"] for c in cases], engine)
    assert twins == {}, f"valid twins were stopped: {[(cases[i]['case_id'], r) for i, r in list(twins.items())[:10]]}"
