"""What Airflow tasks call: one iehub function each, returning a small reference, never data.

Every step first takes (or renews) the source's lease in the catalog for its DAG run, so a CLI
sync of the same source, or another run, is refused with one line instead of both writers
tripping over each other's staged files; the run's teardown (`finish`) gives the lease back.
Each step is re-runnable on its own: it reads the manifest its upstream left in staging, and
staged inputs stay until a newer extraction of the stream supersedes them. What a task returns
names the manifest by its lake key (``staging/<source>/<stream>/<batch>.manifest.json``), never a
local path, so the next task may run on another worker (the lake in object storage,
``IEHUB_LAKE_URL``; the catalog in PostgreSQL).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from iehub.config import Settings, private_files

RUN_LEASE_TTL = timedelta(hours=3)  # longer than the DAGs' dagrun_timeout; renewed by every task


def _settings() -> Settings:
    private_files()
    _use_airflow_connections()  # the lake's credentials may come from an Airflow connection too
    return Settings.from_env().ensure()


def _holder():
    from iehub.leases import Holder

    dag, run = os.environ.get("AIRFLOW_CTX_DAG_ID"), os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    return Holder.dag_run(dag, run) if dag and run else Holder.cli()


@contextmanager
def _lease(settings: Settings, source: str) -> Iterator[None]:
    """Hold the source for this DAG run (released by `finish`), or, for a task of a run that has
    finished already (cleared and run again), only while this task runs."""
    from iehub.leases import acquire, release

    holder = _holder()
    rerun_after_finish = acquire(settings.catalog(), source, holder, RUN_LEASE_TTL)
    try:
        yield
    finally:
        if rerun_after_finish:
            release(settings.catalog(), source, holder)


def _use_airflow_connections() -> None:
    """Inside a task, let `{airflow_conn: …}` secrets come from Airflow's connection store."""
    from connectors.secrets import env_connection_lookup, set_connection_lookup

    def lookup(conn_id: str) -> dict[str, str]:
        try:
            from airflow.sdk import Connection
            from airflow.sdk.exceptions import AirflowNotFoundException
        except ImportError:
            return env_connection_lookup(conn_id)
        try:
            conn = Connection.get(conn_id)
        except AirflowNotFoundException:
            return env_connection_lookup(conn_id)
        return {"login": conn.login or "", "password": conn.password or "", "host": conn.host or "",
                "schema": conn.schema or ""}

    set_connection_lookup(lookup)


def nothing_new(settings: Settings, manifest: dict[str, Any]) -> bool:
    """An incremental pass that read no row and would leave the stream's stored state as it is.

    Landing it would add an empty ledger row and wake the warehouse for nothing, so the DAG skips
    the stream's later steps (and its Asset event). A full read is never skipped: an empty full
    read must reach the quality gate, which fails a source that shrank.
    """
    import json

    if manifest["rows_in"] or not manifest.get("window_start"):
        return False
    stored = settings.catalog().get_state(manifest["source"], manifest["entity"]) or {}
    would = {**manifest.get("state_extra", {}), "cursor": manifest["cursor_end"], "boundary": manifest["boundary"]}
    normal = lambda state: json.loads(json.dumps({k: v for k, v in state.items() if k != "batch_id"}, default=str))
    return normal(stored) == normal(would)


def extract(source: str, stream: str, full: bool = False) -> dict[str, Any]:
    from iehub import pipeline

    settings = _settings()
    with _lease(settings, source):
        m = pipeline.extract(settings, source, stream, full=full)
    if not full and nothing_new(settings, m):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"{source}.{stream}: nothing new since cursor {m['cursor_start']} "
                                   f"({m['skipped_unchanged']} unchanged overlap rows); nothing to land")
    return {"manifest": m["manifest_path"], "batch_id": m["batch_id"], "rows_in": m["rows_in"]}


def standardise_and_validate(ref: dict[str, Any]) -> dict[str, Any]:
    from iehub import pipeline

    settings = _settings()
    manifest = pipeline.read_manifest(ref["manifest"], settings)
    with _lease(settings, manifest["source"]):
        m = pipeline.standardise_and_validate(settings, manifest)
    return {"manifest": m["manifest_path"], "batch_id": m["batch_id"], "rows_mapped": m["rows_mapped"],
            "rows_mapping_rejected": m["rows_mapping_rejected"], "rows_loaded": m["rows_loaded"],
            "rows_quarantined": m["rows_quarantined"], "warnings": len(m["quality_warnings"])}


def land(ref: dict[str, Any]) -> dict[str, Any]:
    from iehub import pipeline

    settings = _settings()
    manifest = pipeline.read_manifest(ref["manifest"], settings)
    with _lease(settings, manifest["source"]):
        r = pipeline.land(settings, manifest)
    if held := pipeline.held_message(r):  # landed without the suspect snapshot; the run must say so
        raise pipeline.SnapshotHeld(held)
    return {k: r[k] for k in ("batch_id", "entity", "rows_in", "rows_loaded", "rows_quarantined", "std_path")}


def finish(source: str) -> dict[str, Any]:
    """The run's teardown: give the source's lease back, then rebuild the quality Data Docs."""
    from iehub.leases import release
    from quality.docs import _pending_dir, build_site, docs_dir

    settings = _settings()
    release(settings.catalog(), source, _holder())
    index = docs_dir(settings.home) / "index.html"
    if index.exists() and not any(_pending_dir(settings.home).glob("*/*.json")):
        return {"data_docs": str(index), "rebuilt": False}  # no new results since the last build
    index = build_site(settings.home)
    return {"data_docs": str(index) if index else None, "rebuilt": True}


def build() -> dict[str, Any]:
    from warehouse.build import build as run_build
    from warehouse.publish import current_path

    settings = _settings()
    result = run_build(settings.home, settings.catalog(), lake=settings.lake())
    uploaded = settings.upload_snapshot(getattr(result.snapshot, "version", None))
    from iehub.quality_site import refresh_site

    site = refresh_site(settings.home)  # the report people open follows every build; never fails it
    return {"warehouse": str(current_path(settings.home)), "snapshot": getattr(result.snapshot, "version", None),
            "quality_site": str(site) if site else None, "uploaded_to": uploaded,
            "last_change_version": result.last_change_version,
            "rows": {name: e.rows for name, e in result.entities.items()}}
