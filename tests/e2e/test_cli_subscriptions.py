"""`iehub subscriptions …` and `iehub deliver` as a user runs them, to a real receiver on loopback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.integration.feeds.webhook_receiver import Receiver
from tests.unit.feeds.feed_fixtures import make_feed_home
from warehouse.catalog import Catalog


def iehub(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IEHUB_HOME": str(home), "IEHUB_DELIVERY_BACKOFF": "0.01"}
    return subprocess.run([sys.executable, "-m", "iehub.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env=env)


def test_subscribe_deliver_pause_replay_delete_from_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    make_feed_home(home, catalog)
    catalog.dispose()
    assert iehub(home, "keys", "create", "--consumer", "杨浦区产教融合平台", "--datasets", "project",
                 "--districts", "310110").returncode == 0
    refused = iehub(home, "subscriptions", "create", "--consumer", "杨浦区产教融合平台", "--url", "http://example.org/h")
    assert refused.returncode == 1 and "use https" in refused.stderr and "Traceback" not in refused.stderr
    receiver = Receiver()
    try:
        made = iehub(home, "subscriptions", "create", "--consumer", "杨浦区产教融合平台", "--url", receiver.url,
                     "--from-version", "0", "--batch-size", "4")
        assert made.returncode == 0, made.stderr
        secret = made.stdout.strip()
        assert secret.startswith("whsec_") and "not shown again" in made.stderr
        receiver.secrets.append(secret)
        sub_id = json.loads(iehub(home, "subscriptions", "list", "--json").stdout)[0]["id"]
        delivered = iehub(home, "deliver")
        assert delivered.returncode == 0 and "1 subscription(s)" in delivered.stdout, delivered.stderr
        first = receiver.records()
        assert first[("project", "changes")] and receiver.rejected == 0
        assert {r["district_code"] for r in first[("project", "changes")]} == {"310110"}
        assert iehub(home, "subscriptions", "pause", sub_id).returncode == 0
        assert iehub(home, "subscriptions", "replay", sub_id, "--from-version", "0").returncode == 0
        receiver.clear()
        iehub(home, "deliver")
        assert receiver.messages() == []  # paused: nothing
        assert iehub(home, "subscriptions", "resume", sub_id).returncode == 0
        iehub(home, "deliver", sub_id)
        assert receiver.records() == first  # the replay from 0 holds the same records
        listed = json.loads(iehub(home, "subscriptions", "list", "--json").stdout)[0]
        assert listed["status"] == "active" and listed["acknowledged"]["project.changes"] > 0
        assert "secret" not in json.dumps(listed).lower().replace("previous_secret_valid_until", "")
        assert iehub(home, "subscriptions", "delete", sub_id).returncode == 0
        assert json.loads(iehub(home, "subscriptions", "list", "--json").stdout) == []
    finally:
        receiver.close()
