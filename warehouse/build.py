"""The warehouse build: ledgered std Parquet applied to ``warehouse.duckdb``, then published.

The builder is the only writer of ``warehouse.duckdb``, and it is incremental: the file
keeps its own state (``ops.build_state``: the last ``landed_seq`` applied per entity, and
``ops.change_sequence``), and a build applies only the batches landed since, so its work is
proportional to the new batches, not to the warehouse (:mod:`warehouse.versions` numbers the
changes, writes tombstones and history). ``build(..., full=True)`` rebuilds from the whole
lake instead (the change sequence continues; history is replayed from the batches).

Atomicity: the builder holds ``warehouse.lock``, copies ``warehouse.duckdb`` to
``warehouse.duckdb.building``, applies the new batches to the copy and renames it into
place only when complete; a killed or failed build leaves the previous file as it was.
Readers never open ``warehouse.duckdb``: each build is published as an immutable snapshot
(:mod:`warehouse.publish`) and readers open ``published/CURRENT`` read-only.

Storage format: the builder creates its file with ``storage_compatibility_version`` v1.4.0, so
every published snapshot (a hard link of that file) opens in DuckDB 1.4 LTS and later, the
versions analysts' tools ship; DuckDB 2.0's default format does not open there. Measured on
2M rows × 7 columns (2 shared cores): CREATE + CHECKPOINT 4.0–6.1 s in the 1.4 format against
5.4–6.4 s in 2.0's, aggregate queries 1.0–1.5 s either way, the same 25 MB file: no cost beyond
noise, while exporting each snapshot into a second, compatible file at publish time would add a
full copy per build and break the O(1) hard-link publish. A builder file found in another format
is rebuilt from the lake once.

Only files the catalog lists as landed are read (the lake is never globbed): a file without
a ledger row is the orphan of a killed or failed run and its rows were never accounted for.

Memory: DuckDB runs with ``memory_limit`` (``IEHUB_BUILD_MEMORY``, default 512MB) and spills to
``IEHUB_HOME/tmp/duckdb``; rows travel from Parquet to core inside DuckDB, never through Python.
The copy stays a full copy (the filesystem may not reflink, and published snapshots are hard
links of finished files, so the file being written must be a new inode); it costs ~0.2 s at
1M projects + 1M reports (163 MB), against seconds for the per-row mart it used to rebuild.

Organisations: the canonical ``organization`` entity lands per source in
``core.organization_source``; ``core.organization`` is one row per organisation across all
sources and mentions (:mod:`warehouse.identity`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import gc
import logging
import os
import functools
import shutil
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from schemas import ENTITIES, LINEAGE_FIELDS
from warehouse import arrow_rows, identity, key_changes, retire
from warehouse.arrow_rows import table_from_columns, table_from_rows
from warehouse import marts as marts_module
from warehouse.catalog import BatchRow, Catalog
from warehouse.landing import fsync_dir
from warehouse.layout import Lake
from warehouse.publish import Snapshot, new_version, publish
from warehouse.versions import (CHANGE_VERSION, DELETED, HISTORY_ENTITIES, TOMBSTONES, apply_entity, duck_type,
                                KEY_DIRECTORY_PREFIX, key_directory,
                                now_table, one_transaction)

if TYPE_CHECKING:
    from schemas import Entity

__all__ = ["BuildError", "BuildResult", "EntityBuild", "build", "build_core", "build_ops"]

log = logging.getLogger(__name__)

#: ``ops.quarantine`` when no quarantine file is ledgered yet (the pipeline's quarantine columns).
QUARANTINE_SCHEMA = pa.schema([
    ("entity", pa.string()),
    ("_source", pa.string()), ("_batch_id", pa.string()), ("_extracted_at", pa.timestamp("us", tz="UTC")),
    ("_page", pa.int32()), ("_row", pa.int32()), ("_row_index", pa.int64()), ("_key", pa.string()),
    ("field", pa.string()), ("rule", pa.string()), ("reason", pa.string()), ("_record", pa.string()),
])

#: The new std files of an entity, in merge order; the quarantine files with their entity.
_FILES_SCHEMA = pa.schema([("path", pa.string()), ("landed_seq", pa.int64()), ("rows", pa.int64())])
_QFILES_SCHEMA = pa.schema([("path", pa.string()), ("entity", pa.string())])

#: DuckDB memory for a build (``IEHUB_BUILD_MEMORY``: a size such as ``512MB``/``2GB``, or a share of
#: the machine's memory such as ``0.25``). Beyond it DuckDB spills to ``IEHUB_HOME/tmp/duckdb``.
DEFAULT_BUILD_MEMORY = "512MB"

#: Builder-owned ops tables; every other ``ops`` table is a copy of the catalog.
_BUILDER_TABLES = ("build_state", "change_sequence", "builds", "quarantine", marts_module.MART_STATE,
                   *marts_module.TALLY_TABLES)


def _builders(table: str) -> bool:
    """Whether ``ops.<table>`` is the builder's own (not a copy of a catalog table): one of
    :data:`_BUILDER_TABLES` or an entity's key directory (:func:`warehouse.versions.key_directory`)."""
    return table in _BUILDER_TABLES or table.startswith(KEY_DIRECTORY_PREFIX)


class BuildError(RuntimeError):
    """A build that cannot complete; the previous warehouse file and CURRENT are left as they were."""


@dataclass(frozen=True)
class EntityBuild:
    """What one entity's core table holds after the build, and what this build changed."""

    rows: int
    files: int
    seconds: float
    tombstones: int = 0
    carried_over: bool = False
    changes: int = 0
    rebuilt: bool = False


@dataclass(frozen=True)
class BuildResult:
    """The outcome of a build, for the CLI, the DAG's return value and ``ops.builds``."""

    path: Path
    started_at: datetime
    finished_at: datetime
    entities: dict[str, EntityBuild] = field(default_factory=dict)
    full: bool = False
    first_change_version: int | None = None
    last_change_version: int = 0
    snapshot: Snapshot | None = None
    marts: dict[str, int] = field(default_factory=dict)
    #: Seconds per build stage (open, core with the golden organisations, marts, ops, checkpoint,
    #: replace, publish), for the benchmarks and the log: where a build's time goes.
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def rows(self) -> int:
        return sum(e.rows for e in self.entities.values())

    @property
    def changes(self) -> int:
        return sum(e.changes for e in self.entities.values())


def _as_registry(entities: Any) -> dict[str, Entity]:
    """Entities by name, whether given as a mapping or a sequence."""
    if isinstance(entities, Mapping):
        return dict(entities)
    return {e.name: e for e in entities}


# -- small SQL helpers ---------------------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _pii(value: Any) -> str:
    """A PII grade as text whether schemas uses strings or an enum."""
    return str(getattr(value, "value", value) or "none").lower()


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """One value; fetchall() because DuckDB 2 keeps a half-read result open and blocks the connection."""
    return con.execute(sql, params or []).fetchall()[0][0]


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str, database: str | None = None) -> bool:
    return bool(_scalar(
        con,
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = coalesce(?, current_database()) "
        "AND schema_name = ? AND table_name = ?",
        [database, schema, table],
    ))


def _columns(con: duckdb.DuckDBPyConnection, database: str, schema: str, table: str) -> list[tuple[str, str]]:
    """(name, DuckDB type) of an existing table's columns, in order: pragma_table_info reads that table
    alone (0.4 ms; filtering duckdb_columns() lists every column of every table first: 2.4 ms)."""
    qualified = ".".join(_ident(part) for part in (database, schema, table))
    return [(name, dtype) for name, dtype in con.execute(
        "SELECT name, type FROM pragma_table_info(?)", [qualified]).fetchall()]


def _add_column(con: duckdb.DuckDBPyConnection, schema: str, table: str, column: str, dtype: str) -> None:
    """Add a column to an existing table unless it has it. Looked up first: ``ADD COLUMN IF NOT EXISTS``
    on a column that exists still alters the table (40 ms a build on 1M projects' tombstones)."""
    if column not in {name for name, _ in _columns(con, _current_db(con), schema, table)}:
        con.execute(f"ALTER TABLE {_ident(schema)}.{_ident(table)} ADD COLUMN {_ident(column)} {dtype}")


#: Each connection's current database, asked once: a statement costs ~1 ms inside a build's transaction,
#: and an incremental build asked 5 times. It changes only by USE, which _connect_to_copy runs before
#: anything asks (and then forgets what was known).
_DATABASES: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, str] = weakref.WeakKeyDictionary()


