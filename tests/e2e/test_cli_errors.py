"""The CLI as a data engineer meets it when things go wrong: one error line, data shown verbatim.

Every expected failure prints ``error: <what> — <where>; <what to do>`` and exits 1, with the
traceback only under ``iehub -v``; text from sources and errors is never read as rich markup.
"""
from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def iehub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iehub.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The failure's single `error:` line; fails when the CLI printed a traceback instead."""
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


# ------------------------------------------------------------------------- one line per failure
def test_a_connector_error_is_one_line_with_its_where_part_verbatim(iehub_home: Path, lingang) -> None:
    env = {"IEHUB_HOME": str(iehub_home), "IEHUB_LINGANG_CLIENT_SECRET": "Ab+Sec/ret=Val&ue42"}
    line = one_error_line(iehub("sync", "lingang_platform", "--stream", "notices", env=env))
    # rich markup used to swallow the bracketed part as if it were a style tag
    assert "[source lingang_platform, stream notices, endpoint /api/v1/auth/token" in line, line
    assert "; to act: " in line and line.rstrip().endswith("]"), line
    assert "token request" in line and "Ab+Sec/ret=Val&ue42" not in line


def test_a_failed_extraction_shows_in_status(iehub_home: Path, lingang) -> None:
    env = {"IEHUB_HOME": str(iehub_home), "IEHUB_LINGANG_CLIENT_SECRET": "not-the-secret-42"}
    assert iehub("sync", "lingang_platform", "--stream", "notices", env=env).returncode == 1
    status = iehub("status", env=env)
    assert status.returncode == 0
    row = next((line for line in status.stdout.splitlines() if "lingang_platform" in line and "notice" in line), "")
    assert "failed" in row, status.stdout
    import sqlalchemy as sa

    from warehouse.catalog import Catalog, batches

    with Catalog.for_home(iehub_home, None).engine.connect() as conn:
        messages = [m for (m,) in conn.execute(sa.select(batches.c.message).where(batches.c.status == "failed"))]
    assert len(messages) == 1 and "40101" in messages[0] and "\n" not in messages[0], messages


def test_build_lock_held_is_one_line_and_v_shows_the_traceback(iehub_home: Path) -> None:
    env = {"IEHUB_HOME": str(iehub_home)}
    from warehouse.layout import Lake

    lock = Lake(iehub_home).lock_path
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = one_error_line(iehub("build", env=env))
        assert "another warehouse build holds" in line
        verbose = iehub("-v", "build", env=env)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
    assert "error: another warehouse build" in verbose.stderr


def test_catalog_unreachable_is_one_line_without_the_password(iehub_home: Path) -> None:
    line = one_error_line(iehub("status", env={"IEHUB_HOME": str(iehub_home),
                                               "IEHUB_CATALOG_URL": "postgresql://hub:pw-Secret-9@127.0.0.1:1/ops"}))
    assert "cannot use the database" in line and "IEHUB_CATALOG_URL" in line and "pw-Secret-9" not in line


@pytest.mark.parametrize("variable, url", [
    ("IEHUB_CATALOG_URL", "postgresql://hub:pw-Secret-9@localhost:54x2/ops"),
    ("IEHUB_LINGANG_BASE_URL", "http://127.0.0.1:99999"),
])
def test_a_bad_port_in_a_url_is_one_line(iehub_home: Path, variable: str, url: str) -> None:
    env = {"IEHUB_HOME": str(iehub_home), "IEHUB_LINGANG_CLIENT_ID": "a", "IEHUB_LINGANG_CLIENT_SECRET": "b",
           "IEHUB_LINGANG_BASE_URL": "http://127.0.0.1:9", variable: url}
    line = one_error_line(iehub("sync", "lingang_platform", "--stream", "notices", env=env))
    assert "malformed" in line and "port" in line and "pw-Secret-9" not in line


