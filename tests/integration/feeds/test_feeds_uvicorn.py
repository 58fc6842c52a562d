"""`iehub serve` as a platform meets it: a real uvicorn on a free loopback port, real HTTP."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from feeds.config import FeedConfig
from feeds.keys import KeyStore
from tests.conftest import REPO
from tests.unit.feeds.feed_fixtures import FeedHome

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(home: Path, log_path: Path, *args: str) -> Iterator[str]:
    """`iehub serve` in a subprocess on a free port until the block ends (then Ctrl-C, as an operator would)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IEHUB_")}
    env["IEHUB_HOME"] = str(home)
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "iehub.cli", "serve", "--port", str(port), *args], cwd=REPO,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "iehub serve did not come up in 60 s"
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"iehub serve did not stop within 30 s of Ctrl-C: {log_path.read_text()[-2000:]}")
        finally:
            log.close()


def new_key(home: Path, consumer: str) -> str:
    store = KeyStore(FeedConfig(home).db_url)
    token = store.create(consumer, None, None)[1]
    store.dispose()
    return token


def test_serve_answers_a_whole_pass_over_http(built: FeedHome, tmp_path: Path) -> None:
    token = new_key(built.home, "uvicorn-test")
    with serving(built.home, tmp_path / "serve.log") as base:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        assert session.get(f"{base}/v1/feeds", timeout=10).json()["consumer"] == "uvicorn-test"
        url, versions = f"{base}/v1/feeds/project?limit=8", []
        while url:
            r = session.get(url, timeout=10)
            assert r.status_code == 200, r.text
            versions += [rec["change_version"] for rec in r.json()["records"]]
            url = r.links.get("next", {}).get("url", "")  # the Link header, as a generic client follows it
        assert versions == sorted(set(versions)) and len(versions) > 8
        parquet = session.get(f"{base}/v1/feeds/project?limit=5", headers={"Accept": "application/vnd.apache.parquet"},
                              timeout=10)
        assert pq.read_table(io.BytesIO(parquet.content)).num_rows == 5
        assert int(parquet.headers["content-length"]) == len(parquet.content)
        assert requests.get(f"{base}/v1/feeds", timeout=10).status_code == 401
        assert requests.get(f"{base}/openapi.json", timeout=10).json()["info"]["title"] == "iehub feed API"
    output = (tmp_path / "serve.log").read_text()
    assert token.split(".")[1] not in output  # keys never reach the log
    assert "GET /v1/feeds/project" in output  # the access log is on


def test_worker_processes_share_the_rate_limit_and_one_audit_chain(built: FeedHome, tmp_path: Path) -> None:
    """--workers 2: new connections land on either worker; the key's burst is still the key's, not each worker's."""
    from feeds.audit import AuditLog

    token = new_key(built.home, "two-workers")
    log_path = tmp_path / "serve.log"
    with serving(built.home, log_path, "--workers", "2", "--rate", "0.01", "--burst", "10") as base:
        statuses = []
        for _ in range(40):  # a fresh connection each time, so the kernel hands them to both workers
            r = requests.get(f"{base}/v1/feeds/project?limit=2", headers={"Authorization": f"Bearer {token}",
                                                                         "Connection": "close"}, timeout=10)
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1
    assert statuses.count(200) == 10 and statuses.count(429) == 30, statuses
    assert log_path.read_text().count("Started server process") == 2  # there were two workers to share it
    audit = AuditLog(FeedConfig(built.home).db_url)
    report = audit.verify()
    with audit.engine.connect() as conn:
        ours = conn.exec_driver_sql("SELECT count(*) FROM feed_audit WHERE consumer = 'two-workers'").scalar()
    audit.dispose()
    assert report.ok and ours == 10  # one row per page served, in one chain across both workers


def test_serve_help_says_what_it_does() -> None:
    from click.testing import CliRunner

    from iehub.cli import main

    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0 and "--host" in result.output and "--port" in result.output
    assert "--workers" in result.output
    assert "feed API" in result.output
