"""`iehub export` packages validate with a plain `pip install frictionless` (#17 item 5).

A platform team checks a package with the validator they have: frictionless without pandas or
the parquet plugin. This runs the real `frictionless validate` from a venv holding only that.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from feeds.export import export
from tests.side_envs import side_env
from tests.unit.feeds.access_fixtures import SECRET, build_people_home

pytestmark = pytest.mark.integration


def plain_frictionless() -> Path:
    python = side_env("frictionless", "frictionless")
    missing = subprocess.run([str(python), "-c", "import pandas"], capture_output=True)
    assert missing.returncode != 0, "the plain validator's venv must not hold pandas"
    return python.with_name("frictionless")


def test_an_export_is_valid_for_frictionless_without_pandas_or_parquet(tmp_path: Path) -> None:
    home = build_people_home(tmp_path / "home")
    validator = plain_frictionless()
    for result in export(home, ["teacher", "organization"], tmp_path / "out", secret=SECRET):
        package = json.loads((result.directory / "datapackage.json").read_text(encoding="utf-8"))
        tabular = [r for r in package["resources"] if r.get("type", "table") == "table"]
        assert [r["format"] for r in tabular] == ["csv"]
        parquet = [r for r in package["resources"] if r["format"] == "parquet"]
        assert parquet and parquet[0]["type"] == "file" and (result.directory / parquet[0]["path"]).exists()
        checked = subprocess.run([str(validator), "validate", str(result.directory / "datapackage.json")],
                                 capture_output=True, text=True, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "INVALID" not in checked.stdout and "VALID" in checked.stdout


def test_a_changed_parquet_file_is_caught_by_the_plain_validator(tmp_path: Path) -> None:
    home = build_people_home(tmp_path / "home")
    validator = plain_frictionless()
    (result,) = export(home, ["organization"], tmp_path / "out", secret=SECRET)
    parquet = result.directory / "organization.parquet"
    parquet.chmod(0o600)
    parquet.write_bytes(parquet.read_bytes() + b"\0")
    checked = subprocess.run([str(validator), "validate", str(result.directory / "datapackage.json")],
                             capture_output=True, text=True, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert checked.returncode != 0 and "INVALID" in checked.stdout