def _current_db(con: duckdb.DuckDBPyConnection) -> str:
    name = _DATABASES.get(con)
    if name is None:
        name = _DATABASES[con] = _scalar(con, "SELECT current_database()")
    return name


# -- locking and atomic replace -------------------------------------------------------------


@contextmanager
def _exclusive_lock(lake: Lake) -> Iterator[IO[str]]:
    """Hold ``warehouse.lock``; fail at once, naming the holder, if another build has it."""
    lake.home.mkdir(parents=True, exist_ok=True)
    handle = open(lake.lock_path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise BuildError(
                f"another warehouse build holds {lake.lock_path} (pid {holder}); "
                "wait for it to finish, there is only one writer of warehouse.duckdb"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield handle
    finally:
        handle.close()  # closing the descriptor releases the flock


def _remove_database(path: Path) -> None:
    """Remove a DuckDB file and its WAL (a killed build's leftovers)."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)


def _replace_warehouse(lake: Lake) -> None:
    """fsync the finished build and rename it onto ``warehouse.duckdb`` in one step."""
    building = lake.building_path
    if building.with_name(building.name + ".wal").exists():
        raise BuildError(f"{building} still has a WAL after close; not publishing a partial build")
    with open(building, "rb") as handle:
        os.fsync(handle.fileno())
    # A stale WAL next to the target would be replayed onto the new file by DuckDB.
    lake.warehouse_path.with_name(lake.warehouse_path.name + ".wal").unlink(missing_ok=True)
    # The replaced file keeps a name in tmp/retired until the rename is done, so the rename does not
    # free its blocks (32 ms for 132 MB on ext4): a background thread unlinks it (warehouse.retire).
    held = retire.hold(lake.warehouse_path, lake.home)
    os.replace(building, lake.warehouse_path)
    fsync_dir(lake.home)
    retire.release(held)


# -- the build ------------------------------------------------------------------------------


_BUILD_THREAD = "iehub-build"
T = TypeVar("T")


def build_nice(value: str | None = None) -> int:
    """How much lower than its caller a build runs (``IEHUB_BUILD_NICE``, 0-19; default 10)."""
    text = (value if value is not None else os.environ.get("IEHUB_BUILD_NICE") or "10").strip()
    if not text.isdigit() or int(text) > 19:
        raise BuildError(f"IEHUB_BUILD_NICE={text!r}: expected a whole number from 0 (off) to 19")
    return int(text)


def at_build_priority(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` in a thread of its own at a lower CPU priority (``IEHUB_BUILD_NICE``, default 10).

    DuckDB's workers, started from that thread, inherit it: on a machine that also serves
    feeds, a build yields the CPU to requests instead of doubling their latency, and the
    caller's thread (a server in ``iehub demo``) keeps its priority. 0 runs ``fn`` in place.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        nice = build_nice()
        if not nice or not hasattr(os, "setpriority") or threading.current_thread().name == _BUILD_THREAD:
            return fn(*args, **kwargs)
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                try:
                    tid = threading.get_native_id()
                    os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
                except OSError as exc:  # not allowed here: run at the caller's priority
                    log.debug("build priority unchanged: %s", exc)
                box["result"] = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
                box["error"] = exc

        # Here, not in the build's thread: the Arrow pool (mimalloc) hands back only the calling
        # thread's freed pages, so released from the new thread a sync's leftovers stayed (5M rows:
        # ~30 MB returned there against ~200 MB here, all of it under the build's peak).
        _release_memory()
        thread = threading.Thread(target=work, name=_BUILD_THREAD)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["result"]

    return wrapper


@at_build_priority
def build(
    home: Path,
    catalog: Catalog,
    *,
    entities: list[str] | None = None,
    registry: Mapping[str, Entity] | None = None,
    full: bool = False,
    keep: int | None = None,
    lake: Lake | None = None,
) -> BuildResult:
    """Apply the batches landed since the last build, rebuild marts and ops, publish a snapshot.

    Runs at a lower CPU priority than its caller (:func:`at_build_priority`).

    ``entities`` limits which entities take new batches this time; the others are carried
    over unchanged. ``full`` rebuilds every entity from all its ledgered batches (use it
    after restoring a lake, or to compact the file); change versions continue from the
    previous build either way. ``keep`` is how many snapshots to keep (default
    ``IEHUB_SNAPSHOTS_KEEP`` or 5). ``registry`` defaults to ``schemas.ENTITIES``. ``lake`` says
    where the ledgered files live (default: under ``home``); with the lake in object storage the
    build reads local copies of the files it needs (``Lake.resolve``), the warehouse stays local.
    """
    lake = lake if lake is not None else Lake(home)
    registry = _as_registry(registry if registry is not None else ENTITIES)
    if entities is not None:
        unknown = sorted(set(entities) - set(registry))
        if unknown:
            raise BuildError(f"unknown entities {unknown}; known: {sorted(registry)}")
    started_at = datetime.now(timezone.utc)
    if threading.current_thread().name != _BUILD_THREAD:
        _release_memory()  # else at_build_priority has just done it, on the caller's thread (~10 ms each)
    stages: dict[str, float] = {}
    clock = [time.perf_counter()]

    def stage(name: str) -> None:
        now = time.perf_counter()
        stages[name] = stages.get(name, 0.0) + now - clock[0]
        clock[0] = now

    with _exclusive_lock(lake):
        _remove_database(lake.building_path)
        for folder in {Path(home), lake.home}:  # what an earlier build dropped and did not finish deleting
            retire.sweep(folder)
        try:
            con, full, previous, flush = _open_building(lake, full)
            stage("open")
            try:
                version = new_version(home)
                captured: set[str] = set()
                # An incremental build's core, marts and ops are one transaction, which one checkpoint
                # commits (ops' own second checkpoint cost 0.02-0.03 s of a 1% build at 1M projects).
                with arrow_rows.lend(con), nullcontext() if full else one_transaction(con):
                    built, first, last = build_core(con, lake, catalog, registry, only=entities, previous=previous,
                                                    now=started_at, captured=captured)
                    stage("core")
                    mart_rows = marts_module.build_marts(con, unchanged_tables(built), captured)
                    marts_module.drop_changed_keys(con)
                    stage("marts")
                    finished_at = datetime.now(timezone.utc)
                    result = BuildResult(lake.warehouse_path, started_at, finished_at, built, full, first, last,
                                         None, mart_rows)
                    build_ops(con, catalog, lake, result, version, previous=previous)
                    if previous:
                        con.execute("DETACH prev")
                    stage("ops")
                    if not full:
                        _commit_by_checkpoint(con, flush, last if first is None else first - 1)
                if full:
                    flush.wait()
                    # A full build's one checkpoint, of a new file (only the golden organisations may
                    # have deleted a few rows): no vacuum, which would otherwise merge every under-full
                    # row group into full ones, and leave the few dead rows to an incremental build's. A
                    # first load's tables are written in change-version order, one row group per
                    # landed row group (~100k rows, DuckDB's hold 122,880): merged, the 1M projects'
                    # history and core were rewritten whole (1.2-2.3 s of a 6 s build).
                    con.execute("SET max_vacuum_tasks = 0")
                    con.execute("CHECKPOINT")
                stage("checkpoint")
            finally:
                flush.wait(raise_error=False)
                con.close()
            _replace_warehouse(lake)
            stage("replace")
        except BaseException:
            _remove_database(lake.building_path)
            raise
        manifest = {
            "built_at": finished_at.isoformat(),
            "full": full,
            "first_change_version": first,
            "last_change_version": last,
            "rows": {name: e.rows for name, e in built.items()},
            "tombstones": {name: e.tombstones for name, e in built.items()},
            "marts": mart_rows,
        }
        snapshot = publish(home, lake.warehouse_path, manifest, keep=keep, version=version)
        stage("publish")
    log.info("build %s stages: %s", version, ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
    return BuildResult(lake.warehouse_path, started_at, finished_at, built, full, first, last, snapshot, mart_rows,
                       stages)


def unchanged_tables(built: Mapping[str, EntityBuild]) -> set[tuple[str, str]]:
    """The core tables this build did not change, for :func:`marts.build_marts` to skip marts over them.

    An entity that took no change (and was not rebuilt) leaves its table and history as they
    were. The tombstones and the organisation-matching tables are left only when no entity
    changed at all: a new mention in any entity can change a match without changing a golden row.
    """
    quiet = [n for n, e in built.items() if not (e.changes or e.rebuilt)]
    out = {("core", t) for n in quiet for t in (n, n + "_history")}
    if len(quiet) == len(built):
        out |= {("core", t) for t in (TOMBSTONES, identity.SOURCE_TABLE, identity.MATCH_TABLE,
                                      identity.MENTIONS_TABLE, identity.USCC_TABLE)}
    return out


#: Deleted rows a table may carry (share of its stored rows) before an incremental build compacts the file.
VACUUM_SHARE = 0.1
_ROW_GROUP = 122_880  # DuckDB's rows per row group


def needs_vacuum(con: duckdb.DuckDBPyConnection, since: int | None = None) -> bool:
    """Whether this checkpoint should compact the tables' deleted rows away (DuckDB's vacuum).

    DuckDB's checkpoint merges row groups that carry deletes whenever rows appended since let it
    save one: after a 1% change spread over the whole table (every row group loses a few rows,
    the new versions fill the last) that rewrote every row group of ``core.project``, 0.72 of the
    0.93 CPU-seconds the first incremental sync after a full load spent in CHECKPOINT (1M projects).
    An incremental build therefore leaves deleted rows in place until some table's dead rows
    reach ``VACUUM_SHARE`` of its stored rows (or a row group's worth), then compacts them all at
    once; a row group whose rows are all deleted is dropped either way, and ``build --full``
    writes a compact file. Dead rows are the table's stored rows (``estimated_size``) minus its
    live ones, counted only for tables of at least a row group.

    ``since``: called inside a transaction whose new rows are numbered above this change version.
    There ``estimated_size`` counts only committed rows, so a change-versioned table's live rows are
    those numbered up to ``since`` (the transaction's own appends are not in what is stored yet).
    """
    tables = con.execute(
        "SELECT t.schema_name, t.table_name, t.estimated_size, c.column_name IS NOT NULL FROM duckdb_tables() AS t "
        f"LEFT JOIN duckdb_columns() AS c ON c.database_name = t.database_name AND c.schema_name = t.schema_name "
        f"AND c.table_name = t.table_name AND c.column_name = '{CHANGE_VERSION}' "
        "WHERE t.database_name = current_database() "
        f"AND NOT t.temporary AND t.estimated_size >= {_ROW_GROUP}").fetchall()
    if not tables:
        return False
    live = con.execute(" UNION ALL ".join(
        f"SELECT {i} AS i, count(*){kept} AS n FROM {_ident(schema)}.{_ident(table)}"
        for i, (schema, table, _, versioned) in enumerate(tables)
        for kept in [f" FILTER (WHERE {CHANGE_VERSION} IS NULL OR {CHANGE_VERSION} <= {int(since)})"
                     if since is not None and versioned else ""])).fetchall()
    for i, n in live:
        stored = int(tables[i][2])
        dead = stored - int(n)
        if dead >= _ROW_GROUP or dead >= VACUUM_SHARE * stored:
            log.info("checkpoint compacts deleted rows: %s.%s has %d of %d stored rows deleted",
                     tables[i][0], tables[i][1], dead, stored)
            return True
    return False


def _commit_by_checkpoint(con: duckdb.DuckDBPyConnection, flush: _CopyFlush, since: int) -> None:
    """Commit the build's transaction as a checkpoint: its rows go to the file once, not to the WAL first.

    Committed normally, the transaction's rows were written to the WAL (with an fsync per commit)
    and then again by the checkpoint into the file. A commit whose WAL would pass
    ``wal_autocheckpoint`` checkpoints instead of writing the WAL, so the threshold is lowered for
    this commit only (1M projects, 1% changed: 0.04 s of WAL writes saved). Deleted rows are left
    in place unless :func:`needs_vacuum` says the file should be compacted; the copied file's
    flush is joined first (its error fails the build). ``since``: the change version before the build.
    """
    if not needs_vacuum(con, since):
        con.execute("SET max_vacuum_tasks = 0")  # see needs_vacuum: no whole-table rewrite for 1%
    flush.wait()
    con.execute("SET wal_autocheckpoint = '1kB'")
    con.execute("COMMIT")
    con.execute("SET wal_autocheckpoint = '1TB'")


#: Peak Arrow memory after which a build's start collects cyclic garbage (see :func:`_release_memory`).
_COLLECT_AFTER_BYTES = 64 * 2**20


def _release_memory() -> None:
    """Hand memory freed by earlier steps back to the OS before DuckDB takes its share.

    A sync that lands then builds in one process (the CLI, the benchmarks) keeps the extract's
    and the gate's freed Arrow buffers and heap pages in its allocators; returned, they do not
    add to the build's peak. Best effort: allocators that cannot release simply keep them.

    The cyclic garbage collection (20-35 ms with the hub imported) runs only in a process whose Arrow
    pool has held ``_COLLECT_AFTER_BYTES`` at some point: one that only builds (a scheduled build,
    ``iehub build``) has no sync's leftovers for it to find.
    """
    pool = pa.default_memory_pool()
    if pool.max_memory() >= _COLLECT_AFTER_BYTES:
        gc.collect()
    pool.release_unused()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


class _CopyFlush:
    """Write the copied file's pages to disk on a background thread while the build computes.

    The copy at the start of an incremental build leaves the whole warehouse file (132 MB at 1M
    projects) as dirty pages; left alone, the checkpoint's fsync waited for all of them (0.06 s of
    the 1M incremental build). Flushed here, the disk writes overlap the core and mart steps.
    :meth:`wait` joins the thread before the checkpoint and raises what its fsync raised: after a
    failed fsync the kernel may forget the error, so a later fsync would not report it again.
    """

    def __init__(self, path: Path | None) -> None:
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if path is not None:
            self._path = path
            self._thread = threading.Thread(target=self._run, name="iehub-build-flush", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except BaseException as exc:  # noqa: BLE001 - handed to the build's thread by wait()
            self.error = exc

    def wait(self, raise_error: bool = True) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if raise_error and self.error is not None:
            raise BuildError(f"cannot write the copy of the warehouse to disk ({self._path}): {self.error}") \
                from self.error


#: linux/fs.h FICLONE = _IOW(0x94, 9, int): make a file share another's extents (copy-on-write).
_FICLONE = 0x40049409


def clone_or_copy(source: Path, target: Path) -> bool:
    """Copy ``source`` to ``target`` as a reflink where the filesystem has them, else byte for byte.

    On XFS (with reflink, mkfs.xfs's default since xfsprogs 5.1: RHEL 8+, Kylin) and btrfs the
    clone shares the file's blocks: 0.3 ms for the 132 MB warehouse of 1M projects instead of a
    18 ms copy and 50-80 ms of disk writes for its fsync, and the build's checkpoint then writes
    only the blocks it changes, so starting a build no longer costs in proportion to the warehouse.
    Elsewhere (ext4, tmpfs, another device) the ioctl fails and the file is copied. Returns
    whether it was a clone.
    """
    try:
        with open(source, "rb") as src, open(target, "wb") as dst:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
        return True
    except OSError as exc:
        # not supported here (EOPNOTSUPP, EXDEV, EINVAL, ENOTTY...): the copy below is the answer, and
        # a real fault (a full disk, a bad path) fails it with its own error
        log.debug("no reflink of %s (%s); copying it", source, exc)
        target.unlink(missing_ok=True)
    shutil.copyfile(source, target)
    return False


def _open_building(lake: Lake, full: bool) -> tuple[duckdb.DuckDBPyConnection, bool, bool, _CopyFlush]:
    """Open the file this build writes: a copy of the last build, or a new file.

    A new file is used for ``full`` builds and when the last build has no builder state (a
    warehouse from before incremental builds); the last build is then attached read-only as
    ``prev`` so the change sequence and the build log continue. Returns (connection, full,
    previous attached, the copy's background flush: :class:`_CopyFlush`).
    """
    exists = lake.warehouse_path.exists()
    if exists and not full and not readable_by_analysts(lake.warehouse_path):
        log.info("warehouse %s is in a storage format DuckDB %s cannot open; rebuilding it from the lake",
                 lake.warehouse_path, STORAGE_COMPATIBILITY[1:])
    elif exists and not full:
        con = _connect_to_copy(lake)
        flush = _CopyFlush(lake.building_path)
        if _table_exists(con, "ops", "build_state") and _table_exists(con, "ops", "change_sequence"):
            return con, False, False, flush
        con.close()
        flush.wait(raise_error=False)
        _remove_database(lake.building_path)
        log.info("warehouse %s has no incremental state; rebuilding it from the lake", lake.warehouse_path)
    con = _connect(lake)
    previous = False
    if exists:
        try:
            con.execute(f"ATTACH {_literal(str(lake.warehouse_path))} AS prev (READ_ONLY)")
        except duckdb.Error as exc:
            con.close()
            raise BuildError(
                f"cannot open the previous warehouse {lake.warehouse_path} read-only ({exc}); "
                "close any session that opened it read-write (readers open published/CURRENT), "
                "or move it aside to rebuild everything from the lake"
            ) from exc
        previous = True
    return con, True, previous, _CopyFlush(None)


def build_memory_limit(value: str | None = None) -> str:
    """The DuckDB ``memory_limit`` for a build, from ``IEHUB_BUILD_MEMORY`` (size or share of RAM)."""
    text = (value if value is not None else os.environ.get("IEHUB_BUILD_MEMORY") or DEFAULT_BUILD_MEMORY).strip()
    try:
        share = float(text)
    except ValueError:
        if not text[:1].isdigit():
            raise BuildError(f"IEHUB_BUILD_MEMORY={text!r} is neither a size (512MB, 2GB) nor a share (0.25)") from None
        return text
    if not 0 < share <= 1:
        raise BuildError(f"IEHUB_BUILD_MEMORY={text!r}: a share of memory must be in (0, 1]")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(64, int(total * share / 2**20))}MB"


# The oldest DuckDB that must open a published snapshot: 1.4 is the LTS line analysts' tools ship.
STORAGE_COMPATIBILITY = "v1.4.0"
_STORAGE_VERSIONS_READABLE = range(64, 68)  # the header's storage number DuckDB 1.2 … 1.4 writes (1.4: 67)


def readable_by_analysts(path: Path) -> bool:
    """Whether a DuckDB file's header names a storage version DuckDB 1.4 opens (2.0's default, 999, it does not)."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    return len(head) == 20 and head[8:12] == b"DUCK" and int.from_bytes(head[12:20], "little") in _STORAGE_VERSIONS_READABLE


def _connect(lake: Lake, path: Path | None = None) -> duckdb.DuckDBPyConnection:
    """Open the building file (``path``; ``:memory:`` for an instance to attach it to later) with
    bounded memory.

    Without a ``memory_limit`` DuckDB takes up to 80% of RAM for the merge's hash tables and
    windows (11.8 GB at 5M projects); with one it spills to ``tmp/duckdb`` under the hub's
    home. Insertion order is not needed: merge order is explicit (``landed_seq``, file row).
    """
    spill = lake.home / "tmp" / "duckdb"
    spill.mkdir(parents=True, exist_ok=True)
    text = os.environ.get("IEHUB_BUILD_THREADS") or ""
    if text and not text.strip().isdigit():
        raise BuildError(f"IEHUB_BUILD_THREADS={text!r} is not a whole number of threads")
    # Every core, up to 4: more threads means more per-thread buffers within the same memory_limit.
    threads = max(1, min(int(text or 0) or (os.cpu_count() or 1), 4))
    con = duckdb.connect(str(path or lake.building_path), config={
        "memory_limit": build_memory_limit(),
        "temp_directory": str(spill),
        "preserve_insertion_order": False,
        "threads": threads,
        # One checkpoint, at the end (build() runs CHECKPOINT before publishing): DuckDB's default
        # 16 MB threshold made a statement in the middle (the history UPDATE) pay for rewriting
        # every row group touched so far, and later statements touch some of them again.
        "wal_autocheckpoint": "1TB",
        # Analysts open snapshots with DuckDB 1.4 LTS / 1.5: a file is created in that storage
        # format and keeps it when later builds copy it (a DuckDB 2.0 default file is "version 999").
        "storage_compatibility_version": STORAGE_COMPATIBILITY,
    })
    con.execute("SET TimeZone = 'UTC'")
    return con


#: The database name a build's file is attached as: the one DuckDB gives ``warehouse.duckdb.building``.
_BUILDING_DB = "warehouse"


def _connect_to_copy(lake: Lake) -> duckdb.DuckDBPyConnection:
    """Copy the last build to the building file and open it, the DuckDB instance started while the
    file is copied: a process's first instance and its first catalog query cost 30-60 ms, about
    what the copy of the 132 MB warehouse of 1M projects takes, so the build starts ~30 ms sooner.
    The file is then attached under the name DuckDB gives it when opened directly, and used."""
    box: dict[str, Any] = {}

    def copy() -> None:
        try:
            box["cloned"] = clone_or_copy(lake.warehouse_path, lake.building_path)
        except BaseException as exc:  # noqa: BLE001 - raised on the build's thread below
            box["error"] = exc

    copier = threading.Thread(target=copy, name="iehub-build-copy", daemon=True)
    copier.start()
    con: duckdb.DuckDBPyConnection | None = None
    try:
        con = _connect(lake, Path(":memory:"))
        con.execute("SELECT count(*) FROM duckdb_tables()").fetchall()  # the catalog's first use, while copying
        copier.join()
        if "error" in box:
            raise BuildError(f"cannot copy {lake.warehouse_path} to {lake.building_path}: {box['error']}") \
                from box["error"]
        con.execute(f"ATTACH {_literal(str(lake.building_path))} AS {_BUILDING_DB}")
        con.execute(f"USE {_BUILDING_DB}")
        _DATABASES.pop(con, None)
    except BaseException:
        copier.join()
        if con is not None:
            con.close()
        raise
    if box.get("cloned"):
        log.info("building on a reflink of %s (copy-on-write: only the blocks this build changes are written)",
                 lake.warehouse_path)
    return con


def _core_schema(entity: Entity) -> pa.Schema:
    """The entity's business and lineage columns, without the delete flag."""
    full = entity.arrow_schema(lineage=True)
    return pa.schema([f for f in full if f.name != DELETED])


def _signature(schema: pa.Schema) -> str:
    """What the core table's columns were built from; a different signature rebuilds the entity."""
    return ";".join(f"{f.name}:{f.type}" for f in schema)


def _create_tables(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema, history: bool) -> None:
    """The typed, empty core table (and history); DuckDB maps the Arrow types (DECIMAL, DATE, TIMESTAMPTZ)."""
    con.register("_empty", pa.Table.from_batches([], schema=schema))  # (empty_table() loads pandas)
    try:
        con.execute(f"CREATE TABLE core.{_ident(name)} AS SELECT *, NULL::BIGINT AS {CHANGE_VERSION} FROM _empty")
        if history:
            con.execute(
                f"CREATE TABLE core.{_ident(name + '_history')} AS SELECT *, NULL::BIGINT AS {CHANGE_VERSION}, "
                "NULL::TIMESTAMPTZ AS valid_from, NULL::TIMESTAMPTZ AS valid_to FROM _empty"
            )
    finally:
        con.unregister("_empty")


def _ensure_state(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS core")
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS core.{TOMBSTONES} (entity VARCHAR, natural_key VARCHAR, "
        f"{CHANGE_VERSION} BIGINT, deleted_at TIMESTAMPTZ, _source VARCHAR, _source_key VARCHAR, "
        "_batch_id VARCHAR, _extracted_at TIMESTAMPTZ, district_code VARCHAR)"
    )
    # Warehouses built before tombstones carried a district upgrade in place (old rows: NULL).
    _add_column(con, "core", TOMBSTONES, "district_code", "VARCHAR")
    con.execute("CREATE TABLE IF NOT EXISTS ops.build_state (entity VARCHAR PRIMARY KEY, applied_seq BIGINT, "
                "signature VARCHAR, own_keyed BOOLEAN)")
    # Warehouses from before the flag upgrade in place (NULL: not known yet, found out at the next apply).
    _add_column(con, "ops", "build_state", "own_keyed", "BOOLEAN")
    con.execute("CREATE TABLE IF NOT EXISTS ops.change_sequence (last_change_version BIGINT)")
    key_changes.ensure_table(con)


def build_core(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    catalog: Catalog,
    registry: Mapping[str, Entity],
    *,
    only: list[str] | None = None,
    previous: bool = False,
    now: datetime | None = None,
    captured: set[str] | None = None,
) -> tuple[dict[str, EntityBuild], int | None, int]:
    """Schema ``core``: apply each entity's new batches; returns (per entity, first and last version).

    With the canonical organisation entity, its rows land per source in
    ``core.organization_source`` and ``core.organization`` is the golden table across sources
    (:mod:`warehouse.identity`), refreshed after every entity is applied because mentions in
    any entity can add, fold or split an organisation.

    ``captured`` (when given) collects the tables whose changed keys were captured for the marts
    kept group by group (:func:`marts.capture_changed_keys`, before their new files are applied).
    """
    now = now or datetime.now(timezone.utc)
    golden = identity.applies(registry)
    _ensure_state(con)
    # Read once: core's comments (each lookup is two catalog queries, and an incremental build visits
    # every entity, most of them unchanged).
    known = _known_comments(con, "core")
    _comment_tombstones(con, known)
    _comment_table(con, f"core.{key_changes.KEY_CHANGES}", key_changes.TABLE_DOC, key_changes.COLUMN_DOCS, known)
    latest = catalog.landed_entities()
    unknown = sorted(set(latest) - set(registry))
    if unknown:
        raise BuildError(f"the ledger lists batches of unknown entities {unknown}; known: {sorted(registry)}")
    ledger_seq = max(latest.values(), default=0)
    rows = con.execute("SELECT entity, applied_seq, signature, own_keyed FROM ops.build_state").fetchall()
    own_keyed: dict[str, bool | None] = {e: own for e, _, _, own in rows}

    state = {e: (int(s or 0), sig) for e, s, sig, _ in rows}
    # The ledger is read from where the entity that has applied least stopped: an incremental build
    # reads the new batches, not the whole ledger (100,000 batches: 1.7 s a build); an entity that
    # needs more (new, or rebuilt for changed columns) reads its own batches below.
    core_names = [identity.source_entity(e).name if golden and n == identity.ORGANIZATION else n
                  for n, e in registry.items()]
    ledger_from = min((state.get(t, (0, None))[0] for t in core_names), default=0)
    ledger: dict[str, list[BatchRow]] = {}
    for batch in catalog.landed_batches(after=ledger_from):
        ledger.setdefault(batch.entity, []).append(batch)
    last = int(_scalar(con, "SELECT coalesce(max(last_change_version), 0) FROM ops.change_sequence"))
    if previous and _table_exists(con, "ops", "change_sequence", "prev"):
        last = max(last, int(_scalar(con, "SELECT coalesce(max(last_change_version), 0) FROM prev.ops.change_sequence")))
    if state and max(s for s, _ in state.values()) > ledger_seq:
        raise BuildError(
            f"warehouse.duckdb has applied batches up to landed_seq {max(s for s, _ in state.values())} but the "
            f"catalog's ledger ends at {ledger_seq}; it belongs to another catalog: run `iehub build --full`"
        )
    first_version: int | None = None
    lineage_docs = {f.name: (f.zh, f.en) for f in LINEAGE_FIELDS}
    out: dict[str, EntityBuild] = {}
    touched: set[str] = set()
    # Read once: which core tables exist.
    core_tables = {t for (t,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'core'").fetchall()}
    applied_state: list[tuple[str, int, str, bool | None]] = []
    for name, canonical in registry.items():
        t0 = time.perf_counter()
        # The organisation entity's rows are kept per source; core.organization is built below.
        entity = identity.source_entity(canonical) if golden and name == identity.ORGANIZATION else canonical
        table = entity.name
        schema = _core_schema(entity)
        signature = _signature(schema)
        history = table in HISTORY_ENTITIES
        applied, old_signature = state.get(table, (0, None))
        exists = table in core_tables
        rebuilt = False
        if not exists or old_signature != signature:
            if exists:
                log.info("entity %s: columns changed since the last build; rebuilding it from all its batches", table)
            con.execute(f"DROP TABLE IF EXISTS core.{_ident(table)}")
            con.execute(f"DROP TABLE IF EXISTS core.{_ident(table + '_history')}")
            con.execute(f"DROP TABLE IF EXISTS {key_directory(table)}")
            con.execute(f"DELETE FROM core.{TOMBSTONES} WHERE entity = ?", [table])
            con.execute(f"DELETE FROM core.{key_changes.KEY_CHANGES} WHERE entity = ?", [table])
            _create_tables(con, table, schema, history)
            applied, rebuilt = 0, True
            for dropped in (table, table + "_history"):
                known.pop(("core", dropped), None)
        _comment_entity(con, entity, schema, lineage_docs, history, known)
        carried = only is not None and name not in only and not rebuilt
        files, changes = 0, 0
        own = True if rebuilt else own_keyed.get(table)
        if not carried:
            batches = [b for b in (ledger.get(name, []) if applied >= ledger_from else
                                   catalog.landed_batches(name, after=applied)) if int(b.landed_seq or 0) > applied]
            try:
                seq_table, present = _check_files(lake, entity, batches)
                files = seq_table.num_rows
                if files:
                    missing_key = [k for k in entity.key if k not in present]
                    if missing_key:
                        raise BuildError(f"entity {name}: key column(s) {missing_key} absent from every std file")
                    prior = None
                    if captured is not None and not rebuilt and table in marts_module.GROUPED_TABLES:
                        # the keys' prior rows come from the apply's own scan of core (no second scan)
                        # and each row's _source_key, which the organisation mentions' delta needs
                        # (identity._count_mentions: did the row a mention names as its latest leave it?)
                        kept = marts_module.prior_columns(table, entity.key)
                        prior = (marts_module.capture_changed_keys(table),
                                 [*kept, *(["_source_key"] if "_source_key" in schema.names
                                           and "_source_key" not in kept else [])])
                        captured.add(table)
                    if own is None and key_changes.supports_key_changes(entity) and "_source_key" in schema.names:
                        # not known yet (a warehouse from before the flag): found out once, by one scan
                        own = not key_changes.has_foreign_surrogates(con, entity, f"core.{_ident(table)}")
                    result = apply_entity(con, entity, schema, seq_table, present, last, history=history, prior=prior,
                                          core_own_keyed=bool(own))
                    own = None if own is None else own and not result.foreign_surrogates
                    if table in (captured or ()) and result.changes and _scalar(
                            con, f"SELECT count(*) FROM core.{key_changes.KEY_CHANGES} WHERE entity = ? "
                                 f"AND {CHANGE_VERSION} > ?", [table, last]):
                        captured.discard(table)  # a rename took a key the files lack out of core: marts whole
                    changes = result.changes
                    if changes:
                        first_version = last + 1 if first_version is None else first_version
                        last = result.last_version
            except duckdb.Error as exc:
                raise BuildError(f"entity {name}: merge failed: {exc}") from exc
            applied_state.append((table, ledger_seq, signature, own))
        if changes or rebuilt:
            touched.add(name)
        out[name] = EntityBuild(0, files, time.perf_counter() - t0, 0, carried, changes, rebuilt)
    if applied_state:
        con.execute("INSERT OR REPLACE INTO ops.build_state VALUES " + ", ".join(["(?, ?, ?, ?)"] * len(applied_state)),
                    [v for row in applied_state for v in row])
    out = _with_counts(con, out, {name: (identity.SOURCE_TABLE if golden and name == identity.ORGANIZATION else name)
                                  for name in out})
    if golden:
        # the changed keys' rows before and after, where the marts' capture holds every mention column
        delta = {t: (f"_prior_{t}", now_table(f"_prior_{t}")) for t in sorted(captured or ())
                 if t in registry and identity.mention_columns(t)
                 and identity.mention_columns(t) <= set(marts_module.prior_columns(t, registry[t].key))}
        out[identity.ORGANIZATION], first_version, last = _build_golden(
            con, registry, out.get(identity.ORGANIZATION), touched, first_version, last, now, delta)
    con.execute("DELETE FROM ops.change_sequence")
    con.execute("INSERT INTO ops.change_sequence VALUES (?)", [last])
    return out, first_version, last


def _with_counts(con: duckdb.DuckDBPyConnection, built: dict[str, EntityBuild],
                 tables: Mapping[str, str]) -> dict[str, EntityBuild]:
    """Each entity's core rows and tombstones, counted in one query (not two per entity)."""
    if not built:
        return built
    union = " UNION ALL ".join(
        f"SELECT {_literal(name)} AS entity, (SELECT count(*) FROM core.{_ident(table)}) AS n_rows, "
        f"(SELECT count(*) FROM core.{TOMBSTONES} WHERE entity = {_literal(table)}) AS n_tombs"
        for name, table in tables.items())
    counts = {name: (int(n), int(t)) for name, n, t in con.execute(union).fetchall()}
    return {name: dataclasses.replace(e, rows=counts[name][0], tombstones=counts[name][1])
            for name, e in built.items()}


def _build_golden(
    con: duckdb.DuckDBPyConnection,
    registry: Mapping[str, Entity],
    source_build: EntityBuild | None,
    touched: set[str],
    first_version: int | None,
    last: int,
    now: datetime,
    delta: Mapping[str, tuple[str, str]] | None = None,
) -> tuple[EntityBuild, int | None, int]:
    """``core.organization`` across sources: re-read changed mentions, resolve, version the difference.

    ``delta``: see :func:`warehouse.identity.refresh_mentions` (the changed keys' rows the marts'
    capture keeps, before and after the apply)."""
    t0 = time.perf_counter()
    entity = registry[identity.ORGANIZATION]
    schema = identity.golden_schema(_core_schema(entity))
    signature = _signature(schema)
    state = con.execute("SELECT signature FROM ops.build_state WHERE entity = 'organization'").fetchall()
    if not _table_exists(con, "core", identity.ORGANIZATION):
        _create_tables(con, identity.ORGANIZATION, schema, True)
        touched = set(registry)
    elif not state or state[0][0] != signature:
        # A warehouse from before the golden table (or with other columns): keep its versions,
        # tombstones and history, add the new columns; the next diff re-versions what differs.
        for table in (identity.ORGANIZATION, identity.ORGANIZATION + "_history"):
            present = {c for c, _ in _columns(con, _current_db(con), "core", table)}
            for f in schema:
                if f.name not in present:
                    con.execute(f"ALTER TABLE core.{_ident(table)} ADD COLUMN {_ident(f.name)} "
                                f"{duck_type(f.type)}")
        # Their hashes are of other content: every row is compared (and versioned) afresh.
        con.execute(f"UPDATE core.{identity.ORGANIZATION} SET _record_hash = NULL")
        touched = set(registry)
    refreshed = identity.refresh_mentions(con, registry, touched, delta)
    changes = 0
    if refreshed.resolve:
        try:
            result = identity.build_golden(con, entity, schema, last, now, touched=refreshed.touched)
        except duckdb.Error as exc:
            raise BuildError(f"entity organization: matching organisations across sources failed: {exc}") from exc
        changes = result.changes
        if changes:
            first_version = last + 1 if first_version is None else first_version
            last = result.last_version
    con.execute("INSERT OR REPLACE INTO ops.build_state (entity, applied_seq, signature) VALUES (?, ?, ?)",
                [identity.ORGANIZATION, None, signature])
    extra_docs = {name: tuple(doc.split(" / ", 1)) for name, (_, doc) in identity.GOLDEN_COLUMNS.items()}
    # Read once: an unchanged comment costs no catalog lookup (two per table) and no write.
    known = _known_comments(con, "core")
    _comment_entity(
        con, entity, schema, {f.name: (f.zh, f.en) for f in LINEAGE_FIELDS} | extra_docs, True, known,
        text=f"{entity.zh} / {entity.en}, one row per organisation across all sources: organisation rows and "
             "organisations only mentioned by other entities, matched on USCC, else on the normalised full name "
             "(core.organization_match says how each was matched; ops.organization_unmatched lists what was not). "
             "Per-source rows: core.organization_source. Deletes in core._tombstones.",
    )
    identity.comment_tables(con, lambda c, table, text, columns: _comment_table(c, table, text, columns, known))
    rows = _scalar(con, f"SELECT count(*) FROM core.{identity.ORGANIZATION}")
    tombstones = _scalar(con, f"SELECT count(*) FROM core.{TOMBSTONES} WHERE entity = ?", [identity.ORGANIZATION])
    base = source_build or EntityBuild(0, 0, 0.0)
    return (
        EntityBuild(rows, base.files, base.seconds + time.perf_counter() - t0, tombstones, base.carried_over,
                    base.changes + changes, base.rebuilt),
        first_version,
        last,
    )


def _check_files(lake: Lake, entity: Entity, batches: list[BatchRow]) -> tuple[pa.Table, set[str]]:
    """Resolve, open and count every new ledgered std file; name the entity and file on failure.

    Returns the (path, landed_seq, rows) table for the merge and the union of the files' columns.
    A row count that differs from the ledger means the file was replaced by a run that never
    committed, so the ledger no longer describes it.
    """
    paths: list[str] = []
    seqs: list[int] = []
    counts: list[int] = []
    columns: set[str] = set()
    for batch in batches:
        if not batch.std_path or not batch.rows_loaded:
            continue
        path = lake.resolve(batch.std_path)
        where = f"entity {entity.name}: std file {path} of batch {batch.batch_id}"
        if not path.exists():
            raise BuildError(f"{where} is missing; rerun the batch or reset it in the catalog")
        try:
            meta = pq.read_metadata(path)
        except (OSError, pa.ArrowException) as exc:
            raise BuildError(f"{where} is unreadable ({exc}); rerun the batch") from exc
        if meta.num_rows != batch.rows_loaded:
            raise BuildError(
                f"{where} has {meta.num_rows} rows but the ledger says {batch.rows_loaded}; "
                "it was overwritten by a run that did not commit; rerun the batch"
            )
        columns.update(meta.schema.to_arrow_schema().names)
        paths.append(str(path))
        seqs.append(int(batch.landed_seq))
        counts.append(meta.num_rows)
    seq_table = table_from_columns({"path": paths, "landed_seq": seqs, "rows": counts}, _FILES_SCHEMA)
    return seq_table, columns


# -- comments -------------------------------------------------------------------------------


def _comment_table(con: duckdb.DuckDBPyConnection, table: str, text: str, columns: Mapping[str, str],
                   known: Comments | None = None) -> None:
    """COMMENT a table and its columns, skipping comments already in place.

    Each COMMENT is a catalog write (milliseconds); an incremental build keeps last build's
    comments, so only changed docs are written again. ``known`` (:func:`_known_comments`, read
    once per build) saves the two catalog lookups per table for tables not replaced since.
    """
    schema, name = (part.strip('"').replace('""', '"') for part in table.split(".", 1))
    if known is not None and (schema, name) in known:
        current_text, existing = known[(schema, name)]
    else:
        existing = dict(con.execute(
            "SELECT column_name, comment FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ?", [schema, name]).fetchall())
        current = con.execute(
            "SELECT comment FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ?", [schema, name]).fetchall()
        current_text = current[0][0] if current else None
    statements = []
    if current_text != text:
        statements.append(f"COMMENT ON TABLE {table} IS {_literal(text)}")
    for column, doc in columns.items():
        if existing.get(column) != doc:
            statements.append(f"COMMENT ON COLUMN {table}.{_ident(column)} IS {_literal(doc)}")
    if statements:
        con.execute(";\n".join(statements))
        if known is not None:  # as the catalog now says
            known[(schema, name)] = (text, {**existing, **columns})


#: (schema, table) -> (table comment, {column: comment}) as read from the catalog.
Comments = dict[tuple[str, str], tuple[str | None, dict[str, str | None]]]


def _known_comments(con: duckdb.DuckDBPyConnection, schema: str) -> Comments:
    """Every table's and column's comment in ``schema``, in two catalog queries."""
    out: Comments = {}
    for table, comment in con.execute(
            "SELECT table_name, comment FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = ?", [schema]).fetchall():
        out[(schema, table)] = (comment, {})
    for table, column, comment in con.execute(
            "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = ?", [schema]).fetchall():
        if (schema, table) in out:
            out[(schema, table)][1][column] = comment
    return out


_CHANGE_VERSION_DOC = ("变更版本 / change version: from the hub-wide sequence (ops.change_sequence); "
                       "feeds return changes after a version")


def _comment_tombstones(con: duckdb.DuckDBPyConnection, known: Comments | None = None) -> None:
    _comment_table(
        con,
        f"core.{TOMBSTONES}",
        "已删除记录 / deleted records (tombstones), for feeds' deletes. Grain: one row per entity and natural "
        "key whose latest version is a delete (soft, hard or missing from a full snapshot).",
        {
            "entity": "实体 / entity (core table name)",
            "natural_key": "自然键 / natural key as JSON text, e.g. {\"_source\":\"…\",\"project_id\":\"…\"}",
            CHANGE_VERSION: _CHANGE_VERSION_DOC,
            "deleted_at": "删除时间 / when deleted: the row's updated_at, else _extracted_at (UTC)",
            "_source": "来源系统 / source system of the delete",
            "_source_key": "来源系统主键 / the record's key in its source system",
            "_batch_id": "批次号 / batch that delivered the delete",
            "_extracted_at": "抽取时间（UTC）/ when the delete was extracted",
            "district_code": "所属区 / district the deleted row lived in, for feeds scoped by district: the core "
                             "row's last live district_code (else the delete's own); participants and reports take "
                             "their project's (core.project, same _source and project_id); NULL when the entity has "
                             "none or it was unknown",
        },
        known,
    )


def _comment_entity(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    schema: pa.Schema,
    lineage: Mapping[str, tuple[str, str]],
    history: bool,
    known: Comments | None = None,
    *,
    text: str | None = None,
) -> None:
    """Table and column comments from the schema docs: ``zh / en``, PII grade, the grain (``text``:
    the table's comment instead of the one said from the entity)."""
    text = text or (
        f"{entity.zh} / {entity.en}. Grain: {entity.grain}. "
        f"Natural key: ({', '.join(entity.key)}). Latest version per key across sources; deletes in core._tombstones."
    )
    docs: dict[str, str] = {}
    for f in entity.fields:
        doc = f"{f.zh} / {f.en}"
        grade = _pii(f.pii)
        if grade != "none":
            doc += f". PII: {grade}"
        docs[f.name] = doc
    for column in schema.names:
        if column not in docs:
            zh, en = lineage.get(column, ("血缘", "lineage"))
            docs[column] = f"{zh} / {en}"
    docs = {c: docs[c] for c in schema.names}
    docs[CHANGE_VERSION] = _CHANGE_VERSION_DOC
    _comment_table(con, f"core.{_ident(entity.name)}", text, docs, known)
    if history:
        _comment_table(
            con,
            f"core.{_ident(entity.name + '_history')}",
            f"{entity.zh}历史 / {entity.en}, slowly-changing history. Grain: one row per {entity.name} key and "
            "version; the row valid at time T has valid_from <= T and (valid_to IS NULL or valid_to > T).",
            {
                **docs,
                CHANGE_VERSION: "变更版本 / change version that created this version",
                "valid_from": "生效时间 / valid from (UTC): the version's updated_at, else _extracted_at; never earlier "
                              "than the previous version's",
                "valid_to": "失效时间 / valid until (UTC, exclusive): the next version or the delete; NULL while current",
            },
            known,
        )


# -- ops ------------------------------------------------------------------------------------

_BUILDS_SCHEMA = pa.schema(
    [
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("entities", pa.list_(pa.string())),
        ("rows", pa.int64()),
        ("seconds", pa.float64()),
        ("full", pa.bool_()),
        ("batches_applied", pa.int64()),
        ("changes", pa.int64()),
        ("first_change_version", pa.int64()),
        ("last_change_version", pa.int64()),
        ("snapshot_version", pa.string()),
    ]
)

_OPS_DOCS: dict[str, tuple[str, dict[str, str]]] = {
    "batches": (
        "批次台账 / batch ledger, copied from the ops catalog at build time. Grain: one row per batch id.",
        {
            "rows_in": "读入行数 / rows extracted",
            "rows_loaded": "入库行数 / rows landed in std",
            "rows_quarantined": "隔离行数 / rows quarantined",
            "landed_seq": "落地序号 / merge order: later landings win",
            "status": "状态 / landed or failed",
        },
    ),
    "sync_state": (
        "同步状态 / incremental sync cursors. Grain: one row per source and entity.",
        {"cursor": "游标 / cursor as JSON text, committed with the batch it describes"},
    ),
}


_IDS_SCHEMA = pa.schema([("batch_id", pa.string())])


def _duck_columns(con: duckdb.DuckDBPyConnection, arrow: pa.Table) -> list[tuple[str, str]]:
    """The (name, DuckDB type) pairs a table created from ``arrow`` would have."""
    con.register("_ops_shape", pa.Table.from_batches([], schema=arrow.schema))  # (empty_table() loads pandas)
    try:
        return [(c, t) for c, t, *_ in con.execute("DESCRIBE SELECT * FROM _ops_shape").fetchall()]
    finally:
        con.unregister("_ops_shape")


def build_ops(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    lake: Lake,
    result: BuildResult,
    snapshot_version: str,
    *,
    previous: bool = False,
) -> None:
    """Schema ``ops``: every catalog table copied, the quarantine, and the build log."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    database = _current_db(con)
    present: dict[str, list[tuple[str, str]]] = {}
    for table_name, column, dtype in con.execute(
        "SELECT t.table_name, c.column_name, c.data_type FROM duckdb_tables() AS t LEFT JOIN duckdb_columns() AS c "
        "USING (database_name, schema_name, table_name) WHERE t.database_name = ? AND t.schema_name = 'ops' "
        "ORDER BY t.table_name, c.column_index", [database]
    ).fetchall():
        present.setdefault(table_name, []).append((column, dtype))
    # The ledger's tables arrive as the rows of the batches landed since this file's copy (see
    # Catalog.ops_tables); whole when there is no copy yet or a table's columns changed.
    since = (int(_scalar(con, "SELECT coalesce(max(landed_seq), 0) FROM ops.batches"))
             if "batches" in present and ("landed_seq", "BIGINT") in present["batches"] else None)
    copied = catalog.ops_tables(since)
    if copied.batch_ids is not None and not all(
            present.get(t) == _duck_columns(con, a) for t, a in copied.per_batch.items()):
        copied = catalog.ops_tables(None)
    tables = copied.tables
    clash = sorted(t for t in tables if _builders(t))
    if clash:
        raise BuildError(f"catalog tables {clash} clash with the builder's ops tables; rename them in the catalog")
    for stale in present:
        if not _builders(stale) and stale not in tables:
            con.execute(f"DROP TABLE ops.{_ident(stale)}")
    if copied.batch_ids is not None:
        con.register("_ops_ids", table_from_columns({"batch_id": copied.batch_ids}, _IDS_SCHEMA))
    try:
        for table, arrow in tables.items():
            con.register("_ops", arrow)
            try:
                if copied.batch_ids is not None and table in copied.per_batch:
                    # the changed batches' rows replace what this file's copy holds for them
                    con.execute(f"DELETE FROM ops.{_ident(table)} WHERE batch_id IN (SELECT batch_id FROM _ops_ids)")
                    con.execute(f"INSERT INTO ops.{_ident(table)} SELECT * FROM _ops")
                elif present.get(table) == _duck_columns(con, arrow):
                    # Same columns as last build: replace the rows, keep the table and its comments
                    # (re-creating it dropped them, and every build paid to write them all again).
                    con.execute(f"DELETE FROM ops.{_ident(table)}")
                    con.execute(f"INSERT INTO ops.{_ident(table)} SELECT * FROM _ops")
                else:
                    con.execute(f"DROP TABLE IF EXISTS ops.{_ident(table)}")
                    con.execute(f"CREATE TABLE ops.{_ident(table)} AS SELECT * FROM _ops")
            finally:
                con.unregister("_ops")
    finally:
        if copied.batch_ids is not None:
            con.unregister("_ops_ids")
    known = _known_comments(con, "ops")
    for table, arrow in tables.items():
        text, columns = _OPS_DOCS.get(table, (
            f"运维目录表 / ops catalog table {table}, copied from the catalog at build time.", {}))
        docs = {c: columns.get(c, f"运维目录字段 / {table}.{c} as stored in the ops catalog") for c in arrow.column_names}
        _comment_table(con, f"ops.{_ident(table)}", text, docs, known)
    _build_quarantine(con, lake, con.sql(
        "SELECT batch_id, entity, status, quarantine_path, rows_quarantined FROM ops.batches "
        "WHERE status = 'landed' AND quarantine_path IS NOT NULL AND rows_quarantined > 0").to_arrow_table())
    _comment_table(
        con, "ops.build_state",
        "构建状态 / the builder's incremental state. Grain: one row per entity.",
        {"entity": "实体 / entity", "applied_seq": "已应用落地序号 / batches with landed_seq up to this are applied",
         "signature": "列签名 / the core columns the entity was built with; a change rebuilds the entity",
         "own_keyed": "自有主键 / every row applied to core carried its own natural key's id as _source_key (so no "
                      "rename can involve a core row unless a new row carries another; NULL: not known yet)"},
        known,
    )
    _comment_table(
        con, f"ops.{marts_module.MART_STATE}",
        "集市状态 / what each mart (and ref.codes) was last computed from. Grain: one row per mart.",
        {"mart": "集市 / mart name (ref.codes for the code lists)",
         "signature": "定义签名 / digest of its declaration (SQL, columns, docs); a change recreates it",
         "built_on": "计算日期 / the date it was last computed (marts reading the clock are recomputed daily)"},
        known,
    )
    _comment_table(
        con, "ops.change_sequence",
        "变更序列 / the hub-wide change-version sequence. Grain: one row.",
        {"last_change_version": "最新变更版本 / the last change version given out"},
        known,
    )

    merged = sorted(n for n, e in result.entities.items() if not e.carried_over)
    log_row = table_from_rows(
        [
            {
                "started_at": result.started_at,
                "finished_at": result.finished_at,
                "entities": merged,
                "rows": result.rows,
                "seconds": result.seconds,
                "full": result.full,
                "batches_applied": sum(e.files for e in result.entities.values()),
                "changes": result.changes,
                "first_change_version": result.first_change_version,
                "last_change_version": result.last_change_version,
                "snapshot_version": snapshot_version,
            }
        ],
        _BUILDS_SCHEMA,
    )
    con.register("_log", log_row)
    try:
        if not _table_exists(con, "ops", "builds"):
            con.execute("CREATE TABLE ops.builds AS SELECT * FROM _log WHERE false")
            if previous and _table_exists(con, "ops", "builds", "prev"):
                con.execute("INSERT INTO ops.builds BY NAME SELECT * FROM prev.ops.builds")
        con.execute("INSERT INTO ops.builds SELECT * FROM _log")
    finally:
        con.unregister("_log")
    _comment_table(
        con,
        "ops.builds",
        "构建记录 / warehouse builds. Grain: one row per completed build.",
        {
            "started_at": "开始时间 / build started (UTC)",
            "finished_at": "结束时间 / build finished, before publishing (UTC)",
            "seconds": "耗时(秒) / seconds",
            "entities": "处理的实体 / entities that took new batches in this build (others carried over)",
            "rows": "行数 / rows in core entity tables after the build",
            "full": "全量重建 / whether the build rebuilt everything from the lake",
            "batches_applied": "应用批次文件数 / std files applied",
            "changes": "变更数 / changes given a change version",
            "first_change_version": "首个变更版本 / first change version of this build (NULL: no change)",
            "last_change_version": "最新变更版本 / the sequence's value after this build",
            "snapshot_version": "快照版本 / the published snapshot (published/<version>)",
        },
        known,
    )


def _build_quarantine(con: duckdb.DuckDBPyConnection, lake: Lake, batches: pa.Table) -> None:
    """``ops.quarantine``: every rejected row of every landed batch, with its entity and reason.

    A listed file that is gone (replayed and removed) is skipped with a warning rather than
    failing the whole build: the ledger row still counts those rows.

    Incremental: when the table already holds exactly some of the listed batches, only the new
    batches' files are appended (:func:`_append_quarantine`); otherwise it is rebuilt from every
    file. Rebuilding it each time rewrote every rejected row ever landed (12.7 MB of the 31 MB
    written by a 1% incremental sync of the municipal database, then paid again by the checkpoint).
    """
    rows = [r for r in batches.select(["batch_id", "entity", "status", "quarantine_path", "rows_quarantined"])
            .to_pylist() if r["status"] == "landed" and r["quarantine_path"] and r["rows_quarantined"]]
    paths, entities, batch_ids = [], [], []
    for r in rows:
        path = lake.resolve(r["quarantine_path"])
        if not path.exists():
            log.warning("quarantine file %s is listed in the ledger but missing; not in ops.quarantine", path)
            continue
        paths.append(str(path))
        entities.append(r["entity"])
        batch_ids.append(r["batch_id"])
    if _append_quarantine(con, paths, entities, batch_ids):
        pass  # the new batches' rows appended
    elif paths:
        con.execute("DROP TABLE IF EXISTS ops.quarantine")
        files = table_from_columns({"path": paths, "entity": entities}, _QFILES_SCHEMA)
        con.register("_qfiles", files)
        try:
            listing = "[" + ", ".join(_literal(p) for p in paths) + "]"
            con.execute(
                f"CREATE TABLE ops.quarantine AS SELECT q.entity, f.* EXCLUDE (filename) "
                f"FROM read_parquet({listing}, filename = true, union_by_name = true) AS f "
                "JOIN _qfiles AS q ON q.path = f.filename"
            )
        finally:
            con.unregister("_qfiles")
    elif not _empty_quarantine(con):
        con.execute("DROP TABLE IF EXISTS ops.quarantine")
        con.register("_qempty", pa.Table.from_batches([], schema=QUARANTINE_SCHEMA))
        try:
            con.execute("CREATE TABLE ops.quarantine AS SELECT * FROM _qempty")
        finally:
            con.unregister("_qempty")
    docs = {
        "entity": "实体 / entity of the batch",
        "_source": "来源系统 / source system",
        "_batch_id": "批次号 / batch",
        "_extracted_at": "抽取时间（UTC）/ extracted at",
        "_page": "页码 / source page",
        "_row": "页内行号 / row within the page",
        "_row_index": "批内行号 / row within the batch",
        "_key": "记录键 / the record's key in its source",
        "field": "字段 / field that failed",
        "rule": "规则 / rule that failed",
        "reason": "原因 / why the row was rejected",
        "_record": "原始记录 / the record as received (JSON); may hold personal data",
    }
    present = {c for c, _ in _columns(con, _current_db(con), "ops", "quarantine")}
    _comment_table(
        con, "ops.quarantine",
        "隔离区 / rejected rows with the rule and reason, from the ledgered quarantine files. "
        "Grain: one row per rejected row and failed rule.",
        {c: d for c, d in docs.items() if c in present},
    )


def _empty_quarantine(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``ops.quarantine`` is already the empty table with the pipeline's columns (kept, comments and all)."""
    if not _table_exists(con, "ops", "quarantine"):
        return False
    names = [c for c, _ in _columns(con, _current_db(con), "ops", "quarantine")]
    return names == QUARANTINE_SCHEMA.names and not _scalar(con, "SELECT count(*) FROM ops.quarantine")


def _append_quarantine(con: duckdb.DuckDBPyConnection, paths: list[str], entities: list[str],
                       batch_ids: list[str]) -> bool:
    """Bring ``ops.quarantine`` up to date by appending the files of batches it lacks; False: rebuild it whole.

    It is kept only when what it holds is a subset of the listed batches (by entity and
    ``_batch_id``; a batch that left the ledger or whose file went missing needs a rebuild), it
    already holds some (the first files give the table its columns), and the new files bring no
    column or type it lacks. After appending, the batches it holds must be exactly the listed ones
    (a file whose rows name another batch would be appended again next time): else it is rebuilt.
    """
    database = _current_db(con)
    if not _table_exists(con, "ops", "quarantine"):
        return False
    columns = _columns(con, database, "ops", "quarantine")
    if "_batch_id" not in {c for c, _ in columns} or "entity" not in {c for c, _ in columns}:
        return False
    held = set(con.execute("SELECT DISTINCT entity, _batch_id FROM ops.quarantine").fetchall())
    wanted = dict(zip(zip(entities, batch_ids), paths))
    if not held or not held <= wanted.keys() or len(wanted) != len(paths):
        return False
    new = [(key, path) for key, path in wanted.items() if key not in held]
    if not new:
        return True
    listing = "[" + ", ".join(_literal(p) for _, p in new) + "]"
    source = f"read_parquet({listing}, filename = true, union_by_name = true)"
    try:
        described = [(c, t) for c, t, *_ in con.execute(f"DESCRIBE SELECT * EXCLUDE (filename) FROM {source}").fetchall()]
    except duckdb.Error:
        return False
    if not set(described) <= set(columns):
        return False
    files = table_from_columns({"path": [p for _, p in new], "entity": [e for (e, _), _ in new]}, _QFILES_SCHEMA)
    con.register("_qfiles", files)
    try:
        con.execute(f"INSERT INTO ops.quarantine BY NAME SELECT q.entity, f.* EXCLUDE (filename) FROM {source} AS f "
                    "JOIN _qfiles AS q ON q.path = f.filename")
    finally:
        con.unregister("_qfiles")
    now = set(con.execute("SELECT DISTINCT entity, _batch_id FROM ops.quarantine").fetchall())
    return now == set(wanted)
