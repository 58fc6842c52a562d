"""`iehub deploy`: a whole Airflow deployment (scheduler, dag-processor, api-server, two Celery
workers with homes of their own) on the machine's Redis and PostgreSQL, the lake in a loopback S3
server. DAG runs are triggered and watched through the api-server's REST API, as an operator would.
The warehouse it publishes must hold what one machine builds from the same source; with the source
down, the source's DAG run must end failed. Missing Redis or PostgreSQL fails the test, never skips.
"""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from iehub import deploy, pipeline
from iehub.config import Settings
from tests.integration.sql_helpers import fresh_database
from tests.integration.warehouse.test_lake_object_storage import _core, s3_lake  # noqa: F401 - s3_lake is a fixture
from warehouse.build import build

pytestmark = pytest.mark.airflow

SOURCE = "lingang_platform"
RUN_BOUND_SECONDS = 240


def _api(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {"detail": exc.read().decode(errors="replace")[:500]}


def _run(base: str, dag_id: str) -> str:
    """Wait for the DAG to be parsed, unpause it, trigger a run and return the run's final state."""
    deadline = time.monotonic() + 120
    while _api(base, "GET", f"/api/v2/dags/{dag_id}")[0] != 200:
        assert time.monotonic() < deadline, f"{dag_id} was not parsed within 120 s"
        time.sleep(2)
    code, body = _api(base, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    assert code == 200, body
    code, body = _api(base, "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
    assert code == 200, body
    run_id = body["dag_run_id"]
    deadline = time.monotonic() + RUN_BOUND_SECONDS
    while True:
        code, body = _api(base, "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        if code == 200 and body["state"] in ("success", "failed"):
            return body["state"]
        assert time.monotonic() < deadline, f"{dag_id} run {run_id} still {body.get('state')} after {RUN_BOUND_SECONDS} s"
        time.sleep(3)


def _counts(core: dict[str, tuple[int, list[tuple]]]) -> dict[str, int]:
    return {table: count for table, (count, _) in core.items()}


def _published(url: str, into: Path) -> Path:
    """Download the CURRENT snapshot from the bucket; returns the folder holding its warehouse.duckdb."""
    fs, root = pafs.FileSystem.from_uri(url)
    with fs.open_input_stream(f"{root}/CURRENT") as pointer:
        version = pointer.read().decode().strip()
    into.mkdir(parents=True)
    with fs.open_input_stream(f"{root}/{version}/warehouse.duckdb") as src:
        (into / "warehouse.duckdb").write_bytes(src.read())
    return into


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

    # One machine: embedded defaults.
    monkeypatch.delenv("IEHUB_CATALOG_URL", raising=False)
    monkeypatch.delenv("IEHUB_LAKE_URL", raising=False)
    local = Settings.from_env(tmp_path / "one-machine")
    from connectors.spec import load_spec

    for stream in load_spec(SOURCE).streams:
        pipeline.sync_stream(local, SOURCE, stream)
    build(local.home, local.catalog())
    expected = _core(local.home)
    assert sum(n for n, _ in expected.values()) > 100

    home = tmp_path / "deployment"
    published = s3_lake.replace("/hub?", "/published?")
    with fresh_database("postgresql", tmp_path) as metadata_url, fresh_database("postgresql", tmp_path) as catalog_url:
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
            assert _run(dep.api_url, f"iehub_sync_{SOURCE}") == "success"
            assert _run(dep.api_url, "iehub_warehouse") == "success"
            # Row counts per core table. Keys and record hashes of entities several streams describe (organisations,
            # merged by credit code) follow the order batches land, which parallel tasks change from one machine's loop.
            assert _counts(_core(_published(published, tmp_path / "published"))) == _counts(expected)
            # Both workers ran tasks, each in its own home (task logs land under the worker's AIRFLOW_HOME).
            ran = {w: len(list((home / "deploy" / w / "home" / "airflow" / "logs").rglob("*.log")))
                   for w in ("worker-1", "worker-2")}
            assert all(ran.values()), f"task logs per worker: {ran}"

            lingang.stop()
            assert _run(dep.api_url, f"iehub_sync_{SOURCE}") == "failed"
        finally:
            stopped = deploy.down(settings)
        assert set(stopped) == {"scheduler", "dag-processor", "api-server", "worker-1", "worker-2"}
        assert deploy.status(settings)["processes"] == {}
