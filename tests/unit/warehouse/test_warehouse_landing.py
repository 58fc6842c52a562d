"""The Parquet sink: atomic, streaming, strict about its schema."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import warehouse
from warehouse.landing import ROW_GROUP_ROWS, LandingError, ParquetSink, sweep_temp_files

SCHEMA = pa.schema(
    [
        pa.field("org_name", pa.string()),
        pa.field("uscc", pa.string(), nullable=False),
        pa.field("funding_amount", pa.decimal128(18, 2)),
        pa.field("headcount", pa.int64()),
    ]
)


def orgs(n: int, start: int = 0, name: str = "上海电机学院") -> pa.Table:
    return pa.table(
        {
            "org_name": [f"{name}{i}" for i in range(start, start + n)],
            "uscc": [f"12310000{i:010d}" for i in range(start, start + n)],
            "funding_amount": pa.array([None] * n, pa.decimal128(18, 2)),
            "headcount": pa.array(range(start, start + n), pa.int32()),  # cast to int64 by the sink
        }
    )


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_committed_file_is_complete_and_described(tmp_path: Path) -> None:
    final = tmp_path / "std" / "organization" / "b1.parquet"
    with ParquetSink(final, SCHEMA) as sink:
        sink.write(orgs(3))
        sink.write(orgs(2, start=3).to_batches()[0])
        landed = sink.commit()
    table = pq.read_table(final)
    assert table.schema.equals(SCHEMA)
    assert table.column("org_name").to_pylist()[:2] == ["上海电机学院0", "上海电机学院1"]
    assert landed.rows == 5 == table.num_rows
    data = final.read_bytes()
    assert landed.bytes == len(data)
    assert landed.sha256 == hashlib.sha256(data).hexdigest()
    assert pq.ParquetFile(final).metadata.row_group(0).column(0).compression == "ZSTD"
    assert leftovers(final.parent) == ["b1.parquet"]


def test_exception_mid_write_leaves_no_final_and_no_temp_file(tmp_path: Path) -> None:
    final = tmp_path / "b1.parquet"
    with pytest.raises(RuntimeError, match="source went away"):
        with ParquetSink(final, SCHEMA) as sink:
            sink.write(orgs(10))
            raise RuntimeError("source went away")
    assert leftovers(tmp_path) == []


def test_rerun_replaces_and_a_failed_rerun_keeps_the_previous_file(tmp_path: Path) -> None:
    final = tmp_path / "b1.parquet"
    with ParquetSink(final, SCHEMA) as sink:
        sink.write(orgs(4))
    with ParquetSink(final, SCHEMA) as sink:
        sink.write(orgs(2, name="上海电力大学"))
    assert pq.read_table(final).column("org_name").to_pylist() == ["上海电力大学0", "上海电力大学1"]

    with pytest.raises(LandingError):
        with ParquetSink(final, SCHEMA) as sink:
            sink.write(orgs(1, name="上海海洋大学"))
            sink.write(orgs(1).drop_columns(["uscc"]))
    assert pq.read_table(final).column("org_name").to_pylist() == ["上海电力大学0", "上海电力大学1"]
    assert leftovers(tmp_path) == ["b1.parquet"]


def test_schema_mismatch_names_file_and_column(tmp_path: Path) -> None:
    final = tmp_path / "b1.parquet"
    sink = ParquetSink(final, SCHEMA)
    with pytest.raises(LandingError, match=r"b1\.parquet.*missing column\(s\) \['uscc'\]"):
        sink.write(orgs(1).drop_columns(["uscc"]))
    with pytest.raises(LandingError, match=r"unexpected column\(s\) \['extra'\]"):
        sink.write(orgs(1).append_column("extra", pa.array([1])))
    bad = orgs(1).set_column(3, "headcount", pa.array(["十二"]))
    with pytest.raises(LandingError, match=r"b1\.parquet: column 'headcount' cannot be cast from string to int64"):
        sink.write(bad)
    nulls = orgs(1).set_column(1, "uscc", pa.array([None], pa.string()))
    with pytest.raises(LandingError, match="column 'uscc' is not nullable"):
        sink.write(nulls)
    sink.abort()
    assert leftovers(tmp_path) == []


def test_empty_sink_commits_a_valid_zero_row_file(tmp_path: Path) -> None:
    final = tmp_path / "b1.parquet"
    landed = ParquetSink(final, SCHEMA).commit()
    table = pq.read_table(final)
    assert landed.rows == 0 == table.num_rows
    assert table.schema.equals(SCHEMA)


def test_small_writes_are_gathered_into_full_row_groups(tmp_path: Path) -> None:
    final = tmp_path / "b1.parquet"
    total = 2 * ROW_GROUP_ROWS + 1000
    with ParquetSink(final, SCHEMA) as sink:
        for start in range(0, total, 10_000):
            sink.write(orgs(min(10_000, total - start), start=start))
    meta = pq.ParquetFile(final).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 1000]
    assert pq.read_table(final, columns=["headcount"]).column(0).to_pylist() == list(range(total))


def test_sink_refuses_use_after_commit(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "b1.parquet", SCHEMA)
    sink.commit()
    with pytest.raises(LandingError, match="already committed or aborted"):
        sink.write(orgs(1))


KILLED_WRITER = """
import os, sys
import pyarrow as pa
from warehouse.landing import ParquetSink
sink = ParquetSink(sys.argv[1], pa.schema([("n", pa.int64())]))
sink.write(pa.table({"n": list(range(1000))}))
print("writing", flush=True)
os.kill(os.getpid(), 9)
"""


def test_killed_writer_leaves_only_a_temp_file_that_the_sweep_removes(tmp_path: Path) -> None:
    final = tmp_path / "lake" / "std" / "b1.parquet"
    repo = Path(warehouse.__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(final)],
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    orphans = list(final.parent.glob(".b1.parquet.*.tmp"))
    assert len(orphans) == 1 and not final.exists()

    unrelated = final.parent / "notes.tmp"
    unrelated.write_text("not ours")
    assert sweep_temp_files(tmp_path, older_than_minutes=60) == 0  # too fresh: might be a live writer
    old = time.time() - 2 * 3600
    os.utime(orphans[0], (old, old))
    os.utime(unrelated, (old, old))
    assert sweep_temp_files(tmp_path, older_than_minutes=60) == 1
    assert leftovers(final.parent) == ["notes.tmp"]


def test_read_chunks_gives_every_row_once_in_order_in_whole_row_groups(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from warehouse.landing import read_chunks

    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"i": pa.array(range(10_000), pa.int64())}), path, row_group_size=1_000)
    chunks = list(read_chunks(path, 2_500))
    assert [c.num_rows for c in chunks] == [3_000, 3_000, 3_000, 1_000]  # whole groups, at least 2,500 each
    assert pa.concat_tables(chunks).column("i").to_pylist() == list(range(10_000))
    assert list(read_chunks(path, 50_000))[0].num_rows == 10_000


def test_a_sink_of_wide_rows_flushes_by_bytes_before_the_row_count(tmp_path: Path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    from warehouse import landing

    monkeypatch.setattr(landing, "ROW_GROUP_BYTES", 1 << 20)
    schema = pa.schema([("record", pa.string())])
    wide = pa.table({"record": ["x" * 10_000] * 50}, schema=schema)  # ~0.5 MB per write
    with landing.ParquetSink(tmp_path / "q.parquet", schema) as sink:
        for _ in range(10):
            sink.write(wide)
            assert sink._pending_bytes < 2 << 20  # never more than the bound plus one write
    meta = pq.ParquetFile(tmp_path / "q.parquet").metadata
    assert meta.num_rows == 500 and meta.num_row_groups >= 4


def test_a_sink_given_a_smaller_row_group_bound_holds_no_more_than_it(tmp_path: Path) -> None:
    """The pipeline's quarantine sink: refused rows carry their raw record, held rows stay bounded."""
    schema = pa.schema([("record", pa.string())])
    wide = pa.table({"record": ["x" * 10_000] * 50}, schema=schema)  # ~0.5 MB per write
    with ParquetSink(tmp_path / "q.parquet", schema, row_group_bytes=1 << 20) as sink:
        for _ in range(10):
            sink.write(wide)
            assert sink._pending_bytes < 1 << 20
    meta = pq.ParquetFile(tmp_path / "q.parquet").metadata
    assert meta.num_rows == 500 and meta.num_row_groups >= 4


