"""Lake soak (S9): N incremental cycles with mutations and faults, then the lake's invariants as drift.

    .venv/bin/python bench/lake_soak.py [--cycles 100] [--seed 7] [--scale 0.01]

Each cycle changes the embedded sandbox sources and syncs them incrementally (the municipal
SQLite database: updates, inserts, soft and hard deletes; the 杨浦 CSV drop folder: a new daily
snapshot), and now and then injects a fault: a snapshot with a key twice, one with a control
character, a late (older) snapshot, a full resync, a replay of the quarantine, a rebuild from the
lake. Every ten cycles the cheap invariants are checked (ledger, duplicate live keys, tombstones);
at the end also the two expensive ones: the warehouse against a fresh full load of the sources'
final state, and ``build --full`` from the lake against the incremental warehouse.

The figure is **drift**: the number of violating rows over all checks (goal 0), printed per check.
The invariants are tests/integration/lake_invariants.py, shared with the stateful property test
(tests/integration/test_lake_invariants.py), so the soak and the test cannot disagree on what they check.
Deletions stay under the snapshot guard's share (a sandbox round deletes far less than 20 % of rows).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FAULT_EVERY = {"bad_file": 7, "full_resync": 25, "replay": 10, "rebuild": 33}


def soak(cycles: int, work: Path, *, seed: int = 7, scale: float = 0.01, log: Any = print) -> dict[str, Any]:
    """Run the soak in `work`; returns seconds, cycles, what was injected and the drift per check."""
    from iehub.config import Settings
    from tests.integration.lake_invariants import (Sources, all_violations, duplicate_violations, ledger_violations,
                                                   replay, sync, tombstone_violations)
    from warehouse.build import build

    rng = random.Random(seed)
    sources = Sources(work / "sources", seed=seed, scale=scale)
    home = work / "home"
    injected: dict[str, int] = {"municipal_changes": 0, "district_snapshots": 0, "bad_file": 0, "full_resync": 0,
                                "replay": 0, "rebuild": 0}
    drift: dict[str, int] = {"ledger": 0, "duplicates": 0, "tombstones": 0}
    t0 = time.perf_counter()
    with sources.environment():
        sync(home)
        for cycle in range(1, cycles + 1):
            sources.mutate_municipal(rng.choice([0.01, 0.02, 0.05]), rng.randrange(1_000_000))
            injected["municipal_changes"] += 1
            if cycle % 2 == 0:
                sources.mutate_yangpu(rng.choice([0.01, 0.02]))
                injected["district_snapshots"] += 1
            if cycle % FAULT_EVERY["bad_file"] == 0:
                sources.drop_bad_file(rng.choice(["duplicate", "control", "late"]))
                injected["bad_file"] += 1
            sync(home, full=cycle % FAULT_EVERY["full_resync"] == 0)
            injected["full_resync"] += cycle % FAULT_EVERY["full_resync"] == 0
            if cycle % FAULT_EVERY["replay"] == 0:
                replay(home)
                injected["replay"] += 1
            if cycle % FAULT_EVERY["rebuild"] == 0:
                build(home, Settings.from_env(home).catalog(), full=True)
                injected["rebuild"] += 1
            if cycle % 10 == 0 or cycle == cycles:
                found = {"ledger": ledger_violations(home), "duplicates": duplicate_violations(home),
                         "tombstones": tombstone_violations(home, sources)}
                for k, v in found.items():
                    drift[k] += len(v)
                log(f"cycle {cycle}/{cycles}: " + ", ".join(f"{k} {len(v)}" for k, v in found.items())
                    + f" ({time.perf_counter() - t0:.0f} s)")
        final = all_violations(home, sources)
    drift["fresh_load"] = len(final["fresh_load"])
    drift["rebuild"] = len(final["rebuild"])
    examples = {k: v[:3] for k, v in final.items() if v}
    batches = len(Settings.from_env(home).catalog().landed_batches())
    return {"seconds": time.perf_counter() - t0, "cycles": cycles, "batches": batches, "injected": injected,
            "drift": drift, "drift_rows": sum(drift.values()), "examples": examples}


def hub_lake_soak(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """The bench harness's measure (bench/measures.py): one soak in the scratch directory."""
    import iehub.pipeline  # noqa: F401 - imports are not the soak's cost
    import quality.runner  # noqa: F401

    result = soak(int(params["cycles"]), scratch, seed=int(params.get("seed", 7)),
                  scale=float(params.get("scale", 0.01)), log=lambda msg: print(msg, file=sys.stderr))
    return {"seconds": result["seconds"], "rows": result["cycles"], "bytes": None, "stages": {},
            "extra": {k: result[k] for k in ("drift_rows", "drift", "injected", "batches", "examples")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="iehub-soak-") as tmp:
        result = soak(args.cycles, Path(tmp), seed=args.seed, scale=args.scale)
    print(f"lake soak: {result['cycles']} cycles, {result['batches']} batches landed, {result['seconds']:.0f} s")
    print("    injected: " + ", ".join(f"{k} {v}" for k, v in result["injected"].items()))
    print("    drift rows per check: " + ", ".join(f"{k} {v}" for k, v in result["drift"].items()))
    print(f"drift: {result['drift_rows']} rows (goal 0): {'PASS' if result['drift_rows'] == 0 else 'MISS'}")
    for check, rows in result["examples"].items():
        print(f"    {check}: " + "; ".join(rows))
    sys.exit(0 if result["drift_rows"] == 0 else 1)


if __name__ == "__main__":
    main()
