"""Lingang platform full and no-change sync over loopback, time split per stage (incl. the quality gate).

    .venv/bin/python bench/lingang_sync.py --scale 20     # ≈ 280,000 records

The sandbox runs in its own process (as a real source would); the hub's steps run in this
one, so the peak RSS printed is the hub's. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sandbox(scale: float, seed: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    client_id, secret = "bench", secrets.token_urlsafe(16)
    env = {**os.environ, "SANDBOX_LINGANG_CLIENT_ID": client_id, "SANDBOX_LINGANG_CLIENT_SECRET": secret}
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.lingang", "--port", str(port), "--scale", str(scale),
                             "--seed", str(seed)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/api/v1/health", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise SystemExit("sandbox did not come up")
    os.environ.update(IEHUB_LINGANG_BASE_URL=url, IEHUB_LINGANG_CLIENT_ID=client_id, IEHUB_LINGANG_CLIENT_SECRET=secret)
    return proc, url


def run_pass(settings, label: str) -> dict[str, float]:
    from bench.measures import timed_sync  # the harness's stage timing (python -m bench S2 runs the same)

    out = timed_sync(settings.home, "lingang_platform")
    stages, rows = out["stages"], out["rows"]
    total = sum(stages.values())
    print(f"\n{label}: {rows:,} records in {total:.2f}s → {rows / total if total else 0:,.0f} records/s end to end")
    for stage, secs in stages.items():
        rate = f"{rows / secs:,.0f} rows/s" if secs and rows and stage != "build" else ""
        print(f"  {stage:<12} {secs:7.2f}s  {rate}")
    sync_time = total - stages["build"]
    if rows and sync_time:
        print(f"  validation share of the sync's wall time: {stages['validate'] / sync_time:.1%} (goal ≤ 25%)")
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=20.0, help="sandbox scale (1.0 ≈ 14,000 records)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    from iehub.config import Settings

    t = time.perf_counter()
    import quality.runner  # noqa: F401  (a one-time cost per process; GX itself only with IEHUB_QUALITY_ENGINE=gx)

    print(f"one-time import of the quality gate: {time.perf_counter() - t:.1f}s (not in the figures below)")
    proc, url = start_sandbox(args.scale, args.seed)
    try:
        with tempfile.TemporaryDirectory(prefix="iehub-bench-") as home:
            settings = Settings.from_env(home).ensure()
            print(f"Lingang sync bench: scale {args.scale}, sandbox {url}, IEHUB_HOME {home}")
            run_pass(settings, "full sync")
            run_pass(settings, "no-change sync")
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"\npeak RSS of the hub process: {rss:,.0f} MB")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
