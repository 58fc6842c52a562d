"""Sandbox systems that are databases: SQLite under IEHUB_HOME by default, a server by URL.

`iehub sandbox seed NAME [--url]` creates one afresh; starting it (demo, `sandbox serve`) seeds
the embedded file only when it does not already hold this (seed, scale), so a rerun of the demo
syncs incrementally and changes nothing.
"""
from __future__ import annotations

import importlib
from typing import Any

from iehub.config import Settings
from iehub.sandboxes import StartedSandbox


class DatabaseSandbox:
    """One simulated database: its sandbox module offers seed(url, …), mutate(url, …) and read_meta(engine)."""

    def __init__(self, name: str, description: str, module: str, url_env: str, file_name: str) -> None:
        self.name, self.description = name, description
        self.module, self.url_env, self.file_name = module, url_env, file_name

    def default_url(self, settings: Settings) -> str:
        """The embedded database; the source spec's default_url points at the same file."""
        return f"sqlite:///{settings.home / 'sandbox' / self.file_name}"

    def _url(self, settings: Settings, url: str | None, env: dict[str, str] | None = None) -> str:
        url = url or (env or {}).get(self.url_env) or self.default_url(settings)
        if url.startswith("sqlite:///"):
            (settings.home / "sandbox").mkdir(parents=True, exist_ok=True)
        return url

    def seed(self, settings: Settings, *, scale: float, seed: int, url: str | None = None) -> dict[str, Any]:
        """Create the database afresh for (seed, scale): rows per table and the URL `iehub sync` reads."""
        url = self._url(settings, url)
        rows = importlib.import_module(self.module).seed(url, scale=scale, seed=seed)
        return {"rows": rows, "env": {self.url_env: url}}

    def start(self, settings: Settings, *, scale: float, seed: int, host: str = "127.0.0.1", port: int = 0,
              faults: str = "") -> StartedSandbox:
        from sqlalchemy import create_engine

        url = self._url(settings, None)
        engine = create_engine(url)
        try:
            meta = importlib.import_module(self.module).read_meta(engine)
        finally:
            engine.dispose()
        if meta.get("seed") != str(seed) or meta.get("scale") != str(scale):
            self.seed(settings, scale=scale, seed=seed, url=url)
        return StartedSandbox(env={self.url_env: url}, description=f"{self.description} at {url}")

    def mutate(self, settings: Settings, *, changed: float, seed: int | None, env: dict[str, str]) -> dict[str, Any]:
        return importlib.import_module(self.module).mutate(self._url(settings, None, env), changed=changed, seed=seed)
