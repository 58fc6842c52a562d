"""`iehub demo --no-serve` as a new user runs it, on a temporary IEHUB_HOME, twice."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO
from tests.integration.helpers import SPEC, core_snapshot, ledger_loaded
from warehouse.publish import current_path

pytestmark = pytest.mark.e2e


def _demo(home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IEHUB_", "AIRFLOW"))}
    env.update(IEHUB_HOME=str(home), COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "iehub.cli", "demo", "--no-serve", "--scale", "0.2"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)


def test_demo_end_to_end_and_rerun_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    first = _demo(home)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "iehub status" in first.stdout
    report = home / "quality" / "site" / "index.html"  # the warehouse DAG's build writes the quality report
    assert report.exists() and report.as_uri() in first.stdout.replace("\n", "")
    con = duckdb.connect(str(current_path(home)), read_only=True)
    for stream in SPEC.streams.values():
        assert con.execute(f"select count(*) from core.{stream.entity}").fetchone()[0] > 0, stream.entity
    con.close()
    before, loaded = core_snapshot(home), ledger_loaded(home)
    second = _demo(home)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert core_snapshot(home) == before
    assert ledger_loaded(home) == loaded
    status = subprocess.run([sys.executable, "-m", "iehub.cli", "status"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "IEHUB_HOME": str(home), "COLUMNS": "160"})
    assert status.returncode == 0 and "talent_demand" in status.stdout