def test_serve_on_a_read_only_feed_database_is_one_line(iehub_home: Path) -> None:
    env = {"IEHUB_HOME": str(iehub_home)}
    assert iehub("keys", "create", "--consumer", "demo", "--datasets", "project", "--districts", "310110",
                 env=env).returncode == 0
    db = iehub_home / "feeds" / "feeds.db"
    line = one_error_line(iehub("serve", "--port", "0", "--workers", "2", env={
        **env, "IEHUB_FEEDS_DB_URL": f"sqlite:///file:{db}?mode=ro&uri=true"}))
    assert "readonly" in line and "write access" in line


def test_a_missing_source_is_one_line(iehub_home: Path) -> None:
    line = one_error_line(iehub("sync", "no_such_source", env={"IEHUB_HOME": str(iehub_home)}))
    assert "no_such_source" in line and "lingang_platform" in line


def test_disk_full_is_one_line(iehub_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import warehouse.build

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device", str(iehub_home / "warehouse.duckdb.tmp"))

    monkeypatch.setattr(warehouse.build, "build", full)
    from iehub.cli import main

    umask = os.umask(0o022)
    os.umask(umask)
    try:
        result = CliRunner().invoke(main, ["--home", str(iehub_home), "build"])
    finally:
        os.umask(umask)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: disk full while writing") and "free space" in result.stderr


# ------------------------------------------------------------------ data is never markup
TRICKY = ["[/]", "[bold red]look[/bold red]", "[link=http://x]y", ":warning:"]


def test_sql_shows_markup_like_cells_literally(iehub_home: Path) -> None:
    env = {"IEHUB_HOME": str(iehub_home)}
    assert iehub("build", env=env).returncode == 0  # publishes an empty snapshot to query
    query = "select " + ", ".join(f"'{v}' as c{i}" for i, v in enumerate(TRICKY))
    done = iehub("sql", query, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    for value in TRICKY:
        assert value in done.stdout, done.stdout


def test_quarantine_show_shows_markup_like_cells_literally(iehub_home: Path) -> None:
    from iehub.config import Settings
    from iehub.pipeline import QUARANTINE_SCHEMA
    from warehouse.catalog import BatchRecord

    settings = Settings.from_env(iehub_home).ensure()
    path = iehub_home / "lake" / "quarantine" / "notice.parquet"
    path.parent.mkdir(parents=True)
    now = datetime.now(timezone.utc)
    rows = [{"_source": "lingang_platform", "_batch_id": "b1", "_extracted_at": now, "_page": 1, "_row": i,
             "_row_index": i, "_key": value, "field": "title", "rule": "mapping.text", "reason": f"bad {value}",
             "_record": "{}", "replayed_in": None} for i, value in enumerate(TRICKY)]
    pq.write_table(pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA), path)
    settings.catalog().commit_batch(BatchRecord(
        batch_id="b1", source="lingang_platform", entity="notice", window_start="", window_end="",
        rows_in=len(TRICKY), rows_loaded=0, rows_quarantined=len(TRICKY), started_at=now, finished_at=now,
        quarantine_path=str(path.relative_to(iehub_home))))
    done = iehub("quarantine", "show", "b1", env={"IEHUB_HOME": str(iehub_home)})
    assert done.returncode == 0, done.stderr[-2000:]
    for value in TRICKY:
        assert value in done.stdout and f"bad {value}" in done.stdout, done.stdout


# ------------------------------------------------------------------------------- sandbox
def test_sandbox_mutate_districts_reports_changes(iehub_home: Path) -> None:
    env = {"IEHUB_HOME": str(iehub_home)}
    assert iehub("sandbox", "seed", "districts", "--scale", "0.05", env=env).returncode == 0
    done = iehub("sandbox", "mutate", "districts", "--changed", "10%", env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
            for line in done.stdout.splitlines() if line.startswith("│")}
    assert set(rows) >= {"yangpu", "minhang"}, done.stdout
    assert all(sum(map(int, counts)) > 0 for counts in rows.values()), rows
