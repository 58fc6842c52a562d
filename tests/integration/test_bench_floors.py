"""S1's and S5's floors (bench/floors.py) on a real PostgreSQL table: each reader moves every row into a DuckDB
table; the incremental floor merges the rows a change touched into a copy made before it."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from bench.floors import READERS, floor_table
from bench.runner import Measure, RunFailed, run_measure
from sandbox import municipal
from tests.integration.sql_helpers import fresh_database


@pytest.fixture(scope="module")
def projects_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with fresh_database("postgresql", tmp_path_factory.mktemp("pg")) as url:
        counts = municipal.seed(url, scale=0.1, seed=7, tables=("organizations", "projects"))
        yield url, counts["projects"]


@pytest.mark.parametrize("reader", READERS)
def test_the_floor_loads_every_row_with_each_reader(projects_db: tuple[str, int], reader: str, tmp_path: Path) -> None:
    url, projects = projects_db
    result = run_measure(Measure("floor_sql", {"url": url, "reader": reader}), work_dir=tmp_path, timeout=120)
    assert projects > 100 and result.rows == projects  # counted in the DuckDB table it built
    assert set(result.stages) == {"extract", "land", "build"} and result.extra["reader"] == reader
    assert result.extra["parquet_bytes"] > 0


def test_an_unknown_reader_is_named(projects_db: tuple[str, int], tmp_path: Path) -> None:
    url, _ = projects_db
    with pytest.raises(RunFailed, match="unknown reader 'odbc'"):
        run_measure(Measure("floor_sql", {"url": url, "reader": "odbc"}), work_dir=tmp_path, timeout=120)


def test_the_incremental_floor_merges_the_changed_rows_into_the_copy(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path / "pg") as url:
        municipal.seed(url, scale=0.1, seed=7, tables=("organizations", "projects"))
        before = tmp_path / "before.duckdb"
        cursor = floor_table(url, "projects", before)
        changed = municipal.mutate(url, changed=0.05, seed=1)["projects"]
        result = run_measure(Measure("floor_sql_incremental", {"url": url, "floor_db": str(before), "cursor": cursor}),
                             work_dir=tmp_path / "run", timeout=120)
        engine = sa.create_engine(url)
        try:
            with engine.connect() as con:
                now = con.execute(sa.text("SELECT count(*) FROM projects")).scalar()
        finally:
            engine.dispose()
    # every updated, inserted and soft-deleted row arrives once; a hard-deleted row stays in the copy
    assert result.rows == changed["updated"] + changed["inserted"] + changed["soft_deleted"] > 0
    assert result.extra["table_rows"] == now + changed["hard_deleted"]
    assert set(result.stages) == {"extract", "land", "build"}
