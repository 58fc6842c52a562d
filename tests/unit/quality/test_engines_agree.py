"""The Arrow engine computes every rule exactly as Great Expectations does.

This is what makes the fast path trustworthy: the bad-input corpus (cases and valid twins) and
a messy table per entity (nulls, repeated and half-missing keys, out-of-range values, reversed
date pairs, garbled text, deleted rows) go through both engines, and for every rule the failing
rows, the counts and percentages in the GX result documents, and the gate's per-row verdicts
(rule and reason) must be identical.
"""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from quality.policy import policy_for
from quality.runner import evaluate, validate_table
from quality.suites import rules_for
from schemas import ENTITIES, get_entity
from tests.unit.quality.test_bad_corpus import CASES, GROUPS, standardised
from tests.unit.quality.test_quality_suites import BAD_ID, _row, _table, make_id

COUNT_KEYS = ("element_count", "unexpected_count", "missing_count")
PERCENT_KEYS = ("unexpected_percent", "missing_percent", "unexpected_percent_total", "unexpected_percent_nonmissing")


def _assert_engines_agree(entity: str, table: pa.Table) -> int:
    """Same failing rows and result counts per rule from both engines; returns the failing rows seen."""
    rules = rules_for(entity)
    arrow = {e.rule.rule_id: e for e in evaluate(rules, table, engine="arrow")}
    gx = {e.rule.rule_id: e for e in evaluate(rules, table, engine="gx")}
    assert set(arrow) == set(gx) == {r.rule_id for r in rules}
    seen = 0
    for rule_id, a in arrow.items():
        g = gx[rule_id]
        assert not a.raised and not g.raised, (rule_id, a.raised, g.raised)
        assert a.unexpected_rows.tolist() == g.unexpected_rows.tolist(), f"{entity} {rule_id}: failing rows differ"
        assert a.result["success"] == g.result["success"], rule_id
        assert a.result["expectation_config"]["type"] == g.result["expectation_config"]["type"], rule_id
        assert a.result["expectation_config"]["kwargs"] == g.result["expectation_config"]["kwargs"], rule_id
        for key in COUNT_KEYS:
            assert a.result["result"].get(key) == g.result["result"].get(key), (entity, rule_id, key)
        for key in PERCENT_KEYS:
            av, gv = a.result["result"].get(key), g.result["result"].get(key)
            assert (av is None) == (gv is None) and (av is None or av == pytest.approx(gv)), (entity, rule_id, key)
        seen += len(a.unexpected_rows)
    outcome = {engine: validate_table(entity, table, policy_for(entity), engine=engine) for engine in ("arrow", "gx")}
    assert outcome["arrow"].failed == outcome["gx"].failed
    assert outcome["arrow"].warnings == outcome["gx"].warnings
    assert outcome["arrow"].batch_failures == outcome["gx"].batch_failures
    assert [(r.rule, r.unexpected_count, r.element_count, r.success) for r in outcome["arrow"].results] == \
        [(r.rule, r.unexpected_count, r.element_count, r.success) for r in outcome["gx"].results]
    return seen


@pytest.mark.parametrize("entity,field", sorted(GROUPS))
def test_corpus_cases_and_twins_fail_the_same_rows_in_both_engines(entity: str, field: str) -> None:
    cases = GROUPS[(entity, field)]
    bad, _, _ = standardised(entity, field, [c["value"] for c in cases])
    twins, _, _ = standardised(entity, field, [c["twin"] for c in cases])
    assert _assert_engines_agree(entity, bad) > 0 or bad.num_rows == 0, "cases the mapping lets through must trip rules"
    _assert_engines_agree(entity, twins)


def test_corpus_covers_every_group() -> None:
    assert sum(len(v) for v in GROUPS.values()) == len(CASES) >= 300


MESSY_STRINGS = ["", " ", "Ã©Ã¨Ã", "\ufffd乱码", "浙A12345", "310103", "31011", "91310115MA1FL5XL1I",
                 "13812345678", "+86 138-1234-5678", "021-12345678", BAD_ID, make_id(date(1950, 1, 1)),
                 make_id(date(2016, 6, 1)), "x" * 18,
                 # control characters (tab and line breaks only fit multiline fields) and lengths at the limits
                 "名\x00称", "a\tb", "第一行\n第二行", "\r\n", "\x1b[31m红\x1b[0m", "x\x85y", "\x7f",
                 "长" * 200, "长" * 201, "x" * 64, "x" * 65, "y" * 10_001]


