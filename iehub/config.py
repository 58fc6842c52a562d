"""Settings from the environment, with embedded defaults that need no server."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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
