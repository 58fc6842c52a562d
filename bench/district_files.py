"""District file figures (issue 5): CSV end to end, Excel end to end, snapshot diff.

    .venv/bin/python bench/district_files.py [--rows 1000000] [--excel-rows 100000]

Prints rows/s for a GBK CSV snapshot synced end to end (extract → standardise → quality gate →
land), for an Excel workbook end to end, and the seconds the file kind takes to diff two daily
snapshots with 1% changed (read + digest + compare with the previous snapshot + tombstones).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.districts.data import base_projects, change_projects, trainees
from sandbox.districts.files import write_minhang, write_yangpu


def _age(folder: Path) -> None:
    for p in folder.iterdir():
        os.utime(p, (time.time() - 60, time.time() - 60))


def _sync(home: Path, source: str, stream: str) -> tuple[dict, float]:
    from connectors.spec import load_spec
    from iehub import pipeline
    from iehub.config import Settings

    settings = Settings.from_env(home)
    spec = load_spec(source)
    t0 = time.perf_counter()
    result = pipeline.sync_stream(settings, source, stream, spec=spec)
    return result, time.perf_counter() - t0


def bench_csv(rows: int, work: Path) -> None:
    drop = work / "yangpu"
    os.environ["IEHUB_YANGPU_DROP"] = str(drop)
    day = date(2024, 3, 1)
    projects = base_projects(5, rows / 2000, "YP", day, dirty_ratio=0.001)
    write_yangpu(drop, projects, day)
    size = sum(p.stat().st_size for p in drop.iterdir())
    _age(drop)
    home = work / "home_csv"
    result, secs = _sync(home, "district_yangpu", "projects")
    print(f"CSV  {result['rows_in']:>9,} rows GBK ({size / 1e6:.0f} MB) end to end (quality gate included): "
          f"{secs:.2f} s = {result['rows_in'] / secs:,.0f} rows/s  (target ≥ 500,000)")

    # snapshot diff: the next day's file with 1% changed, through the file kind alone
    from connectors.files.stream import FileSourceStream
    from connectors.spec import load_spec
    from iehub.config import Settings
    from iehub.pipeline import live_keys

    settings = Settings.from_env(home)
    changed = change_projects(projects, 5, "YP", 1, 0.01, day + timedelta(days=1))
    write_yangpu(drop, changed, day + timedelta(days=1))
    _age(drop)
    spec = load_spec("district_yangpu")
    state = settings.catalog().get_state("district_yangpu", "project")
    known = live_keys(settings, "district_yangpu", "project")
    stream = FileSourceStream(spec, "projects")
    t0 = time.perf_counter()
    stream.prepare(state=state, work_dir=settings.staging / "district_yangpu" / "projects", known_keys=lambda: known)
    emitted = sum(page.table.num_rows for page in stream.read(None))
    secs = time.perf_counter() - t0
    st = stream.stats()
    print(f"diff two {len(projects):,}-row daily snapshots, 1% changed: {secs:.2f} s (target ≤ 3 s) — "
          f"{emitted:,} rows emitted, {st.get('rows_unchanged', 0):,} unchanged, {st.get('rows_deleted', 0):,} deletes")


def bench_excel(rows: int, work: Path) -> None:
    drop = work / "minhang"
    os.environ["IEHUB_MINHANG_DROP"] = str(drop)
    month = date(2024, 1, 1)
    projects = base_projects(5, rows / 2000, "MH", month, dirty_ratio=0.001)
    t0 = time.perf_counter()
    write_minhang(drop, projects, trainees(projects[:10], 5, "310112", 0), month)
    print(f"(writing the {rows:,}-row workbook with openpyxl took {time.perf_counter() - t0:.1f} s; not timed below)")
    _age(drop)
    result, secs = _sync(work / "home_xlsx", "district_minhang", "projects")
    print(f"Excel {result['rows_in']:>8,} rows end to end (quality gate included): {secs:.2f} s = "
          f"{result['rows_in'] / secs:,.0f} rows/s  (target ≥ 50,000)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--excel-rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="iehub-bench-districts-") as tmp:
        work = Path(tmp)
        os.environ["IEHUB_HOME"] = str(work / "home")
        bench_csv(args.rows, work)
        bench_excel(args.excel_rows, work)


if __name__ == "__main__":
    main()
