"""Figures for feed access control: masking throughput, key checks, audit appends, bulk exports.

    .venv/bin/python bench/feeds_access.py [--rows 1000000] [--export-rows 500000]

Prints one line per figure. The export runs in a child process so its peak RSS is its own:
with record-batch streaming it should stay flat as ``--export-rows`` grows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402

SECRET = b"bench-secret-0123456789abcdef012"
SURNAMES = ["张", "王", "李", "赵", "欧阳", "司马", "诸葛", "陈", "刘", "周"]
BORN_FROM = date(1975, 1, 1)
GIVEN = ["伟", "芳", "娜娜", "明", "小龙", "光", "静", "磊", "洋", "婷婷"]


def people(n: int) -> pa.Table:
    """n trainee-like rows with names, 18-character IDs and mobiles (10% NULLs)."""
    from schemas.validators import resident_id_check_char

    names, ids, phones = [], [], []
    for i in range(n):
        names.append(None if i % 10 == 9 else SURNAMES[i % 10] + GIVEN[(i // 10) % 10])
        born = BORN_FROM + timedelta(days=i // 1000)  # unique IDs: one person per (birthday, sequence)
        first17 = f"310115{born:%Y%m%d}{i % 1000:03d}"
        ids.append(None if i % 10 == 8 else first17 + resident_id_check_char(first17))
        phones.append(None if i % 10 == 7 else f"13{i % 10}{i % 100_000_000:08d}")
    return pa.table({"trainee_id": [f"S{i:07d}" for i in range(n)], "name": names, "id_number": ids,
                     "phone": phones})


def timed(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def bench_masking(rows: int) -> None:
    from feeds.masking import mask_table

    table = people(rows)
    masked = timed(lambda: mask_table(table, "trainee", personal=False, secret=SECRET))
    plain = timed(lambda: mask_table(table, "trainee", personal=True, secret=SECRET))
    print(f"masking {rows:,} rows (name, id_number, phone + id_pseudonym): {masked:.2f} s "
          f"({rows / masked / 1e6:.2f} M rows/s); pseudonym only (personal grant): {plain:.2f} s")


def bench_keys(work: Path) -> None:
    from feeds.keys import KeyStore

    url = f"sqlite:///{work / 'keys.db'}"
    cached, uncached = KeyStore(url), KeyStore(url, cache_seconds=0)
    _, token = cached.create("bench", ["trainee"], ["310115"])
    for store, label, n in ((cached, "cached (5 s TTL)", 20_000), (uncached, "uncached (database read)", 2_000)):
        store.authenticate(token)
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            store.authenticate(token)
            samples.append(time.perf_counter() - started)
        samples.sort()
        print(f"authenticate, {label}: p50 {samples[n // 2] * 1e6:.1f} µs, p95 {samples[int(n * 0.95)] * 1e6:.1f} µs")


def bench_audit(work: Path, appends: int = 1000) -> None:
    from feeds.audit import AuditLog

    log = AuditLog(f"sqlite:///{work / 'audit.db'}")
    samples = []
    for i in range(appends):
        started = time.perf_counter()
        log.append(key_id="0123456789abcdef", consumer="bench", dataset="trainee", endpoint="/v1/feeds/trainee",
                   params={"limit": 1000, "cursor": f"c{i}"}, rows=1000, fields=["trainee_id", "name"],
                   personal=False, digest="sha256:" + "0" * 64, snapshot="bench")
        samples.append(time.perf_counter() - started)
    samples.sort()
    verify = timed(log.verify, repeat=1)
    print(f"audit append on SQLite (WAL, synchronous=FULL): p50 {samples[appends // 2] * 1e3:.2f} ms, "
          f"p95 {samples[int(appends * 0.95)] * 1e3:.2f} ms; verify {appends} rows: {verify * 1e3:.0f} ms")


def build_home(home: Path, rows: int) -> None:
    from schemas import get_entity
    from tests.unit.feeds.access_fixtures import entity_rows
    from tests.unit.warehouse.warehouse_fixtures import land
    from warehouse.build import build
    from warehouse.catalog import Catalog

    base = people(rows).to_pylist()
    for row in base:
        row.update(trainee_type="intern", school_name="上海电子信息职院", district_code="310115",
                   start_date=date(2025, 3, 1), major="集成电路技术")
    catalog = Catalog.for_home(home)
    land(home, catalog, "district_minhang", "w1", entity_rows("trainee", "district_minhang", base),
         entity=get_entity("trainee"))
    build(home, catalog, entities=["trainee"])
    catalog.dispose()


def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM of its memory map, which starts afresh at exec.

    Not ``ru_maxrss``: Linux carries that over exec from the forked parent's image, so a child
    of a big parent would report the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the best there is


def export_child(home: Path, out: Path) -> None:
    """Runs in its own process: export trainee and print seconds and peak RSS as JSON."""
    from feeds.export import export

    started = time.perf_counter()
    result = export(home, ["trainee"], out, secret=SECRET)[0]
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    print(json.dumps({"rows": result.rows, "seconds": seconds, "peak_rss_mb": peak,
                      "csv_mb": result.files["trainee.csv"]["bytes"] / 1e6,
                      "parquet_mb": result.files["trainee.parquet"]["bytes"] / 1e6}))


def bench_export(work: Path, rows: int) -> None:
    home = work / "home"
    started = time.perf_counter()
    build_home(home, rows)
    print(f"(setup: landed and built {rows:,} trainee rows in {time.perf_counter() - started:.1f} s)")
    figures = []
    for run in range(2):
        out = subprocess.run([sys.executable, __file__, "--export-child", str(home), str(work / f"out{run}")],
                             capture_output=True, text=True, check=True)
        figures.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(figures, key=lambda f: f["seconds"])
    print(f"export trainee, {best['rows']:,} rows masked → CSV {best['csv_mb']:.1f} MB + Parquet "
          f"{best['parquet_mb']:.1f} MB + datapackage.json: {best['seconds']:.2f} s "
          f"({best['rows'] / best['seconds'] / 1e3:.0f} k rows/s), peak RSS {best['peak_rss_mb']:.0f} MB "
          f"(runs: {', '.join(format(f['seconds'], '.2f') + ' s' for f in figures)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the masking figure")
    parser.add_argument("--export-rows", type=int, default=500_000, help="rows for the export figure")
    parser.add_argument("--export-child", nargs=2, metavar=("HOME", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_child(Path(args.export_child[0]), Path(args.export_child[1]))
        return
    print(f"feeds access bench, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="iehub-bench-access-") as tmp:
        work = Path(tmp)
        bench_masking(args.rows)
        bench_keys(work)
        bench_audit(work)
        bench_export(work, args.export_rows)


if __name__ == "__main__":
    main()
