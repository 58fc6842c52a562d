"""The quality site's pure parts: freshness against a schedule, rule texts, escaping of source data."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from iehub.quality_site import _rule_text, _Totals, freshness_state, render

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def test_freshness_follows_each_schedule_with_half_an_interval_of_grace() -> None:
    assert freshness_state(NOW - timedelta(hours=30), "@daily", NOW) == ("fresh", 0)
    assert freshness_state(NOW - timedelta(hours=50), "@daily", NOW) == ("overdue", 2)
    assert freshness_state(NOW - timedelta(hours=50), "@weekly", NOW) == ("fresh", 0)
    assert freshness_state(NOW - timedelta(days=20), "@monthly", NOW) == ("fresh", 0)
    assert freshness_state(NOW - timedelta(hours=2), "@hourly", NOW) == ("overdue", 2)
    assert freshness_state(None, "@hourly", NOW) == ("never", 0)


def test_rules_read_in_chinese_and_english_mapping_rejects_included() -> None:
    zh, en = _rule_text("quality.uscc.valid_uscc", "organization")
    assert "统一社会信用代码" in zh and "unified social credit code" in en and zh.startswith("uscc")
    assert _rule_text("mapping.date", "project") == ("日期无法识别或不存在", "is not a real date")
    assert "代码表 district" in _rule_text("mapping.code.district", "project")[0]
    zh, en = _rule_text("source.unreadable", "trainee")
    assert "身份证号" in zh and "quarantined, not repaired" in en


def _data(**overrides: object) -> dict:
    hostile = "<script>alert('x')</script>"
    totals = _Totals()
    totals.add({"status": "landed", "rows_in": 3, "rows_loaded": 2, "rows_quarantined": 1, "finished_at": NOW,
                "started_at": NOW})
    data = {"now": NOW, "version": "v1<b>", "specs": {"evil_source": {"title": hostile, "schedule": "@daily"}},
            "sources": {"evil_source": totals}, "districts": {"310110": totals},
            "district_sources": {"310110": {"evil_source"}}, "district_names": {"310110": (hostile, "Yangpu")},
            "freshness": [{"source": "evil_source", "schedule": "@daily", "last": NOW, "state": "fresh", "missed": 0,
                           "age": timedelta(0), "last_failed": False}],
            "rules": [{"rule": "quality.<img src=x onerror=alert(1)>.not_null", "rows": 1, "batches": 1,
                       "sources": {"evil_source"}, "entities": {"project"}, "text": (hostile, hostile),
                       "stage": "quality"}],
            "stage_rows": {"evil_source": {"mapping": 0, "quality": 1}},
            "timeliness": [("310110", 4, 2, 1, 1, 0), (None, 1, 1, 0, 0, 0)], "batches": 1}
    data.update(overrides)
    return data


def test_everything_from_sources_is_escaped_and_nothing_loads_from_outside() -> None:
    page = render(_data())
    assert "<script>" not in page and "<img" not in page and "v1<b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "default-src 'none'" in page  # the browser refuses any fetch the page might still try
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    assert "50.0%" in page  # 定期报送 on-time rate: 2 of (2 + 1 + 1)
    assert "未知区" in page  # reports whose project has no district are still counted


def test_an_empty_hub_says_so_instead_of_drawing_empty_charts() -> None:
    page = render(_data(sources={}, districts={}, district_sources={}, rules=[], stage_rows={}, timeliness=[]))
    assert "no district batches yet" in page and "nothing quarantined" in page and "no periodic reports yet" in page
