"""S8 — feed API latency: 1000-row keyset pages over a 1,000,000-row dataset, during a build.

    .venv/bin/python bench/feed_latency.py [--rows 1000000] [--clients 1,8] [--pages 300] [--json]

1. Lands ``--rows`` synthetic projects through the real landing path and ledger (the generator
   of bench/warehouse_build.py), builds and publishes them.
2. Starts ``iehub serve`` in a subprocess on a free loopback port (rate limit raised so it does
   not shape the load) and creates a consumer key.
3. Keeps a warehouse build running the whole time: each round lands a 1% change and builds,
   so new snapshots are published under the readers (as in production).
4. For each client count, a load process (separate from the server and from this one) runs N
   client threads; each walks passes of ``limit=1000`` pages by ``next_cursor`` from a random
   starting change version (seeded), timing every request to the last body byte.
5. The in-process floor: the same pages through ``feeds.query`` + masking + JSON encoding,
   without HTTP, in this process while the build still runs.

Prints p50/p95/p99, errors and requests/s per client count, the floor and the ratio; with
``--json`` the last line is one JSON object (what ``python -m bench`` S8 reads). Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: bench.* and the hub's packages
    sys.path.insert(0, str(REPO))

PAGE = 1000


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(latencies: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in latencies]
    return {"p50_ms": round(percentile(ms, 0.50), 2), "p95_ms": round(percentile(ms, 0.95), 2),
            "p99_ms": round(percentile(ms, 0.99), 2), "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan")}


# -- data ------------------------------------------------------------------------------------------


def prepare(home: Path, rows: int) -> None:
    """Land and build ``rows`` projects unless the home already holds them."""
    from bench.warehouse_build import PROJECT_SQL, land_sql
    from warehouse.build import build
    from warehouse.catalog import Catalog
    from warehouse.publish import connect_current, current_version

    if current_version(home):
        con = connect_current(home)
        try:
            have = con.execute("select count(*) from core.project").fetchall()[0][0]
        finally:
            con.close()
        if have >= rows:
            print(f"home {home}: {have:,} projects already built", flush=True)
            return
    catalog = Catalog.for_home(home)
    t0 = time.perf_counter()
    land_sql(home, catalog, "project",
             PROJECT_SQL.format(start=0, stop=rows, changed="false", where="true", reports=1), "initial")
    build(home, catalog)
    catalog.dispose()
    print(f"landed and built {rows:,} projects in {time.perf_counter() - t0:.1f} s", flush=True)


class BuildLoop(threading.Thread):
    """Lands a 1% change and builds, again and again, until stopped: the build readers must not feel."""

    def __init__(self, home: Path, rows: int) -> None:
        super().__init__(daemon=True)
        self.home, self.rows = home, rows
        self.stop_event = threading.Event()
        self.builds: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        from bench.warehouse_build import PROJECT_SQL, land_sql
        from warehouse.build import build
        from warehouse.catalog import Catalog

        catalog = Catalog.for_home(self.home)
        round_no = 0
        try:
            while not self.stop_event.is_set():
                round_no += 1
                t0 = time.perf_counter()
                try:
                    sql = PROJECT_SQL.format(start=0, stop=self.rows, changed="true",
                                             where=f"i % 100 = {round_no % 100}", reports=1)
                    land_sql(self.home, catalog, "project", sql, f"bench-change-{os.getpid()}-{round_no}")
                    build(self.home, catalog)
                    self.builds.append(time.perf_counter() - t0)
                except Exception as exc:  # a failed build is a figure to report, not a crash of the bench
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(1)
        finally:
            catalog.dispose()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=600)


# -- the server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, log_path: Path) -> tuple[subprocess.Popen, str, str]:
    import requests

    from feeds.config import FeedConfig
    from feeds.keys import KeyStore

    store = KeyStore(FeedConfig(home).db_url)
    token = store.create("bench-feed-latency", None, None)[1]
    store.dispose()
    port = free_port()
    env = {**os.environ, "IEHUB_HOME": str(home), "IEHUB_FEED_RATE": "100000", "IEHUB_FEED_BURST": "100000"}
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "iehub.cli", "serve", "--port", str(port)], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base, token
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"iehub serve did not start; see {log_path}")
        time.sleep(0.2)


# -- the load process ------------------------------------------------------------------------------


def load(base: str, token: str, clients: int, pages: int, seed: int, newest: int) -> dict[str, Any]:
    """N client threads walking passes by next_cursor; every request timed to the last byte."""
    import requests

    latencies: list[float] = []
    errors: list[str] = []
    rows_served = bytes_served = 0
    lock = threading.Lock()

    def client(n: int) -> None:
        nonlocal rows_served, bytes_served
        rng = random.Random(seed * 1000 + n)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        cursor: str | None = None
        mine: list[float] = []
        for i in range(pages + 5):  # the first 5 warm the connection and the snapshot cache
            if cursor is None:
                url = f"{base}/v1/feeds/project?limit={PAGE}&min_change_version={rng.randrange(max(1, newest))}"
            else:
                url = f"{base}/v1/feeds/project?limit={PAGE}&cursor={cursor}"
            t0 = time.perf_counter()
            try:
                r = session.get(url, timeout=30)
                body = r.content
                elapsed = time.perf_counter() - t0
            except requests.RequestException as exc:
                with lock:
                    errors.append(type(exc).__name__)
                cursor = None
                continue
            if r.status_code != 200:
                with lock:
                    errors.append(f"HTTP {r.status_code}: {body[:200]!r}")
                cursor = None
                continue
            cursor = r.headers.get("X-Next-Cursor")
            if i >= 5:
                mine.append(elapsed)
                with lock:
                    rows_served += int(r.headers.get("X-Record-Count", 0))
                    bytes_served += len(body)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    return {"clients": clients, "requests": len(latencies), "errors": len(errors), "error_samples": errors[:5],
            "seconds": round(seconds, 2), "requests_per_s": round(len(latencies) / seconds, 1),
            "rows_served": rows_served, "bytes_served": bytes_served, **summary(latencies)}


def run_load_process(base: str, token: str, clients: int, pages: int, seed: int, newest: int) -> dict[str, Any]:
    """The load tool runs in its own process, so its client work shares no GIL with us or the server."""
    cmd = [sys.executable, __file__, "--load-worker", json.dumps(
        {"base": base, "token": token, "clients": clients, "pages": pages, "seed": seed, "newest": newest})]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"load process failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the in-process floor --------------------------------------------------------------------------


def floor(home: Path, pages: int, seed: int) -> dict[str, Any]:
    """The same pages without HTTP: feeds.query (DuckDB → Arrow), masking, JSON encoding."""
    from feeds.datasets import DATASETS
    from feeds.formats import encode
    from feeds.masking import mask_table
    from feeds.query import SnapshotPool, Window, fetch_changes, newest_change_version

    pool = SnapshotPool(home)
    dataset = DATASETS["project"]
    rng = random.Random(seed)
    query_only: list[float] = []
    with_encoding: list[float] = []
    secret = b"f" * 32
    after = None
    version = pool.current()
    newest = newest_change_version(pool, version)
    for i in range(pages + 5):
        if after is None:
            version = pool.current()
            newest = newest_change_version(pool, version)
            low = rng.randrange(max(1, newest))
            after = low - 1
        t0 = time.perf_counter()
        page, wanted = fetch_changes(pool, version, dataset, Window(after, low, newest, PAGE), requested=None,
                                     districts=None)
        t1 = time.perf_counter()
        table = mask_table(page.table, dataset.name, personal=False, secret=secret).select(wanted)
        encode("json", table, {"dataset": dataset.name, "count": page.count})
        t2 = time.perf_counter()
        if i >= 5:
            query_only.append(t1 - t0)
            with_encoding.append(t2 - t0)
        after = page.last_change_version if page.has_more else None
    pool.close()
    return {"query": summary(query_only), "query_mask_encode": summary(with_encoding)}


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", default="1,8", help="client counts, comma-separated")
    parser.add_argument("--pages", type=int, default=300, help="timed pages per client")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--no-build", action="store_true", help="measure without a concurrent build")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    parser.add_argument("--load-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_worker:
        spec = json.loads(args.load_worker)
        print(json.dumps(load(**spec)))
        return

    started = time.perf_counter()
    home = args.home or Path(tempfile.mkdtemp(prefix="iehub-feed-bench-")) / "home"
    os.environ["IEHUB_HOME"] = str(home)
    prepare(home, args.rows)
    from warehouse.publish import connect_current

    con = connect_current(home)
    newest = con.execute("select max(change_version) from core.project").fetchall()[0][0]
    con.close()
    proc, base, token = start_server(home, home.parent / "feed-serve.log")
    builder = None if args.no_build else BuildLoop(home, args.rows)
    runs: dict[str, Any] = {}
    try:
        if builder:
            builder.start()
            time.sleep(2)  # let the first build get going
        for clients in [int(c) for c in args.clients.split(",") if c.strip()]:
            pages = args.pages if clients == 1 else max(50, args.pages // 2)
            result = run_load_process(base, token, clients, pages, args.seed, newest)
            runs[str(clients)] = result
            print(f"{clients} client(s): {result['requests']} pages of {PAGE} rows in {result['seconds']} s "
                  f"({result['requests_per_s']} req/s), p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
                  f"p99 {result['p99_ms']} ms, errors {result['errors']} {result['error_samples'] or ''}", flush=True)
        floor_figures = floor(home, args.pages, args.seed)
    finally:
        builds = builder.builds if builder else []
        build_errors = builder.errors if builder else []
        if builder:
            builder.stop()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    fl = floor_figures["query_mask_encode"]
    print(f"in-process floor (query + mask + JSON, no HTTP): p50 {fl['p50_ms']} ms, p95 {fl['p95_ms']} ms; "
          f"query only p95 {floor_figures['query']['p95_ms']} ms")
    print(f"builds completed during the measurement: {len(builds)} "
          f"(median {statistics.median(builds) if builds else float('nan'):.1f} s), build errors: {len(build_errors)}"
          + (f" (first: {build_errors[0][:300]})" if build_errors else ""))
    first = runs[min(runs, key=int)] if runs else {}
    ratio = round(first["p95_ms"] / fl["p95_ms"], 2) if first and fl["p95_ms"] else None
    for clients, result in runs.items():
        print(f"ratio p95 HTTP ({clients} client(s)) / floor p95: {result['p95_ms'] / fl['p95_ms']:.2f}x")
    if args.json:
        out = {"rows": args.rows, "seconds": round(time.perf_counter() - started, 1),
               "p95_ms": first.get("p95_ms"), "p50_ms": first.get("p50_ms"), "p99_ms": first.get("p99_ms"),
               "errors": sum(r["errors"] for r in runs.values()), "build_errors": len(build_errors),
               "rows_served": sum(r["rows_served"] for r in runs.values()),
               "bytes_served": sum(r["bytes_served"] for r in runs.values()),
               "floor_p95_ms": fl["p95_ms"], "floor_query_p95_ms": floor_figures["query"]["p95_ms"],
               "ratio_to_floor": ratio, "builds_during": len(builds), "runs": runs}
        print(json.dumps(out))


if __name__ == "__main__":
    main()