def _dictionary_encoded(path: Path) -> dict[str, bool]:
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(0).column
    return {meta.schema.column(i).name: column(i).has_dictionary_page for i in range(meta.num_columns)}


def test_auto_dictionary_leaves_mostly_distinct_text_columns_plain(tmp_path: Path) -> None:
    from warehouse.landing import dictionary_columns

    rows = orgs(20_000).set_column(0, "org_name", pa.array(["上海电机学院", "临港集团", None, "上海电机学院"] * 5_000))
    # uscc and headcount: every value distinct; funding_amount: no values to judge by
    assert dictionary_columns(rows) == ["org_name", "funding_amount"]
    flags = pa.table({"flag": pa.array([True, False] * 100), "code": pa.array(["A", "B"] * 100)})
    assert dictionary_columns(flags) == ["code"]  # a boolean is bit-packed better without one
    auto, always = tmp_path / "auto.parquet", tmp_path / "always.parquet"
    with ParquetSink(auto, SCHEMA, use_dictionary="auto") as sink:
        sink.write(rows)
    with ParquetSink(always, SCHEMA) as sink:
        sink.write(rows)
    assert _dictionary_encoded(auto) == {"org_name": True, "uscc": False, "funding_amount": True, "headcount": False}
    assert _dictionary_encoded(always)["uscc"]
    assert pq.read_table(auto).equals(pq.read_table(always))
    assert auto.stat().st_size < always.stat().st_size


