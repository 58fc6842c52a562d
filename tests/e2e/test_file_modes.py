"""Files holding personal data are private to the hub's user: 0600 files, 0700 folders."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def iehub(*args: str, env: dict[str, str], umask: int = 0o022) -> subprocess.CompletedProcess:
    """Run the CLI as a user with the usual permissive umask would."""
    return subprocess.run([sys.executable, "-m", "iehub.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300, preexec_fn=lambda: os.umask(umask))


def readable_by_others(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            found.append(f"{oct(stat.S_IMODE(path.stat().st_mode))} {path.relative_to(root.parent)}")
    return found


def test_sync_build_export_personal_leave_nothing_readable_by_others(iehub_home: Path, lingang,
                                                                       tmp_path: Path) -> None:
    env = {"IEHUB_HOME": str(iehub_home)}
    out = tmp_path / "exports"
    for args in (["sync", "lingang_platform"], ["build"], ["keys", "create", "--consumer", "demo", "--datasets",
                 "rd_project", "--districts", "310115"], ["export", "rd_project", "--personal", "--out", str(out)]):
        done = iehub(*args, env=env)
        assert done.returncode == 0, (args, done.stderr[-2000:])
    assert any(iehub_home.rglob("*.duckdb")) and any(iehub_home.rglob("*.parquet")) and any(out.rglob("*.csv"))
    assert readable_by_others(iehub_home) == []
    assert readable_by_others(out) == []


def test_a_personal_export_is_private_whatever_the_umask(iehub_home: Path, tmp_path: Path) -> None:
    """Called as a library, under a permissive umask, the unmasked files are still 0600 in a 0700 folder."""
    from feeds.export import export
    from iehub.config import Settings
    from warehouse.build import build

    settings = Settings.from_env(iehub_home)
    old = os.umask(0o022)
    try:
        settings.home.mkdir(parents=True)
        build(settings.home, settings.catalog())
        os.umask(0o022)  # the catalog and build may have tightened it; the export must not rely on that
        results = export(settings.home, ["trainee"], tmp_path / "out", personal=True, secret=b"k" * 32)
    finally:
        os.umask(old)
    package = results[0].directory
    assert stat.S_IMODE(package.stat().st_mode) == 0o700
    assert sorted(stat.S_IMODE(p.stat().st_mode) for p in package.iterdir()) == [0o600] * 3
