"""One source's pipeline: extract → standardise and validate → land, as three resumable steps.

Each step works on files in its worker's IEHUB_HOME, publishes what it wrote to the lake's
staging (``warehouse.lakestore``: the home itself by default, object storage with
IEHUB_LAKE_URL) and returns a small manifest of lake keys and counts, never local paths; so
Airflow tasks can run the steps one by one on different workers and pass references, never data,
and the CLI can chain them without a scheduler. Nothing reaches the lake proper or moves a cursor
until `land` commits the files and the ledger row in one step.

Mapping and the quality gate are one step (#18): as two, a staged mapped file was written, read
back and the raw rows of quarantined ones read again, costing more than the mapping itself; in one
pass each chunk is mapped, checked and written while its raw rows are in memory.
"""
from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.base import CURSOR, DIGEST, KEY, open_stream, stream_class
from connectors.guard import ShrinkFigures, shrink_reason
from connectors.records import extract_columns
from connectors.spec import SourceSpec, load_spec
from iehub.config import Settings
from iehub.overlap import PipelinedSink
from schemas import duckdb_compute, get_entity
from schemas.lineage import add_lineage
from schemas.mapping import apply_mapping, mapping_column_groups, mapping_sources, parse_mapping
from warehouse.catalog import BatchRecord
from warehouse.landing import ParquetSink, read_chunks

log = logging.getLogger(__name__)

UTC_TS = pa.timestamp("us", tz="UTC")
QUARANTINE_SCHEMA = pa.schema([
    ("_source", pa.string()), ("_batch_id", pa.string()), ("_extracted_at", UTC_TS),
    ("_page", pa.int32()), ("_row", pa.int32()), ("_row_index", pa.int64()), ("_key", pa.string()),
    ("field", pa.string()), ("rule", pa.string()), ("reason", pa.string()), ("_record", pa.string()),
    ("replayed_in", pa.string()),  # the replay batch that took the row out of quarantine, if any
])
STANDARDISE_CHUNK_ROWS = 200_000  # rows mapped at a time: large enough that per-chunk costs vanish

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


def _staging_key(settings: Settings, source: str, stream: str) -> str:
    """The lake key of a stream's staging folder (``staging/<source>/<stream>``)."""
    return settings.lake().store.key_of(_staging_dir(settings, source, stream))


def _clear_stale_staging(settings: Settings, source: str, stream: str, batch_id: str) -> None:
    """Drop what a killed run of this stream left behind, in this home and in the lake's staging.

    The cursor moves only when a batch lands, so staged files of any other batch id, and any
    half-written temp file, can only be leftovers of an interrupted pass; this pass re-reads
    their rows. (One run per stream at a time: the DAGs set max_active_runs=1.)
    """
    store = settings.lake().store
    folder = _staging_key(settings, source, stream)
    here = {p.name for p in store.path(folder).iterdir() if p.is_file()}
    for name in sorted(here | set(store.names(folder) if store.remote else ())):
        if not name.startswith(batch_id) or name.endswith(".tmp"):
            log.info("removing stale staged file %s", name)
            store.delete(f"{folder}/{name}")


def _publish_staged(settings: Settings, *paths: Path) -> list[str]:
    """Publish files a step finished in this home's staging; returns their lake keys for the manifest."""
    store = settings.lake().store
    keys = [store.key_of(p) for p in paths]
    for key in keys:
        store.put(key)
    return keys


def _staged(settings: Settings, manifest: dict[str, Any], *fields: str) -> dict[str, Any]:
    """The manifest with the named staged files as local paths of this worker (downloaded if remote)."""
    store = settings.lake().store
    return {**manifest, **{f: str(store.local(store.key_of(manifest[f]))) for f in fields}}


def _write_manifest(settings: Settings, manifest: dict[str, Any]) -> None:
    """Write the manifest at its staging key: a local temp file renamed into place, then one put."""
    store = settings.lake().store
    path = store.path(manifest["manifest_path"])
    tmp = path.with_suffix(".json.tmp")
    # compact: with an indent json.dumps takes its pure-Python path (a 1% change's 10,000-row overlap
    # boundary: 26 ms a write instead of 6, twice a sync)
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, separators=(",", ":"), default=str), encoding="utf-8")
    os.replace(tmp, path)
    store.put(manifest["manifest_path"])


def read_manifest(ref: str | Path, settings: Settings | None = None) -> dict[str, Any]:
    """A manifest by its lake key (what tasks pass on), read from wherever the lake is.

    Without ``settings``, ``ref`` is read as a local file path (older callers and manifests).
    """
    if settings is None:
        return json.loads(Path(ref).read_text(encoding="utf-8"))
    store = settings.lake().store
    return json.loads(store.local(store.key_of(ref)).read_text(encoding="utf-8"))


