"""`python -m iehub.run_dag DAG_ID [DAG_ID …]`: parse the DAGs folder once and run DAGs with dag.test().

Several DAG ids run one after the other in this one process, so Airflow's start-up (config,
ORM, plugins, the DAG bag) is paid once rather than once per DAG; the demo runs every source
DAG and the warehouse DAG this way. Before running, the sources' pools are created (or resized)
from the spec summary, as a deployment's `airflow pools` would hold them.
Exit status: 0 when every run succeeded, 1 when any failed (each run still runs), 2–4 usage.
"""
from __future__ import annotations

import json
import os
import sys


def ensure_pools() -> None:
    """One Airflow pool per source, sized from its spec (`pool_slots`), so extracts queue politely."""
    from airflow.models.pool import Pool

    from iehub.assets import pool_name, spec_summary

    for source, info in spec_summary().items():
        Pool.create_or_update_pool(pool_name(source), slots=info["pool_slots"],
                                   description=f"extract tasks of {info['title']}", include_deferred=False)


def main(argv: list[str]) -> int:
    conf: dict | None = None
    if argv[:1] == ["--conf"] and len(argv) > 1:
        conf, argv = json.loads(argv[1]), argv[2:]
    if not argv:
        print("usage: python -m iehub.run_dag [--conf JSON] DAG_ID [DAG_ID …]", file=sys.stderr)
        return 2
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        for path, err in bag.import_errors.items():
            print(f"DAG import error in {path}: {err}", file=sys.stderr)
        return 3
    missing = [d for d in argv if bag.get_dag(d) is None]
    if missing:
        print(f"no DAG {', '.join(map(repr, missing))}; DAGs: {', '.join(sorted(bag.dag_ids))}", file=sys.stderr)
        return 4
    ensure_pools()
    failed = 0
    for dag_id in argv:
        run = bag.get_dag(dag_id).test(run_conf=conf)
        state = str(getattr(run, "state", "unknown"))
        print(f"IEHUB_DAG_RESULT {dag_id} {state} {getattr(run, 'run_id', '')}", flush=True)
        failed += not state.endswith("success")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
