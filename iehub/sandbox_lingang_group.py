"""The Lingang Group industry system sandbox (SQLite under IEHUB_HOME, or MariaDB/MySQL by URL)."""
from __future__ import annotations

from typing import Any

from iehub.config import Settings
from iehub.sandboxes import StartedSandbox

URL_ENV = "IEHUB_LINGANG_GROUP_DB_URL"


def default_url(settings: Settings) -> str:
    """The embedded database; the spec's default_url points at the same file."""
    return f"sqlite:///{settings.home / 'sandbox' / 'lingang_group.sqlite'}"


class LingangGroupSandbox:
    name = "lingang_group"
    description = "临港集团产业信息系统 (MariaDB/MySQL tables in the group's own naming)"

    def _url(self, settings: Settings, url: str | None, env: dict[str, str] | None = None) -> str:
        url = url or (env or {}).get(URL_ENV) or default_url(settings)
        if url.startswith("sqlite:///"):
            (settings.home / "sandbox").mkdir(parents=True, exist_ok=True)
        return url

    def seed(self, settings: Settings, *, scale: float, seed: int, url: str | None = None) -> dict[str, Any]:
        from sandbox.lingang_group import seed as seed_database

        url = self._url(settings, url)
        return {"rows": seed_database(url, scale=scale, seed=seed), "env": {URL_ENV: url}}

    def start(self, settings: Settings, *, scale: float, seed: int, host: str = "127.0.0.1", port: int = 0,
              faults: str = "") -> StartedSandbox:
        """Seed the embedded database unless it already holds this (seed, scale)."""
        from sqlalchemy import create_engine

        from sandbox.lingang_group import read_meta

        url = self._url(settings, None)
        engine = create_engine(url)
        try:
            meta = read_meta(engine)
        finally:
            engine.dispose()
        if meta.get("seed") != str(seed) or meta.get("scale") != str(scale):
            self.seed(settings, scale=scale, seed=seed, url=url)
        return StartedSandbox(env={URL_ENV: url}, description=f"Lingang Group industry database at {url}")

    def mutate(self, settings: Settings, *, changed: float, seed: int | None, env: dict[str, str]) -> dict[str, Any]:
        from sandbox.lingang_group import mutate

        return mutate(self._url(settings, None, env), changed=changed, seed=seed)


SYSTEM = LingangGroupSandbox()
