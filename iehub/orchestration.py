"""Running the DAGs through Airflow itself, with Airflow's home inside IEHUB_HOME.

Airflow reads its configuration when first imported, so DAG runs happen in a child process
whose environment points AIRFLOW_HOME, the DAGs folder and the metadata DB at IEHUB_HOME;
nothing outside the project is touched.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from iehub.config import Settings

DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"


def airflow_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    db = settings.airflow_db_url or f"sqlite:///{settings.airflow_home / 'airflow.db'}"
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


def run_dag(settings: Settings, dag_id: str, log_file: Path, extra_env: dict[str, str] | None = None) -> None:
    """Run one DAG through `dag.test()` in a child process; raise if the run did not succeed."""
    with log_file.open("a", encoding="utf-8") as out:
        done = subprocess.run([sys.executable, "-m", "iehub.run_dag", dag_id],
                              env=airflow_env(settings, extra_env), stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"DAG {dag_id} did not succeed (exit {done.returncode}); see {log_file}")
