"""Suites generated from the schemas, the custom expectations, the policy and the GX workaround."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from quality import gx_engine
from quality.policy import POLICIES, PolicyError, policy_for
from quality.runner import validate_table
from quality.suites import rule_ids, rules_for
from schemas import ENTITIES, get_entity
import random

from schemas.validators import resident_id_check_char
from tests.unit.schemas.schemas_gen import make_uscc

RNG = random.Random(42)


def make_id(birth: date) -> str:
    body = f"310115{birth:%Y%m%d}123"
    return body + resident_id_check_char(body)


def _row(entity: str, **values) -> dict:
    """A valid row of `entity` (every business field filled plausibly) with `values` overriding."""
    ent = get_entity(entity)
    row = {}
    for f in ent.business_fields:
        t = f.type
        if f.code_list == "district":
            v = "310115"
        elif f.code_list:
            from schemas.codes import CODE_LISTS
            v = sorted(CODE_LISTS[f.code_list].codes)[0]
        elif f.name.endswith("_uscc") or f.name == "uscc":
            v = make_uscc(RNG)
        elif f.name == "id_number":
            v = make_id(date(2003, 5, 17))
        elif f.name == "phone":
            v = "13812345678"
        elif pa.types.is_date(t):
            v = date(2024, 3, 1)
        elif pa.types.is_timestamp(t):
            v = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        elif pa.types.is_decimal(t):
            v = Decimal("1000.00")
        elif pa.types.is_integer(t):
            v = 2024 if f.name.endswith("_year") else 10
        elif pa.types.is_boolean(t):
            v = True
        else:
            v = f"{f.name}-1"
        row[f.name] = v
    for late, early in (("end_date", "start_date"), ("valid_until", "published_on"), ("period_end", "period_start"),
                        ("term_end_on", "appointed_on"), ("due_on", "period_end")):
        if late in row and early in row:
            row[late] = date(2025, 6, 30)
            row[early] = date(2024, 3, 1) if late != "due_on" else date(2025, 6, 30)
    row.update(values)
    return row


def _table(entity: str, rows: list[dict]) -> pa.Table:
    ent = get_entity(entity)
    full = [{**r, "_source": "t", "_source_key": str(i), "_batch_id": "b", "_extracted_at": datetime.now(timezone.utc),
             "_record_hash": "h", "_is_deleted": r.get("_is_deleted", False)} for i, r in enumerate(rows)]
    return pa.Table.from_pylist(full, schema=ent.arrow_schema())


@pytest.mark.parametrize("entity", sorted(ENTITIES))
def test_every_entity_gets_a_suite_and_valid_rows_pass(entity: str) -> None:
    rules = rules_for(entity)
    ids = [r.rule_id for r in rules]
    assert len(ids) == len(set(ids))
    assert "_key.unique" in ids
    ent = get_entity(entity)
    for f in ent.business_fields:
        if f.required:
            assert f"{f.name}.not_null" in ids
        if f.code_list:
            assert any(i.startswith(f"{f.name}.") and ("code" in i) for i in ids), f.name
    rows = [_row(entity, **{k: f"{k}-{i}" for k in ent.key if k != "_source"}) for i in range(5)]
    outcome = validate_table(entity, _table(entity, rows), policy_for(entity))
    assert outcome.failed == {} and outcome.batch_failures == [], (outcome.failed, outcome.batch_failures)
    assert {r.rule for r in outcome.results} == set(ids)


GOOD_ID = make_id(date(2003, 5, 17))
BAD_ID = GOOD_ID[:-1] + ("1" if GOOD_ID[-1] != "1" else "2")  # wrong check character
CASES = [
    ("trainee", {"id_number": BAD_ID}, "id_number.valid_resident_id"),
    ("trainee", {"id_number": make_id(date(1950, 1, 1))}, "id_number.plausible_age"),
    ("trainee", {"id_number": None}, None),
    ("trainee", {"phone": "1381234567"}, "phone.valid_mobile"),
    ("cooperation", {"district_code": "310103"}, "district_code.valid_district_code"),
    ("cooperation", {"school_uscc": "91310115MA1FL5XL1I"}, "school_uscc.valid_uscc"),
    ("cooperation", {"cooperation_type": "合作办学"}, "cooperation_type.in_code_list"),
    ("cooperation", {"start_date": date(2026, 1, 1), "end_date": date(2025, 1, 1)}, "end_date.not_before.start_date"),
    ("talent_demand", {"salary_min_amount": Decimal("9000"), "salary_max_amount": Decimal("8000")},
     "salary_max_amount.not_before.salary_min_amount"),
    ("rd_project", {"budget_amount": Decimal("-3.00")}, "budget_amount.sane_amount"),
    ("notice", {"title": None}, "title.not_null"),
    ("talent_supply", {"graduation_year": 1970}, "graduation_year.sane_count"),
    ("project", {"start_date": date(1900, 1, 1)}, "start_date.sane_date"),
]


@pytest.mark.parametrize("entity,change,rule", CASES)
def test_row_rules_name_the_rule(entity: str, change: dict, rule: str | None) -> None:
    if any(k not in {f.name for f in get_entity(entity).business_fields} for k in change):
        pytest.fail(f"test case names a field {entity} does not have: {change}")
    table = _table(entity, [_row(entity), _row(entity, **change)])
    table = table.set_column(table.schema.get_field_index(get_entity(entity).key[-1]), get_entity(entity).key[-1],
                             pa.array(["k1", "k2"]))
    outcome = validate_table(entity, table, policy_for(entity))
    if rule is None:
        assert outcome.failed == {}
    else:
        assert list(outcome.failed) == [1]
        assert outcome.failed[1][0] == rule


@pytest.mark.parametrize("entity,change,rule", CASES)
def test_row_rules_with_a_deletion_in_the_batch(entity: str, change: dict, rule: str | None) -> None:
    """With deletions in the batch the gate checks the live rows alone (only the columns its rules read,
    copied): the same rules fail, at the batch's own positions, as without them."""
    key = get_entity(entity).key[-1]
    table = _table(entity, [_row(entity, _is_deleted=True, **change), _row(entity), _row(entity, **change)])
    table = table.set_column(table.schema.get_field_index(key), key, pa.array(["k0", "k1", "k2"]))
    outcome = validate_table(entity, table, policy_for(entity))
    assert {r.element_count for r in outcome.results} == {2}
    if rule is None:
        assert outcome.failed == {}
    else:
        assert list(outcome.failed) == [2]
        assert outcome.failed[2][0] == rule
    alone = validate_table(entity, table.slice(1), policy_for(entity))
    assert [(r.rule, r.unexpected_count) for r in outcome.results] == \
        [(r.rule, r.unexpected_count) for r in alone.results]


