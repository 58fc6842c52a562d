"""`iehub quarantine replay`: run quarantined rows through today's mapping and suite again.

After a spec or mapping fix, rows that now pass land in a new replay batch (rows_in = rows
replayed = loaded + still quarantined, so it reconciles like any batch), and the original
quarantine rows are marked `replayed_in` so they are neither replayed twice nor counted as
open. A row whose key has since landed in a newer version is not replayed (it would overwrite
newer data) and is marked `superseded`. The stream's cursor does not move.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.base import BOOKKEEPING
from connectors.spec import load_spec
from iehub import pipeline
from iehub.config import Settings
from warehouse.landing import ParquetSink

log = logging.getLogger(__name__)
SUPERSEDED = "superseded"


def _stream_for(source: str, entity: str) -> str:
    spec = load_spec(source)
    names = [n for n, s in spec.streams.items() if s.entity == entity]
    if not names:
        raise pipeline.PipelineError(f"source {source} has no stream for entity {entity} any more; "
                                     "cannot replay its quarantine")
    return names[0]


def open_rows(settings: Settings, *, source: str | None = None, entity: str | None = None,
              rule: str | None = None, batch: str | None = None) -> pa.Table:
    """Quarantined rows not yet replayed, from the ledger's quarantine files (never a glob)."""
    batches = [b for b in settings.catalog().landed_batches(entity)
               if b.rows_quarantined and (source is None or b.source == source) and (batch is None or b.batch_id == batch)]
    lake = settings.lake()
    found = [(str(path), b) for b in batches if (path := lake.resolve(b.quarantine_path)).exists()]
    files = [path for path, _ in found]
    if not files:
        return pa.table({"entity": pa.array([], pa.string())})
    seq = pa.table({"path": files, "entity": [b.entity for _, b in found],
                    "landed_seq": [b.landed_seq for _, b in found]})
    con = duckdb.connect()
    try:
        con.register("files", seq)
        where = "WHERE q.replayed_in IS NULL" + (" AND q.rule = ?" if rule else "")
        params: list[Any] = [files] + ([rule] if rule else [])
        return con.sql(f"""SELECT f.entity, f.landed_seq, q.* EXCLUDE (filename)
                           FROM read_parquet(?, union_by_name = true, filename = true) q
                           JOIN files f ON f.path = q.filename {where}
                           ORDER BY f.landed_seq, q._row_index""", params=params).to_arrow_table()
    finally:
        con.close()


def _latest_seq_by_key(settings: Settings, source: str, entity: str, after_seq: int) -> dict[str, int]:
    """key → the newest landed_seq that loaded it, over batches landed after `after_seq`."""
    batches = [b for b in settings.catalog().landed_batches(entity)
               if b.source == source and b.landed_seq > after_seq and b.rows_loaded]
    if not batches:
        return {}
    lake = settings.lake()
    files = pa.table({"path": [str(lake.resolve(b.std_path)) for b in batches],
                      "seq": [b.landed_seq for b in batches]})
    con = duckdb.connect()
    try:
        con.register("files", files)
        rows = con.sql("SELECT s._source_key, max(f.seq) FROM read_parquet(?, filename = true) s "
                       "JOIN files f ON f.path = s.filename GROUP BY 1",
                       params=[files.column("path").to_pylist()]).fetchall()
    finally:
        con.close()
    return {k: seq for k, seq in rows}


def _mark(settings: Settings, key: str, marks: dict[int, str]) -> None:
    """Rewrite one quarantine file (by lake key) atomically with `replayed_in` set on the given row indices."""
    lake = settings.lake()
    path = lake.resolve(key)
    table = pq.read_table(path)
    if "replayed_in" not in table.column_names:
        table = table.append_column("replayed_in", pa.nulls(table.num_rows, pa.string()))
    current = table.column("replayed_in").to_pylist()
    idx = table.column("_row_index").to_pylist()
    updated = [marks.get(i, c) if c is None else c for i, c in zip(idx, current)]
    table = table.set_column(table.column_names.index("replayed_in"), "replayed_in", pa.array(updated, pa.string()))
    table = table.cast(pipeline.QUARANTINE_SCHEMA) if set(table.column_names) == set(pipeline.QUARANTINE_SCHEMA.names) \
        else table
    with ParquetSink(path, table.schema) as sink:
        sink.write(table)
    lake.store.put(key)  # with the lake in object storage: one upload replaces the object whole


