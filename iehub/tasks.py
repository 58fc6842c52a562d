"""What Airflow tasks call: one iehub function each, returning a small reference, never data."""
from __future__ import annotations

from typing import Any

from iehub.config import Settings


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


def extract(source: str, stream: str, full: bool = False) -> dict[str, Any]:
    from iehub import pipeline

    _use_airflow_connections()
    m = pipeline.extract(Settings.from_env(), source, stream, full=full)
    return {"manifest": m["manifest_path"], "batch_id": m["batch_id"], "rows_in": m["rows_in"]}


def standardise(ref: dict[str, Any]) -> dict[str, Any]:
    from iehub import pipeline

    m = pipeline.standardise(Settings.from_env(), pipeline.read_manifest(ref["manifest"]))
    return {"manifest": m["manifest_path"], "batch_id": m["batch_id"], "rows_mapped": m["rows_mapped"],
            "rows_mapping_rejected": m["rows_mapping_rejected"]}


def validate(ref: dict[str, Any]) -> dict[str, Any]:
    from iehub import pipeline

    m = pipeline.validate(Settings.from_env(), pipeline.read_manifest(ref["manifest"]))
    return {"manifest": m["manifest_path"], "batch_id": m["batch_id"], "rows_loaded": m["rows_loaded"],
            "rows_quarantined": m["rows_quarantined"], "warnings": len(m["quality_warnings"])}


def land(ref: dict[str, Any]) -> dict[str, Any]:
    from iehub import pipeline

    r = pipeline.land(Settings.from_env(), pipeline.read_manifest(ref["manifest"]))
    return {k: r[k] for k in ("batch_id", "entity", "rows_in", "rows_loaded", "rows_quarantined", "std_path")}


def quality_docs() -> dict[str, Any]:
    from quality.docs import build_site

    index = build_site(Settings.from_env().home)
    return {"data_docs": str(index) if index else None}


def build() -> dict[str, Any]:
    from warehouse.build import build as run_build

    from warehouse.publish import current_path

    settings = Settings.from_env().ensure()
    result = run_build(settings.home, settings.catalog())
    return {"warehouse": str(current_path(settings.home)), "snapshot": getattr(result.snapshot, "version", None),
            "last_change_version": result.last_change_version,
            "rows": {name: e.rows for name, e in result.entities.items()}}