def test_personal_values_never_appear_in_reasons() -> None:
    bad_id = BAD_ID
    table = _table("trainee", [_row("trainee", id_number=bad_id, phone="12345")])
    outcome = validate_table("trainee", table, policy_for("trainee"))
    reason = outcome.failed[0][1]
    assert bad_id not in reason and "12345" not in reason and "id_number" in reason


def test_deleted_rows_are_not_checked() -> None:
    table = _table("notice", [_row("notice", title=None, _is_deleted=True)])
    assert validate_table("notice", table, policy_for("notice")).failed == {}


def test_duplicate_keys_warn_but_land() -> None:
    table = _table("notice", [_row("notice", notice_id="N1"), _row("notice", notice_id="N1")])
    outcome = validate_table("notice", table, policy_for("notice"))
    assert outcome.failed == {} and any("_key.unique" in w for w in outcome.warnings)


def test_spec_overrides_are_visible_and_checked() -> None:
    relaxed = policy_for("notice", {"rules": {"publisher_uscc.valid_uscc": "warn"}, "max_quarantine_share": 0.2},
                         known_rules=rule_ids("notice"))
    assert relaxed.action_for("publisher_uscc.valid_uscc") == "warn" and relaxed.max_quarantine_share == 0.2
    assert POLICIES["notice"].action_for("publisher_uscc.valid_uscc") == "quarantine"
    table = _table("notice", [_row("notice", publisher_uscc="91310115MA1FL5XL1I")])
    assert validate_table("notice", table, relaxed).failed == {}
    strict = policy_for("notice", {"rules": {"publisher_uscc.valid_uscc": "fail"}}, known_rules=rule_ids("notice"))
    assert validate_table("notice", table, strict).batch_failures
    with pytest.raises(PolicyError, match="no such rule"):
        policy_for("notice", {"rules": {"title.sparkle": "warn"}}, known_rules=rule_ids("notice"))
    with pytest.raises(PolicyError, match="action must be"):
        policy_for("notice", {"rules": {"title.not_null": "maybe"}})
    with pytest.raises(PolicyError, match="unknown setting"):
        policy_for("notice", {"max_share": 1})


def test_gx_fingerprint_workaround_still_applies() -> None:
    """If a GX upgrade drops HASH_THRESHOLD or hashes anyway, this fails loudly."""
    import great_expectations.execution_engine.pandas_execution_engine as engine

    gx_engine._get_context()
    assert engine.HASH_THRESHOLD == 0
    calls = []
    original = engine.hash_pandas_dataframe
    engine.hash_pandas_dataframe = lambda df: calls.append(1) or original(df)
    try:
        validate_table("notice", _table("notice", [_row("notice")]), policy_for("notice"), engine="gx")
    finally:
        engine.hash_pandas_dataframe = original
    assert calls == []


def test_custom_expectations_are_gx_classes_with_specification_names() -> None:
    from great_expectations.expectations.expectation import ColumnMapExpectation

    from quality import expectations as ex

    for name in ("ExpectColumnValuesToBeValidUscc", "ExpectColumnValuesToBeValidResidentId",
                 "ExpectColumnValuesToBeValidDistrictCode", "ExpectColumnValuesToBeValidMobile"):
        cls = getattr(ex, name)
        assert issubclass(cls, ColumnMapExpectation)
        assert cls(column="x").expectation_type.startswith("expect_column_values_to_be_valid_")
