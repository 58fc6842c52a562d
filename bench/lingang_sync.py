"""Lingang platform full and no-change sync over loopback, time split per stage (incl. the quality gate).

    .venv/bin/python bench/lingang_sync.py --scale 20     # ≈ 280,000 records
    .venv/bin/python bench/lingang_sync.py --records 1000000 --extract-only

`--extract-only` runs the extract step alone for every stream (HTTP → staged raw Parquet), after
one lean pass that warms the sandbox's serialised-record cache as `python -m bench S2` does, and
prints wall and CPU seconds of this process (all its threads): on a shared machine the CPU
figure is the steadier one.

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
    deadline = time.monotonic() + 900  # a million records take minutes to generate
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


def warm(url: str, client_id: str, secret: str) -> None:
    """Pull every module once, so the sandbox serves from its serialised-record cache."""
    from bench.sandbox_throughput import pull_lean

    token = requests.post(f"{url}/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                            "client_secret": secret}, timeout=30).json()["data"]["accessToken"]
    pull_lean("127.0.0.1", int(url.rsplit(":", 1)[1]), token, 500, parse=False)


def extract_only(settings, repeat: int) -> None:
    from connectors.spec import load_spec
    from iehub import pipeline

    spec = load_spec("lingang_platform")
    for n in range(repeat):
        wall, cpu, rows = time.perf_counter(), time.process_time(), 0
        for name in spec.streams:
            rows += pipeline.extract(settings, "lingang_platform", name, full=True, spec=spec)["rows_in"]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"extract #{n + 1}: {rows:,} records in {wall:.2f}s wall ({rows / wall:,.0f} records/s), "
              f"{cpu:.2f}s CPU in this process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=20.0, help="sandbox scale (1.0 ≈ 14,000 records)")
    parser.add_argument("--records", type=int, default=None, help="records in all (instead of --scale)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--extract-only", action="store_true", help="time the extract step alone")
    parser.add_argument("--repeat", type=int, default=1, help="extract passes with --extract-only")
    args = parser.parse_args()
    from iehub.config import Settings
    from sandbox.lingang.data import BASE_SIZES

    if args.records:
        args.scale = args.records / sum(BASE_SIZES.values())

    t = time.perf_counter()
    import quality.runner  # noqa: F401  (a one-time cost per process; GX itself only with IEHUB_QUALITY_ENGINE=gx)

    print(f"one-time import of the quality gate: {time.perf_counter() - t:.1f}s (not in the figures below)")
    proc, url = start_sandbox(args.scale, args.seed)
    try:
        with tempfile.TemporaryDirectory(prefix="iehub-bench-") as home:
            settings = Settings.from_env(home).ensure()
            print(f"Lingang sync bench: scale {args.scale}, sandbox {url}, IEHUB_HOME {home}")
            if args.extract_only:
                warm(url, os.environ["IEHUB_LINGANG_CLIENT_ID"], os.environ["IEHUB_LINGANG_CLIENT_SECRET"])
                extract_only(settings, args.repeat)
                return
            run_pass(settings, "full sync")
            run_pass(settings, "no-change sync")
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"\npeak RSS of the hub process: {rss:,.0f} MB")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
