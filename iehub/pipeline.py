"""One source's pipeline: extract → standardise → land, as three resumable steps.

Each step reads and writes files under IEHUB_HOME and returns a small manifest (a dict of
paths and counts), so Airflow tasks can run them one by one and pass references, never data,
and the CLI can chain them without a scheduler. Nothing reaches the lake or moves a cursor
until `land` commits the files and the ledger row in one step.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.base import CURSOR, DIGEST, KEY, open_stream, stream_class
from connectors.spec import SourceSpec, load_spec
from iehub.config import Settings
from schemas import get_entity
from schemas.lineage import add_lineage
from schemas.mapping import apply_mapping, mapping_sources, parse_mapping
from warehouse.catalog import BatchRecord
from warehouse.landing import ParquetSink

log = logging.getLogger(__name__)

UTC_TS = pa.timestamp("us", tz="UTC")
QUARANTINE_SCHEMA = pa.schema([
    ("_source", pa.string()), ("_batch_id", pa.string()), ("_extracted_at", UTC_TS),
    ("_page", pa.int32()), ("_row", pa.int32()), ("_row_index", pa.int64()), ("_key", pa.string()),
    ("field", pa.string()), ("rule", pa.string()), ("reason", pa.string()), ("_record", pa.string()),
])
STANDARDISE_CHUNK_ROWS = 50_000

ProgressFn = Callable[[int, int | None], None]  # (rows so far, total or None)


class PipelineError(RuntimeError):
    """A step failed; the message names source, stream, batch and what to do."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Boundary:
    """Keys and digests of the rows inside the overlap window behind the newest cursor.

    The next pass re-reads that window; a row that comes back with the same digest was already
    landed and is dropped, so re-running a sync adds nothing when nothing changed.
    """

    fmt: str
    overlap: int
    rows: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (cursor, digest)
    newest: str | None = None

    def add(self, key: str, cursor: str, digest: str) -> None:
        self.rows[key] = (cursor, digest)
        if self.newest is None or cursor > self.newest:
            self.newest = cursor

    def prune(self) -> None:
        if self.newest is None:
            return
        try:
            floor = (datetime.strptime(self.newest, self.fmt) - timedelta(seconds=self.overlap)).strftime(self.fmt)
        except ValueError:
            return
        self.rows = {k: v for k, v in self.rows.items() if v[0] >= floor}


def _staging_dir(settings: Settings, source: str, stream: str) -> Path:
    path = settings.staging / source / stream
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clear_stale_staging(staging: Path, batch_id: str) -> None:
    """Drop what a killed run of this stream left behind.

    The cursor moves only when a batch lands, so staged files of any other batch id, and any
    half-written temp file, can only be leftovers of an interrupted pass; this pass re-reads
    their rows. (One run per stream at a time: the DAGs set max_active_runs=1.)
    """
    for path in staging.iterdir():
        if path.is_file() and (not path.name.startswith(batch_id) or path.name.endswith(".tmp")):
            log.info("removing stale staged file %s", path.name)
            path.unlink(missing_ok=True)


