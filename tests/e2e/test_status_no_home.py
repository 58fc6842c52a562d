"""`iehub status` in a folder without a hub says so instead of creating ./var there (#17 item 4)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_status_where_there_is_no_hub_says_so_and_creates_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IEHUB_")}
    done = subprocess.run([sys.executable, "-m", "iehub.cli", "status"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "no hub home at" in done.stderr + done.stdout and "IEHUB_HOME" in done.stderr + done.stdout
    assert list(tmp_path.iterdir()) == []  # no ./var


def test_status_of_an_existing_home_still_works(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IEHUB_")}
    home = tmp_path / "hub"
    home.mkdir()
    done = subprocess.run([sys.executable, "-m", "iehub.cli", "--home", str(home), "status"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "iehub status" in done.stdout
