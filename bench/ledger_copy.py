"""The ops copy of a long ledger: what each build pays to copy the catalog into ``ops``.

    .venv/bin/python bench/ledger_copy.py [--batches 100000] [--rules 10]

A catalog (SQLite, as embedded) is filled with ``--batches`` landed batches and ``--rules``
quality-gate results per batch (a year of hourly syncs of a dozen streams is ~100,000 batches),
then the build's ops step (:func:`warehouse.build.build_ops`) runs on a scratch DuckDB file:
once with no copy yet (every row), then after one more batch landed (only that batch's rows).
``whole copy read`` is what every build read before the copy followed the new batches; the
last line is the build's listing of the ledger (new batches only, against the whole ledger).
Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import sqlalchemy as sa

from quality import store
import warehouse.build as build_module
from warehouse import marts
from warehouse.build import BuildResult, build_ops
from warehouse.catalog import BatchRecord, Catalog, batches, ledger_counter
from warehouse.layout import Lake

UTC = timezone.utc


def fill(catalog: Catalog, n: int, rules: int) -> None:
    """``n`` landed batches (landed_seq 1..n) and ``rules`` results each, written in bulk."""
    store.ensure(catalog.engine)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [{"batch_id": f"municipal_db-project-w{i:06d}", "source": "municipal_db", "entity": "project",
             "window_start": f"w{i}", "window_end": f"w{i}", "rows_in": 100, "rows_loaded": 99, "rows_quarantined": 1,
             "started_at": at, "finished_at": at, "status": "landed", "raw_path": None,
             "std_path": f"lake/std/project/w{i}.parquet", "quarantine_path": None, "landed_seq": i + 1,
             "message": None} for i in range(n)]
    checks = [{"batch_id": r["batch_id"], "source": "municipal_db", "entity": "project", "rule": f"rule_{k}",
               "level": "row", "expectation": "expect_column_values_to_match_regex", "column_name": "lead_org_uscc",
               "action": "quarantine", "element_count": 100, "unexpected_count": 1, "unexpected_percent": 1.0,
               "success": False, "message": None, "checked_at": at.isoformat()} for r in rows for k in range(rules)]
    with catalog.engine.begin() as conn:
        conn.execute(batches.insert(), rows)
        conn.execute(store.quality_results.insert(), checks)
        conn.execute(ledger_counter.update().where(ledger_counter.c.name == "landed_seq").values(n=n))


def ops_step(con: duckdb.DuckDBPyConnection, catalog: Catalog, home: Path, label: str) -> float:
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    build_ops(con, catalog, Lake(home), BuildResult(home / "w.duckdb", now, now), "bench")
    seconds = time.perf_counter() - t0
    rows = con.execute("SELECT (SELECT count(*) FROM ops.batches), (SELECT count(*) FROM ops.quality_results)").fetchall()[0]
    print(f"{label:<58} {seconds:8.2f} s   ops.batches {rows[0]:,}, ops.quality_results {rows[1]:,}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100_000, help="landed batches in the ledger")
    parser.add_argument("--rules", type=int, default=10, help="quality results per batch")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="iehub-ledger-"))
    catalog = Catalog.for_home(home)
    t0 = time.perf_counter()
    fill(catalog, args.batches, args.rules)
    print(f"catalog: {args.batches:,} batches, {args.batches * args.rules:,} quality results "
          f"(written in {time.perf_counter() - t0:.1f} s)")
    con = duckdb.connect(str(home / "w.duckdb"))
    try:
        # the builder's own state tables, as a build's core step leaves them for the ops step
        build_module._ensure_state(con)
        marts._ensure_state(con)
        first = ops_step(con, catalog, home, "ops step, no copy yet (every row)")
        now = datetime.now(UTC)
        bid = "municipal_db-project-next"
        catalog.commit_batch(BatchRecord(bid, "municipal_db", "project", "next", "next", 10, 10, 0, now, now,
                                         std_path="lake/std/project/next.parquet"))
        with catalog.engine.begin() as conn:
            conn.execute(sa.insert(store.quality_results), [{
                "batch_id": bid, "source": "municipal_db", "entity": "project", "rule": "rule_0", "level": "row",
                "expectation": "expect_column_values_to_match_regex", "column_name": "lead_org_uscc",
                "action": "quarantine", "element_count": 10, "unexpected_count": 0, "unexpected_percent": 0.0,
                "success": True, "message": None, "checked_at": now.isoformat()}])
        delta = ops_step(con, catalog, home, "ops step after one more batch (its rows only)")
        t0 = time.perf_counter()
        catalog.ops_tables(None)
        whole = time.perf_counter() - t0
        print(f"{'whole copy read (what every build read before)':<58} {whole:8.2f} s")
        print(f"one new batch: {delta:.3f} s against {first:.2f} s for the whole ledger ({first / delta:,.0f}x)")
        t0 = time.perf_counter()
        listed = len(catalog.landed_batches(after=args.batches))
        after = time.perf_counter() - t0
        t0 = time.perf_counter()
        everything = len(catalog.landed_batches())
        print(f"the build's ledger listing: {listed:,} new batch in {after:.3f} s; the whole ledger "
              f"({everything:,} batches, what every build listed before) in {time.perf_counter() - t0:.2f} s")
    finally:
        con.close()
        catalog.dispose()


if __name__ == "__main__":
    main()