def _messy_rows(entity: str, rng: random.Random, n: int) -> list[dict]:
    ent = get_entity(entity)
    key = ent.key[-1]
    rows = []
    for i in range(n):
        row = _row(entity, **{key: f"k{rng.randrange(n // 2)}" if rng.random() < 0.3 else f"k-{i}"})
        for f in ent.business_fields:
            roll = rng.random()
            if roll < 0.08:
                row[f.name] = None
            elif roll < 0.2:
                t = f.type
                if pa.types.is_string(t):
                    row[f.name] = rng.choice(MESSY_STRINGS)
                elif pa.types.is_date(t):
                    row[f.name] = rng.choice([date(1900, 1, 1), date(1949, 10, 1), date(1949, 9, 30),
                                              date.today() + timedelta(days=366 * 11), date(2030, 1, 1)])
                elif pa.types.is_timestamp(t):
                    row[f.name] = rng.choice([datetime(1999, 12, 31, 23, 59, 59, 900000, tzinfo=timezone.utc),
                                              datetime(2000, 1, 1, tzinfo=timezone.utc),
                                              datetime.now(timezone.utc) + timedelta(days=3)])
                elif pa.types.is_decimal(t):
                    row[f.name] = rng.choice([Decimal("-0.01"), Decimal("0"), Decimal("100000000000.00"),
                                              Decimal("100000000000.01"), Decimal("9999999999999.99")])
                elif pa.types.is_integer(t):
                    row[f.name] = rng.choice([-1, 0, 1989, 1990, 1_000_001 if t.bit_width > 16 else 32767])
        if rng.random() < 0.05:
            row["_is_deleted"] = True
        rows.append(row)
    return rows


@pytest.mark.parametrize("entity", sorted(ENTITIES))
def test_messy_batches_fail_the_same_rows_in_both_engines(entity: str) -> None:
    rng = random.Random(hash(entity) % 1000)
    table = _table(entity, _messy_rows(entity, rng, 300))
    # null half of the compound key on some rows: GX ignores a key row only when all parts are missing
    source = table.column("_source").to_pylist()
    source = [None if i % 17 == 0 else s for i, s in enumerate(source)]
    table = table.set_column(table.schema.get_field_index("_source"), "_source", pa.array(source, pa.string()))
    assert _assert_engines_agree(entity, table) > 0
    live = table.filter(pa.compute.invert(pa.compute.fill_null(table.column("_is_deleted"), False)))
    assert _assert_engines_agree(entity, live) > 0
    # in key order, as a full SQL pass reads it (the Arrow engine then finds repeats without sorting)
    key = get_entity(entity).key[-1]
    in_order = live.set_column(live.schema.get_field_index("_source"), "_source",
                               pa.array(["s"] * live.num_rows, pa.string())).sort_by(key)
    assert _assert_engines_agree(entity, in_order) > 0


def test_a_rule_on_a_missing_column_fails_the_batch_in_both_engines() -> None:
    table = _table("notice", [_row("notice")]).drop_columns(["title"])
    for engine in ("arrow", "gx"):
        outcome = validate_table("notice", table, policy_for("notice"), engine=engine)
        assert any("title" in f and "could not be evaluated" in f for f in outcome.batch_failures), (engine, outcome)


def test_unknown_engine_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IEHUB_QUALITY_ENGINE", "spark")
    with pytest.raises(ValueError, match="IEHUB_QUALITY_ENGINE='spark'.*arrow, gx"):
        validate_table("notice", _table("notice", [_row("notice")]), policy_for("notice"))


def test_the_arrow_engine_never_imports_great_expectations(tmp_path) -> None:
    """GX's import and context cost seconds per process: the default path must not pay them."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    code = ("import sys; from quality.policy import policy_for; from quality.runner import validate_table; "
            "from quality.docs import store_results; "
            "from tests.unit.quality.test_quality_suites import _row, _table; "
            "t = _table('trainee', [_row('trainee', phone='12345')]); before = set(sys.modules); "
            "o = validate_table('trainee', t, policy_for('trainee')); "
            f"store_results(__import__('pathlib').Path({str(tmp_path)!r}), entity='trainee', source='s', batch_id='b', "
            "results=[o.gx_result]); "
            "assert o.failed, o; "
            "print(sorted(m for m in set(sys.modules) - before if m.startswith(('great_expectations', 'pandas'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo,
                         env={**__import__("os").environ, "IEHUB_QUALITY_ENGINE": "arrow"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    assert list((tmp_path / "quality" / "pending" / "trainee").glob("*.json"))


@pytest.mark.parametrize("mostly,success", [(0.5, True), (0.9, False)])
def test_mostly_decides_success_the_same_way(mostly: float, success: bool) -> None:
    from quality.suites import MOJIBAKE, Rule

    rule = Rule("title.readable_text", "ExpectColumnValuesToNotMatchRegex",
                {"column": "title", "regex": MOJIBAKE, "mostly": mostly}, ("title",), "readable_text", "garbled",
                meta={"rule": "notice.title.readable_text"})
    table = pa.table({"title": pa.array(["通知", "Ã¤Â¸Â", "公示", None], pa.string())})
    for engine in ("arrow", "gx"):
        [ev] = evaluate([rule], table, engine=engine)
        assert ev.result["success"] is success, engine
        assert ev.unexpected_rows.tolist() == [1], engine
