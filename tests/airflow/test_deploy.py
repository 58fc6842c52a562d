"""`iehub deploy`: a whole Airflow deployment (scheduler, dag-processor, api-server, two Celery
workers with homes of their own) on the machine's Redis and PostgreSQL, the lake in a loopback S3
server. Every source DAG and the warehouse DAG are triggered and watched through the api-server's
REST API, as an operator would. The sources are external systems as in production: the Lingang
platform and the 嘉定 API over HTTP, the municipal database on PostgreSQL, 临港集团 on MariaDB, the
杨浦/闵行 drop folders on a share. A reader that shares only the bucket with the deployment pulls the
published snapshot; its `iehub status` and its feed API must show what one machine builds from the
same sources (row counts and record hashes). With the source down, the source's DAG run must end
failed. Missing Redis, PostgreSQL or MariaDB fails the test, never skips.
"""
from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.spec import available_sources, load_spec
from feeds.app import create_app
from feeds.config import FeedConfig
from feeds.keys import KeyStore
from iehub import deploy, pipeline
from iehub.cli import status_table
from iehub.config import Settings
from tests.integration.sql_helpers import fresh_database
from tests.integration.warehouse.test_lake_object_storage import _core, s3_lake  # noqa: F401 - s3_lake is a fixture
from warehouse.build import build
from warehouse.publish import current_path

pytestmark = pytest.mark.airflow

DOWN_SOURCE = "lingang_platform"
RUN_BOUND_SECONDS = 900  # six source DAGs at once on two workers of a 2-core machine


