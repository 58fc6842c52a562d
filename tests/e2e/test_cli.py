"""The command line as a data engineer meets it: help, spec validation, clear failures."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from connectors.spec import SPEC_DIR
from tests.conftest import REPO
from warehouse.publish import current_path

pytestmark = pytest.mark.e2e


def iehub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iehub.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.mark.parametrize("command", [[], ["sync"], ["build"], ["status"], ["demo"], ["sandbox"], ["sandbox", "serve"],
                                     ["sandbox", "mutate"], ["spec"], ["spec", "validate"], ["spec", "list"]])
def test_help_everywhere(command: list[str]) -> None:
    done = iehub(*command, "--help")
    assert done.returncode == 0 and "Usage:" in done.stdout


def test_spec_validate_points_at_the_problem(tmp_path: Path) -> None:
    data = yaml.safe_load((SPEC_DIR / "lingang_platform.yaml").read_text(encoding="utf-8"))
    data["streams"]["notices"]["mapping"]["fields"]["titel"] = "title"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    done = iehub("spec", "validate", str(bad), "lingang_platform")
    assert done.returncode == 1
    assert "titel" in done.stderr and str(bad) in done.stderr and "Traceback" not in done.stderr
    assert "ok lingang_platform" in done.stdout


def test_sync_with_wrong_secret_fails_in_one_clear_line(iehub_home: Path, lingang) -> None:
    done = iehub("sync", "lingang_platform", "--stream", "notices",
                 env={"IEHUB_HOME": str(iehub_home), "IEHUB_LINGANG_CLIENT_SECRET": "not-the-secret-42"})
    assert done.returncode == 1
    assert "40101" in done.stderr and "lingang_platform" in done.stderr
    assert "Traceback" not in done.stderr and "not-the-secret-42" not in done.stderr + done.stdout


def test_sync_build_status_by_hand(iehub_home: Path, lingang) -> None:
    env = {"IEHUB_HOME": str(iehub_home)}
    assert iehub("sync", "lingang_platform", env=env).returncode == 0
    assert iehub("build", env=env).returncode == 0
    status = iehub("status", env=env)
    assert status.returncode == 0
    import duckdb

    con = duckdb.connect(str(current_path(iehub_home)), read_only=True)
    core = con.execute("select count(*) from core.rd_project").fetchone()[0]
    con.close()
    live = sum(1 for r in lingang.records("rd_projects") if int(r["isDeleted"]) == 0)
    assert live - 5 <= core <= live
    cells = [c.strip() for c in next(l for l in status.stdout.splitlines() if "rd_project" in l).split("│")]
    assert cells[-2] == str(core), cells
