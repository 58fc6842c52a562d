"""Throughput of the simulated Lingang platform over loopback keep-alive.

Why: the hub's extract benchmarks must measure the hub, not the simulator, so the
sandbox has to serve well above what a connector consumes (target: 200,000 records/s to
one client). The server runs in a subprocess (its own GIL) and is pulled module by
module with pageSize 500, by a lean ``http.client`` client and by the
``requests.Session`` + orjson client a connector would use. The first pass also pays
for serialising each record once (the cache is cold); later passes join cached bytes.

    .venv/bin/python bench/sandbox_throughput.py --scale 20
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import orjson
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.lingang import MODULE_PATHS, MODULES  # noqa: E402

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret-not-real"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(host: str, port: int, limit: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        try:
            c = http.client.HTTPConnection(host, port, timeout=1)
            c.request("GET", "/api/v1/health")
            if c.getresponse().status == 200:
                return time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("sandbox did not come up")


def token(base: str) -> str:
    r = requests.post(f"{base}/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, timeout=10)
    return str(r.json()["data"]["accessToken"])


def pull_lean(host: str, port: int, tok: str, page_size: int, parse: bool) -> tuple[int, int]:
    """http.client over one keep-alive connection; returns (records, bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    headers = {"Authorization": f"Bearer {tok}"}
    n_rec = n_bytes = 0
    for m in MODULES:
        page = 1
        while True:
            conn.request("GET", f"/api/v1/{MODULE_PATHS[m]}/list?" + urlencode({"page": page, "pageSize": page_size}),
                         headers=headers)
            body = conn.getresponse().read()
            n_bytes += len(body)
            if parse:
                got = len(orjson.loads(body)["data"]["list"])
            else:  # count records without parsing: each record opens with {"id":
                got = body.count(b'{"id":')
            n_rec += got
            if got < page_size:
                break
            page += 1
    conn.close()
    return n_rec, n_bytes


def pull_requests(base: str, tok: str, page_size: int) -> tuple[int, int]:
    """requests.Session + orjson, as a connector would; returns (records, bytes)."""
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {tok}"
    n_rec = n_bytes = 0
    for m in MODULES:
        page = 1
        while True:
            r = s.get(f"{base}/api/v1/{MODULE_PATHS[m]}/list", params={"page": page, "pageSize": page_size}, timeout=30)
            n_bytes += len(r.content)
            got = len(orjson.loads(r.content)["data"]["list"])
            n_rec += got
            if got < page_size:
                break
            page += 1
    s.close()
    return n_rec, n_bytes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--page-size", type=int, default=500)
    ap.add_argument("--passes", type=int, default=2, help="passes per client (first one is cold for the lean client)")
    args = ap.parse_args()

    host, port = "127.0.0.1", free_port()
    env = dict(os.environ, SANDBOX_LINGANG_CLIENT_ID=CLIENT_ID, SANDBOX_LINGANG_CLIENT_SECRET=CLIENT_SECRET,
               PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.lingang", "--host", host, "--port", str(port),
                             "--scale", str(args.scale), "--page-cap", str(max(500, args.page_size))],
                            env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        startup = wait_up(host, port, limit=300)
        base = f"http://{host}:{port}"
        tok = token(base)
        print(f"scale={args.scale:g} pageSize={args.page_size} startup (generate + bind) {startup:.1f}s")
        runs = [("lean http.client, no parse", lambda: pull_lean(host, port, tok, args.page_size, False)),
                ("lean http.client + orjson", lambda: pull_lean(host, port, tok, args.page_size, True)),
                ("requests.Session + orjson", lambda: pull_requests(base, tok, args.page_size))]
        for label, fn in runs:
            for i in range(args.passes):
                t0 = time.perf_counter()
                n_rec, n_bytes = fn()
                el = time.perf_counter() - t0
                print(f"{label:28s} pass {i + 1}: {n_rec:>9,d} records {n_bytes / 1e6:8.1f} MB in {el:6.2f}s"
                      f" -> {n_rec / el:>10,.0f} records/s {n_bytes / 1e6 / el:7.1f} MB/s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