def live_keys(settings: Settings, source: str, entity: str) -> pa.Array:
    """The source keys the hub holds live for (source, entity): latest landed version not deleted.

    Read from the ledger's std files (never the lake by glob), so streams can diff keys without
    knowing the lake, and without the warehouse being built.
    """
    batches = [b for b in settings.catalog().landed_batches(entity) if b.source == source and b.rows_loaded]
    if not batches:
        return pa.array([], pa.string())
    lake = settings.lake()
    files = pa.table({"path": [str(lake.resolve(b.std_path)) for b in batches],
                      "seq": pa.array([b.landed_seq for b in batches], pa.int64())})
    with duckdb_compute.cursor() as con:
        con.register("files", files)
        result = con.sql("""
            SELECT _source_key FROM (
              SELECT r._source_key, r._is_deleted, row_number() OVER (
                PARTITION BY r._source_key ORDER BY f.seq DESC, r.file_row_number DESC) AS rn
              FROM read_parquet(?, filename = true, file_row_number = true) r
              JOIN files f ON f.path = r.filename)
            WHERE rn = 1 AND NOT _is_deleted""", params=[files.column("path").to_pylist()]).to_arrow_table()
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


def extraction_run_id() -> str:
    """The run an extraction belongs to, which makes its batch id unique (the lake is append-only).

    Inside an Airflow task it is the DAG run (Airflow exports ``AIRFLOW_CTX_DAG_ID`` and
    ``AIRFLOW_CTX_DAG_RUN_ID`` to the task's environment), so a retry or a clear of the same run
    lands on the same batch id and replaces its own output; anywhere else every call is a run of
    its own (UTC time plus random bits), so a later ``sync --full`` never overwrites the first load.
    """
    dag, run = os.environ.get("AIRFLOW_CTX_DAG_ID"), os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    if dag and run:
        return f"airflow:{dag}:{run}"
    return f"cli:{_now().strftime('%Y%m%dT%H%M%S.%fZ')}:{secrets.token_hex(4)}"


def extract(settings: Settings, source: str, stream: str, *, full: bool = False,
            spec: SourceSpec | None = None, progress: ProgressFn | None = None,
            run_id: str | None = None) -> dict[str, Any]:
    """Pull one stream into a staged raw Parquet file; returns the manifest.

    ``run_id`` names the extraction (default :func:`extraction_run_id`): the batch id is derived
    from it and the window, so only a rerun of the same run replaces an earlier batch.
    """
    settings.ensure()
    _limit_malloc_arenas()
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
    run_id = run_id or extraction_run_id()
    batch_id = settings.lake().batch_id(source, entity, f"{stream}|since={since or 'beginning'}", run_id)
    _clear_stale_staging(settings, source, stream, batch_id)
    started_at = _now()
    raw_path = staging / f"{batch_id}.raw.parquet"
    raw_schema = pa.schema([("_page", pa.int32()), ("_row", pa.int32()), ("_extracted_at", UTC_TS),
                            *reader.raw_schema])
    rows_in = skipped = pages = 0
    newest = cursor
    log.info("extract %s.%s: batch %s, %s", source, stream, batch_id,
             f"incremental from {since}" if since else "full read")
    try:
        # Writes overlap the next page's fetch. Dictionary pages only for the columns mostly repeated in
        # the first rows ("auto"): the raw text of codes, names, dates and statuses, not IDs, titles or
        # digests (1M 杨浦 raw rows: 1.09 CPU-s into 25.7 MB against 1.47 s into 35.2 MB with none;
        # 1M S1 rows: 1.75 s into 57 MB against 1.91 s into 68 MB; with dictionaries everywhere S1's
        # took 1.2 s against 0.9 s with none, when its writer thread was the extract's bottleneck).
        # No text statistics either: the raw file is read whole (ParquetSink's text_statistics).
        with PipelinedSink(ParquetSink(raw_path, raw_schema, use_dictionary="auto", text_statistics=False)) as sink:
            for page in reader.read(cursor):
                pages += 1
                n = page.table.num_rows
                table = page.table.append_column("_row", pa.array(np.arange(n, dtype=np.int32)))
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
                        "_page": pa.repeat(pa.scalar(page.number, pa.int32()), m),
                        "_row": table.column("_row"),
                        "_extracted_at": pa.repeat(pa.scalar(_now(), UTC_TS), m),
                        **{name: table.column(name) for name in reader.raw_schema.names},
                    }, schema=raw_schema))
                    rows_in += m
                if progress:
                    progress(rows_in + skipped, reader.expected_total)
            sink.commit()
        stats = reader.stats()
        extra_state = reader.state_extra()
    except Exception as exc:  # a failed extraction is a failed batch in the ledger, so `iehub status` shows it
        _record_extract_failure(settings, batch_id, source, entity, started_at, exc)
        raise
    finally:
        reader.close()
    # Rows that were unchanged in the overlap keep their place in the boundary for next time.
    for key, (cur, digest) in old_boundary.items():
        if key not in boundary.rows:
            boundary.rows[key] = (cur, digest)
    boundary.newest = newest
    boundary.prune()
    raw_key, = _publish_staged(settings, raw_path)
    manifest = {
        "source": source, "stream": stream, "entity": entity, "batch_id": batch_id, "run_id": run_id,
        "window_start": since, "cursor_start": cursor, "cursor_end": newest,
        "rows_in": rows_in, "skipped_unchanged": skipped, "pages": pages,
        "started_at": started_at.isoformat(), "extracted_at": _now().isoformat(),
        "raw_staging": raw_key, "boundary": {k: list(v) for k, v in boundary.rows.items()},
        "http": stats, "state_extra": extra_state,
        "manifest_path": f"{_staging_key(settings, source, stream)}/{batch_id}.manifest.json",
    }
    _write_manifest(settings, manifest)
    log.info("extract %s.%s: %d rows in %d pages (%d unchanged overlap rows skipped; %s)",
             source, stream, rows_in, pages, skipped, ", ".join(f"{k} {v}" for k, v in stats.items()))
    return manifest


