"""Separate Python environments holding only what an analyst or a consumer would install.

Some promises are about tools other than ours: a published snapshot opens in DuckDB 1.4 LTS,
an export validates with a plain ``pip install frictionless``. Those can only be proved from an
environment that has that tool and nothing of the hub, so a test creates one with ``venv`` +
``pip`` from PyPI, once, and keeps it under ``.venv/side-envs/<name>`` (``make clean`` removes it,
git ignores it). When PyPI cannot be reached the test fails and says which package it needed.
"""
from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".venv" / "side-envs"


def side_env(name: str, requirement: str) -> Path:
    """The python of a cached venv holding only ``requirement`` (created on first use)."""
    home = CACHE / name
    python = home / "bin" / "python"
    ready = home / ".ready"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:  # two test processes: one creates, the other waits
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists() and ready.read_text() == requirement and python.exists():
            return python
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               requirement], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"could not install {requirement!r} into {home} from PyPI (needed to prove compatibility "
                        f"with it): {done.stderr.strip()[-400:]}")
        ready.write_text(requirement)
    return python
