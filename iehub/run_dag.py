"""`python -m iehub.run_dag DAG_ID`: parse the DAGs folder and run one DAG with dag.test()."""
from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m iehub.run_dag DAG_ID", file=sys.stderr)
        return 2
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        for path, err in bag.import_errors.items():
            print(f"DAG import error in {path}: {err}", file=sys.stderr)
        return 3
    dag = bag.get_dag(argv[0])
    if dag is None:
        print(f"no DAG {argv[0]!r}; DAGs: {', '.join(sorted(bag.dag_ids))}", file=sys.stderr)
        return 4
    run = dag.test()
    state = str(getattr(run, "state", "unknown"))
    print(f"IEHUB_DAG_RESULT {argv[0]} {state}")
    return 0 if state.endswith("success") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
