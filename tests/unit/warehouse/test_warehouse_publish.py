"""Published snapshots: CURRENT switches atomically, readers never wait, a killed build changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO
from tests.unit.warehouse.warehouse_fixtures import REGISTRY, land, notice_rows
from warehouse.build import build
from warehouse.catalog import Catalog
from warehouse.publish import PublishError, connect_current, current_path, list_snapshots, prune


def count(home: Path) -> int:
    con = connect_current(home)
    try:
        return con.execute("SELECT count(*) FROM core.notice").fetchall()[0][0]
    finally:
        con.close()


def test_each_build_publishes_an_immutable_snapshot_and_current_follows(home: Path, catalog: Catalog) -> None:
    with pytest.raises(PublishError, match="no published snapshot .* run `iehub build` first"):
        current_path(home)
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    first = build(home, catalog, registry=REGISTRY, keep=10)
    old = duckdb.connect(str(current_path(home)), read_only=True)  # a reader on the first snapshot
    try:
        land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2"}]))
        second = build(home, catalog, registry=REGISTRY, keep=10)
        assert old.execute("SELECT count(*) FROM core.notice").fetchall() == [(1,)]
    finally:
        old.close()
    assert count(home) == 2
    assert current_path(home) == home / "published" / second.snapshot.version / "warehouse.duckdb"
    assert [s.version for s in list_snapshots(home)] == [first.snapshot.version, second.snapshot.version]
    assert list_snapshots(home)[-1].manifest["last_change_version"] == 2
    assert (home / "published" / "CURRENT").is_symlink()


def test_retention_keeps_the_newest_and_any_snapshot_still_being_read(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    versions = [build(home, catalog, registry=REGISTRY, keep=100).snapshot.version for _ in range(4)]
    # Another process reads the oldest snapshot: pruning must leave it.
    reader = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
         "print('open', flush=True); sys.stdin.read()", str(home / "published" / versions[0] / "warehouse.duckdb")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
        assert prune(home, keep=2) == [versions[1]]
    finally:
        reader.communicate("", timeout=30)
    assert prune(home, keep=2) == [versions[0]]
    assert [s.version for s in list_snapshots(home)] == versions[2:]


SLOW_BUILD = """
import sys, time
from pathlib import Path
import warehouse.build as b
from tests.unit.warehouse.warehouse_fixtures import REGISTRY
from warehouse.catalog import Catalog

home = Path(sys.argv[1])
real = b.marts_module.build_marts
def slow(con, *args):
    print("building", flush=True)
    time.sleep(float(sys.argv[2]))
    return real(con, *args)
b.marts_module.build_marts = slow
b.build(home, Catalog.for_home(home), registry=REGISTRY)
print("built", flush=True)
"""


def _spawn_build(home: Path, pause: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SLOW_BUILD, str(home), str(pause)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_readers_run_while_a_build_runs_and_never_wait_or_see_half(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": f"N{i}"} for i in range(100)]))
    build(home, catalog, registry=REGISTRY)
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": f"M{i}"} for i in range(50)]))
    builder = _spawn_build(home, pause=1.5)
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while builder.poll() is None:
                seen.append(count(home))  # DuckDB fails at once on a lock conflict: no error = no wait
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    assert builder.stdout is not None and builder.stdout.readline().strip() == "building"
    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    builder.wait(timeout=120)
    for t in threads:
        t.join()
    assert builder.returncode == 0 and not errors, errors
    assert set(seen) <= {100, 150} and 100 in seen, "a reader saw half a build"
    assert count(home) == 150


def test_a_killed_build_leaves_current_readable_and_unchanged(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    build(home, catalog, registry=REGISTRY)
    before = os.readlink(home / "published" / "CURRENT")
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2"}]))
    builder = _spawn_build(home, pause=60)
    assert builder.stdout is not None and builder.stdout.readline().strip() == "building"
    os.kill(builder.pid, signal.SIGKILL)
    builder.wait()
    assert os.readlink(home / "published" / "CURRENT") == before
    assert count(home) == 1
    # The next build discards the leftover and applies what the killed one did not.
    build(home, catalog, registry=REGISTRY)
    assert count(home) == 2 and not (home / "warehouse.duckdb.building").exists()


def test_probing_a_snapshot_in_use_does_not_unlock_this_process_readers(tmp_path: Path) -> None:
    """POSIX locks belong to the process: a probe that opened and closed its own fd would drop them."""
    from warehouse.publish import in_use

    path = tmp_path / "snap.duckdb"
    duckdb.connect(str(path)).close()
    assert not in_use(path)
    reader = duckdb.connect(str(path), read_only=True)
    try:
        assert in_use(path) and in_use(path)  # probed twice in the reading process
        probe = "import sys; from warehouse.publish import in_use; print(in_use(sys.argv[1]))"
        seen = subprocess.run([sys.executable, "-c", probe, str(path)], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        assert seen == "True"  # another process still sees this process's lock
    finally:
        reader.close()
    assert not in_use(path)