def _record_extract_failure(settings: Settings, batch_id: str, source: str, entity: str, started_at: datetime,
                            exc: Exception) -> None:
    """A failed ledger row carrying the error's one-line message (connector messages are already masked)."""
    message = " ".join(str(exc).split())[:500] or type(exc).__name__
    try:
        settings.catalog().record_failure(batch_id, source, entity, started_at, f"extract failed: {message}")
    except Exception as ledger_exc:  # noqa: BLE001 - the extraction's own error is the one to raise
        log.warning("extract %s/%s: could not record the failed batch %s in the ledger: %s", source, entity,
                    batch_id, type(ledger_exc).__name__)


# -------------------------------------------------------------- standardise and validate
RAW_ROW = "_raw_row"  # a mapped row's position in the staged raw file, so quarantine keeps the raw record
#: Raw rows mapped and checked at a time (whole row groups). 250,000 held 150-200 MB more at the
#: pass's peak (5M projects: 904-949 MB RSS against 712-722 MB) for no speed: the per-chunk costs
#: were already gone (std + gate at 5M: 14.8-14.9 s either way, interleaved).
CHUNK_ROWS = 125_000
# Chunks are mapped and checked one at a time on purpose. Two chunks on two threads (measured in
# #18's seventh round) mapped the 1M-row 杨浦 batch in 0.89 s instead of 1.70, but the whole step went
# only 2.0 -> 1.8 s there and no faster on 1M municipal projects, with 190 MB more at its peak: the
# step already keeps ~1.5 cores busy (the gate's rules on threads, DuckDB's hashing, the Parquet
# writer's own thread), so there is no idle core to give a second chunk.
#: Quarantine rows carry their raw record: written in smaller row groups, so the refused rows held
#: between chunks do not grow with the batch (at 5M rows they reached 60 MB of the 64 MB default).
QUARANTINE_ROW_GROUP_BYTES = 16 << 20


def _quarantine_table(raw: pa.Table, positions: pa.Array, *, source: str, batch_id: str, kind: type,
                      field: pa.Array, rule: pa.Array, reason: pa.Array) -> pa.Table:
    """Rejected rows as quarantine rows: the raw record as received plus where and why."""
    rows = raw.take(positions)
    n = rows.num_rows
    return pa.table({
        "_source": pa.array([source] * n, pa.string()),
        "_batch_id": pa.array([batch_id] * n, pa.string()),
        "_extracted_at": rows.column("_extracted_at"),
        "_page": rows.column("_page"),
        "_row": rows.column("_row"),
        "_row_index": rows.column(RAW_ROW) if RAW_ROW in rows.column_names else positions.cast(pa.int64()),
        "_key": rows.column("_key"),
        "field": field, "rule": rule, "reason": reason,
        "_record": kind.record_text(rows),
        "replayed_in": pa.nulls(n, pa.string()),
    }, schema=QUARANTINE_SCHEMA)


def _release_pool() -> None:
    """Hand the Arrow pool's freed pages back to the OS between chunks.

    mimalloc keeps what a chunk freed for reuse, and the next chunk's allocations do not land
    exactly in it; without this the process grew by ~10 MB per chunk (peak RSS at 5M rows 1.3×
    the 1M peak). Costs well under a millisecond per chunk.
    """
    pa.default_memory_pool().release_unused()


#: glibc malloc arenas a sync process may use (glibc's default is 8 per core).
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # mallopt's parameter number, glibc's malloc.h


@functools.cache
def _limit_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas for this process (once; False where libc has no ``mallopt``).

    Arrow's reader and writer threads, DuckDB's and the sink's each get an arena of their own, and
    a thread arena keeps the freed top of its heap (glibc trims only the main arena's): at 5M rows
    the process held ~250 MB of such free memory in 14 arenas and the standardise peak grew with
    the batch (1,258 MB against 980 MB with two arenas, measured in one process after the extract;
    CPU time the same, the threads allocate big blocks rarely enough not to contend). A fixed
    ``M_MMAP_THRESHOLD`` bounded it as well but cost ~1.5 s more system time per 5M rows.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt is not None and mallopt(M_ARENA_MAX, MALLOC_ARENAS))


class QualityGateError(PipelineError):
    """A batch-level rule failed: the batch is not landed and the warehouse stays as it was."""


class SnapshotHeld(PipelineError):
    """A file snapshot was held as suspect (connectors/guard.py): its batch landed without it,
    nothing was deleted, and an operator must accept it (`iehub quarantine accept FILE`)."""


def held_message(result: dict[str, Any]) -> str | None:
    """One line for a landed file batch that held snapshots as suspect (None when it held none)."""
    held = (result.get("http") or {}).get("snapshots_held") or []
    if not held:
        return None
    return (f"{result['source']}.{result['stream']}: {len(held)} snapshot(s) held as suspect, nothing deleted — "
            f"{'; '.join(held)}. If the shrink is real, run `iehub quarantine accept FILE` and sync again.")


