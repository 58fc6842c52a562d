"""Parquet written on a worker thread (iehub/overlap.py): same file, same order, errors not lost."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iehub.overlap import PipelinedSink
from warehouse.landing import LandingError, ParquetSink

SCHEMA = pa.schema([("project_id", pa.int64()), ("title", pa.string())])


def _chunk(start: int, n: int) -> pa.Table:
    return pa.table({"project_id": list(range(start, start + n)),
                     "title": [f"上海电机学院 产教融合项目 {i}" for i in range(start, start + n)]}, schema=SCHEMA)


def test_a_pipelined_sink_writes_every_chunk_in_order_and_commits_atomically(tmp_path: Path) -> None:
    path = tmp_path / "std.parquet"
    with PipelinedSink(ParquetSink(path, SCHEMA)) as sink:
        for start in range(0, 300_000, 100_000):
            sink.write(_chunk(start, 100_000))
        assert not path.exists(), "nothing appears under the final name before the commit"
    assert pq.read_table(path).column("project_id").to_pylist() == list(range(300_000))


def test_a_failed_write_surfaces_and_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "std.parquet"
    bad = pa.table({"project_id": [1], "title": ["x"], "extra": [1]})
    with pytest.raises(LandingError, match="unexpected column"):
        with PipelinedSink(ParquetSink(path, SCHEMA)) as sink:
            sink.write(_chunk(0, 10))
            sink.write(bad)  # fails on the worker thread ...
            sink.write(_chunk(10, 10))  # ... and is raised here, in the caller
    assert not path.exists() and not list(tmp_path.glob(".*.tmp"))


def test_abort_waits_for_the_write_in_flight_and_drops_the_file(tmp_path: Path) -> None:
    path = tmp_path / "std.parquet"
    sink = PipelinedSink(ParquetSink(path, SCHEMA))
    sink.write(_chunk(0, 200_000))
    sink.abort()
    sink.abort()  # idempotent
    assert not path.exists() and not list(tmp_path.glob(".*.tmp"))
