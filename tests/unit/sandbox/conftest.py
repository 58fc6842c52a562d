"""Fixtures for the Lingang sandbox tests: real servers on loopback, stopped after each test."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # the repo is not installed into the venv; tests run from anywhere
    sys.path.insert(0, str(ROOT))

from sandbox.lingang import LingangPlatform  # noqa: E402

CLIENT_ID = "iehub-test"
CLIENT_SECRET = "not-a-real-secret"


@pytest.fixture
def make_platform() -> Iterator[Callable[..., tuple[LingangPlatform, str]]]:
    """Factory: ``make_platform(**kwargs) -> (platform, base_url)``; every platform is stopped afterwards."""
    started: list[LingangPlatform] = []

    def make(**kwargs: Any) -> tuple[LingangPlatform, str]:
        kwargs.setdefault("scale", 0.05)
        kwargs.setdefault("client_id", CLIENT_ID)
        kwargs.setdefault("client_secret", CLIENT_SECRET)
        p = LingangPlatform(**kwargs)
        base = p.start()
        started.append(p)
        return p, base

    yield make
    for p in started:
        p.stop()


def get_token(session: requests.Session, base: str, *, as_json: bool = False) -> str:
    """A token, retrying the 5xx/429 a fault plan may put on the token endpoint (at most 2 in a row)."""
    body = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    for _ in range(3):
        if as_json:
            r = session.post(f"{base}/api/v1/auth/token", json=body, timeout=5)
        else:
            r = session.post(f"{base}/api/v1/auth/token", data=body, timeout=5)
        if r.status_code < 500 and r.status_code != 429:
            break
    assert r.status_code == 200, r.text
    assert r.json()["code"] == 0, r.text
    return str(r.json()["data"]["accessToken"])


@pytest.fixture
def session() -> Iterator[requests.Session]:
    s = requests.Session()
    yield s
    s.close()
