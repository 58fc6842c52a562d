"""The DAGs through Airflow itself: DagBag integrity, no I/O at parse, and a real dag.test() run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from iehub import orchestration
from iehub.config import Settings
from tests.conftest import REPO
from warehouse.publish import current_path

pytestmark = pytest.mark.airflow

PARSE_SCRIPT = r"""
import json, os, socket, sys
calls = []
def refuse(*a, **k):
    calls.append(repr(a[:2]))
    raise OSError("network I/O during DAG parsing")
socket.socket.connect = refuse
socket.create_connection = refuse
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
dags = {d: {"tasks": [t.task_id for t in bag.dags[d].tasks],
            "outlets": sorted(str(getattr(o, "uri", o)) for t in bag.dags[d].tasks for o in (t.outlets or []))}
        for d in bag.dag_ids}
print("RESULT" + json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags, "net": calls}))
"""


def _parse(settings: Settings) -> dict:
    env = orchestration.airflow_env(settings)
    out = subprocess.run([sys.executable, "-c", PARSE_SCRIPT], env=env, capture_output=True, text=True, cwd=REPO)
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
    assert line, out.stderr[-3000:]
    return json.loads(line[0][6:])


def test_dagbag_imports_cleanly_without_io(iehub_home: Path) -> None:
    settings = Settings.from_env(iehub_home)
    parsed = _parse(settings)
    assert parsed["errors"] == {}
    assert parsed["net"] == []
    from connectors.spec import available_sources

    assert set(parsed["dags"]) == {f"iehub_sync_{s}" for s in available_sources()} | {"iehub_warehouse",
                                                                                      "iehub_delivery"}
    tasks = parsed["dags"]["iehub_sync_lingang_platform"]["tasks"]
    assert {"notices.extract", "notices.standardise_and_validate", "notices.land"} <= set(tasks)
    assert len(tasks) == 6 * 3 + 1 and "finish" in tasks  # six streams: extract, standardise_and_validate, land
    assert "iehub://lake/std/notice/lingang_platform" in parsed["dags"]["iehub_sync_lingang_platform"]["outlets"]
    # parsing wrote nothing into the lake or the ledger
    assert not (iehub_home / "lake").exists() and not (iehub_home / "catalog.db").exists()


def test_lingang_dag_runs_through_airflow_against_live_sandbox(iehub_home: Path, lingang) -> None:
    settings = Settings.from_env(iehub_home).ensure()
    log = settings.logs / "airflow-test.log"
    orchestration.ensure_airflow_db(settings, log)
    orchestration.run_dag(settings, "iehub_sync_lingang_platform", log)
    orchestration.run_dag(settings, "iehub_warehouse", log)
    text = log.read_text(encoding="utf-8")
    assert "IEHUB_DAG_RESULT iehub_sync_lingang_platform" in text and "success" in text
    con = duckdb.connect(str(current_path(iehub_home)), read_only=True)
    live = sum(1 for r in lingang.records("notices") if int(r["isDeleted"]) == 0)
    got = con.execute("select count(*) from core.notice").fetchone()[0]
    assert live * 0.9 <= got <= live
    batches = con.execute("select count(*), sum(rows_in), sum(rows_loaded + rows_quarantined) from ops.batches").fetchone()
    assert batches[0] == 6 and batches[1] == batches[2]


def test_municipal_dag_runs_through_airflow_against_the_sandbox_database(iehub_home: Path) -> None:
    """The SQL kind's DAG from its spec: one extract → standardise → validate → land chain per table."""
    from iehub.sandbox_municipal import SYSTEM

    settings = Settings.from_env(iehub_home).ensure()
    started = SYSTEM.start(settings, scale=0.05, seed=3)
    log = settings.logs / "airflow-test.log"
    orchestration.ensure_airflow_db(settings, log)
    orchestration.run_dag(settings, "iehub_sync_municipal_projects", log, started.env)
    orchestration.run_dag(settings, "iehub_warehouse", log, started.env)
    assert "IEHUB_DAG_RESULT iehub_sync_municipal_projects" in log.read_text(encoding="utf-8")
    con = duckdb.connect(str(current_path(iehub_home)), read_only=True)
    counts = dict(con.execute("select entity, sum(rows_in) from ops.batches where source = 'municipal_projects' "
                              "group by 1").fetchall())
    assert set(counts) == {"organization", "project", "project_participant", "project_report", "training_base",
                           "teacher"}
    assert counts["project"] == 250
    assert con.execute("select count(*) from core.project").fetchone()[0] >= 240
