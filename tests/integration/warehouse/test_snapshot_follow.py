"""Readers on other machines follow the snapshots a builder uploads to IEHUB_PUBLISH_URL (issue #14 item 3).

The builder's home and the reader's home share nothing but a bucket on a loopback S3 server (moto,
started by the fixture): the reader adopts each newer snapshot under the same version, never goes
back to an older one, and a pointer to a snapshot that is not there leaves it as it was.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner

from iehub.cli import main
from iehub.config import Settings
from tests.integration.warehouse.test_lake_object_storage import s3_lake  # noqa: F401 - a fixture
from tests.unit.warehouse.warehouse_fixtures import REGISTRY, land, notice_rows
from warehouse.build import build
from warehouse.catalog import Catalog
from warehouse.publish import current_path, current_version, list_snapshots, publish
from warehouse.snapshot_follow import FollowError, follow

pytestmark = pytest.mark.integration


def _notices(path: Path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT notice_id, title FROM core.notice ORDER BY 1").fetchall()
    finally:
        con.close()


@dataclass
class Homes:
    """A builder and a reader that share only the bucket of IEHUB_PUBLISH_URL."""

    published: str
    builder: Settings
    reader: Settings
    catalog: Catalog


@pytest.fixture
def homes(s3_lake: str, tmp_path: Path) -> Iterator[Homes]:  # noqa: F811
    published = s3_lake.replace("/hub?", "/published?")
    builder = Settings(home=tmp_path / "builder", publish_url=published)
    catalog = Catalog.for_home(builder.home)
    yield Homes(published, builder, Settings(home=tmp_path / "reader", publish_url=published), catalog)
    catalog.dispose()


def _build_and_upload(settings: Settings, catalog: Catalog, window: str, rows: list[dict]) -> str:
    land(settings.home, catalog, "lingang_platform", window, notice_rows("lingang_platform", rows))
    version = build(settings.home, catalog, registry=REGISTRY).snapshot.version
    assert settings.upload_snapshot(version)
    return version


def test_a_reader_adopts_each_newer_uploaded_snapshot_and_never_goes_back(homes: Homes) -> None:
    builder, reader, catalog = homes.builder, homes.reader, homes.catalog
    assert reader.pull_snapshot() is None  # nothing uploaded yet: nothing to adopt, no error

    first = _build_and_upload(builder, catalog, "w1", [{"notice_id": "N1", "title": "临港新片区人才公告"}])
    assert reader.pull_snapshot() == first
    assert current_version(reader.home) == first
    assert _notices(current_path(reader.home)) == [("N1", "临港新片区人才公告")]
    assert reader.pull_snapshot() is None  # already current
    assert not any((reader.home / "published" / ".remote").rglob("*.duckdb"))  # the download was moved in

    second = _build_and_upload(builder, catalog, "w2", [{"notice_id": "N2", "title": "产教融合项目申报通知"}])
    assert second > first
    assert reader.pull_snapshot() == second
    assert _notices(current_path(reader.home)) == [("N1", "临港新片区人才公告"), ("N2", "产教融合项目申报通知")]
    assert [s.version for s in list_snapshots(reader.home)] == [first, second]

    # The builder itself, with a snapshot as new as the uploaded one, adopts nothing.
    assert builder.pull_snapshot() is None
    # A reader whose own snapshot is newer than the remote pointer keeps it.
    newer = "29991231T000000000000Z"
    publish(reader.home, current_path(reader.home), {"note": "local"}, version=newer)
    assert reader.pull_snapshot() is None
    assert current_version(reader.home) == newer


def test_a_pointer_to_a_missing_snapshot_is_one_clear_error_and_changes_nothing(homes: Homes) -> None:
    published, reader = homes.published, homes.reader
    first = _build_and_upload(homes.builder, homes.catalog, "w1", [{"notice_id": "N1", "title": "公告"}])
    assert reader.pull_snapshot() == first
    fs, root = pafs.FileSystem.from_uri(published)
    with fs.open_output_stream(f"{root}/CURRENT") as out:
        out.write(b"29990101T000000000000Z\n")
    with pytest.raises(FollowError, match=r"names 29990101T000000000000Z.*next pull retries"):
        reader.pull_snapshot()
    assert current_version(reader.home) == first
    assert [s.version for s in list_snapshots(reader.home)] == [first]

    result = CliRunner().invoke(main, ["snapshots", "--pull"], env={"IEHUB_HOME": str(reader.home),
                                                                     "IEHUB_PUBLISH_URL": published})
    assert result.exit_code == 1
    assert "29990101T000000000000Z" in result.output and "Traceback" not in result.output


def test_snapshots_pull_and_the_follow_loop(homes: Homes) -> None:
    published, builder, reader, catalog = homes.published, homes.builder, homes.reader, homes.catalog
    first = _build_and_upload(builder, catalog, "w1", [{"notice_id": "N1", "title": "公告"}])
    env = {"IEHUB_HOME": str(reader.home), "IEHUB_PUBLISH_URL": published}
    result = CliRunner().invoke(main, ["snapshots", "--pull"], env=env)
    assert result.exit_code == 0, result.output
    assert f"pulled {first}" in result.output and "endpoint_override" not in result.output
    assert CliRunner().invoke(main, ["snapshots", "--pull"], env=env).output.startswith("already current")
    no_url = CliRunner().invoke(main, ["snapshots", "--pull"], env={"IEHUB_HOME": str(reader.home),
                                                                     "IEHUB_PUBLISH_URL": ""})
    assert no_url.exit_code != 0 and "IEHUB_PUBLISH_URL" in no_url.output

    stop = threading.Event()
    errors: list[Exception] = []
    loop = threading.Thread(target=follow, args=(reader.home, reader.published_source(), 0.2, stop),
                            kwargs={"on_error": errors.append}, daemon=True)
    loop.start()
    try:
        second = _build_and_upload(builder, catalog, "w2", [{"notice_id": "N2", "title": "通知"}])
        deadline = time.monotonic() + 30
        while current_version(reader.home) != second:
            assert time.monotonic() < deadline, f"the follow loop did not adopt {second}; errors: {errors}"
            time.sleep(0.1)
    finally:
        stop.set()
        loop.join(10)
    assert not loop.is_alive() and errors == []


def test_the_bucket_keeps_as_many_snapshots_as_the_home_and_nothing_else_is_touched(
        homes: Homes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every upload is a whole warehouse: without retention the bucket grew by one per build."""
    monkeypatch.setenv("IEHUB_SNAPSHOTS_KEEP", "2")
    builder, reader, catalog = homes.builder, homes.reader, homes.catalog
    fs, root = pafs.FileSystem.from_uri(homes.published)
    # left by an upload cut short before its manifest (older than any build here), and objects of others
    with fs.open_output_stream(f"{root}/20000101T000000000000Z/warehouse.duckdb") as out:
        out.write(b"partial")
    with fs.open_output_stream(f"{root}/notes/20000101T000000000000Z.txt") as out:
        out.write(b"an operator's note")
    with fs.open_output_stream(f"{root}/readme.txt") as out:
        out.write(b"not a snapshot")

    versions = [_build_and_upload(builder, catalog, f"w{i}", [{"notice_id": f"N{i}", "title": f"公告{i}"}])
                for i in range(1, 5)]

    def remote() -> dict[str, list[str]]:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        out: dict[str, list[str]] = {}
        for info in infos:
            if info.type == pafs.FileType.File:
                folder, _, name = info.path[len(root) + 1:].rpartition("/")
                out.setdefault(folder, []).append(name)
        return {k: sorted(v) for k, v in out.items()}

    assert remote() == {"": ["CURRENT", "readme.txt"], "notes": ["20000101T000000000000Z.txt"],
                        versions[2]: ["manifest.json", "warehouse.duckdb"],
                        versions[3]: ["manifest.json", "warehouse.duckdb"]}
    folders = sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory)
    assert folders == sorted(["notes", versions[2], versions[3]])  # no empty folder left behind (S3 keeps one)
    with fs.open_input_stream(f"{root}/CURRENT") as src:
        assert src.read().decode().strip() == versions[3]
    assert [s.version for s in list_snapshots(builder.home)] == versions[2:]  # the home keeps as many
    assert reader.pull_snapshot() == versions[3]
    assert _notices(current_path(reader.home)) == [(f"N{i}", f"公告{i}") for i in range(1, 5)]


