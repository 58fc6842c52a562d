"""``python -m sandbox.lingang``: serve the simulated Lingang platform in the foreground.

Client credentials come from the environment (never the command line, where they would
show in ``ps``); the once-a-minute stats line carries counters only, never tokens or secrets.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

import orjson

from .faults import FaultPlan
from .server import LingangPlatform

log = logging.getLogger("sandbox.lingang")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sandbox.lingang",
                                 description="Simulated Lingang 产教融合信息服务平台 1.0 (HTTP JSON API).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--faults", default="", help='e.g. "5xx=0.05,429=0.03,seed=1" or "all=0.02"')
    ap.add_argument("--token-ttl", type=float, default=7200.0)
    ap.add_argument("--page-cap", type=int, default=500)
    ap.add_argument("--dirty-ratio", type=float, default=0.01)
    ap.add_argument("--stats-interval", type=float, default=60.0, help="seconds between stats log lines")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    cid = os.environ.get("SANDBOX_LINGANG_CLIENT_ID")
    secret = os.environ.get("SANDBOX_LINGANG_CLIENT_SECRET")
    if not cid or not secret:
        print("error: set SANDBOX_LINGANG_CLIENT_ID and SANDBOX_LINGANG_CLIENT_SECRET", file=sys.stderr)
        return 2
    try:
        plan = FaultPlan.parse(args.faults) if args.faults else None
    except ValueError as e:
        print(f"error: --faults: {e}", file=sys.stderr)
        return 2

    platform = LingangPlatform(seed=args.seed, scale=args.scale, client_id=cid, client_secret=secret,
                               token_ttl=args.token_ttl, page_cap=args.page_cap, faults=plan,
                               dirty_ratio=args.dirty_ratio)
    done = threading.Event()

    def report() -> None:
        while not done.wait(args.stats_interval):
            s = platform.stats_snapshot()
            s.pop("records", None)
            log.info("stats %s", orjson.dumps(s).decode())

    threading.Thread(target=report, name="lingang-stats", daemon=True).start()
    log.info("serving on http://%s:%d seed=%d scale=%g faults=%s", args.host, args.port, args.seed, args.scale,
             plan.to_text() if plan else "none")
    try:
        platform.serve_forever(args.host, args.port)
    finally:
        done.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
