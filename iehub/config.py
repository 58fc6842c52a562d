"""Settings from the environment, with embedded defaults that need no server.

The hub's files hold personal data (the lake, catalog, warehouse, feed database, exports), so
everything it writes under IEHUB_HOME is private to its user: :func:`private_files` sets the
process umask to 0o077 (files 0600, folders 0700) and every entry point calls it first (the
CLI, ``Settings.ensure`` and the Airflow tasks). A umask, not a chmod after each write,
because SQLite, DuckDB, pyarrow and GX create files themselves and a file is readable between
its creation and a later chmod.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PRIVATE_UMASK = 0o077  # no group or world bits on anything the hub creates


def private_files() -> int:
    """Make every file and folder this process creates private to its user; returns the old umask.

    Keeps any stricter bits the caller had already set. Call it at each entry point before
    anything is written (the CLI does at start, ``Settings.ensure`` and the Airflow tasks too).
    """
    old = os.umask(PRIVATE_UMASK)
    os.umask(old | PRIVATE_UMASK)
    return old


@dataclass(frozen=True)
class Settings:
    """Where iehub keeps things. Everything lives under `home` unless a URL says otherwise."""

    home: Path
    catalog_url: str | None = None       # ledger + sync state; default SQLite under home
    airflow_db_url: str | None = None    # Airflow metadata; default SQLite under home/airflow

    @classmethod
    def from_env(cls, home: str | Path | None = None) -> "Settings":
        root = Path(home or os.environ.get("IEHUB_HOME") or "./var").expanduser().resolve()
        return cls(home=root,
                   catalog_url=os.environ.get("IEHUB_CATALOG_URL") or None,
                   airflow_db_url=os.environ.get("IEHUB_AIRFLOW_DB_URL") or None)

    @property
    def staging(self) -> Path:
        return self.home / "staging"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def ensure(self) -> "Settings":
        private_files()
        for path in (self.home, self.staging, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        return self

    def catalog(self):  # -> warehouse.catalog.Catalog (imported lazily: the CLI must start fast)
        from warehouse.catalog import Catalog

        catalog = Catalog.for_home(self.home, self.catalog_url)
        catalog.create_all()
        return catalog

    def lake(self):
        from warehouse.layout import Lake

        return Lake(self.home)
