"""Settings from the environment, with embedded defaults that need no server.

The hub's files hold personal data (the lake, catalog, warehouse, feed database, exports), so
everything it writes under IEHUB_HOME is private to its user: :func:`private_files` sets the
process umask to 0o077 (files 0600, folders 0700) and every entry point calls it first (the
CLI, ``Settings.ensure`` and the Airflow tasks). A umask, not a chmod after each write,
because SQLite, DuckDB, pyarrow and GX create files themselves and a file is readable between
its creation and a later chmod.

Many workers share nothing but services (DESIGN.md, Deployment): the lake in object storage
(``IEHUB_LAKE_URL``) and the catalog in PostgreSQL (``IEHUB_CATALOG_URL``). A SQLite catalog is
refused when the lake is remote or Airflow's executor runs tasks on other machines, because each
worker would keep a ledger, cursors and leases of its own that no other worker sees.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

LOCAL_EXECUTORS = {"LocalExecutor", "SequentialExecutor", "DebugExecutor"}  # tasks on this machine only
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
    lake_url: str | None = None          # the lake in object storage; default home/lake (see warehouse.lakestore)
    lake_conn_id: str | None = None      # Airflow connection with the lake's credentials; default AWS env/chain
    publish_url: str | None = None       # where snapshots are also uploaded for other machines (optional)

    @classmethod
    def from_env(cls, home: str | Path | None = None) -> "Settings":
        root = Path(home or os.environ.get("IEHUB_HOME") or "./var").expanduser().resolve()
        return cls(home=root,
                   catalog_url=os.environ.get("IEHUB_CATALOG_URL") or None,
                   airflow_db_url=os.environ.get("IEHUB_AIRFLOW_DB_URL") or None,
                   lake_url=os.environ.get("IEHUB_LAKE_URL") or None,
                   lake_conn_id=os.environ.get("IEHUB_LAKE_CONN_ID") or None,
                   publish_url=os.environ.get("IEHUB_PUBLISH_URL") or None)

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

        self.check_shared_catalog()
        catalog = Catalog.for_home(self.home, self.catalog_url)
        catalog.create_all()
        return catalog

    def check_shared_catalog(self) -> None:
        """Refuse a SQLite catalog where workers share nothing: each would ledger and lease on its own."""
        if self.catalog_url and not self.catalog_url.startswith("sqlite"):
            return
        executor = (os.environ.get("AIRFLOW__CORE__EXECUTOR") or "").rsplit(".", 1)[-1]
        why = ("the lake is in object storage (IEHUB_LAKE_URL)" if self.lake_url else
               f"Airflow's executor is {executor}" if executor and executor not in LOCAL_EXECUTORS else None)
        if why:
            raise RuntimeError(f"the ops catalog is SQLite but {why}, so workers would not share ledger, cursors "
                               "and leases; set IEHUB_CATALOG_URL to a PostgreSQL database all workers reach")

    def lake(self):
        """The lake of this home: local files under home/lake, or the object store of IEHUB_LAKE_URL."""
        from warehouse.layout import Lake

        return Lake(self.home, _lake_store(self.home, self.lake_url, self.lake_conn_id))

    def upload_snapshot(self, version: str | None) -> str | None:
        """Copy a published snapshot to IEHUB_PUBLISH_URL (same credentials as the lake); where it went, or None."""
        if not self.publish_url or not version:
            return None
        from warehouse.publish import upload

        store = _lake_store(self.home, self.publish_url, self.lake_conn_id)
        upload(self.home, version, store)
        return store.where(version)

    def published_source(self):  # -> warehouse.lakestore.LakeStore | None
        """IEHUB_PUBLISH_URL as a store whose downloads wait in this home's snapshot cache, or None."""
        if not self.publish_url:
            return None
        from warehouse.snapshot_follow import cache_dir

        return _lake_store(cache_dir(self.home), self.publish_url, self.lake_conn_id)

    def pull_snapshot(self) -> str | None:
        """Adopt IEHUB_PUBLISH_URL's current snapshot when it is newer than this home's (readers on other
        machines); the version adopted, or None (no URL, nothing uploaded yet, or already current)."""
        store = self.published_source()
        if store is None:
            return None
        from warehouse.snapshot_follow import pull

        return pull(self.home, store)


@functools.lru_cache(maxsize=16)
def _lake_store(home: Path, url: str | None, conn_id: str | None):  # -> warehouse.lakestore.LakeStore
    """One store per (home, URL, connection) in a process: opening an S3 filesystem is not free.

    Credentials: IEHUB_LAKE_CONN_ID names an Airflow connection (login = access key, password =
    secret, host = endpoint); without it pyarrow's default chain (AWS_* variables, profile, role).
    """
    from warehouse.lakestore import LakeStore

    credentials = None
    if url and conn_id:
        from connectors.secrets import connection_fields

        conn = connection_fields(conn_id)
        credentials = {"access_key": conn.get("login", ""), "secret_key": conn.get("password", ""),
                       "endpoint_override": conn.get("host", "")}
    return LakeStore(home, url, credentials=credentials)
