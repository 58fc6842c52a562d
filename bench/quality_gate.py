"""The quality gate alone: rows/s of `validate_table` on 1M canonical `project` rows, per engine.

    .venv/bin/python bench/quality_gate.py                    # 1,000,000 rows, both engines
    .venv/bin/python bench/quality_gate.py --rows 200000 --engines arrow

Two batches are generated once (deterministic, seed 7) and written to Parquet: a clean one, and
the same with 1% of rows broken in the ways the corpus describes (bad credit codes, retired
district codes, unknown categories, missing or garbled titles, end before start, negative or
absurd budgets, dates before 1949), plus a few repeated keys (a warning, not a quarantine).
Each engine × batch runs in a fresh process, so the figures split:
  - fixed cost: importing the gate and validating a first 10-row table (GX: its import, context
    and suite registration; Arrow: pyarrow/numpy and the rule declarations);
  - gate: validating the batch in the pipeline's chunks (iehub.pipeline.CHUNK_ROWS),
    Parquet read excluded; rows/s over the batch, and the CPU seconds it used (all threads: on a
    shared, busy machine the CPU figure is the steadier one).
The quarantined row count is printed so both engines can be seen to agree. Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_batch(rows: int, bad_share: float, seed: int = 7):
    """Canonical project rows with lineage (vectorised, so 1M rows take a few seconds)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from schemas import get_entity
    from schemas.codes import CODE_LISTS
    from tests.unit.schemas.schemas_gen import make_uscc

    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    entity = get_entity("project")

    def pick(values: list, n: int = rows) -> pa.Array:
        return pa.array(np.asarray(values, dtype=object)[rng.integers(0, len(values), n)].tolist(), pa.string())

    titles = [f"{p}{s}" for p in ("智能制造", "集成电路", "生物医药", "人工智能", "新能源汽车", "航空航天", "高端装备",
                                   "数字经济", "海洋工程", "绿色低碳") for s in ("产业学院", "实训基地", "协同育人项目",
                                                                            "卓越工程师计划", "现代学徒制试点")]
    orgs = ["上海电机学院", "上海电力大学", "上海海洋大学", "上海海事大学", "上海建桥学院", "上海电子信息职业技术学院",
            "上海积塔半导体有限公司", "上海商汤科技开发有限公司", "上海心玮医疗科技股份有限公司", "临港集团"]
    usccs = [make_uscc(prng) for _ in range(5000)]
    base = date(2015, 1, 1)
    approved = rng.integers(0, 3650, rows)
    start = approved + rng.integers(0, 90, rows)
    end = start + rng.integers(365, 1460, rows)
    epoch = (base - date(1970, 1, 1)).days

    def days(offsets) -> pa.Array:
        return pa.array((offsets + epoch).astype(np.int32), pa.int32()).cast(pa.date32())

    def yuan(values) -> pa.Array:
        return pa.array(values, pa.int64()).cast(pa.decimal128(38, 2)).cast(pa.decimal128(18, 2))

    now_us = int(datetime.now(timezone.utc).timestamp() * 1e6)
    updated = now_us - rng.integers(0, 86400 * 365 * 3, rows) * 1_000_000
    ids = [f"P{i:07d}" for i in range(rows)]
    cols = {
        "project_id": pa.array(ids, pa.string()),
        "title": pick(titles),
        "category": pick(sorted(CODE_LISTS["project_category"].codes)),
        "lead_org_id": pick([f"ORG{i:05d}" for i in range(5000)]),
        "lead_org_name": pick(orgs),
        "lead_org_uscc": pick(usccs),
        "district_code": pick(sorted(CODE_LISTS["district"].codes)),
        "industry_code": pick(sorted(CODE_LISTS["lingang_industry"].codes)),
        "approved_on": days(approved),
        "start_date": days(start),
        "end_date": days(end),
        "budget_amount": yuan(rng.integers(100_000, 10_000_000, rows)),
        "funding_type": pick(sorted(CODE_LISTS["funding_type"].codes)),
        "status": pick(sorted(CODE_LISTS["project_status"].codes)),
        "updated_at": pa.array(updated, pa.timestamp("us", tz="UTC")),
        "_source": pa.array(["municipal_projects"] * rows, pa.string()),
        "_source_key": pa.array(ids, pa.string()),
        "_batch_id": pa.array(["bench"] * rows, pa.string()),
        "_extracted_at": pa.array([now_us] * rows, pa.timestamp("us", tz="UTC")),
        "_record_hash": pa.array(ids, pa.string()),
        "_is_deleted": pa.array(np.zeros(rows, dtype=bool)),
    }
    if bad_share:
        bad_rows = rng.choice(rows, int(rows * bad_share), replace=False)
        breakages = [
            ("lead_org_uscc", pa.array(["91310115MA1FL5XL1I"], pa.string())),
            ("district_code", pa.array(["310103"], pa.string())),
            ("category", pa.array(["合作办学"], pa.string())),
            ("title", pa.array([None], pa.string())),
            ("title", pa.array(["Ã¤Â¸Â\u008aæµ·é¡¹ç\u009b®"], pa.string())),
            ("end_date", pa.array([date(2014, 1, 1)], pa.date32())),
            ("budget_amount", yuan(np.array([-300]))),
            ("budget_amount", yuan(np.array([10**12]))),
            ("approved_on", pa.array([date(1900, 1, 1)], pa.date32())),
            ("status", pa.array(["进行中"], pa.string())),
        ]
        for i, (column, value) in enumerate(breakages):
            chosen = bad_rows[i::len(breakages)]
            mask = np.zeros(rows, dtype=bool)
            mask[chosen] = True
            cols[column] = pc.replace_with_mask(cols[column], pa.array(mask), pc.take(value, pa.array(
                np.zeros(len(chosen), dtype=np.int64))))
        dup = rng.choice(rows, 20, replace=False)  # repeated keys: counted and warned, never quarantined
        ids_arr = np.asarray(cols["project_id"].to_pylist(), dtype=object)
        ids_arr[dup[10:]] = ids_arr[dup[:10]]
        cols["project_id"] = pa.array(ids_arr.tolist(), pa.string())
    return pa.table(cols).cast(entity.arrow_schema())


