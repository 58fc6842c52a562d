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
        index = docs.publish(tmp_path, entity="notice", source="lingang_platform", batch_id=f"b{i}",
                             results=[outcome.gx_result])
    pages = sorted(p.parent.parent.name for p in (tmp_path / "quality" / "docs" / "validations").rglob("*.html"))
    assert pages == ["b2", "b3", "b4"]
    text = index.read_text(encoding="utf-8")
    assert "b4" in text and "b0" not in text
    page = next((tmp_path / "quality" / "docs" / "validations").rglob("*.html")).read_text(encoding="utf-8")
    assert "91310115MA1FL5XL1I" not in page, "failing values must not reach Data Docs"
