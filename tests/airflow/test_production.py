"""Issue #14: the DAGs in production — truthful run states, alerts, cheap parsing, re-runnable
steps, one writer per source, PostgreSQL metadata. Every run goes through Airflow (dag.test()
or `airflow tasks test`), against the live Lingang sandbox on loopback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import duckdb
import pytest

from iehub import orchestration
from iehub.config import Settings
from tests.conftest import REPO
from warehouse.publish import current_path

pytestmark = pytest.mark.airflow

HEAVY = ("duckdb", "pyarrow", "pandas", "numpy", "psycopg", "great_expectations", "polars")
OURS_HEAVY = ("warehouse", "quality", "schemas", "connectors", "iehub.pipeline")

PARSE_ONE = r"""
import json, os, sys
from airflow.dag_processing.dagbag import DagBag
import airflow.sdk
before = set(sys.modules)
bag = DagBag(sys.argv[1])
new = sorted(set(sys.modules) - before)
print("RESULT" + json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                             "dags": sorted(bag.dag_ids), "new": new}))
"""


def _parse_one(settings: Settings, path: Path) -> dict:
    env = orchestration.airflow_env(settings)
    out = subprocess.run([sys.executable, "-c", PARSE_ONE, str(path)], env=env, capture_output=True, text=True,
                         cwd=REPO)
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
    assert line, out.stderr[-3000:]
    return json.loads(line[0][6:])


@pytest.mark.parametrize("dag_file", sorted(p.name for p in orchestration.DAGS_FOLDER.glob("*.py")))
def test_dag_file_imports_nothing_heavy(iehub_home: Path, dag_file: str) -> None:
    """Parsing a DAG file (cold cache, then warm) adds no data library to the parsing process."""
    settings = Settings.from_env(iehub_home)
    for _ in range(2):
        parsed = _parse_one(settings, orchestration.DAGS_FOLDER / dag_file)
        assert parsed["errors"] == {} and parsed["dags"]
        heavy = [m for m in parsed["new"] if m.split(".")[0] in HEAVY or m.split(".")[0] in OURS_HEAVY[:4]
                 or m == "iehub.pipeline"]
        assert heavy == [], f"{dag_file} imports {heavy[:10]} at parse time"


def test_spec_summary_follows_spec_changes(iehub_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from iehub import assets

    specs = tmp_path / "specs"
    specs.mkdir()
    text = (REPO / "connectors/specs/lingang_platform.yaml").read_text(encoding="utf-8")
    (specs / "lingang_platform.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("IEHUB_SPEC_DIR", str(specs))
    assert "notices" in assets.source_streams()["lingang_platform"]
    (specs / "lingang_platform.yaml").write_text(text.replace("  notices:\n", "  announcements:\n", 1),
                                                 encoding="utf-8")
    streams = assets.source_streams()["lingang_platform"]
    assert "announcements" in streams and "notices" not in streams


class _Receiver(BaseHTTPRequestHandler):
    posts: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).posts.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                 "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    _Receiver.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/iehub", _Receiver.posts
    server.shutdown()
    server.server_close()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("IEHUB_")}


def test_a_failed_stream_fails_the_run_alerts_and_keeps_the_others(iehub_home: Path, lingang, tmp_path: Path,
                                                                    webhook) -> None:
    """One stream's endpoint is gone: the run fails, the five other streams land, the webhook gets the alert."""
    url, posts = webhook
    specs = tmp_path / "specs"
    specs.mkdir()
    text = (REPO / "connectors/specs/lingang_platform.yaml").read_text(encoding="utf-8")
    assert "/api/v1/talent/demand/list" in text
    (specs / "lingang_platform.yaml").write_text(text.replace("/api/v1/talent/demand/list", "/api/v1/talent/demand/gone"),
                                                 encoding="utf-8")
    settings = Settings.from_env(iehub_home).ensure()
    log = settings.logs / "airflow-test.log"
    orchestration.ensure_airflow_db(settings, log)
    env = {**_env(), "IEHUB_SPEC_DIR": str(specs), "AIRFLOW_CONN_IEHUB_ALERTS": url.replace("http://", "http://:s3cret@")}
    with pytest.raises(RuntimeError, match="iehub_sync_lingang_platform did not succeed"):
        orchestration.run_dags(settings, ["iehub_sync_lingang_platform"], log, env)
    text = log.read_text(encoding="utf-8")
    assert "IEHUB_DAG_RESULT iehub_sync_lingang_platform failed" in text
    landed = {b.entity for b in settings.catalog().landed_batches() if b.source == "lingang_platform"}
    assert landed == {"notice", "talent_supply", "cooperation", "rd_project", "tech_service"}
    alerts = [p for p in posts if p["body"].get("stream") == "talent_demands"]
    assert alerts, posts
    body = alerts[0]["body"]
    assert body["source"] == "lingang_platform" and body["task"] == "talent_demands.extract"
    assert "404" in body["error"] and alerts[0]["path"] == "/hooks/iehub"
    assert alerts[0]["auth"] == "Bearer s3cret"
    assert "iehub alert: source=lingang_platform stream=talent_demands" in text
    # the teardown ran and gave the source back: a CLI sync may take it now
    from iehub.leases import Holder, acquire

    acquire(settings.catalog(), "lingang_platform", Holder.cli())


