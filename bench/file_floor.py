"""The floor of a district CSV on this machine: decode, parse and write Parquet, nothing else.

    .venv/bin/python bench/file_floor.py [PATH] [--encoding gb18030] [--repeat 3]

What the hub's 杨浦 figure (S3, extract → land) can be compared with: the same file read with
no mapping, no quality gate, no lineage, no line accounting, no snapshot diff. Prints, best of
`--repeat` runs, wall and CPU seconds (this process and its children) of:

- decode alone: Python's GB18030 codec to UTF-8 (the codec the hub uses), one core;
- parse alone: Arrow's CSV parser over the UTF-8 bytes in memory, every column text;
- write alone: that table to one zstd Parquet file (the lake's compression);
- the floor, one core: decode → parse → write in one process;
- the floor, every core: the file cut into byte ranges at newlines, each range decoded and parsed
  in a forked process (as connectors/files/chunks.py does, minus its bookkeeping), then written.

Without PATH it reads the 1M-row 杨浦 file the S3 scenario prepared under $IEHUB_BENCH_WORK
(or bench/.work). It asserts nothing: the figures are for the note on S3.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _default_path() -> Path:
    work = Path(os.environ.get("IEHUB_BENCH_WORK") or ROOT / "bench" / ".work")
    found = sorted(work.glob("setup/yangpu-csv-1000000-*/drop/*.csv"))
    if not found:
        sys.exit(f"no prepared 1M-row 杨浦 CSV under {work}/setup: run `python -m bench S3` once, or pass PATH")
    return found[0]


def _split_header(data: bytes) -> tuple[bytes, bytes]:
    end = data.index(b"\n") + 1
    return data[:end], data[end:]


def _parse(utf8: bytes, names: list[str], threads: bool = True) -> pa.Table:
    # the few short lines (a note, a dirty row) are skipped, not counted: the floor keeps no books
    return pcsv.read_csv(pa.BufferReader(utf8), read_options=pcsv.ReadOptions(column_names=names, use_threads=threads),
                         parse_options=pcsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
                         convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}))


def _write(table: pa.Table, out: Path) -> None:
    pq.write_table(table, out, compression="zstd")


def _range_table(args: tuple[str, int, int, str, list[str]]) -> str:
    """In a child: one byte range decoded and parsed, left in an Arrow IPC file for the parent to map."""
    path, start, end, encoding, names = args
    with open(path, "rb") as fh:
        fh.seek(start)
        raw = fh.read(end - start)
    table = _parse(raw.decode(encoding).encode("utf-8"), names, threads=False)
    fd, name = tempfile.mkstemp(prefix="iehub-floor-", suffix=".arrow", dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
    with os.fdopen(fd, "wb") as fh, pa.ipc.new_file(fh, table.schema) as writer:
        writer.write_table(table)
    return name


def _cuts(path: Path, offset: int, parts: int) -> list[int]:
    size = path.stat().st_size
    cuts = [offset]
    with open(path, "rb") as fh:
        for i in range(1, parts):
            fh.seek(max(offset + (size - offset) * i // parts, cuts[-1]))
            fh.readline()
            if cuts[-1] < fh.tell() < size:
                cuts.append(fh.tell())
    return cuts + [size]


def floor_all_cores(path: Path, encoding: str, names: list[str], offset: int, out: Path) -> int:
    cores = len(os.sched_getaffinity(0))
    cuts = _cuts(path, offset, cores)
    tasks = [(str(path), a, b, encoding, names) for a, b in zip(cuts, cuts[1:])]
    with ProcessPoolExecutor(max_workers=len(tasks), mp_context=multiprocessing.get_context("fork")) as pool:
        files = list(pool.map(_range_table, tasks))
    tables = []
    for name in files:
        with pa.memory_map(name) as source:
            tables.append(pa.ipc.open_file(source).read_all())
        os.unlink(name)
    table = pa.concat_tables(tables)
    _write(table, out)
    return table.num_rows


def _best(label: str, repeat: int, work: Callable[[], Any]) -> Any:
    runs = []
    for _ in range(repeat):
        t, c = time.perf_counter(), _cpu()
        value = work()
        runs.append((time.perf_counter() - t, _cpu() - c, value))
    wall, cpu, value = min(runs, key=lambda r: r[0])
    print(f"  {label:<52} {wall:6.2f} s wall {cpu:6.2f} s CPU")
    return value, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path)
    parser.add_argument("--encoding", default="gb18030")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = args.path or _default_path()
    repeat = max(1, args.repeat)
    raw = path.read_bytes()
    header, body = _split_header(raw)
    names = header.decode(args.encoding).rstrip("\r\n").split(",")
    print(f"{path.name}: {len(raw) / 1e6:.0f} MB {args.encoding}, {os.cpu_count()} CPUs "
          f"({len(os.sched_getaffinity(0))} usable), best of {repeat}")
    with tempfile.TemporaryDirectory(prefix="iehub-floor-") as tmp:
        out = Path(tmp) / "floor.parquet"
        utf8, _ = _best("decode alone (Python codec → UTF-8, 1 core)", repeat,
                        lambda: body.decode(args.encoding).encode("utf-8"))
        table, _ = _best("parse alone (Arrow CSV, UTF-8 in memory)", repeat, lambda: _parse(utf8, names))
        _best("write alone (zstd Parquet)", repeat, lambda: _write(table, out))
        rows = table.num_rows
        del utf8, table
        _, one = _best("floor, 1 core: decode → parse → write", repeat,
                       lambda: _write(_parse(body.decode(args.encoding).encode("utf-8"), names), out))
        _, every = _best("floor, every core: ranges decoded + parsed, write", repeat,
                         lambda: floor_all_cores(path, args.encoding, names, len(header), out))
    print(f"floor: {rows:,} rows in {min(one, every):.2f} s = {rows / min(one, every):,.0f} rows/s "
          f"(1 core {rows / one:,.0f} rows/s, every core {rows / every:,.0f} rows/s)")


if __name__ == "__main__":
    main()
