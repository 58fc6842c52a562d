from __future__ import annotations

from pathlib import Path

import pytest

from quality import docs
from quality.policy import policy_for
from quality.runner import validate_table
from tests.unit.quality.test_quality_suites import _row, _table


def test_docs_keep_a_bounded_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docs, "HISTORY_PER_ENTITY", 3)
    for i in range(5):
        outcome = validate_table("notice", _table("notice", [_row("notice", publisher_uscc="91310115MA1FL5XL1I")]),
                                 policy_for("notice"))
        index = docs.publish(tmp_path, entity="notice", source="lingang_platform", batch_id=f"docs-run-{i}",
                             results=[outcome.gx_result])
    pages = sorted(p.parent.parent.name for p in (tmp_path / "quality" / "docs" / "validations").rglob("*.html"))
    assert pages == ["docs-run-2", "docs-run-3", "docs-run-4"]
    text = index.read_text(encoding="utf-8")
    assert "docs-run-4" in text and "docs-run-0" not in text  # run names no random GX id can contain
    page = next((tmp_path / "quality" / "docs" / "validations").rglob("*.html")).read_text(encoding="utf-8")
    assert "91310115MA1FL5XL1I" not in page, "failing values must not reach Data Docs"


def test_results_wait_without_values_and_bounded_until_the_site_is_built(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The validate step only queues JSON (no GX import); the queue keeps the newest runs, no row values."""
    import json

    monkeypatch.setattr(docs, "HISTORY_PER_ENTITY", 3)
    bad = "91310115MA1FL5XL1I"
    for i in range(5):
        outcome = validate_table("notice", _table("notice", [_row("notice", publisher_uscc=bad)]), policy_for("notice"))
        assert any(r["result"].get("partial_unexpected_list") for r in outcome.gx_result["results"])
        docs.store_results(tmp_path, entity="notice", source="lingang_platform", batch_id=f"b{i}",
                           results=[outcome.gx_result])
    queued = sorted((tmp_path / "quality" / "pending" / "notice").glob("*.json"))
    assert [json.loads(p.read_text(encoding="utf-8"))["run_name"] for p in queued] == ["b2", "b3", "b4"]
    assert not any(bad in p.read_text(encoding="utf-8") for p in queued)
    docs.build_site(tmp_path)
    assert not list((tmp_path / "quality" / "pending").rglob("*.json"))
