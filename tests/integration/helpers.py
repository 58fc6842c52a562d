"""Reading the warehouse and the sandbox's ground truth side by side."""
from __future__ import annotations

from pathlib import Path

import duckdb

from connectors.spec import load_spec
from warehouse.publish import current_path

SPEC = load_spec("lingang_platform")
STREAM_OF_MODULE = {"notices": "notices", "talent_demands": "talent_demands", "talent_supplies": "talent_supplies",
                    "cooperations": "cooperations", "rd_projects": "rd_projects", "tech_services": "tech_services"}


def key_field(entity: str) -> str:
    from schemas import get_entity

    return [k for k in get_entity(entity).key if not k.startswith("_")][0]


def core_snapshot(home: Path) -> dict[str, list[tuple]]:
    """Every core table, all columns except per-run lineage, sorted: equal snapshots mean equal content."""
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        out = {}
        for stream in SPEC.streams.values():
            cols = [c for (c,) in con.execute(
                "select column_name from duckdb_columns() where schema_name='core' and table_name=? "
                "and column_name not in ('_batch_id', '_extracted_at', 'change_version') order by column_index", [stream.entity]).fetchall()]
            out[stream.entity] = con.execute(
                f"select {', '.join(cols)} from core.{stream.entity} order by all").fetchall()
        return out
    finally:
        con.close()


def core_keys(home: Path, entity: str) -> list[str]:
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        return [k for (k,) in con.execute(f"select {key_field(entity)} from core.{entity}").fetchall()]
    finally:
        con.close()


def quarantined_keys(home: Path, entity: str) -> set[str]:
    files = list((home / "lake" / "quarantine" / entity).rglob("*.parquet"))
    if not files:
        return set()
    con = duckdb.connect()
    return {k for (k,) in con.execute("select distinct _key from read_parquet(?)", [[str(f) for f in files]]).fetchall()}


def ledger_loaded(home: Path) -> dict[str, int]:
    from iehub.config import Settings

    return {r["entity"]: r["rows_loaded"] for r in Settings.from_env(home).catalog().summary()}
