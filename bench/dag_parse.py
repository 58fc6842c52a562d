"""DAG parse cost and the demo rerun (issue #14): what every task start and `make demo` pay.

    .venv/bin/python bench/dag_parse.py [--repeat 5] [--demo] [--scale 1.0] [--json]

1. Parse: for each file in dags/, a fresh process imports Airflow and DagBag first (the DAG
   processor and the task runner have them already), then parses that one file and reports the
   CPU seconds (process_time) of the parse alone, the DAGs it defined and any data library it
   pulled in. The spec summary is compiled once first (cold) and then read from its cache (warm,
   the steady state); the cold figure includes only this process, not the compile child.
   Goal: each file ≤ 0.3 s CPU warm, no heavy module.
2. `--demo`: `iehub demo --no-serve` twice in a throwaway IEHUB_HOME; prints the second run's
   wall time and CPU (children included) and the load average, since the box is shared.
   Goal: rerun ≤ 60 s.

Prints figures; with ``--json`` the last line is one JSON object. Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("duckdb", "pyarrow", "pandas", "numpy", "psycopg", "great_expectations", "polars")

PARSE = r"""
import json, os, sys, time
from airflow.dag_processing.dagbag import DagBag
import airflow.sdk
before = set(sys.modules)
t = time.process_time()
bag = DagBag(sys.argv[1])
cpu = time.process_time() - t
new = {m.split(".")[0] for m in set(sys.modules) - before if m.split(".")[0] in %r}
print("RESULT" + json.dumps({"cpu": cpu, "dags": len(bag.dag_ids), "errors": len(bag.import_errors),
                             "heavy": sorted(new)}))
""" % (HEAVY,)


def parse_once(path: Path, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", PARSE, str(path)], env=env, capture_output=True, text=True,
                         cwd=REPO)
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
    if not line:
        raise SystemExit(f"parsing {path.name} failed: {out.stderr[-2000:]}")
    return json.loads(line[0][6:])


def bench_parse(home: Path, repeat: int) -> dict:
    sys.path.insert(0, str(REPO))
    from iehub import orchestration
    from iehub.config import Settings

    env = orchestration.airflow_env(Settings.from_env(home))
    figures = {}
    for path in sorted(orchestration.DAGS_FOLDER.glob("*.py")):
        cold = parse_once(path, env) if not figures else None  # the first file compiles the summary
        warm = [parse_once(path, env) for _ in range(repeat)]
        cpu = statistics.median(w["cpu"] for w in warm)
        figures[path.name] = {"cpu_warm_median_s": round(cpu, 3), "cpu_cold_s": round(cold["cpu"], 3) if cold else None,
                              "dags": warm[0]["dags"], "errors": warm[0]["errors"], "heavy": warm[0]["heavy"],
                              "goal_0_3_s": "PASS" if cpu <= 0.3 and not warm[0]["heavy"] else "FAIL"}
        print(f"{path.name}: {figures[path.name]['dags']} DAG(s), parse CPU median {cpu:.3f} s over {repeat} "
              f"fresh processes (cold {figures[path.name]['cpu_cold_s']}), heavy modules {warm[0]['heavy'] or 'none'}"
              f" — goal ≤ 0.3 s: {figures[path.name]['goal_0_3_s']}")
    return figures


def bench_demo(home: Path, scale: float) -> dict:
    cmd = [str(REPO / ".venv/bin/iehub"), "demo", "--no-serve", "--scale", str(scale)]
    env = {**os.environ, "IEHUB_HOME": str(home)}
    runs = []
    for label in ("first", "rerun"):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"demo ({label}) failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        runs.append({"run": label, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                     "load_avg_1m": round(os.getloadavg()[0], 2)})
        print(f"demo {label}: {wall:.1f} s wall, {cpu:.1f} s CPU, load average {os.getloadavg()[0]:.2f} "
              f"({os.cpu_count()} CPUs)")
    rerun = runs[-1]
    print(f"demo rerun with nothing changed: {rerun['wall_s']} s — goal ≤ 60 s: "
          f"{'PASS' if rerun['wall_s'] <= 60 else 'FAIL'}")
    return {"runs": runs, "scale": scale}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--demo", action="store_true", help="also time `iehub demo` twice (minutes)")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="iehub-bench-dags-") as tmp:
        result = {"parse": bench_parse(Path(tmp) / "home", args.repeat)}
        if args.demo:
            result["demo"] = bench_demo(Path(tmp) / "demo", args.scale)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
