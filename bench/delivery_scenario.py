"""S10's cases: push delivery, measured by bench/delivery.py (the deliverer's own bench).

Why delegated: bench/delivery.py owns the receivers, the 1 % change and the timing from publish
to the last acknowledgement; the harness runs it per receiver count on a copy of S8's cached
home (the same N built projects) and reads its figures from the JSON line it prints.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.runner import REPO, Measure

SCRIPT = REPO / "bench" / "delivery.py"
RECEIVERS = (1, 20)


def delivery_cases(ctx: Any) -> list[Any]:
    from bench.feed_scenario import feed_home
    from bench.scenarios import Case

    home = feed_home(ctx, ctx.scale)
    return [Case(f"delivery-{n}", f"push delivery of a 1 % change to {n} receiver{'s' if n > 1 else ''} "
                                  "(Standard Webhooks, loopback)",
                 Measure("hub_delivery", {"template_home": home["home"], "rows": ctx.scale, "receivers": n}))
            for n in RECEIVERS]


def hub_delivery(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Run delivery.py for one receiver count on a copy of the prepared home; figures from its JSON line."""
    from bench.feed_scenario import _last_json

    home = scratch / "home"
    shutil.copytree(params["template_home"], home, symlinks=True)
    cmd = [sys.executable, str(SCRIPT), "--rows", str(params["rows"]), "--receivers", str(params["receivers"]),
           "--home", str(home), "--json"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**__import__("os").environ,
                                                                             "IEHUB_HOME": str(scratch)})
    if out.returncode != 0:
        raise RuntimeError(f"delivery.py --receivers {params['receivers']} exited with {out.returncode}: "
                           f"{out.stderr.strip()[-2000:]}")
    figures = _last_json(out.stdout)
    run = figures["runs"][str(params["receivers"])]
    return {"seconds": float(run.get("publish_to_last_ack_seconds") or time.perf_counter() - t0),
            "rows": int(run["changed"]) * int(params["receivers"]), "bytes": None, "stages": {}, "extra": run}
