"""Municipal project database → Parquet → DuckDB, side by side with dlt, on the real PostgreSQL server.

    .venv/bin/pip install -e '.[bench]'                     # dlt, psutil
    .venv/bin/python bench/municipal_sync.py                # 1,000,000 projects; dlt too
    .venv/bin/python bench/municipal_sync.py --rss-rows 5000000   # adds the 5M peak-RSS run
    .venv/bin/python bench/municipal_sync.py --backends 1000000   # ADBC / connectorx / SQLAlchemy, PG and SQLite

Each scenario runs in its own process so its peak RSS is its own. Figures printed:
  1. full sync of N project rows (extract → standardise → quality gate → land → build), seconds,
     rows/s, and the ratio to dlt's `sql_table(backend="connectorx")` into DuckDB (no validation);
  2. incremental sync after 1% of rows changed, as a share of the full sync's time;
  3. peak RSS of the full sync at N and at --rss-rows, and their ratio (whole process, and the
     extract step alone: the SQL kind's own memory).
The source databases are created once (iehub_bench_<rows>) and reused. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.floors import libpq_url  # noqa: E402 (after the path the script needs)

SERVER = os.environ.get("IEHUB_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def database(rows: int) -> str:
    """A PostgreSQL database holding `rows` projects (seeded once, then reused)."""
    import sqlalchemy as sa

    from sandbox import municipal

    name = f"iehub_bench_{rows}"
    admin = sa.create_engine(SERVER, isolation_level="AUTOCOMMIT")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        exists = conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).first()
        if not exists:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    engine = sa.create_engine(url)
    meta = municipal.read_meta(engine)
    engine.dispose()
    scale = rows / municipal.BASE_SIZES["projects"]
    if meta.get("scale") != str(scale):
        t = time.perf_counter()
        print(f"seeding {rows:,} projects into {name} …", flush=True)
        municipal.seed(url, scale=scale, seed=7, tables=("organizations", "projects"))
        print(f"  seeded in {time.perf_counter() - t:.0f}s", flush=True)
    return url


# ------------------------------------------------------------------ workers (one process each)
def worker_iehub(home: str, url: str, full: bool) -> dict:
    os.environ["IEHUB_HOME"] = home
    os.environ["IEHUB_MUNICIPAL_DB_URL"] = url
    from iehub import pipeline
    from iehub.config import Settings
    from warehouse.build import build

    settings = Settings.from_env().ensure()
    stages: dict[str, float] = {}
    t0 = t = time.perf_counter()
    m = pipeline.extract(settings, "municipal_projects", "projects", full=full)
    stages["extract"], t = time.perf_counter() - t, time.perf_counter()
    extract_rss = rss_mb()
    m = pipeline.standardise_and_validate(settings, m)
    step, t = time.perf_counter() - t, time.perf_counter()
    stages["quality gate"] = min(step, m["step_seconds"]["validate"])  # one pass: the step says what the gate took
    stages["standardise"] = step - stages["quality gate"]
    r = pipeline.land(settings, m)
    stages["land"], t = time.perf_counter() - t, time.perf_counter()
    build(settings.home, settings.catalog(), entities=["project"])
    stages["build"] = time.perf_counter() - t
    return {"seconds": time.perf_counter() - t0, "stages": stages, "rows_in": r["rows_in"],
            "rows_loaded": r["rows_loaded"], "rss_mb": rss_mb(), "extract_rss_mb": extract_rss}


def worker_dlt(url: str, work: str) -> dict:
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")
    import dlt
    from dlt.sources.sql_database import sql_table

    t = time.perf_counter()
    pg = libpq_url(url)
    source = sql_table(credentials=pg, table="projects", backend="connectorx")
    pipe = dlt.pipeline(pipeline_name="iehub_bench", destination=dlt.destinations.duckdb(f"{work}/dlt.duckdb"),
                        dataset_name="municipal", pipelines_dir=f"{work}/pipelines")
    pipe.run(source)
    seconds = time.perf_counter() - t
    import duckdb

    rows = duckdb.connect(f"{work}/dlt.duckdb", read_only=True).sql("select count(*) from municipal.projects").fetchall()[0][0]
    return {"seconds": seconds, "rows_in": rows, "rss_mb": rss_mb()}


def warm(url: str) -> None:
    """Read the table once so whichever scenario runs first does not pay for a cold page cache."""
    from connectors.sql.backends import open_backend

    backend = open_backend(url, "adbc")
    try:
        for _ in backend.batches("SELECT * FROM projects"):
            pass
    finally:
        backend.close()


def worker_backend(url: str, backend: str) -> dict:
    """The SQL kind's read alone (full pass of `projects`) through one backend: time, memory, types."""
    os.environ["IEHUB_MUNICIPAL_DB_URL"] = url
    import pyarrow as pa

    from connectors.base import open_stream
    from connectors.spec import load_spec

    spec = load_spec("municipal_projects")
    spec = spec.model_copy(update={"connection": spec.connection.model_copy(update={"backend": backend})})
    stream = open_stream(spec, "projects")
    stream.prepare(state=None, work_dir=Path(tempfile.gettempdir()), known_keys=lambda: pa.array([], pa.string()))
    t = time.perf_counter()
    rows, types, total = 0, None, 0
    for page in stream.read(None):
        rows += page.table.num_rows
        total += int(sum(v for v in page.table.column("budget").to_pylist() if v is not None) * 100)
        types = types or {n: str(page.table.schema.field(n).type) for n in ("budget", "approved_on", "updated_at")}
    stream.close()
    return {"seconds": time.perf_counter() - t, "rows_in": rows, "rss_mb": rss_mb(), "types": types,
            "budget_cents": total}