def _full_read_guard(settings: Settings, stream_spec: Any, max_row_drop: float | None, *, source: str,
                     entity: str, batch_id: str, rows_in: int, deleting: int) -> str | None:
    """The snapshot guard for a full read of any kind but files (which guard each file as they read it)."""
    previous = [b for b in settings.catalog().landed_batches(entity)
                if b.source == source and not b.window_start and b.batch_id != batch_id]
    guard = stream_spec.snapshot_guard
    if max_row_drop is not None:  # an explicit quality.max_row_drop in the spec keeps its meaning
        guard = guard.model_copy(update={"max_row_drop": max_row_drop})
    live = len(live_keys(settings, source, entity)) if deleting else 0
    figures = ShrinkFigures(rows=rows_in - deleting, live=live, deleting=deleting,
                            previous_rows=previous[-1].rows_in if previous else None)
    reason = shrink_reason(figures, guard)
    return f"full read {reason}; is the source truncated?" if reason else None


def _drift(kind: type, raw_path: str, groups: list[tuple[str, ...]]) -> tuple[list[str], list[str]]:
    """(mapped source fields absent from every row, fields present that the spec does not map).

    ``groups`` are :func:`schemas.mapping.mapping_column_groups`: a field read from several
    columns is missing only when none of them is there.
    """
    present = kind.raw_fields(raw_path)
    if present is None:
        return [], []
    tops = {s.split(".")[0] for group in groups for s in group}
    missing = [" or ".join(g) for g in groups if not any(s.split(".")[0] in present for s in g)]
    unmapped = sorted(f for f in present if f not in tops)
    return missing, unmapped


