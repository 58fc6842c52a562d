"""The database sources from the command line: seed, sync, change, sync again, status."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def iehub(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IEHUB_")}
    env.update(IEHUB_HOME=str(home), COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "iehub.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=600)


def test_seed_sync_mutate_sync_on_the_embedded_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    seeded = iehub(home, "sandbox", "seed", "municipal", "--scale", "0.05", "--seed", "3")
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    assert "projects" in seeded.stdout and "250" in seeded.stdout
    first = iehub(home, "sync", "municipal_projects", "--stream", "projects")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "250" in first.stdout
    changed = iehub(home, "sandbox", "mutate", "municipal", "--changed", "10%", "--seed", "1")
    assert changed.returncode == 0, changed.stderr[-2000:]
    second = iehub(home, "sync", "municipal_projects", "--stream", "projects")
    assert second.returncode == 0, second.stderr[-2000:]
    assert iehub(home, "build").returncode == 0
    status = iehub(home, "status")
    assert status.returncode == 0 and "municipal_projects" in status.stdout
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    batches = con.execute("select count(*), sum(rows_in) from ops.batches where source = 'municipal_projects'").fetchone()
    assert batches[0] == 2 and 250 < batches[1] < 290  # 250, then about 10% of them


def test_a_wrong_database_url_fails_with_a_masked_reason(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env_file = home / "sandbox.env"
    home.mkdir()
    env_file.write_text("IEHUB_MUNICIPAL_DB_URL=postgresql+psycopg://iehub:s3cr3t-pw@127.0.0.1:1/none\n")
    done = iehub(home, "sync", "municipal_projects", "--stream", "projects")
    assert done.returncode == 1
    assert "cannot connect to the database" in done.stderr + done.stdout
    assert "s3cr3t-pw" not in done.stderr + done.stdout