def test_a_sink_without_text_statistics_keeps_them_for_every_other_column(tmp_path: Path) -> None:
    from warehouse.landing import statistics_columns

    assert statistics_columns(SCHEMA) == ["funding_amount", "headcount"]
    rows = orgs(5_000)
    plain, full = tmp_path / "plain.parquet", tmp_path / "full.parquet"
    with ParquetSink(plain, SCHEMA, use_dictionary="auto", text_statistics=False) as sink:
        sink.write(rows)
    with ParquetSink(full, SCHEMA, use_dictionary="auto") as sink:
        sink.write(rows)

    def has_statistics(path: Path) -> dict[str, bool]:
        group = pq.ParquetFile(path).metadata.row_group(0)
        return {group.column(i).path_in_schema: group.column(i).is_stats_set for i in range(group.num_columns)}

    assert has_statistics(plain) == {"org_name": False, "uscc": False, "funding_amount": True, "headcount": True}
    assert all(has_statistics(full).values())
    assert pq.read_table(plain).equals(pq.read_table(full)) and pq.read_table(plain).equals(rows.cast(SCHEMA))


def test_auto_dictionary_sink_fails_early_commits_empty_and_aborts_cleanly(tmp_path: Path) -> None:
    with pytest.raises(LandingError, match="use_dictionary"):
        ParquetSink(tmp_path / "x.parquet", SCHEMA, use_dictionary="sometimes")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        if not os.access(tmp_path / "ro", os.W_OK):  # root writes anywhere: nothing to check there
            with pytest.raises(PermissionError):
                ParquetSink(tmp_path / "ro" / "x.parquet", SCHEMA, use_dictionary="auto")
    finally:
        (tmp_path / "ro").chmod(0o700)
    empty = ParquetSink(tmp_path / "empty.parquet", SCHEMA, use_dictionary="auto").commit()
    assert empty.rows == 0 and pq.read_table(empty.path).schema.equals(SCHEMA)
    sink = ParquetSink(tmp_path / "gone.parquet", SCHEMA, use_dictionary="auto")
    sink.write(orgs(10))
    sink.abort()
    assert leftovers(tmp_path) == ["empty.parquet", "ro"]