def _run_id(log: Path, dag_id: str) -> str:
    lines = [l for l in log.read_text(encoding="utf-8").splitlines() if l.startswith(f"IEHUB_DAG_RESULT {dag_id} ")]
    return lines[-1].split()[3]


def _warehouse(home: Path) -> dict:
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        tables = [r[0] for r in con.execute("select table_name from information_schema.tables "
                                            "where table_schema = 'core' and table_name not like '%history%'").fetchall()]
        rows = {t: con.execute(f"select count(*) from core.{t}").fetchone()[0] for t in sorted(tables)}
        notices = con.execute("select * exclude (_batch_id, _extracted_at) from core.notice order by all").fetchall() \
            if "notice" in tables else []
        batches = con.execute("select count(*), sum(rows_loaded) from ops.batches").fetchone()
    finally:
        con.close()
    return {"rows": rows, "notices": notices, "batches": batches}


def test_cleared_steps_rerun_to_the_same_warehouse(iehub_home: Path, lingang) -> None:
    """Clear and re-run a landed stream's standardise_and_validate and land: the warehouse is the same."""
    settings = Settings.from_env(iehub_home).ensure()
    log = settings.logs / "airflow-test.log"
    orchestration.ensure_airflow_db(settings, log)
    orchestration.run_dags(settings, ["iehub_sync_lingang_platform", "iehub_warehouse"], log, _env())
    before = _warehouse(iehub_home)
    assert before["rows"]["notice"] > 0
    run_id = _run_id(log, "iehub_sync_lingang_platform")
    env = orchestration.airflow_env(settings, _env())
    for step in ("standardise_and_validate", "land"):
        with log.open("a", encoding="utf-8") as out:
            done = subprocess.run([sys.executable, "-m", "airflow", "tasks", "test", "iehub_sync_lingang_platform",
                                   f"notices.{step}", run_id], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        assert done.returncode == 0, log.read_text(encoding="utf-8")[-4000:]
        assert "Marking task as FAILED" not in log.read_text(encoding="utf-8").split("notices." + step)[-1]
    orchestration.run_dags(settings, ["iehub_warehouse"], log, _env())
    after = _warehouse(iehub_home)
    assert after["rows"] == before["rows"] and after["notices"] == before["notices"]
    assert after["batches"] == before["batches"]
    # a scheduled run with nothing new succeeds and lands nothing (no empty batches, no Asset events)
    landed = len(settings.catalog().landed_batches())
    assert orchestration.run_dags(settings, ["iehub_sync_lingang_platform"], log, _env()) == \
        {"iehub_sync_lingang_platform": "success"}
    assert len(settings.catalog().landed_batches()) == landed
    assert "notices: nothing new since cursor" in " ".join(log.read_text(encoding="utf-8").split()) or \
        "lingang_platform.notices: nothing new" in log.read_text(encoding="utf-8")


def test_cli_sync_is_refused_while_a_dag_run_holds_the_source(iehub_home: Path, lingang) -> None:
    from iehub.leases import Holder, acquire, release

    settings = Settings.from_env(iehub_home).ensure()
    holder = Holder.dag_run("iehub_sync_lingang_platform", "manual__2026-12-05T10:00:00+00:00")
    acquire(settings.catalog(), "lingang_platform", holder)
    done = subprocess.run([sys.executable, "-m", "iehub.cli", "sync", "lingang_platform"], env={**os.environ},
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode != 0
    lines = [l for l in done.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, done.stderr
    assert "dag_run iehub_sync_lingang_platform/manual__2026-12-05T10:00:00+00:00" in lines[0]
    assert "since" in lines[0] and "Traceback" not in done.stderr
    assert not settings.catalog().landed_batches()
    release(settings.catalog(), "lingang_platform", holder)
    done = subprocess.run([sys.executable, "-m", "iehub.cli", "sync", "lingang_platform", "--stream", "notices"],
                          env={**os.environ}, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_a_lease_of_a_crashed_holder_is_taken_over(iehub_home: Path) -> None:
    from datetime import timedelta

    from iehub.leases import Holder, SourceBusy, acquire

    catalog = Settings.from_env(iehub_home).ensure().catalog()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone_cli = Holder(f"cli {Holder.cli().host}:{dead.stdout.strip()}", Holder.cli().host, int(dead.stdout))
    acquire(catalog, "district_yangpu", gone_cli)
    acquire(catalog, "district_yangpu", Holder.cli())  # its process is gone: taken over
    run = Holder.dag_run("iehub_sync_district_yangpu", "scheduled__1")
    with pytest.raises(SourceBusy, match=r"being synced by cli .*since"):
        acquire(catalog, "district_yangpu", run)
    acquire(catalog, "district_jiading", run, ttl=timedelta(seconds=-1))  # lapsed at once
    acquire(catalog, "district_jiading", Holder.cli())


PG = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def pg_database() -> Iterator[str]:
    import psycopg

    name = f"iehub_airflow_{os.getpid()}"
    try:
        admin = psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is needed for this test and is not reachable: {exc}")
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_airflow_metadata_on_postgresql(iehub_home: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`IEHUB_AIRFLOW_DB_URL=postgresql://…` migrates and runs a DAG without asyncpg installed."""
    monkeypatch.setenv("IEHUB_AIRFLOW_DB_URL", pg_database)
    settings = Settings.from_env(iehub_home).ensure()
    log = settings.logs / "airflow-pg.log"
    orchestration.ensure_airflow_db(settings, log)
    states = orchestration.run_dags(settings, ["iehub_warehouse"], log, _env())
    assert states == {"iehub_warehouse": "success"}
    assert "asyncpg" not in log.read_text(encoding="utf-8")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_sync_emits_the_asset_events_the_warehouse_dag_follows(iehub_home: Path, lingang) -> None:
    """A CLI sync tells a running Airflow (its REST API) which Assets it updated; the warehouse DAG is queued."""
    import sqlite3
    import time

    import requests

    settings = Settings.from_env(iehub_home).ensure()
    log = settings.logs / "airflow-api.log"
    orchestration.ensure_airflow_db(settings, log)
    env = orchestration.airflow_env(settings, {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                                                 "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"})
    with log.open("a", encoding="utf-8") as out:
        assert subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], env=env, stdout=out,
                              stderr=subprocess.STDOUT, cwd=REPO).returncode == 0
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1",
                                   "--port", str(port), "--workers", "1"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                if requests.get(f"{base}/api/v2/version", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert server.poll() is None, log.read_text(encoding="utf-8")[-3000:]
            time.sleep(1)
        else:
            pytest.fail(f"the Airflow API server did not answer on {base}; see {log}")
        done = subprocess.run([sys.executable, "-m", "iehub.cli", "sync", "lingang_platform", "--stream", "notices"],
                              env={**os.environ, "IEHUB_AIRFLOW_API_URL": base}, capture_output=True, text=True,
                              cwd=REPO)
        assert done.returncode == 0, done.stderr
        batch = [b for b in settings.catalog().landed_batches("notice")][0].batch_id
        assert f"Asset event iehub://lake/std/notice/lingang_platform (batch {batch}) recorded" in \
            " ".join(done.stdout.split())
        events = requests.get(f"{base}/api/v2/assets/events", timeout=10).json()["asset_events"]
        assert [e["extra"].get("batch_id") for e in events] == [batch]
        queued = sqlite3.connect(settings.airflow_home / "airflow.db").execute(
            "select target_dag_id from asset_dag_run_queue").fetchall()
        assert ("iehub_warehouse",) in queued
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_snapshot_held_as_suspect_fails_the_dag_run_and_deletes_nothing(iehub_home: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """#19 through Airflow: a cut-short 杨浦 file after a good load fails the district's run (its land
    task), not only `iehub sync`; the good rows stay live."""
    from sandbox.districts import DistrictDrops
    from tests.integration.districts.conftest import age, core

    drops = DistrictDrops(iehub_home / "sandbox" / "districts")
    drops.seed(seed=21, scale=0.2)
    monkeypatch.setenv("IEHUB_YANGPU_DROP", str(drops.yangpu))
    monkeypatch.setenv("IEHUB_MINHANG_DROP", str(drops.minhang))
    age(drops.yangpu)
    settings = Settings.from_env(iehub_home).ensure()
    log = settings.logs / "airflow-test.log"
    orchestration.ensure_airflow_db(settings, log)
    dag = "iehub_sync_district_yangpu"
    orchestration.run_dags(settings, [dag, "iehub_warehouse"], log, _env())
    live = "select count(*) from core.project where _source = 'district_yangpu'"
    before = core(iehub_home, live)[0][0]
    assert before > 150

    day0 = sorted(drops.yangpu.glob("yangpu_projects_*.csv"))[-1]
    lines = day0.read_bytes().split(b"\r\n")
    (drops.yangpu / "yangpu_projects_20991231.csv").write_bytes(b"\r\n".join([*lines[:61], b""]))
    age(drops.yangpu)
    with pytest.raises(RuntimeError, match=f"{dag} did not succeed"):
        orchestration.run_dags(settings, [dag], log, _env())
    text = log.read_text(encoding="utf-8")
    assert f"IEHUB_DAG_RESULT {dag} failed" in text
    assert "held as suspect" in text and "yangpu_projects_20991231.csv" in text
    orchestration.run_dags(settings, ["iehub_warehouse"], log, _env())
    assert core(iehub_home, live)[0][0] == before


def test_each_sources_pool_is_sized_from_its_spec(iehub_home: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`max_parallel_requests` in a spec sets its pool's slots (the default is 2); a bad value is refused."""
    from iehub import assets

    summary = assets.spec_summary()
    assert summary["lingang_platform"]["pool_slots"] == 3
    assert summary["municipal_projects"]["pool_slots"] == assets.DEFAULT_POOL_SLOTS
    specs = tmp_path / "specs"
    specs.mkdir()
    text = (REPO / "connectors/specs/lingang_platform.yaml").read_text(encoding="utf-8")
    (specs / "lingang_platform.yaml").write_text(text.replace("max_parallel_requests: 3", "max_parallel_requests: 5"),
                                                 encoding="utf-8")
    monkeypatch.setenv("IEHUB_SPEC_DIR", str(specs))
    assert assets.spec_summary()["lingang_platform"]["pool_slots"] == 5

    from connectors.spec import load_spec

    (specs / "lingang_platform.yaml").write_text(text.replace("max_parallel_requests: 3", "max_parallel_requests: 0"),
                                                 encoding="utf-8")
    with pytest.raises(Exception, match="max_parallel_requests"):
        load_spec("lingang_platform")