def _api(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {"detail": exc.read().decode(errors="replace")[:500]}


def _trigger(base: str, dag_id: str) -> str:
    """Wait for the DAG to be parsed, unpause it, trigger a run; returns the run id."""
    deadline = time.monotonic() + 180
    while _api(base, "GET", f"/api/v2/dags/{dag_id}")[0] != 200:
        assert time.monotonic() < deadline, f"{dag_id} was not parsed within 180 s"
        time.sleep(2)
    code, body = _api(base, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    assert code == 200, body
    code, body = _api(base, "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
    assert code == 200, body
    return body["dag_run_id"]


def _wait(base: str, runs: dict[str, str]) -> dict[str, str]:
    """Final state of each {dag_id: run_id}, polled together."""
    states: dict[str, str] = {}
    deadline = time.monotonic() + RUN_BOUND_SECONDS
    while len(states) < len(runs):
        for dag_id, run_id in runs.items():
            if dag_id not in states:
                code, body = _api(base, "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
                if code == 200 and body["state"] in ("success", "failed"):
                    states[dag_id] = body["state"]
        pending = sorted(set(runs) - set(states))
        assert time.monotonic() < deadline, f"still running after {RUN_BOUND_SECONDS} s: {pending}"
        if pending:
            time.sleep(3)
    return states


def _run(base: str, dag_id: str) -> str:
    return _wait(base, {dag_id: _trigger(base, dag_id)})[dag_id]


def _status(settings: Settings) -> list[tuple[str, ...]]:
    """`iehub status` rows without the time of the last batch (it differs between the two runs)."""
    table = status_table(settings)
    columns = [list(c.cells) for c in table.columns]
    keep = [i for i, c in enumerate(table.columns) if c.header != "last batch (UTC)"]
    return sorted(tuple(str(columns[i][r]) for i in keep) for r in range(table.row_count))


def _served(home: Path) -> dict[str, list[tuple[Any, Any]]]:
    """Every record of every dataset the feed API serves from ``home`` (one full pass each):
    sorted (_source_key, _record_hash). Both homes use the same IEHUB_FEED_SECRET, so the keyed
    values a consumer sees are comparable; change versions are not (they follow landing order)."""
    config = FeedConfig(home, rate=10_000.0, burst=10_000)
    store = KeyStore(config.db_url, cache_seconds=0)
    token = store.create("deployment-check", None, None)[1]
    out: dict[str, list[tuple[Any, Any]]] = {}
    try:
        with TestClient(create_app(config, keys=store), raise_server_exceptions=False) as client:
            auth = {"Authorization": f"Bearer {token}"}
            catalogue = client.get("/v1/feeds", headers=auth)
            assert catalogue.status_code == 200, catalogue.text
            for dataset in [d["identifier"] for d in catalogue.json()["datasets"]]:
                rows: list[tuple[Any, Any]] = []
                url = f"/v1/feeds/{dataset}?limit=1000"
                while url:
                    page = client.get(url, headers=auth)
                    assert page.status_code == 200, (dataset, page.text[:300])
                    body = page.json()
                    rows += [(r.get("_source_key"), r.get("_record_hash")) for r in body["records"]]
                    url = f"/v1/feeds/{dataset}?cursor={body['next_cursor']}&limit=1000" if body["next_cursor"] else ""
                out[dataset] = sorted(rows, key=repr)
    finally:
        store.dispose()
    return out


def _start_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str, mariadb_url: str) -> list[Any]:
    """Seed the databases and start the districts' API and drop folders; their environment goes to every worker."""
    from iehub.sandbox_districts import SYSTEM as districts
    from iehub.sandbox_lingang_group import SYSTEM as lingang_group
    from iehub.sandbox_municipal import SYSTEM as municipal

    sources = Settings(home=tmp_path / "source-systems").ensure()
    for system, url in ((municipal, pg_url), (lingang_group, mariadb_url)):
        for name, value in system.seed(sources, scale=0.05, seed=3, url=url)["env"].items():
            monkeypatch.setenv(name, value)
    started = districts.start(sources, scale=0.05, seed=3)
    for name, value in started.env.items():
        monkeypatch.setenv(name, value)
    # The drops were just written: a file counts as complete once unchanged for its spec's
    # settle_seconds, so age them as a district's overnight drop would be (else the one-machine
    # run, which starts at once, skips them while the deployment, minutes later, loads them).
    an_hour_ago = time.time() - 3600
    for path in Path(started.env["IEHUB_YANGPU_DROP"]).parent.rglob("*"):
        if path.is_file():
            os.utime(path, (an_hour_ago, an_hour_ago))
    return [started]


def test_deployment_with_two_celery_workers_builds_what_one_machine_builds(
        s3_lake: str, lingang, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    try:
        import airflow.providers.celery  # noqa: F401
    except ImportError:
        pytest.fail("the Celery provider is not installed; run pip install -e '.[dev]' (it includes '.[celery]')")
    try:
        deploy.check_redis(deploy.DEFAULT_BROKER)
    except deploy.DeployError as exc:
        pytest.fail(str(exc))
    monkeypatch.setenv("IEHUB_FEED_SECRET", "deployment-test-feed-secret-0123456789")
    sources = available_sources()
    assert len(sources) >= 6, sources

    with fresh_database("postgresql", tmp_path) as municipal_url, fresh_database("mariadb", tmp_path) as group_url:
        started = _start_sources(tmp_path, monkeypatch, municipal_url, group_url)
        try:
            # One machine: embedded defaults (local lake, SQLite catalog), every stream of every source in turn.
            monkeypatch.delenv("IEHUB_CATALOG_URL", raising=False)
            monkeypatch.delenv("IEHUB_LAKE_URL", raising=False)
            local = Settings.from_env(tmp_path / "one-machine")
            for source in sources:
                for stream in load_spec(source).streams:
                    pipeline.sync_stream(local, source, stream)
            build(local.home, local.catalog())
            expected = _core(local.home)
            loaded: dict[str, int] = {}
            for row in _status(local):  # (source, entity, batches, status, loaded, quarantined, core rows)
                loaded[row[0]] = loaded.get(row[0], 0) + int(row[4])
            assert set(loaded) == set(sources) and all(loaded.values()), f"rows loaded per source: {loaded}"

            home = tmp_path / "deployment"
            published = s3_lake.replace("/hub?", "/published?")
            with fresh_database("postgresql", tmp_path) as metadata_url, \
                    fresh_database("postgresql", tmp_path) as catalog_url:
                for name, value in {"IEHUB_HOME": str(home), "IEHUB_AIRFLOW_DB_URL": metadata_url,
                                    "IEHUB_CATALOG_URL": catalog_url, "IEHUB_LAKE_URL": s3_lake,
                                    "IEHUB_PUBLISH_URL": published}.items():
                    monkeypatch.setenv(name, value)
                settings = Settings.from_env()
                try:
                    with __import__("socket").socket() as sock:
                        sock.bind(("127.0.0.1", 0))
                        port = sock.getsockname()[1]
                    dep = deploy.up(settings, workers=2, executor="celery", port=port)
                    assert deploy.status(settings)["api_healthy"] is True
                    runs = {f"iehub_sync_{s}": _trigger(dep.api_url, f"iehub_sync_{s}") for s in sources}
                    assert _wait(dep.api_url, runs) == {dag: "success" for dag in runs}
                    assert _run(dep.api_url, "iehub_warehouse") == "success"

                    # A reader that shares only the bucket (and the catalog, for `iehub status`) with the deployment.
                    reader = Settings(home=tmp_path / "reader", catalog_url=catalog_url, publish_url=published).ensure()
                    assert reader.pull_snapshot() is not None
                    assert _core(current_path(reader.home)) == expected  # row counts, source keys, record hashes
                    assert _status(reader) == _status(local)
                    assert _served(reader.home) == _served(local.home)

                    # Both workers ran tasks, each in its own home (task logs land under the worker's AIRFLOW_HOME).
                    ran = {w: len(list((home / "deploy" / w / "home" / "airflow" / "logs").rglob("*.log")))
                           for w in ("worker-1", "worker-2")}
                    assert all(ran.values()), f"task logs per worker: {ran}"

                    lingang.stop()
                    assert _run(dep.api_url, f"iehub_sync_{DOWN_SOURCE}") == "failed"
                finally:
                    stopped = deploy.down(settings)
                assert set(stopped) == {"scheduler", "dag-processor", "api-server", "worker-1", "worker-2"}
                assert deploy.status(settings)["processes"] == {}
        finally:
            for system in started:
                system.stop()


def test_single_machine_deployment_with_the_local_executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's single-machine deployment: LocalExecutor, PostgreSQL metadata and catalog, the lake on local disk."""
    from iehub.sandbox_municipal import SYSTEM as municipal

    home = tmp_path / "deployment"
    monkeypatch.delenv("IEHUB_LAKE_URL", raising=False)
    monkeypatch.delenv("IEHUB_PUBLISH_URL", raising=False)
    with fresh_database("postgresql", tmp_path) as metadata_url, fresh_database("postgresql", tmp_path) as catalog_url:
        for name, value in {"IEHUB_HOME": str(home), "IEHUB_AIRFLOW_DB_URL": metadata_url,
                            "IEHUB_CATALOG_URL": catalog_url}.items():
            monkeypatch.setenv(name, value)
        settings = Settings.from_env()
        for name, value in municipal.start(settings, scale=0.05, seed=3).env.items():
            monkeypatch.setenv(name, value)
        try:
            with __import__("socket").socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            dep = deploy.up(settings, workers=2, executor="local", port=port)
            assert dep.executor == "local"
            assert set(deploy.status(settings)["processes"]) == {"scheduler", "dag-processor", "api-server"}
            assert _run(dep.api_url, "iehub_sync_municipal_projects") == "success"
            assert _run(dep.api_url, "iehub_warehouse") == "success"
            rows = {r[1]: r for r in _status(settings) if r[0] == "municipal_projects"}
            assert set(rows) == {"organization", "project", "project_participant", "project_report", "training_base",
                                 "teacher"}
            assert int(rows["project"][-1]) >= 240  # core rows of the published warehouse, as `iehub status` shows
        finally:
            stopped = deploy.down(settings)
        assert set(stopped) == {"scheduler", "dag-processor", "api-server"}
