"""The lake in object storage (issue #14 item 3): workers that share nothing but services.

An S3-compatible server (moto, on loopback, started here) holds the lake; the ops catalog is a
throwaway PostgreSQL database. Each stream of the municipal sandbox is extracted in home A,
standardised, validated and landed in home B, and the warehouse is built in home C, through the
same `iehub.tasks` functions the Airflow DAGs call. The warehouse must hold what a one-machine
sync (local lake, SQLite catalog) of the same source builds: the same rows and record hashes.
"""
from __future__ import annotations

import uuid

from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow.fs as pafs
import pytest

from iehub import pipeline, tasks
from iehub.config import Settings
from sandbox import municipal
from tests.integration.sql_helpers import fresh_database, spec_with
from warehouse.build import build

pytestmark = pytest.mark.integration

SOURCE = "municipal_projects"
BUCKET = "iehub-lake"


@pytest.fixture
def s3_lake(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty bucket on a moto S3 server on loopback; yields the IEHUB_LAKE_URL of a prefix in it."""
    from moto.server import ThreadedMotoServer

    for name, value in {"AWS_ACCESS_KEY_ID": "iehub-test", "AWS_SECRET_ACCESS_KEY": "iehub-test-secret",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = f"endpoint_override=http://{host}:{port}&region=us-east-1"
        # moto keeps its buckets in process-wide memory, shared by every server started in this
        # process: each use gets a bucket of its own, or an earlier test's snapshots show up here.
        bucket = f"{BUCKET}-{uuid.uuid4().hex[:12]}"
        fs, _ = pafs.FileSystem.from_uri(f"s3://{bucket}?{options}&allow_bucket_creation=true")
        fs.create_dir(bucket)
        yield f"s3://{bucket}/hub?{options}"
    finally:
        server.stop()


@pytest.fixture
def municipal_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'municipal.sqlite'}"
    municipal.seed(url, scale=0.05, seed=11)
    monkeypatch.setenv("IEHUB_MUNICIPAL_DB_URL", url)
    return url


def _core(where: Path) -> dict[str, tuple[int, list[tuple]]]:
    """Per core table of a home's warehouse (or of a snapshot's DuckDB file): row count and the
    sorted (source key, record hash) pairs of its rows."""
    con = duckdb.connect(str(where if where.is_file() else where / "warehouse.duckdb"), read_only=True)
    try:
        tables = [t for (t,) in con.execute(
            "SELECT table_name FROM duckdb_columns() WHERE schema_name = 'core' AND column_name = '_record_hash' "
            "INTERSECT SELECT table_name FROM duckdb_columns() WHERE schema_name = 'core' "
            "AND column_name = '_source_key'").fetchall()]
        return {t: (con.execute(f'SELECT count(*) FROM core."{t}"').fetchone()[0],
                    con.execute(f'SELECT _source_key, _record_hash FROM core."{t}" ORDER BY ALL').fetchall())
                for t in sorted(tables)}
    finally:
        con.close()


def _objects(url: str) -> list[str]:
    fs, root = pafs.FileSystem.from_uri(url)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(root) + 1:] for i in infos if i.type == pafs.FileType.File)


def test_three_workers_sharing_only_the_bucket_and_postgres_build_what_one_machine_builds(
        s3_lake: str, municipal_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IEHUB_CATALOG_URL", raising=False)
    monkeypatch.delenv("IEHUB_LAKE_URL", raising=False)
    spec = spec_with(SOURCE)
    streams = list(spec.streams)

    # One machine: embedded defaults (local lake, SQLite catalog).
    local_home = tmp_path / "one-machine"
    settings = Settings.from_env(local_home)
    for stream in streams:
        pipeline.sync_stream(settings, SOURCE, stream, spec=spec)
    build(local_home, settings.catalog())
    expected = _core(local_home)
    assert sum(n for n, _ in expected.values()) > 100

    # Three workers: nothing shared but the bucket and the PostgreSQL catalog.
    homes = {w: tmp_path / f"worker-{w}" for w in "ABC"}
    with fresh_database("postgresql", tmp_path) as catalog_url:
        monkeypatch.setenv("IEHUB_CATALOG_URL", catalog_url)
        monkeypatch.setenv("IEHUB_LAKE_URL", s3_lake)
        published_url = s3_lake.replace("/hub?", "/published?")
        monkeypatch.setenv("IEHUB_PUBLISH_URL", published_url)
        monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", f"iehub_sync_{SOURCE}")
        monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2026-12-05T00:00:00+00:00")
        refs = []
        for stream in streams:
            monkeypatch.setenv("IEHUB_HOME", str(homes["A"]))
            ref = tasks.extract(SOURCE, stream)
            monkeypatch.setenv("IEHUB_HOME", str(homes["B"]))
            ref = tasks.land(tasks.standardise_and_validate(ref))
            refs.append(ref)
        monkeypatch.setenv("IEHUB_HOME", str(homes["C"]))
        built = tasks.build()
        landed = Settings.from_env(homes["C"]).catalog().landed_batches()

    assert _core(homes["C"]) == expected
    # What tasks passed on and the ledger stores are lake keys, which the bucket holds; no worker's lake
    # folder holds a landed file of its own making (B landed by server-side copy; C fetched copies).
    assert {r["std_path"] for r in refs} == {b.std_path for b in landed if b.source == SOURCE}
    objects = _objects(s3_lake)
    for batch in landed:
        for key in (batch.raw_path, batch.std_path, batch.quarantine_path):
            assert key.startswith("lake/") and key.removeprefix("lake/") in objects
    assert not (homes["A"] / "lake").exists() and not (homes["B"] / "lake" / "std").exists()
    assert not (homes["A"] / "warehouse.duckdb").exists() and not (homes["B"] / "warehouse.duckdb").exists()
    # The snapshot is published on the builder's disk and uploaded for readers elsewhere, CURRENT last.
    version = built["snapshot"]
    assert set(_objects(published_url)) == {"CURRENT", f"{version}/manifest.json", f"{version}/warehouse.duckdb"}
    fs, root = pafs.FileSystem.from_uri(published_url)
    with fs.open_input_stream(f"{root}/CURRENT") as pointer:
        assert pointer.read().decode().strip() == version
    assert fs.get_file_info(f"{root}/{version}/warehouse.duckdb").size == \
        (homes["C"] / "published" / version / "warehouse.duckdb").stat().st_size


def test_a_worker_reads_the_objects_current_content_never_a_stale_copy(s3_lake: str, tmp_path: Path) -> None:
    from warehouse.lakestore import LakeStore

    writer, reader = LakeStore(tmp_path / "w", s3_lake), LakeStore(tmp_path / "r", s3_lake)
    key = "lake/std/notice/source=x/dt=2026-12-05/b.parquet"
    for content in (b"first version", b"second, longer version"):
        staged = tmp_path / "staged"
        staged.write_bytes(content)
        writer.put(key, staged)
        assert reader.local(key).read_bytes() == content
    writer.delete(key)
    with pytest.raises(FileNotFoundError, match="does not exist in the lake"):
        reader.local(key)
    assert not reader.path(key).exists()  # the copy of an object that is gone is not left to be read
