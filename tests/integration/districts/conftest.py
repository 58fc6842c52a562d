"""District drop folders and the 嘉定 API, on real files and real HTTP on loopback."""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from iehub import pipeline
from iehub.config import Settings
from sandbox.districts import DistrictDrops, JiadingApi
from warehouse.build import build
from warehouse.publish import current_path


def age(folder: Path, seconds: float = 30) -> None:
    """Make dropped files look settled (the specs wait 2 s for a file to stop changing)."""
    for path in folder.iterdir():
        os.utime(path, (time.time() - seconds, time.time() - seconds))


@pytest.fixture
def drops(iehub_home: Path, monkeypatch: pytest.MonkeyPatch) -> DistrictDrops:
    d = DistrictDrops(iehub_home / "sandbox" / "districts")
    d.seed(seed=21, scale=0.2)
    monkeypatch.setenv("IEHUB_YANGPU_DROP", str(d.yangpu))
    monkeypatch.setenv("IEHUB_MINHANG_DROP", str(d.minhang))
    age(d.yangpu)
    age(d.minhang)
    return d


@pytest.fixture
def jiading(monkeypatch: pytest.MonkeyPatch) -> Iterator[JiadingApi]:
    api = JiadingApi(seed=21, scale=0.2, api_key="test-key-not-secret")
    monkeypatch.setenv("IEHUB_JIADING_BASE_URL", api.start())
    monkeypatch.setenv("IEHUB_JIADING_API_KEY", "test-key-not-secret")
    yield api
    api.stop()


def sync(home: Path, source: str) -> dict[str, dict]:
    settings = Settings.from_env(home)
    return {r["stream"]: r for r in pipeline.sync(settings, [source])}


def build_core(home: Path) -> None:
    settings = Settings.from_env(home)
    build(home, settings.catalog())


def core(home: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def quarantine(home: Path, entity: str, source: str) -> list[dict]:
    files = [str(p) for p in (home / "lake" / "quarantine" / entity / f"source={source}").rglob("*.parquet")]
    if not files:
        return []
    return duckdb.sql(f"select * from read_parquet({files})").to_arrow_table().to_pylist()
