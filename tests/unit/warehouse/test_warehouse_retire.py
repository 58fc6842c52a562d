"""Replaced warehouse files and pruned snapshots leave their place at once and are deleted in the background."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.unit.warehouse.warehouse_fixtures import REGISTRY, land, notice_rows
from warehouse import retire
from warehouse.build import build
from warehouse.catalog import Catalog
from warehouse.publish import list_snapshots, prune


def _retired(home: Path) -> list[str]:
    folder = retire.retired_dir(home)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_held_file_outlives_its_replacement_until_released(tmp_path: Path) -> None:
    target = tmp_path / "warehouse.duckdb"
    target.write_bytes(b"old build")
    held = retire.hold(target, tmp_path)
    assert held is not None and held.parent == retire.retired_dir(tmp_path)
    new = tmp_path / "warehouse.duckdb.building"
    new.write_bytes(b"new build")
    os.replace(new, target)
    # the old inode still has a name: the rename did not free it
    assert held.read_bytes() == b"old build" and target.read_bytes() == b"new build"
    retire.release(held)
    retire.wait()
    assert _retired(tmp_path) == [] and target.read_bytes() == b"new build"


def test_nothing_to_hold_and_a_filesystem_without_links_fall_back(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert retire.hold(tmp_path / "absent.duckdb", tmp_path) is None
    target = tmp_path / "warehouse.duckdb"
    target.write_bytes(b"old")

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    assert retire.hold(target, tmp_path) is None
    retire.release(None)  # a no-op
    assert target.read_bytes() == b"old"


def test_retire_takes_a_folder_out_at_once_and_deletes_it(tmp_path: Path) -> None:
    snapshot = tmp_path / "published" / "20260101T000000000000Z"
    snapshot.mkdir(parents=True)
    (snapshot / "warehouse.duckdb").write_bytes(b"x" * 4096)
    (snapshot / "manifest.json").write_text("{}")
    retire.retire(snapshot, tmp_path)
    assert not snapshot.exists()  # gone from where readers look before retire() returns
    retire.wait()
    assert _retired(tmp_path) == []
    retire.retire(snapshot, tmp_path)  # already gone: nothing to do, no error


def test_retire_deletes_in_place_where_it_cannot_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "f").write_text("x")
    real = os.rename

    def cross_device(src: object, dst: object) -> None:
        if Path(str(dst)).parent == retire.retired_dir(tmp_path):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(src, dst)

    monkeypatch.setattr(os, "rename", cross_device)
    retire.retire(folder, tmp_path)
    assert not folder.exists()


def test_a_process_killed_before_deleting_leaves_what_the_next_build_sweeps(home: Path, catalog: Catalog) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    build(home, catalog, registry=REGISTRY)
    # A process that moved a file and a folder aside, then died (os._exit skips joining its threads:
    # nothing is deleted).
    script = ("import os, sys; from pathlib import Path; from warehouse import retire\n"
              "home = Path(sys.argv[1])\n"
              "f = home / 'dropped.duckdb'; f.write_bytes(b'x'); d = home / 'dropped'; d.mkdir(); (d / 'a').write_text('a')\n"
              "retire._start = lambda work, path: None\n"
              "retire.release(retire.hold(f, home)); f.unlink(); retire.retire(d, home)\n"
              "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", script, str(home)], cwd=REPO, check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    assert len(_retired(home)) == 2
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2"}]))
    build(home, catalog, registry=REGISTRY)
    retire.wait()
    assert _retired(home) == []


def test_builds_replace_and_prune_without_leaving_files_behind(home: Path, catalog: Catalog,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1"}]))
    build(home, catalog, registry=REGISTRY, keep=2)
    # held open so that the file system cannot give its inode number to a later file once it is
    # deleted (ext4 reuses freed numbers at once: the comparisons below then failed now and then)
    with open(home / "warehouse.duckdb", "rb") as first:
        first_inode = os.fstat(first.fileno()).st_ino
        released: list[int] = []
        real_release = retire.release

        def release(held: Path | None) -> None:
            if held is not None:
                released.append(held.stat().st_ino)
            real_release(held)

        monkeypatch.setattr(retire, "release", release)
        versions = []
        for i in range(3):
            land(home, catalog, "lingang", f"w{i + 2}", notice_rows("lingang", [{"notice_id": f"N{i + 2}"}]))
            versions.append(build(home, catalog, registry=REGISTRY, keep=2).snapshot.version)
        retire.wait()
        # only the two newest snapshots, the builder's file (linked into the newest), nothing in tmp/retired
        assert [s.version for s in list_snapshots(home)] == versions[-2:]
        assert sorted(p.name for p in (home / "published").iterdir()) == sorted([*versions[-2:], "CURRENT"])
        assert _retired(home) == []
        assert (home / "warehouse.duckdb").stat().st_ino != first_inode
        assert released[0] == first_inode  # the next build held the file it replaced, then let it go
        assert os.path.samefile(home / "warehouse.duckdb", home / "published" / versions[-1] / "warehouse.duckdb")
        assert prune(home, keep=1) == [versions[-2]]
        assert not (home / "published" / versions[-2]).exists()
        retire.wait()
        assert _retired(home) == []
