"""Running the DAGs through Airflow itself, with Airflow's home inside IEHUB_HOME.

Airflow reads its configuration when first imported, so DAG runs happen in a child process
whose environment points AIRFLOW_HOME, the DAGs folder and the metadata DB at IEHUB_HOME;
nothing outside the project is touched. Several DAGs run in one child (one Airflow start-up).

PostgreSQL metadata: Airflow 3 also opens an async engine, and derives its URL by swapping the
driver for asyncpg, which we do not ship. We name psycopg (3) for both: its one package serves
the sync and the async dialect (`postgresql+psycopg://`), and it is already a dependency.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from iehub.config import Settings

DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"


def metadata_urls(url: str) -> tuple[str, str | None]:
    """(sync URL, async URL or None for Airflow's own choice); PostgreSQL URLs use psycopg for both."""
    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0] in ("postgresql", "postgres"):
        url = f"postgresql+psycopg://{rest}"
        return url, url
    return url, None


def airflow_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    db, db_async = metadata_urls(settings.airflow_db_url or f"sqlite:///{settings.airflow_home / 'airflow.db'}")
    env = {
        **os.environ,
        "IEHUB_HOME": str(settings.home),
        "AIRFLOW_HOME": str(settings.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
    }
    if db_async:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = db_async
    env.update(extra or {})
    return env


def ensure_airflow_db(settings: Settings, log_file: Path) -> None:
    """Create or upgrade Airflow's metadata DB once per IEHUB_HOME (a marker skips the re-check)."""
    marker = settings.airflow_home / ".migrated-3.3"
    if marker.exists() and not settings.airflow_db_url:
        return
    with log_file.open("a", encoding="utf-8") as out:
        done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=airflow_env(settings),
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed (exit {done.returncode}); see {log_file}")
    marker.touch()


def run_dags(settings: Settings, dag_ids: list[str], log_file: Path, extra_env: dict[str, str] | None = None,
             conf: dict | None = None) -> dict[str, str]:
    """Run DAGs one after the other through `dag.test()` in one child process; raise if any did not succeed.

    Returns {dag_id: state}. Every DAG runs even when an earlier one failed.
    """
    import json

    cmd = [sys.executable, "-m", "iehub.run_dag", *(["--conf", json.dumps(conf)] if conf else []), *dag_ids]
    with log_file.open("a", encoding="utf-8") as out:
        done = subprocess.run(cmd, env=airflow_env(settings, extra_env), stdout=out, stderr=subprocess.STDOUT)
    states: dict[str, str] = {}
    with log_file.open(encoding="utf-8") as text:
        for line in text:
            if line.startswith("IEHUB_DAG_RESULT "):
                parts = line.split()
                states[parts[1]] = parts[2] if len(parts) > 2 else "unknown"
    if done.returncode != 0:
        bad = [d for d in dag_ids if not states.get(d, "").endswith("success")]
        raise RuntimeError(f"DAG(s) {', '.join(bad) or ', '.join(dag_ids)} did not succeed "
                           f"(exit {done.returncode}); see {log_file}")
    return {d: states.get(d, "unknown") for d in dag_ids}


def run_dag(settings: Settings, dag_id: str, log_file: Path, extra_env: dict[str, str] | None = None,
            conf: dict | None = None) -> None:
    """Run one DAG through `dag.test()` in a child process; raise if the run did not succeed."""
    run_dags(settings, [dag_id], log_file, extra_env, conf)