@dataclass
class _Batch:
    """One staged batch as the standardise-and-validate pass sees it (read-only)."""

    manifest: dict[str, Any]
    raw_path: str
    entity: Any
    mapping: Any
    sources: list[str]
    kind: type
    policy: Any
    per_file: str | None  # raw column naming the file a row came from (file streams)
    line: str | None      # raw column holding the row's line in that file

    @property
    def source(self) -> str:
        return self.manifest["source"]

    @property
    def batch_id(self) -> str:
        return self.manifest["batch_id"]

    def map_chunk(self, raw: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(canonical rows with lineage and RAW_ROW, the mapping's quarantine rows) of one raw chunk."""
        # A replay's raw rows are quarantine records (JSON text) whatever the source kind.
        columns = extract_columns(raw.column("_record"), self.sources) if self.manifest.get("replay") \
            else self.kind.source_columns(raw, self.sources)
        result = apply_mapping(columns, self.mapping)
        accepted = result.accepted
        std = add_lineage(result.table, self.entity, source=self.source, batch_id=self.batch_id,
                          extracted_at=datetime.fromisoformat(self.manifest["extracted_at"]),
                          source_key=raw.column("_key").take(accepted))
        std = std.append_column(RAW_ROW, raw.column(RAW_ROW).take(accepted))
        rej = result.rejects
        rejects = _quarantine_table(raw, rej.column("row_index"), source=self.source, batch_id=self.batch_id,
                                    kind=self.kind, field=rej.column("field"), rule=rej.column("rule"),
                                    reason=rej.column("reason"))
        return std, rejects

    def chunks(self) -> Iterator[tuple[int, pa.Table]]:
        """(position of the first row, raw rows with RAW_ROW) for each chunk of the staged raw file."""
        done = 0
        # Not read ahead on a thread: measured, it saved no time here and held one more chunk (~90 MB).
        for raw in read_chunks(self.raw_path, CHUNK_ROWS):
            n = raw.num_rows
            yield done, raw.append_column(RAW_ROW, pa.array(np.arange(done, done + n, dtype=np.int64)))
            done += n


def _key_hashes(batch: _Batch, std: pa.Table, raw: pa.Table, start: int) -> np.ndarray:
    """A 64-bit hash of each mapped row's natural key (and file, for file streams), rows with a
    missing key part left out: a cheap test of whether any key repeats in the batch at all."""
    parts = {f"k{i}": std.column(k) for i, k in enumerate(batch.entity.key)}
    if batch.per_file:
        parts["f"] = raw.column(batch.per_file).take(pc.subtract(std.column(RAW_ROW), start))
    with duckdb_compute.cursor() as con:
        con.register("keys", pa.table(parts))
        where = " AND ".join(f"{k} IS NOT NULL" for k in parts if k != "f")
        hashed = con.sql(f"SELECT hash({', '.join(parts)}) AS h FROM keys WHERE {where}").to_arrow_table()
    return hashed.column("h").to_numpy()


def _any_repeated(hashes: list[np.ndarray]) -> bool:
    values = np.sort(np.concatenate(hashes)) if hashes else np.zeros(0, dtype=np.uint64)
    return bool(len(values) > 1 and (values[1:] == values[:-1]).any())


def _repeated_keys(batch: _Batch, staging: Path) -> Any:
    """Repeated natural keys over the whole batch (quality.duplicates says which copies go).

    Run only when the pass found a key hash twice: the batch is mapped once more into a narrow
    staged file of keys, hashes and change times, which DuckDB checks batch-wide.
    """
    from quality.duplicates import repeated_keys

    schema = batch.entity.arrow_schema()
    names = list(dict.fromkeys([*batch.entity.key, "_record_hash", "_is_deleted",
                                *(["updated_at"] if "updated_at" in schema.names else [])]))
    keys_path = staging / f"{batch.batch_id}.keys.parquet"
    try:
        with ParquetSink(keys_path, pa.schema([*(schema.field(n) for n in names),
                                               pa.field(RAW_ROW, pa.int64(), nullable=False)])) as sink:
            for _, raw in batch.chunks():
                std, _ = batch.map_chunk(raw)
                sink.write(std.select([*names, RAW_ROW]))
                del raw, std
                _release_pool()
        return repeated_keys(keys_path, batch.raw_path, list(batch.entity.key), raw_row=RAW_ROW,
                             per_file=batch.per_file, line=batch.line,
                             updated_at="updated_at" if "updated_at" in schema.names else None)
    finally:
        keys_path.unlink(missing_ok=True)


def _quarantine_repeats(table: pa.Table, repeats: Any, raw: pa.Table, start: int, q_sink: Any, *,
                        batch: _Batch) -> tuple[pa.Table, int]:
    """Move this chunk's copies of repeated keys to the quarantine; returns the rest and how many moved."""
    from quality.duplicates import RULE

    if repeats is None or not repeats.rows:
        return table, 0
    hit = pc.is_in(table.column(RAW_ROW), value_set=repeats.quarantine.column("raw_row"))
    positions = table.column(RAW_ROW).filter(hit)
    positions = positions.take(pc.sort_indices(positions))
    n = len(positions)
    if not n:
        return table, 0
    found = repeats.quarantine.take(pc.index_in(positions, value_set=repeats.quarantine.column("raw_row")))
    q_sink.write(_quarantine_table(raw, pc.subtract(positions, start), source=batch.source, batch_id=batch.batch_id,
                                   kind=batch.kind, field=found.column("field").combine_chunks(),
                                   rule=pa.repeat(pa.scalar(f"quality.{RULE}"), n),
                                   reason=found.column("reason").combine_chunks()))
    return table.filter(pc.invert(hit)), n


@dataclass
class _Pass:
    """What one pass over the staged raw rows found; its files stay open until the gate decides."""

    std_sink: Any
    q_sink: ParquetSink
    mapped: int = 0
    mapping_rejected: int = 0
    loaded: int = 0
    flagged: int = 0
    deleting: int = 0
    newest_update: Any = None
    rejects: list[pa.Table] = field(default_factory=list)  # rule and field of each mapping reject
    results: list[Any] = field(default_factory=list)
    gx_results: list[Any] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    key_hashes: list[np.ndarray] = field(default_factory=list)
    gate_seconds: float = 0.0  # of the pass, spent on the gate's work (rules, repeats, their quarantine)

    def abort(self) -> None:
        self.std_sink.abort()
        self.q_sink.abort()


def _one_pass(batch: _Batch, std_path: Path, q_path: Path, repeats: Any,
              progress: ProgressFn | None) -> _Pass:
    """Map, check and write every chunk: std rows to one file, refused rows (mapping and rules) to another.

    ``repeats`` is the batch's repeated-key verdict, or None on the first, optimistic pass: that
    pass collects key hashes instead, and the caller runs again with a verdict when one repeats.
    """
    from quality.runner import validate_table

    entity = batch.entity
    p = _Pass(PipelinedSink(ParquetSink(std_path, entity.arrow_schema(), use_dictionary="auto")),
              ParquetSink(q_path, QUARANTINE_SCHEMA, use_dictionary="auto", row_group_bytes=QUARANTINE_ROW_GROUP_BYTES))
    has_updated = "updated_at" in entity.arrow_schema().names
    try:
        for start, raw in batch.chunks():
            table, rejects = batch.map_chunk(raw)
            if rejects.num_rows:
                p.q_sink.write(rejects)
                p.rejects.append(rejects.select(["rule", "field"]))
            p.mapping_rejected += rejects.num_rows
            p.mapped += table.num_rows
            gate_started = time.perf_counter()
            if repeats is None:
                p.key_hashes.append(_key_hashes(batch, table, raw, start))
            table, repeated = _quarantine_repeats(table, repeats, raw, start, p.q_sink, batch=batch)
            p.flagged += repeated
            outcome = validate_table(entity.name, table.drop_columns([RAW_ROW]), batch.policy)
            p.results.extend(outcome.results)
            if outcome.gx_result is not None:
                p.gx_results.append(outcome.gx_result)
            p.failures.extend(outcome.batch_failures)
            p.warnings.extend(outcome.warnings)
            if table.num_rows:
                p.deleting += pc.sum(table["_is_deleted"].cast(pa.int64())).as_py() or 0
                if has_updated:
                    top = pc.max(table.column("updated_at")).as_py()
                    if top is not None and (p.newest_update is None or top > p.newest_update):
                        p.newest_update = top
            if outcome.failed:
                bad = np.array(sorted(outcome.failed), dtype=np.int64)
                keep = np.ones(table.num_rows, dtype=bool)
                keep[bad] = False
                positions = table.column(RAW_ROW).take(pa.array(bad)).to_numpy()
                order = np.argsort(positions, kind="stable")
                rules = [outcome.failed[int(bad[i])] for i in order]
                p.q_sink.write(_quarantine_table(
                    raw, pa.array(positions[order] - start), source=batch.source, batch_id=batch.batch_id,
                    kind=batch.kind, field=pa.array([r[0].split(".")[0] for r in rules], pa.string()),
                    rule=pa.array([f"quality.{r[0]}" for r in rules], pa.string()),
                    reason=pa.array([r[1] for r in rules], pa.string())))
                table = table.filter(pa.array(keep))
                p.flagged += len(bad)
            p.gate_seconds += time.perf_counter() - gate_started
            p.std_sink.write(table.drop_columns([RAW_ROW]))
            p.loaded += table.num_rows
            done = start + raw.num_rows
            del table, outcome, raw, rejects
            _release_pool()
            if progress:
                progress(done, batch.manifest["rows_in"])
    except BaseException:
        p.abort()
        raise
    return p


def standardise_and_validate(settings: Settings, manifest: dict[str, Any], *, spec: SourceSpec | None = None,
                             progress: ProgressFn | None = None) -> dict[str, Any]:
    """Map the staged raw rows to the canonical schema and pass them through the quality gate, in one pass.

    Each chunk of raw rows is mapped (unconvertible rows go to quarantine with the mapping's
    reason), checked by the entity's generated suite (failing rows join the quarantine with the
    rule's reason) and written to the staged std file; nothing in between is staged, and a
    quarantined row's raw record is taken from the chunk in memory. Repeated natural keys are a
    batch-wide verdict (quality.duplicates): the pass hashes every key, and only when a hash
    repeats is the batch mapped again for the verdict and the pass run once more with it.

    Batch-level rules (schema drift, a full read shrinking sharply, the quarantine share, stale
    data) fail the step with a QualityGateError naming what and where; nothing is landed then.
    """
    from quality.policy import policy_for
    from quality.store import record
    from quality.suites import rule_ids

    _limit_malloc_arenas()

    source, stream, batch_id = manifest["source"], manifest["stream"], manifest["batch_id"]
    spec = spec or load_spec(source)
    stream_spec = spec.streams[stream]
    entity = get_entity(stream_spec.entity)
    where = f"source {source}, stream {stream}, batch {batch_id}"
    policy = policy_for(entity.name, getattr(stream_spec, "quality", None), known_rules=rule_ids(entity.name),
                        where=f"spec {source}: streams.{stream}.")
    mapping = parse_mapping(entity.name, stream_spec.mapping, f"spec {source}: streams.{stream}.mapping")
    kind = stream_class(spec)  # pure column methods only: this step opens no connection
    raw_path = _staged(settings, manifest, "raw_staging")["raw_staging"]
    raw_columns = set(pq.read_schema(raw_path).names)
    batch = _Batch(manifest, raw_path, entity, mapping, mapping_sources(mapping), kind, policy,
                   per_file="_file" if "_file" in raw_columns else None,
                   line="_file_row" if "_file_row" in raw_columns else None)
    staging = _staging_dir(settings, source, stream)
    std_path = staging / f"{batch_id}.std.parquet"
    q_path = staging / f"{batch_id}.quarantine.parquet"
    catalog = settings.catalog()
    started = time.perf_counter()
    p = _one_pass(batch, std_path, q_path, None, progress)
    repeats, redo = None, 0.0
    if _any_repeated(p.key_hashes):  # rare: a key twice in the batch; decide batch-wide, then check again
        p.abort()
        repeats = _repeated_keys(batch, staging)
        redo = time.perf_counter() - started  # the first pass and the verdict: the gate's cost
        p = _one_pass(batch, std_path, q_path, repeats, progress)
    batch_rules_started = time.perf_counter()
    try:
        rows_in = manifest["rows_in"]
        failures, warnings = p.failures, p.warnings
        quarantined = p.mapping_rejected + p.flagged
        repeat_rows, repeat_keys = (repeats.rows, repeats.keys) if repeats is not None else (0, 0)
        rejects = pa.concat_tables(p.rejects) if p.rejects else \
            pa.table({"rule": pa.array([], pa.string()), "field": pa.array([], pa.string())})
        results = mapping_results(rejects, rows_in) + p.results  # `quality report` counts mapping rejects too
        checks: list[dict[str, Any]] = []
        # batch-level rules
        replay = bool(manifest.get("replay"))  # a replay re-checks known-bad rows: batch rules do not apply
        missing, unmapped = _drift(kind, raw_path, mapping_column_groups(mapping)) \
            if rows_in and not replay else ([], [])
        if missing:
            msg = f"schema drift: mapped field(s) {missing} absent from every row"
            (failures if policy.drift_action == "fail" else warnings).append(msg)
        unmapped = [f for f in unmapped if f not in set(stream_spec.ignore_fields)]
        if unmapped:
            warnings.append(f"new source field(s) not in the spec: {unmapped[:10]}")
        checks.append(_check("batch.schema_drift", not missing, policy.drift_action, "; ".join(
            ([f"missing {missing}"] if missing else []) + ([f"new {unmapped[:10]}"] if unmapped else [])) or None,
            rows_in, len(missing)))
        checks.append(_check("batch.repeated_keys", not repeat_rows, "quarantine", (
            f"{repeat_keys} key(s) repeated: {repeat_rows} copies quarantined; kept "
            f"{repeats.superseded if repeats else 0} superseded and {repeats.identical if repeats else 0} "
            "identical copies of paged reads"), rows_in, repeat_rows))
        # The share measures how much of the source's content is bad: all copies of one repeated key
        # are one defect (100,000 copies of one row are a broken export, not 100,000 bad records).
        bad_records = quarantined - repeat_rows + repeat_keys
        share = bad_records / rows_in if rows_in else 0.0
        over = not replay and bad_records > policy.max_quarantine_share * rows_in \
            and bad_records > MIN_QUARANTINE_ROWS_TO_FAIL
        if over:
            failures.append(f"{bad_records} of {rows_in} rows ({share:.1%}) quarantined, above the "
                            f"{policy.max_quarantine_share:.0%} allowed for {entity.name}")
        checks.append(_check("batch.quarantine_share", not over, "fail", f"{share:.2%} quarantined", rows_in,
                             quarantined))
        if not manifest.get("window_start") and not replay:
            suspect = _full_read_guard(settings, stream_spec, policy.max_row_drop if "max_row_drop" in (
                stream_spec.quality or {}) else None, source=source, entity=entity.name, batch_id=batch_id,
                rows_in=rows_in, deleting=p.deleting)
            if suspect:
                failures.append(suspect)
                checks.append(_check("batch.row_count_drop", False, "fail", suspect, rows_in, 1))
        if policy.stale_after_days and p.newest_update is not None:
            age = (_now() - p.newest_update).days
            if age > policy.stale_after_days:
                warnings.append(f"stale data: newest updated_at is {age} days old")
            checks.append(_check("batch.freshness", age <= policy.stale_after_days, "warn", f"{age} days", 1,
                                 int(age > policy.stale_after_days)))
        record(catalog.engine, batch_id=batch_id, source=source, entity=entity.name, results=results,
               batch_checks=checks)
        if p.gx_results:
            from quality.docs import store_results

            store_results(settings.home, entity=entity.name, source=source, batch_id=batch_id, results=p.gx_results)
        for w in warnings:
            log.warning("quality %s: %s", where, w)
        if failures:
            p.std_sink.abort()
            p.q_sink.commit()  # the refused rows stay readable: `quarantine show` and `quarantine export`
            started = datetime.fromisoformat(manifest["started_at"])
            kept = refused_path(settings, entity.name, source, started, batch_id)
            settings.lake().store.put(settings.lake().relative(kept), q_path)
            message = f"quality gate failed for {where}: " + "; ".join(failures) + top_rules(pq.read_table(q_path))
            catalog.record_failure(batch_id, source, entity.name, started, message)
            raise QualityGateError(
                message + f". Nothing was landed; `iehub quarantine show {batch_id}` lists the refused rows and "
                f"`iehub quarantine export --source {source}` writes them for the source to correct; or fix the "
                "spec (mapping or quality: section), then run the sync again.")
        p.std_sink.commit()
        p.q_sink.commit()
    except BaseException:
        p.abort()  # idempotent: what was committed stays
        raise
    if p.mapped + p.mapping_rejected != rows_in or p.loaded + quarantined != rows_in:
        raise PipelineError(f"standardise and validate {where}: {rows_in} rows in but {p.mapped} mapped + "
                            f"{p.mapping_rejected} rejected, {p.loaded} loaded + {quarantined} quarantined; "
                            "nothing was landed")
    gate = redo + p.gate_seconds + time.perf_counter() - batch_rules_started
    std_key, q_key = _publish_staged(settings, std_path, q_path)
    now = _now().isoformat()
    manifest = {**manifest, "std_staging": std_key, "quarantine_staging": q_key, "rows_mapped": p.mapped,
                "rows_mapping_rejected": p.mapping_rejected, "standardised_at": now, "rows_loaded": p.loaded,
                "rows_quarantined": quarantined, "validated_at": now, "quality_warnings": warnings,
                "repeated_keys": {"keys_quarantined": repeat_keys, "copies_quarantined": repeat_rows,
                                  "superseded_kept": repeats.superseded if repeats else 0,
                                  "identical_kept": repeats.identical if repeats else 0},
                # where the step's time went, for the benchmarks' standardise / validate split
                "step_seconds": {"standardise": round(time.perf_counter() - started - gate, 3),
                                 "validate": round(gate, 3)}}
    _write_manifest(settings, manifest)
    log.info("standardise and validate %s.%s: %d rows → %d canonical (%d rejected by the mapping), %d passed, "
             "%d quarantined by rules", source, stream, rows_in, p.mapped, p.mapping_rejected, p.loaded, p.flagged)
    return manifest


MIN_QUARANTINE_ROWS_TO_FAIL = 10  # tiny batches: a share of 1 in 8 is noise, not a broken source


def refused_path(settings: Settings, entity: str, source: str, started_at: datetime, batch_id: str) -> Path:
    """Where the rows of a batch refused at the gate are kept: ``lake/refused/…``, laid out like the quarantine.

    Apart from it, so nothing that reads the quarantine takes them for rows of a landed batch.
    The path is under this home; with the lake in object storage, ``settings.lake().resolve`` of
    its key fetches the kept copy.
    """
    lake = settings.lake()
    path = lake.quarantine_path(entity, source, started_at.date(), batch_id)
    return lake.lake_dir / "refused" / path.relative_to(lake.lake_dir / "quarantine")


def mapping_results(rejects: pa.Table, rows_in: int) -> list[Any]:
    """Rows refused at mapping as row-level rule results, so pass rates count them like the suite's rules."""
    from quality.runner import RuleResult

    if rejects.num_rows == 0:
        return []
    counts = rejects.group_by("rule", use_threads=False).aggregate([("rule", "count"), ("field", "first")]).to_pylist()
    return [RuleResult(rule=c["rule"], expectation="iehub_mapping", column=c["field_first"] or "",
                       action="quarantine", element_count=rows_in, unexpected_count=c["rule_count"],
                       unexpected_percent=100.0 * c["rule_count"] / rows_in if rows_in else 0.0, success=False)
            for c in counts]


def top_rules(rows: pa.Table, limit: int = 3) -> str:
    """'; top rules: mapping.map 150 rows (e.g. field category: '…' is not in …), …' for a gate message."""
    if rows.num_rows == 0:
        return ""
    counts = rows.group_by("rule", use_threads=False).aggregate([("rule", "count"), ("reason", "first")]).sort_by(
        [("rule_count", "descending"), ("rule", "ascending")]).to_pylist()
    shown = [f"{c['rule']} {c['rule_count']} rows (e.g. {(c['reason_first'] or '')[:120]})" for c in counts[:limit]]
    return "; top rules: " + ", ".join(shown)


def _check(rule: str, success: bool, action: str, message: str | None, elements: int, unexpected: int) -> dict[str, Any]:
    return {"rule": rule, "action": action, "success": success, "message": message, "element_count": elements,
            "unexpected_count": unexpected, "unexpected_percent": 100.0 * unexpected / elements if elements else 0.0}


# ------------------------------------------------------------------------------------- land
def land(settings: Settings, manifest: dict[str, Any]) -> dict[str, Any]:
    """Put the batch's files in the lake, then commit ledger row and cursor in one transaction."""
    source, entity, batch_id = manifest["source"], manifest["entity"], manifest["batch_id"]
    if "validated_at" not in manifest:
        raise PipelineError(f"land {source}.{manifest['stream']} batch {batch_id}: not validated yet; "
                            "run its standardise-and-validate step first")
    lake = settings.lake()
    store = lake.store
    catalog = settings.catalog()
    dt = datetime.fromisoformat(manifest["started_at"]).date()
    rel = {  # lake keys, as the ledger stores them
        "raw": lake.relative(lake.raw_path(source, entity, dt, batch_id)),
        "std": lake.relative(lake.std_path(entity, source, dt, batch_id)),
        "quarantine": lake.relative(lake.quarantine_path(entity, source, dt, batch_id)),
    }
    previous = {b.batch_id: b for b in catalog.landed_batches(entity)}.get(batch_id)
    # Staged files stay (a local link costs no space), so any step of the batch can run again from its
    # inputs, e.g. an Airflow task cleared after landing; the next extraction of the stream removes them.
    for kind, staged in (("raw", manifest["raw_staging"]), ("std", manifest["std_staging"]),
                         ("quarantine", manifest["quarantine_staging"])):
        staged = store.key_of(staged)
        if store.exists(staged):
            store.place(staged, rel[kind])
        elif not store.exists(rel[kind]):
            raise PipelineError(f"land {source}.{manifest['stream']} batch {batch_id}: staged {kind} file "
                                f"{store.where(staged)} is missing; rerun the sync")
    # A replay lands old rows again: it must not move the stream's cursor.
    state = None if manifest.get("replay") else {
        **manifest.get("state_extra", {}), "cursor": manifest["cursor_end"], "boundary": manifest["boundary"],
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
                store.delete(old)
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
    manifest = standardise_and_validate(settings, manifest, spec=spec)
    result = land(settings, manifest)
    held = held_message(result)
    if held:  # landed (the ledger remembers the suspect file), yet the stream's run failed: someone must look
        raise SnapshotHeld(held)
    return result


def sync(settings: Settings, sources: Iterable[str], *, streams: Iterable[str] | None = None,
         full: bool = False, on_stream: Callable[[str, str], ProgressFn | None] | None = None) -> list[dict[str, Any]]:
    """Sync every stream of each source, one after the other; the first failure stops the source.

    A stream that held a snapshot as suspect (SnapshotHeld) does not stop the others: the error
    is raised once all have run. The quality Data Docs site is rebuilt once at the end (also
    after a failure, to show it).
    """
    from quality.docs import build_site

    wanted = set(streams or [])
    results = []
    suspect_streams: list[str] = []
    from iehub.leases import held

    try:
        for source in sources:
            spec = load_spec(source)
            with held(settings.catalog(), source):  # one writer per source: refused in one line if taken
                for name in spec.streams:
                    if wanted and name not in wanted:
                        continue
                    progress = on_stream(source, name) if on_stream else None
                    try:
                        results.append(sync_stream(settings, source, name, full=full, spec=spec,
                                                   progress=progress))
                    except SnapshotHeld as exc:  # the other streams still sync; the run fails at the end
                        suspect_streams.append(str(exc))
        if suspect_streams:
            raise SnapshotHeld(" | ".join(suspect_streams))
    finally:
        build_site(settings.home)
    return results
