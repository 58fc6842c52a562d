"""The demo says whether a run was a full load or incremental, and what it loaded (#17 item 4)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from iehub.config import Settings
from iehub.demo import landed_so_far, run_summary
from warehouse.catalog import BatchRecord


def _land(settings: Settings, batch: str, rows_in: int, loaded: int) -> None:
    now = datetime.now(timezone.utc)
    settings.catalog().commit_batch(BatchRecord(
        batch_id=batch, source="lingang_platform", entity="notice", window_start="", window_end="",
        rows_in=rows_in, rows_loaded=loaded, rows_quarantined=rows_in - loaded, started_at=now, finished_at=now,
        std_path=f"lake/std/notice/{batch}.parquet", quarantine_path=f"lake/quarantine/notice/{batch}.parquet"))


def test_first_run_is_a_full_load_and_a_rerun_says_it_was_incremental(tmp_path: Path) -> None:
    settings = Settings.from_env(tmp_path / "home").ensure()
    before = landed_so_far(settings)
    _land(settings, "b1", 1400, 1390)
    assert run_summary(settings, before) == \
        "• first run, a full load: 1 batches landed, 1,400 rows read, 1,390 loaded, 10 quarantined"
    before = landed_so_far(settings)
    _land(settings, "b2", 12, 12)
    second = run_summary(settings, before)
    assert second.startswith("• incremental run:") and "12 rows read, 12 loaded" in second
    assert run_summary(settings, landed_so_far(settings)).startswith("• incremental run:") and \
        "0 batches landed, 0 rows read" in run_summary(settings, landed_so_far(settings))