def run_worker(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"worker {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mutate(url: str, share: float) -> dict:
    from sandbox import municipal

    return municipal.mutate(url, changed=share, seed=1)["projects"]


def compare_backends(rows: int) -> None:
    """Each backend's full read of the same projects on PostgreSQL and on SQLite, with the types it keeps."""
    from sandbox import municipal

    pg = database(rows)
    work = Path(tempfile.mkdtemp(prefix="iehub-bench-"))
    try:
        lite = f"sqlite:///{work / 'municipal.sqlite'}"
        municipal.seed(lite, scale=rows / municipal.BASE_SIZES["projects"], seed=7, tables=("organizations", "projects"))
        print(f"\nthe SQL kind's full read of {rows:,} projects (stream only), by backend")
        print(f"{'database':<12}{'backend':<12}{'seconds':>9}{'rows/s':>11}{'peak RSS':>10}  types kept (budget, approved_on, updated_at)")
        for name, url, backends in (("postgresql", pg, ("adbc", "connectorx", "sqlalchemy")),
                                    ("sqlite", lite, ("sqlalchemy", "connectorx", "adbc"))):
            if name == "postgresql":
                warm(url)
            sums = set()
            for backend in backends:
                try:
                    r = run_worker("backend", url, backend)
                except SystemExit as exc:
                    print(f"{name:<12}{backend:<12}   failed: {str(exc).strip().splitlines()[-1][:90]}")
                    continue
                sums.add(r["budget_cents"])
                print(f"{name:<12}{backend:<12}{r['seconds']:>9.1f}{r['rows_in'] / r['seconds']:>11,.0f}"
                      f"{r['rss_mb']:>7} MB  {', '.join(r['types'].values())}")
            print(f"{'':<12}budget totals agree to the cent across backends: {len(sums) == 1}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rss-rows", type=int, default=0, help="also measure peak RSS of a full sync at this size")
    ap.add_argument("--no-dlt", action="store_true")
    ap.add_argument("--backends", type=int, default=0, metavar="ROWS",
                    help="only compare the read backends (ADBC, connectorx, SQLAlchemy) on PostgreSQL and SQLite")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "backend":
            result = worker_backend(*rest)
        elif kind == "dlt":
            result = worker_dlt(*rest)
        else:
            result = worker_iehub(rest[0], rest[1], full=(kind == "iehub-full"))
        print(json.dumps(result))
        return

    if args.backends:
        compare_backends(args.backends)
        return
    url = database(args.rows)
    work = Path(tempfile.mkdtemp(prefix="iehub-bench-"))
    try:
        results: dict[str, dict] = {}
        home = str(work / "home")
        warm(url)
        results["full"] = run_worker("iehub-full", home, url)
        changed = mutate(url, 0.01)
        results["incremental"] = run_worker("iehub-incremental", home, url)
        if not args.no_dlt:
            warm(url)
            results["dlt"] = run_worker("dlt", url, str(work / "dlt"))
        if args.rss_rows:
            big = database(args.rss_rows)
            warm(big)
            results["big"] = run_worker("iehub-full", str(work / "home-big"), big)
            shutil.rmtree(work / "home-big", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = args.rows
    full, inc = results["full"], results["incremental"]
    print(f"\nmunicipal projects, PostgreSQL → Parquet → DuckDB ({n:,} rows; {os.cpu_count()} cores)")
    print(f"{'scenario':<34}{'rows':>11}{'seconds':>10}{'rows/s':>12}{'peak RSS':>11}")
    print(f"{'iehub full sync (with quality gate)':<34}{full['rows_in']:>11,}{full['seconds']:>10.1f}"
          f"{full['rows_in'] / full['seconds']:>12,.0f}{full['rss_mb']:>8} MB")
    if "dlt" in results:
        d = results["dlt"]
        print(f"{'dlt sql_table connectorx → duckdb':<34}{d['rows_in']:>11,}{d['seconds']:>10.1f}"
              f"{d['rows_in'] / d['seconds']:>12,.0f}{d['rss_mb']:>8} MB")
    print(f"{'iehub incremental after 1% change':<34}{inc['rows_in']:>11,}{inc['seconds']:>10.1f}"
          f"{inc['rows_in'] / max(inc['seconds'], 1e-9):>12,.0f}{inc['rss_mb']:>8} MB")
    print("  full sync by stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in full["stages"].items()))
    print("  incremental by stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in inc["stages"].items()))
    print(f"  changed at the source: {changed}")
    print("\nfigures against the goals")
    if "dlt" in results:
        ratio = (full["rows_in"] / full["seconds"]) / (results["dlt"]["rows_in"] / results["dlt"]["seconds"])
        ex = full["stages"]["extract"]
        print(f"  1. full-sync throughput vs dlt: {ratio:.2f}x (goal ≥ 1.2x); the SQL kind's extract alone: "
              f"{full['rows_in'] / ex:,.0f} rows/s = {(full['rows_in'] / ex) / (results['dlt']['rows_in'] / results['dlt']['seconds']):.2f}x dlt's whole run")
    print(f"  2. incremental / full time: {inc['seconds'] / full['seconds']:.1%} (goal ≤ 5%)")
    if "big" in results:
        big = results["big"]
        print(f"  3. peak RSS at {big['rows_in']:,} rows: {big['rss_mb']} MB, {big['rss_mb'] / full['rss_mb']:.2f}x the "
              f"{n:,}-row peak (goals ≤ 1024 MB, ≤ 1.1x); extract step alone {big['extract_rss_mb']} MB vs "
              f"{full['extract_rss_mb']} MB ({big['extract_rss_mb'] / full['extract_rss_mb']:.2f}x)")
    else:
        print(f"  3. peak RSS at {n:,} rows: {full['rss_mb']} MB (extract step alone {full['extract_rss_mb']} MB); "
              "run with --rss-rows 5000000 for the 5M comparison")


if __name__ == "__main__":
    main()
