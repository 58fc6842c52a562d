"""Figures for push delivery: changes per second to 1 and to 20 receivers, and publish → last acknowledgement.

    .venv/bin/python bench/delivery.py [--rows 1000000] [--receivers 1,20] [--batch-size 1000] [--home DIR] [--json]

For each receiver count: that many subscriptions (one key, every dataset and district, no
personal grant, so the masked path with its keyed digests is what is timed) to as many real
receivers on loopback, which verify every request with the Standard Webhooks reference library;
then a 1 % change of the ``--rows`` projects is landed and built (a published snapshot), and
``feeds.delivery.deliver`` runs at once, as ``iehub deliver`` does (the DAG adds Airflow's
scheduling delay on top). Figures: changes acknowledged per second over the delivery, and the
time from the snapshot being published to the last receiver's acknowledgement (goal at 1M
rows: <= 60 s). Receivers run in this process (their verification competes for the same CPU,
which makes the figures pessimistic). Every receiver must hold exactly the changed rows, once.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def one_round(home: Path, rows: int, receivers: int, round_no: int, batch_size: int, workers: int) -> dict[str, Any]:
    from bench.warehouse_build import PROJECT_SQL, land_sql
    from feeds.config import FeedConfig
    from feeds.delivery import deliver
    from feeds.keys import KeyStore
    from feeds.query import SnapshotPool, newest_change_version
    from feeds.subscriptions import SubscriptionStore
    from tests.integration.feeds.webhook_receiver import Receiver
    from warehouse.build import build
    from warehouse.catalog import Catalog

    config = FeedConfig(home)
    keys = KeyStore(config.db_url)
    store = SubscriptionStore(str(config.db_url), config.secret(), keys)
    grant, _ = keys.create(f"bench-subscriber-{round_no}", None, None)
    pool = SnapshotPool(home)
    start = newest_change_version(pool, pool.current())
    pool.close()
    servers = [Receiver() for _ in range(receivers)]
    subs = []
    try:
        for r in servers:
            sub, secret = store.create(keys.get(grant.key_id), r.url, from_version=start + 1, batch_size=batch_size,
                                       timeout_seconds=60)
            r.secrets.append(secret)
            subs.append(sub)
        catalog = Catalog.for_home(home)
        sql = PROJECT_SQL.format(start=0, stop=rows, changed="true", where=f"i % 100 = {round_no % 100}", reports=1)
        land_sql(home, catalog, "project", sql, f"bench-delivery-{round_no}-{time.time_ns()}")
        t_build = time.perf_counter()
        build(home, catalog)
        catalog.dispose()
        published = time.monotonic()
        build_seconds = time.perf_counter() - t_build
        report = deliver(config, workers=workers)
        last_ack = max(r.acked_at or published for r in servers)
        held = [sum(len(v) for v in r.records().values()) for r in servers]
        expected = len(range(round_no % 100, rows, 100))
        bad = [h for h in held if h != expected]
        summary = report.summary()
        return {"receivers": receivers, "rows": rows, "changed": expected, "batch_size": batch_size,
                "workers": workers, "build_seconds": round(build_seconds, 2),
                "deliver_seconds": round(report.seconds, 3),
                "changes_per_second": round(summary["changes"] / report.seconds, 1) if report.seconds else None,
                "publish_to_last_ack_seconds": round(last_ack - published, 3),
                "batches": summary["batches"], "failed": summary["failed"],
                "rejected_signatures": sum(r.rejected for r in servers),
                "receivers_not_holding_exactly_the_change": len(bad)}
    finally:
        for sub in subs:
            store.delete(sub.subscription_id)
        for r in servers:
            r.close()
        store.dispose()
        keys.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--receivers", default="1,20")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8, help="subscriptions delivered at once")
    parser.add_argument("--home", type=Path, default=None, help="reuse (or prepare) this home")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    args = parser.parse_args()

    from bench.feed_latency import prepare

    home = args.home or Path(tempfile.mkdtemp(prefix="iehub-delivery-")) / "home"
    prepare(home, args.rows)
    runs = {}
    counter = home / "bench-delivery-rounds"  # each round changes a 1 % slice no earlier round changed
    done = int(counter.read_text()) if counter.exists() else 0
    for round_no, receivers in enumerate((int(n) for n in args.receivers.split(",")), start=done + 1):
        counter.write_text(str(round_no))
        got = one_round(home, args.rows, receivers, round_no, args.batch_size, args.workers)
        runs[str(receivers)] = got
        print(f"{receivers} receiver(s), 1 % of {args.rows:,} rows ({got['changed']:,} changes each): "
              f"{got['changes_per_second']:,.0f} changes/s delivered, publish → last ack "
              f"{got['publish_to_last_ack_seconds']:.2f} s ({got['batches']} batches, build {got['build_seconds']} s, "
              f"failed {got['failed']}, rejected signatures {got['rejected_signatures']}, receivers off the "
              f"expected set {got['receivers_not_holding_exactly_the_change']})", flush=True)
    if args.json:
        print(json.dumps({"rows": args.rows, "runs": runs}))


if __name__ == "__main__":
    main()