def _write_manifest(manifest: dict[str, Any]) -> None:
    path = Path(manifest["manifest_path"])
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_manifest(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def live_keys(settings: Settings, source: str, entity: str) -> pa.Array:
    """The source keys the hub holds live for (source, entity): latest landed version not deleted.

    Read from the ledger's std files (never the lake by glob), so streams can diff keys without
    knowing the lake, and without the warehouse being built.
    """
    import duckdb

    batches = [b for b in settings.catalog().landed_batches(entity) if b.source == source and b.rows_loaded]
    if not batches:
        return pa.array([], pa.string())
    files = pa.table({"path": [str(settings.home / b.std_path) for b in batches],
                      "seq": pa.array([b.landed_seq for b in batches], pa.int64())})
    con = duckdb.connect()
    try:
        con.register("files", files)
        result = con.sql("""
            SELECT _source_key FROM (
              SELECT r._source_key, r._is_deleted, row_number() OVER (
                PARTITION BY r._source_key ORDER BY f.seq DESC, r.file_row_number DESC) AS rn
              FROM read_parquet(?, filename = true, file_row_number = true) r
              JOIN files f ON f.path = r.filename)
            WHERE rn = 1 AND NOT _is_deleted""", params=[files.column("path").to_pylist()]).to_arrow_table()
    finally:
        con.close()
    return result.column(0).combine_chunks()


# ---------------------------------------------------------------------------------- extract
def _drop_unchanged(table: pa.Table, cursor: str | None, old_boundary: dict[str, list[str]]) -> tuple[pa.Table, int]:
    """Drop rows of the overlap window that were landed before with the same digest."""
    if cursor is None or not old_boundary or table.num_rows == 0:
        return table, 0
    in_overlap = pc.fill_null(pc.less_equal(table.column(CURSOR), cursor), False)
    candidates = pc.indices_nonzero(in_overlap).to_pylist()
    if not candidates:
        return table, 0
    keys = table.column(KEY).take(candidates).to_pylist()
    digests = table.column(DIGEST).take(candidates).to_pylist()
    drop = [i for i, k, d in zip(candidates, keys, digests) if k in old_boundary and old_boundary[k][1] == d]
    if not drop:
        return table, 0
    mask = pc.invert(pc.is_in(pa.array(range(table.num_rows)), pa.array(drop)))
    return table.filter(mask), len(drop)


def _remember_boundary(table: pa.Table, boundary: _Boundary, floor: str | None) -> None:
    """Keep key → (cursor, digest) of the rows inside the overlap window behind the newest cursor."""
    if floor is None:
        return
    near = pc.fill_null(pc.greater_equal(table.column(CURSOR), floor), False)
    idx = pc.indices_nonzero(near)
    if len(idx) == 0:
        return
    for key, cur, digest in zip(table.column(KEY).take(idx).to_pylist(), table.column(CURSOR).take(idx).to_pylist(),
                                table.column(DIGEST).take(idx).to_pylist()):
        if key is not None:
            boundary.add(key, cur, digest)


def extract(settings: Settings, source: str, stream: str, *, full: bool = False,
            spec: SourceSpec | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Pull one stream into a staged raw Parquet file; returns the manifest."""
    settings.ensure()
    spec = spec or load_spec(source)
    if stream not in spec.streams:
        raise PipelineError(f"source {source} has no stream '{stream}' (streams: {', '.join(spec.streams)})")
    entity = spec.streams[stream].entity
    state = None if full else settings.catalog().get_state(source, entity)
    cursor = (state or {}).get("cursor")
    old_boundary: dict[str, list[str]] = (state or {}).get("boundary", {})
    reader = open_stream(spec, stream)
    staging = _staging_dir(settings, source, stream)
    reader.prepare(state=state, work_dir=staging, known_keys=lambda: live_keys(settings, source, entity))
    since = reader.start_anchor(cursor)
    boundary = _Boundary(reader.cursor_format or "", reader.overlap_seconds)
    batch_id = settings.lake().batch_id(source, entity, f"{stream}|since={since or 'beginning'}")
    _clear_stale_staging(staging, batch_id)
    started_at = _now()
    raw_path = staging / f"{batch_id}.raw.parquet"
    raw_schema = pa.schema([("_page", pa.int32()), ("_row", pa.int32()), ("_extracted_at", UTC_TS),
                            *reader.raw_schema])
    rows_in = skipped = pages = 0
    newest = cursor
    log.info("extract %s.%s: batch %s, %s", source, stream, batch_id,
             f"incremental from {since}" if since else "full read")
    try:
        with ParquetSink(raw_path, raw_schema) as sink:
            for page in reader.read(cursor):
                pages += 1
                n = page.table.num_rows
                table = page.table.append_column("_row", pa.array(range(n), pa.int32()))
                table, dropped = _drop_unchanged(table, cursor, old_boundary)
                skipped += dropped
                if table.num_rows:
                    page_max = pc.max(table.column(CURSOR)).as_py()
                    if page_max is not None and (newest is None or page_max > newest):
                        newest = page_max
                    if newest is not None:
                        _remember_boundary(table, boundary, reader.overlap_floor(newest))
                        boundary.prune()
                    m = table.num_rows
                    sink.write(pa.table({
                        "_page": pa.array([page.number] * m, pa.int32()),
                        "_row": table.column("_row"),
                        "_extracted_at": pa.array([_now()] * m, UTC_TS),
                        **{name: table.column(name) for name in reader.raw_schema.names},
                    }, schema=raw_schema))
                    rows_in += m
                if progress:
                    progress(rows_in + skipped, reader.expected_total)
            sink.commit()
        stats = reader.stats()
        extra_state = reader.state_extra()
    finally:
        reader.close()
    # Rows that were unchanged in the overlap keep their place in the boundary for next time.
    for key, (cur, digest) in old_boundary.items():
        if key not in boundary.rows:
            boundary.rows[key] = (cur, digest)
    boundary.newest = newest
    boundary.prune()
    manifest = {
        "source": source, "stream": stream, "entity": entity, "batch_id": batch_id,
        "window_start": since, "cursor_start": cursor, "cursor_end": newest,
        "rows_in": rows_in, "skipped_unchanged": skipped, "pages": pages,
        "started_at": started_at.isoformat(), "extracted_at": _now().isoformat(),
        "raw_staging": str(raw_path), "boundary": {k: list(v) for k, v in boundary.rows.items()},
        "http": stats, "state_extra": extra_state,
        "manifest_path": str(staging / f"{batch_id}.manifest.json"),
    }
    _write_manifest(manifest)
    log.info("extract %s.%s: %d rows in %d pages (%d unchanged overlap rows skipped; %s)",
             source, stream, rows_in, pages, skipped, ", ".join(f"{k} {v}" for k, v in stats.items()))
    return manifest


# ------------------------------------------------------------------------------ standardise
def standardise(settings: Settings, manifest: dict[str, Any], *, spec: SourceSpec | None = None,
                progress: ProgressFn | None = None) -> dict[str, Any]:
    """Map staged raw rows to canonical Arrow; unconvertible rows go to staged quarantine."""
    source, stream, batch_id = manifest["source"], manifest["stream"], manifest["batch_id"]
    spec = spec or load_spec(source)
    stream_spec = spec.streams[stream]
    entity = get_entity(stream_spec.entity)
    mapping = parse_mapping(entity.name, stream_spec.mapping, f"spec {source}: streams.{stream}.mapping")
    sources = mapping_sources(mapping)
    kind = stream_class(spec)  # pure column methods only: standardise opens no connection
    staging = Path(manifest["raw_staging"]).parent
    std_path = staging / f"{batch_id}.std.parquet"
    q_path = staging / f"{batch_id}.quarantine.parquet"
    loaded = quarantined = done = 0
    raw_file = pq.ParquetFile(manifest["raw_staging"])
    extracted_at = datetime.fromisoformat(manifest["extracted_at"])
    with ParquetSink(std_path, entity.arrow_schema()) as std_sink, ParquetSink(q_path, QUARANTINE_SCHEMA) as q_sink:
        for chunk in raw_file.iter_batches(batch_size=STANDARDISE_CHUNK_ROWS):
            raw = pa.Table.from_batches([chunk])
            flat = kind.source_columns(raw, sources)
            result = apply_mapping(flat, mapping)
            accepted = result.accepted
            if len(accepted):
                std = add_lineage(result.table, entity, source=source, batch_id=batch_id,
                                  extracted_at=extracted_at, source_key=raw.column("_key").take(accepted))
                std_sink.write(std)
                loaded += std.num_rows
            if result.rejects.num_rows:
                idx = result.rejects.column("row_index")
                n = len(idx)
                q_sink.write(pa.table({
                    "_source": pa.array([source] * n, pa.string()),
                    "_batch_id": pa.array([batch_id] * n, pa.string()),
                    "_extracted_at": raw.column("_extracted_at").take(idx),
                    "_page": raw.column("_page").take(idx),
                    "_row": raw.column("_row").take(idx),
                    "_row_index": pc.add(idx, done).cast(pa.int64()),
                    "_key": raw.column("_key").take(idx),
                    "field": result.rejects.column("field"),
                    "rule": result.rejects.column("rule"),
                    "reason": result.rejects.column("reason"),
                    "_record": kind.record_text(raw.take(idx)),
                }, schema=QUARANTINE_SCHEMA))
                quarantined += n
            done += raw.num_rows
            if progress:
                progress(done, manifest["rows_in"])
        std_sink.commit()
        q_sink.commit()
    if loaded + quarantined != manifest["rows_in"]:
        raise PipelineError(f"standardise {source}.{stream} batch {batch_id}: {manifest['rows_in']} rows in but "
                            f"{loaded} loaded + {quarantined} quarantined; nothing was landed")
    manifest = {**manifest, "std_staging": str(std_path), "quarantine_staging": str(q_path),
                "rows_loaded": loaded, "rows_quarantined": quarantined, "standardised_at": _now().isoformat()}
    _write_manifest(manifest)
    log.info("standardise %s.%s: %d rows → %d canonical, %d quarantined", source, stream, done, loaded, quarantined)
    return manifest


# ------------------------------------------------------------------------------------- land
def _place(src: str, dst: Path) -> None:
    """Move a staged file into the lake atomically (same filesystem rename, then dir fsync)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    fd = os.open(dst.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def land(settings: Settings, manifest: dict[str, Any]) -> dict[str, Any]:
    """Put the batch's files in the lake, then commit ledger row and cursor in one transaction."""
    source, entity, batch_id = manifest["source"], manifest["entity"], manifest["batch_id"]
    if "std_staging" not in manifest:
        raise PipelineError(f"land {source}.{manifest['stream']} batch {batch_id}: not standardised yet; "
                            "run standardise first")
    lake = settings.lake()
    catalog = settings.catalog()
    dt = datetime.fromisoformat(manifest["started_at"]).date()
    targets = {
        "raw": lake.raw_path(source, entity, dt, batch_id),
        "std": lake.std_path(entity, source, dt, batch_id),
        "quarantine": lake.quarantine_path(entity, source, dt, batch_id),
    }
    previous = {b.batch_id: b for b in catalog.landed_batches(entity)}.get(batch_id)
    for kind, staged in (("raw", manifest["raw_staging"]), ("std", manifest["std_staging"]),
                         ("quarantine", manifest["quarantine_staging"])):
        if Path(staged).exists():
            _place(staged, targets[kind])
        elif not targets[kind].exists():
            raise PipelineError(f"land {source}.{manifest['stream']} batch {batch_id}: staged {kind} file "
                                f"{staged} is missing; rerun the sync")
    rel = {k: str(v.relative_to(settings.home)) for k, v in targets.items()}
    state = {**manifest.get("state_extra", {}), "cursor": manifest["cursor_end"], "boundary": manifest["boundary"],
             "batch_id": batch_id}
    seq = catalog.commit_batch(BatchRecord(
        batch_id=batch_id, source=source, entity=entity,
        window_start=manifest["window_start"] or "", window_end=manifest["cursor_end"] or "",
        rows_in=manifest["rows_in"], rows_loaded=manifest["rows_loaded"],
        rows_quarantined=manifest["rows_quarantined"],
        started_at=datetime.fromisoformat(manifest["started_at"]), finished_at=_now(), status="landed",
        raw_path=rel["raw"], std_path=rel["std"], quarantine_path=rel["quarantine"], message=None,
    ), state=state)
    if previous is not None:  # a rerun of the same window on another day: drop the files it replaced
        for old in (previous.raw_path, previous.std_path, previous.quarantine_path):
            if old and old not in rel.values():
                (settings.home / old).unlink(missing_ok=True)
    Path(manifest["manifest_path"]).unlink(missing_ok=True)
    result = {k: manifest[k] for k in ("source", "stream", "entity", "batch_id", "rows_in", "rows_loaded",
                                       "rows_quarantined", "skipped_unchanged", "pages", "cursor_end")}
    result.update(landed_seq=seq, std_path=rel["std"], http=manifest.get("http", {}))
    log.info("land %s.%s: batch %s landed (seq %d): %d loaded, %d quarantined, cursor %s", source,
             manifest["stream"], batch_id, seq, manifest["rows_loaded"], manifest["rows_quarantined"],
             manifest["cursor_end"])
    return result


# ------------------------------------------------------------------------------------- sync
def sync_stream(settings: Settings, source: str, stream: str, *, full: bool = False,
                spec: SourceSpec | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    spec = spec or load_spec(source)
    manifest = extract(settings, source, stream, full=full, spec=spec, progress=progress)
    manifest = standardise(settings, manifest, spec=spec)
    return land(settings, manifest)


def sync(settings: Settings, sources: Iterable[str], *, streams: Iterable[str] | None = None,
         full: bool = False, on_stream: Callable[[str, str], ProgressFn | None] | None = None) -> list[dict[str, Any]]:
    """Sync every stream of each source, one after the other; the first failure stops the source."""
    wanted = set(streams or [])
    results = []
    for source in sources:
        spec = load_spec(source)
        for name in spec.streams:
            if wanted and name not in wanted:
                continue
            progress = on_stream(source, name) if on_stream else None
            results.append(sync_stream(settings, source, name, full=full, spec=spec, progress=progress))
    return results
