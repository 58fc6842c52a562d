"""A NUL inside a name, from a real SQLite source database: quarantined per field, never in core.

Issue #19, finding 6: the NUL reached `project_id` and `title` in core. The gate now rejects
control characters per text field (tab and line breaks only where a field is multiline).
"""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from iehub import pipeline
from iehub.config import Settings
from sandbox import municipal
from tests.integration.sql_helpers import core_rows, spec_with
from warehouse.build import build

pytestmark = pytest.mark.integration

SOURCE = "municipal_projects"


def test_a_nul_in_a_title_is_quarantined_naming_the_field(iehub_home: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'municipal.sqlite'}"
    municipal.seed(url, scale=0.02, seed=5)
    monkeypatch.setenv("IEHUB_MUNICIPAL_DB_URL", url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE projects SET title = substr(title, 1, 3) || char(0) || substr(title, 4) "
                             "WHERE project_id = 7")
    engine.dispose()
    settings = Settings.from_env(iehub_home)
    r = pipeline.sync_stream(settings, SOURCE, "projects", spec=spec_with(SOURCE))
    build(iehub_home, settings.catalog())
    files = [str(p) for p in (iehub_home / "lake" / "quarantine" / "project").rglob("*.parquet")]
    rows = duckdb.sql(f"select field, rule, reason from read_parquet({files}) where _key = '7'").fetchall()
    assert rows == [("title", "quality.title.no_control_characters",
                     "title contains control character U+0000 at character 4")]
    assert core_rows(iehub_home, "select count(*) from core.project where project_id = '7'") == [(0,)]
    assert core_rows(iehub_home, "select count(*) from core.project where contains(title, chr(0))") == [(0,)]
    ledger = settings.catalog().get_batch(r["batch_id"])
    assert ledger.rows_in == ledger.rows_loaded + ledger.rows_quarantined and ledger.rows_quarantined >= 1