def worker(path: str, engine: str, chunk: int) -> dict:
    os.environ["IEHUB_QUALITY_ENGINE"] = engine
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    t0 = time.perf_counter()
    from quality.policy import policy_for
    from quality.runner import validate_table

    policy = policy_for("project")
    validate_table("project", table.slice(0, 10), policy)
    fixed = time.perf_counter() - t0
    gx_loaded = "great_expectations" in sys.modules
    t, cpu = time.perf_counter(), time.process_time()
    quarantined, warnings = 0, 0
    for start in range(0, table.num_rows, chunk):
        outcome = validate_table("project", table.slice(start, chunk), policy)
        quarantined += len(outcome.failed)
        warnings += len(outcome.warnings)
    gate, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"fixed": fixed, "gate": gate, "cpu": cpu, "rows": table.num_rows, "quarantined": quarantined, "warnings": warnings,
            "gx_imported": gx_loaded}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--engines", default="arrow,gx")
    ap.add_argument("--chunk", type=int, default=0, help="rows per validate_table call (default: the pipeline's)")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]))))
        return
    import pyarrow.parquet as pq

    from iehub.pipeline import CHUNK_ROWS

    chunk = args.chunk or CHUNK_ROWS
    with tempfile.TemporaryDirectory(prefix="iehub-bench-gate-") as work:
        batches = {}
        for label, share in (("clean", 0.0), ("1% bad", 0.01)):
            t = time.perf_counter()
            path = str(Path(work) / f"{label.replace('% ', 'pct_')}.parquet")
            pq.write_table(make_batch(args.rows, share), path)
            batches[label] = path
            print(f"generated {label} batch of {args.rows:,} project rows in {time.perf_counter() - t:.1f}s", flush=True)
        print(f"\nquality gate on {args.rows:,} project rows ({os.cpu_count()} cores, chunks of {chunk:,} rows)")
        print(f"{'engine':<8}{'batch':<9}{'fixed cost':>11}{'gate':>9}{'rows/s':>13}{'with fixed':>13}"
              f"{'gate CPU':>10}{'quarantined':>13}  GX imported")
        for engine in args.engines.split(","):
            for label, path in batches.items():
                out = subprocess.run([sys.executable, __file__, "--worker", path, engine, str(chunk)],
                                     capture_output=True, text=True, cwd=REPO)
                if out.returncode != 0:
                    raise SystemExit(f"worker {engine} {label} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{engine:<8}{label:<9}{r['fixed']:>10.2f}s{r['gate']:>8.2f}s{r['rows'] / r['gate']:>13,.0f}"
                      f"{r['rows'] / (r['gate'] + r['fixed']):>13,.0f}{r['cpu']:>9.2f}s{r['quarantined']:>13,}"
                      f"  {r['gx_imported']}",
                      flush=True)


if __name__ == "__main__":
    main()