def replay(settings: Settings, *, source: str | None = None, entity: str | None = None, rule: str | None = None,
           batch: str | None = None) -> list[dict[str, Any]]:
    rows = open_rows(settings, source=source, entity=entity, rule=rule, batch=batch)
    if rows.num_rows == 0:
        return []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows.to_pylist():
        groups[(r["_source"], r["entity"])].append(r)
    ledger = {b.batch_id: b for b in settings.catalog().landed_batches()}
    results = []
    for (src, ent), items in groups.items():
        stream = _stream_for(src, ent)
        latest = _latest_seq_by_key(settings, src, ent, min(r["landed_seq"] for r in items))
        superseded = [r for r in items if latest.get(r["_key"], -1) > r["landed_seq"]]
        todo = [r for r in items if latest.get(r["_key"], -1) <= r["landed_seq"]]
        origins = sorted({r["_batch_id"] for r in items})
        stamp = datetime.now(timezone.utc)
        batch_id = settings.lake().batch_id(src, ent, f"replay|{','.join(origins)}|{stamp.isoformat()}")
        result: dict[str, Any] = {"source": src, "entity": ent, "batch_id": batch_id, "replayed": len(todo),
                                  "superseded": len(superseded), "rows_loaded": 0, "rows_quarantined": 0}
        if todo:
            result.update(_land_replay(settings, src, stream, ent, batch_id, todo, stamp, origins))
        marks: dict[str, dict[int, str]] = defaultdict(dict)
        for r in todo:
            marks[r["_batch_id"]][r["_row_index"]] = batch_id
        for r in superseded:
            marks[r["_batch_id"]][r["_row_index"]] = SUPERSEDED
        for origin, m in marks.items():
            _mark(settings, ledger[origin].quarantine_path, m)
        log.info("replay %s.%s: %d rows replayed into %s (%d loaded, %d still quarantined), %d superseded",
                 src, ent, len(todo), batch_id, result["rows_loaded"], result["rows_quarantined"], len(superseded))
        results.append(result)
    return results


def _land_replay(settings: Settings, source: str, stream: str, entity: str, batch_id: str,
                 rows: list[dict[str, Any]], stamp: datetime, origins: list[str]) -> dict[str, Any]:
    staging = pipeline._staging_dir(settings, source, stream)
    raw_path = staging / f"{batch_id}.raw.parquet"
    schema = pa.schema([("_page", pa.int32()), ("_row", pa.int32()), ("_extracted_at", pipeline.UTC_TS),
                        *BOOKKEEPING, ("_record", pa.string())])
    n = len(rows)
    with ParquetSink(raw_path, schema) as sink:
        sink.write(pa.table({
            "_page": pa.array([r["_page"] for r in rows], pa.int32()),
            "_row": pa.array([r["_row"] for r in rows], pa.int32()),
            "_extracted_at": pa.array([r["_extracted_at"] for r in rows], pipeline.UTC_TS),
            "_key": pa.array([r["_key"] for r in rows], pa.string()),
            "_cursor": pa.nulls(n, pa.string()), "_digest": pa.nulls(n, pa.string()),
            "_record": pa.array([r["_record"] for r in rows], pa.string()),
        }, schema=schema))
    manifest = {
        "source": source, "stream": stream, "entity": entity, "batch_id": batch_id, "replay": origins,
        "window_start": f"replay:{','.join(origins)}"[:200], "cursor_start": None, "cursor_end": None,
        "rows_in": n, "skipped_unchanged": 0, "pages": 1, "started_at": stamp.isoformat(),
        "extracted_at": stamp.isoformat(), "raw_staging": pipeline._publish_staged(settings, raw_path)[0],
        "boundary": {}, "http": {},
        "manifest_path": f"{pipeline._staging_key(settings, source, stream)}/{batch_id}.manifest.json",
    }
    pipeline._write_manifest(settings, manifest)
    manifest = pipeline.standardise_and_validate(settings, manifest)
    landed = pipeline.land(settings, manifest)
    return {"rows_loaded": landed["rows_loaded"], "rows_quarantined": landed["rows_quarantined"]}

