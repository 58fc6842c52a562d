"""The municipal project database sandbox (SQLite under IEHUB_HOME, or PostgreSQL by URL)."""
from __future__ import annotations

from typing import Any

from iehub.config import Settings
from iehub.sandboxes import StartedSandbox

URL_ENV = "IEHUB_MUNICIPAL_DB_URL"


def default_url(settings: Settings) -> str:
    """Where the embedded database lives; the spec's default_url points at the same file."""
    return f"sqlite:///{settings.home / 'sandbox' / 'municipal.sqlite'}"


class MunicipalSandbox:
    name = "municipal"
    description = "市级产教融合协同育人项目信息库 (relational database)"

    def _url(self, settings: Settings, url: str | None, env: dict[str, str] | None = None) -> str:
        url = url or (env or {}).get(URL_ENV) or default_url(settings)
        if url.startswith("sqlite:///"):
            (settings.home / "sandbox").mkdir(parents=True, exist_ok=True)
        return url

    def seed(self, settings: Settings, *, scale: float, seed: int, url: str | None = None) -> dict[str, Any]:
        """Create the database afresh for (seed, scale); returns rows per table and the URL to sync from."""
        from sandbox.municipal import seed as seed_database

        url = self._url(settings, url)
        rows = seed_database(url, scale=scale, seed=seed)
        return {"rows": rows, "env": {URL_ENV: url}}

    def start(self, settings: Settings, *, scale: float, seed: int, host: str = "127.0.0.1", port: int = 0,
              faults: str = "") -> StartedSandbox:
        """Seed the embedded database unless it already holds this (seed, scale): a rerun changes nothing."""
        from sqlalchemy import create_engine

        from sandbox.municipal import read_meta

        url = self._url(settings, None)
        engine = create_engine(url)
        try:
            meta = read_meta(engine)
        finally:
            engine.dispose()
        if meta.get("seed") != str(seed) or meta.get("scale") != str(scale):
            self.seed(settings, scale=scale, seed=seed, url=url)
        return StartedSandbox(env={URL_ENV: url}, description=f"municipal project database at {url}")

    def mutate(self, settings: Settings, *, changed: float, seed: int | None, env: dict[str, str]) -> dict[str, Any]:
        from sandbox.municipal import mutate

        return mutate(self._url(settings, None, env), changed=changed, seed=seed)


SYSTEM = MunicipalSandbox()
