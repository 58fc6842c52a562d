"""The serve part of `iehub demo`: a demo key printed once on its own line, example curls, a live API."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO
from tests.integration.feeds.test_feeds_uvicorn import free_port
from tests.unit.feeds.feed_fixtures import FeedHome

pytestmark = pytest.mark.integration

SCRIPT = """
import sys
from rich.console import Console
from iehub.config import Settings
from iehub.demo import serve_feeds
serve_feeds(Settings.from_env(), console=Console(width=200), port=int(sys.argv[1]))
"""


def test_demo_serves_with_a_fresh_demo_key(built: FeedHome, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IEHUB_")}
    env["IEHUB_HOME"] = str(built.home)
    out_path = tmp_path / "demo.out"
    with out_path.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(port)], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            key = None
            while key is None:
                assert proc.poll() is None and time.monotonic() < deadline, out_path.read_text()
                found = re.findall(r"^(iehub_[0-9a-f]{16}\.[A-Za-z0-9_-]+)$", out_path.read_text(), re.MULTILINE)
                key = found[0] if found else None
                time.sleep(0.2)
            base = f"http://127.0.0.1:{port}"
            while True:
                try:
                    r = requests.get(f"{base}/v1/feeds", headers={"Authorization": f"Bearer {key}"}, timeout=5)
                    break
                except requests.ConnectionError:
                    assert time.monotonic() < deadline, out_path.read_text()
                    time.sleep(0.2)
            assert r.status_code == 200 and r.json()["consumer"] == "demo"
            masked = requests.get(f"{base}/v1/feeds/trainee?limit=1", headers={"Authorization": f"Bearer {key}"},
                                  timeout=5).json()["records"][0]
            assert masked["name"].endswith("*")  # the demo key is not granted personal data
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    text = out_path.read_text()
    assert text.count(key) == 1  # printed once, on its own line
    assert f"curl -H \"Authorization: Bearer $IEHUB_KEY\" {base}/v1/feeds" in text