def test_a_failed_removal_is_logged_and_retried_by_the_next_upload(
        homes: Homes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from warehouse import lakestore

    monkeypatch.setenv("IEHUB_SNAPSHOTS_KEEP", "1")
    builder, catalog = homes.builder, homes.catalog
    first = _build_and_upload(builder, catalog, "w1", [{"notice_id": "N1", "title": "公告"}])
    real_delete = lakestore.LakeStore.delete_folder

    def refused(self: lakestore.LakeStore, prefix: str) -> None:
        raise OSError("AccessDenied: s3:DeleteObject")

    monkeypatch.setattr(lakestore.LakeStore, "delete_folder", refused)
    second = _build_and_upload(builder, catalog, "w2", [{"notice_id": "N2", "title": "通知"}])  # the build succeeds
    assert f"{first} not removed" in caplog.text and "AccessDenied" in caplog.text
    fs, root = pafs.FileSystem.from_uri(homes.published)
    assert fs.get_file_info(f"{root}/{first}/warehouse.duckdb").type == pafs.FileType.File

    def unlisted(self: lakestore.LakeStore, prefix: str | None = None) -> list[str]:
        raise lakestore.LakeStoreError("cannot list s3://bucket/published: AccessDenied: s3:ListBucket")

    real_folders = lakestore.LakeStore.folders
    monkeypatch.setattr(lakestore.LakeStore, "delete_folder", real_delete)
    monkeypatch.setattr(lakestore.LakeStore, "folders", unlisted)
    caplog.clear()
    _build_and_upload(builder, catalog, "w2b", [{"notice_id": "N2b", "title": "通知二"}])
    assert "remote snapshots not pruned" in caplog.text and "s3:ListBucket" in caplog.text
    monkeypatch.setattr(lakestore.LakeStore, "folders", real_folders)
    third = _build_and_upload(builder, catalog, "w3", [{"notice_id": "N3", "title": "公告三"}])
    names = sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory)
    assert names == [third] and second < third
