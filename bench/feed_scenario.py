"""S8's cases: the feed API's latency, measured by bench/feed_latency.py (the feed API's own bench).

Why delegated: the feed API's bench owns how it serves, which pages it asks for and how it runs
a build meanwhile; the harness runs it in a fresh process per repeat, one case per client count,
and reads its figures (p95, errors, the in-process floor) from the JSON line it prints.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.runner import REPO, Measure
from bench.setups import HUB_CODE, Context, SetupError, cached

SCRIPT = REPO / "bench" / "feed_latency.py"
CLIENTS = (1, 8)


def feed_home(ctx: Context, rows: int) -> dict[str, Any]:
    """A home with `rows` projects landed, built and published (feed_latency.py's own preparation), cached;
    each run works on a copy, since the build running under the readers lands changes into it."""
    def prepare(folder: Path) -> dict[str, Any]:
        from bench.feed_latency import prepare as land_and_build

        land_and_build(folder / "home", rows)
        return {"home": str(folder / "home"), "rows": rows}

    return cached(ctx.work, f"feed-{rows}", prepare, depends=(*HUB_CODE, "feeds", "bench/warehouse_build.py",
                                                                "bench/feed_latency.py"))


def feed_latency_cases(ctx: Context) -> list[Any]:
    from bench.scenarios import Case, Peer

    if not SCRIPT.exists():
        raise SetupError(f"{SCRIPT.relative_to(REPO)} is not in the tree yet (the feed API's bench, written with "
                         "the feed issue): S8 runs it once it lands")
    home = feed_home(ctx, ctx.scale)
    pages = 60 if ctx.quick else 300
    floor = (Peer("in-process floor", missing="no peer: the floor is the same pages without HTTP, "
                                              "in the goals as the ratio to the floor"),)
    return [Case(f"feed-{n}", f"feed API, {n} client{'s' if n > 1 else ''}, 1000-row pages, during a build",
                 Measure("hub_feed_latency", {"template_home": home["home"], "rows": ctx.scale, "clients": n,
                                              "pages": pages, "seed": ctx.seed}), floor)
            for n in CLIENTS]


def hub_feed_latency(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Run feed_latency.py for one client count on a copy of the prepared home; its last stdout line is a
    JSON object of figures (p95, errors, the floor and the ratio to it)."""
    home = scratch / "home"
    shutil.copytree(params["template_home"], home, symlinks=True)
    cmd = [sys.executable, str(SCRIPT), "--rows", str(params["rows"]), "--clients", str(params["clients"]),
           "--pages", str(params["pages"]), "--seed", str(params["seed"]), "--home", str(home), "--json"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"feed_latency.py --clients {params['clients']} exited with {out.returncode}: "
                           f"{out.stderr.strip()[-2000:]}")
    figures = _last_json(out.stdout)
    run = (figures.get("runs") or {}).get(str(params["clients"]), {})
    # the timed part is the load itself (the script's own seconds include starting the server)
    return {"seconds": float(run.get("seconds") or seconds), "rows": figures.get("rows_served"),
            "bytes": figures.get("bytes_served"), "stages": {}, "extra": figures}

def _last_json(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError("feed_latency.py printed no JSON line (expected with --json)")
