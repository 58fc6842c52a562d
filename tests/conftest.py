"""Shared fixtures: a live Lingang sandbox on loopback and a throwaway IEHUB_HOME."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def iehub_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("IEHUB_HOME", str(home))
    monkeypatch.delenv("IEHUB_CATALOG_URL", raising=False)
    return home


def start_platform(monkeypatch: pytest.MonkeyPatch, **kwargs):
    from sandbox.lingang import LingangPlatform

    client_id, secret = "iehub-test", secrets.token_urlsafe(16)
    platform = LingangPlatform(client_id=client_id, client_secret=secret, **kwargs)
    url = platform.start("127.0.0.1", 0)
    monkeypatch.setenv("IEHUB_LINGANG_BASE_URL", url)
    monkeypatch.setenv("IEHUB_LINGANG_CLIENT_ID", client_id)
    monkeypatch.setenv("IEHUB_LINGANG_CLIENT_SECRET", secret)
    return platform


@pytest.fixture
def lingang(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A small, clean Lingang platform (scale 0.1 ≈ 1,400 records)."""
    platform = start_platform(monkeypatch, seed=11, scale=0.1)
    yield platform
    platform.stop()


def sandbox_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("IEHUB_")}
