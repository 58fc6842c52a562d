"""Issue #19, other kinds: the snapshot guard also holds a SQL full read that would delete most rows.

The municipal database on SQLite (seeded by the sandbox) loses half its projects at once, as a
half-restored dump would; `sync --full` must land nothing and say so with the figures, and a spec
that allows the shrink (`snapshot_guard: {max_delete_share: …}`) lands it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from connectors.guard import SnapshotGuard
from iehub import pipeline
from iehub.config import Settings
from sandbox import municipal
from tests.integration.sql_helpers import core_rows, fresh_database, spec_with
from tests.integration.test_municipal_sync import execute
from warehouse.build import build

pytestmark = pytest.mark.integration

SOURCE = "municipal_projects"


def project_ids(home: Path) -> set[str]:
    build(home, Settings.from_env(home).catalog())
    return {k for (k,) in core_rows(home, "select project_id from core.project where _source = ?", [SOURCE])}


def test_a_sql_full_read_missing_half_the_rows_is_held(iehub_home: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        municipal.seed(url, scale=0.05, seed=11)
        monkeypatch.setenv("IEHUB_MUNICIPAL_DB_URL", url)
        settings = Settings.from_env(iehub_home)
        pipeline.sync_stream(settings, SOURCE, "projects", spec=spec_with(SOURCE))
        before = project_ids(iehub_home)
        assert len(before) > 20
        for table in ("performance_reports", "project_members", "training_bases", "projects"):
            execute(url, f"DELETE FROM {table} WHERE project_id % 2 = 0")
        with pytest.raises(pipeline.QualityGateError) as held:
            pipeline.sync_stream(settings, SOURCE, "projects", full=True, spec=spec_with(SOURCE))
        message = str(held.value)
        assert "suspect snapshot" in message and f"live rows" in message and "limit of 20%" in message
        assert "Nothing was landed" in message
        assert project_ids(iehub_home) == before

        allowed = spec_with(SOURCE, stream_updates={"snapshot_guard": SnapshotGuard(max_delete_share=0.9,
                                                                                      max_row_drop=0.9)})
        pipeline.sync_stream(settings, SOURCE, "projects", full=True, spec=allowed)
        after = project_ids(iehub_home)
        assert after < before and len(after) < 0.75 * len(before)
