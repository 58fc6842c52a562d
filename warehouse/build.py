"""The warehouse build: the ledgered std Parquet files merged into ``warehouse.duckdb``.

The builder is the only writer of the warehouse file. It holds ``warehouse.lock`` for the
whole build, writes a fresh database to ``warehouse.duckdb.building`` and renames it onto
``warehouse.duckdb`` only when complete, so an analyst opening the file sees either the
previous build or the new one, never half of one, and a killed build changes nothing.

Only files the catalog lists as landed are read (the lake is never globbed): a file without a
ledger row is the orphan of a killed or failed run and its rows were never accounted for.

Layers, one function each, so later work (change versions, marts, published snapshots) can
slot in: :func:`build_core` (current entities and tombstones), :func:`build_ops` (ledger, sync
state, build log).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from schemas import ENTITIES, LINEAGE_FIELDS
from warehouse.catalog import BatchRow, Catalog
from warehouse.landing import fsync_dir
from warehouse.layout import Lake

if TYPE_CHECKING:
    from schemas import Entity

__all__ = ["BuildError", "BuildResult", "EntityBuild", "build", "build_core", "build_ops"]

DELETED = "_is_deleted"
TOMBSTONES = "_tombstones"

class BuildError(RuntimeError):
    """A build that cannot complete; the previous warehouse file is left as it was."""


@dataclass(frozen=True)
class EntityBuild:
    """What one entity's core table holds after the build."""

    rows: int
    files: int
    seconds: float
    tombstones: int = 0
    carried_over: bool = False


@dataclass(frozen=True)
class BuildResult:
    """The outcome of a build, for the CLI, the DAG's return value and ``ops.builds``."""

    path: Path
    started_at: datetime
    finished_at: datetime
    entities: dict[str, EntityBuild] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def rows(self) -> int:
        return sum(e.rows for e in self.entities.values())


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


def _publish(lake: Lake) -> None:
    """fsync the finished build and rename it onto ``warehouse.duckdb`` in one step."""
    building = lake.building_path
    if building.with_name(building.name + ".wal").exists():
        raise BuildError(f"{building} still has a WAL after close; not publishing a partial build")
    with open(building, "rb") as handle:
        os.fsync(handle.fileno())
    # A stale WAL next to the target would be replayed onto the new file by DuckDB.
    lake.warehouse_path.with_name(lake.warehouse_path.name + ".wal").unlink(missing_ok=True)
    os.replace(building, lake.warehouse_path)
    fsync_dir(lake.home)


# -- the build ------------------------------------------------------------------------------


def build(
    home: Path,
    catalog: Catalog,
    *,
    entities: list[str] | None = None,
    registry: Mapping[str, Entity] | None = None,
) -> BuildResult:
    """Rebuild ``warehouse.duckdb`` from the catalog's landed batches.

    ``entities`` limits which entities are merged again; the others are carried over from
    the previous build when it has them with the current columns (else merged too), so the
    file always holds every entity. ``registry`` defaults to ``schemas.ENTITIES``.
    """
    lake = Lake(home)
    registry = _as_registry(registry if registry is not None else ENTITIES)
    if entities is not None:
        unknown = sorted(set(entities) - set(registry))
        if unknown:
            raise BuildError(f"unknown entities {unknown}; known: {sorted(registry)}")
    started_at = datetime.now(timezone.utc)
    with _exclusive_lock(lake):
        _remove_database(lake.building_path)
        try:
            con = duckdb.connect(str(lake.building_path))
            try:
                con.execute("SET TimeZone = 'UTC'")
                previous = _attach_previous(con, lake)
                built = build_core(
                    con, lake, catalog, registry, only=entities, previous=previous
                )
                finished_at = datetime.now(timezone.utc)
                result = BuildResult(lake.warehouse_path, started_at, finished_at, built)
                build_ops(con, catalog, result, previous=previous)
                if previous:
                    con.execute("DETACH prev")
                con.execute("CHECKPOINT")
            finally:
                con.close()
            _publish(lake)
        except BaseException:
            _remove_database(lake.building_path)
            raise
    return result


def _attach_previous(con: duckdb.DuckDBPyConnection, lake: Lake) -> bool:
    """Attach the current warehouse read-only, for carried-over entities and the build log."""
    if not lake.warehouse_path.exists():
        return False
    try:
        con.execute(f"ATTACH {_literal(str(lake.warehouse_path))} AS prev (READ_ONLY)")
    except duckdb.Error as exc:
        raise BuildError(
            f"cannot open the previous warehouse {lake.warehouse_path} read-only ({exc}); "
            "close any session that opened it read-write (analysts use duckdb -readonly), "
            "or move it aside to rebuild everything from the lake"
        ) from exc
    return True


def _columns(con: duckdb.DuckDBPyConnection, database: str, schema: str, table: str) -> list[tuple[str, str]]:
    return [
        (name, dtype)
        for name, dtype in con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE database_name = ? AND schema_name = ? AND table_name = ? ORDER BY column_index",
            [database, schema, table],
        ).fetchall()
    ]


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """One value; fetchall() because DuckDB 2 keeps a half-read result open and blocks the connection."""
    return con.execute(sql, params or []).fetchall()[0][0]


def _current_db(con: duckdb.DuckDBPyConnection) -> str:
    return _scalar(con, "SELECT current_database()")


def build_core(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    catalog: Catalog,
    registry: Mapping[str, Entity],
    *,
    only: list[str] | None = None,
    previous: bool = False,
) -> dict[str, EntityBuild]:
    """Schema ``core``: one table per entity (current rows) and ``core._tombstones``."""
    con.execute("CREATE SCHEMA core")
    con.execute(
        f"CREATE TABLE core.{TOMBSTONES} (entity VARCHAR, natural_key VARCHAR, "
        "_source VARCHAR, _batch_id VARCHAR, deleted_at TIMESTAMPTZ)"
    )
    _comment_table(
        con,
        f"core.{TOMBSTONES}",
        "已删除记录 / deleted records. Grain: one row per entity and natural key whose latest "
        "version is a delete.",
        {
            "entity": "实体 / entity (core table name)",
            "natural_key": "自然键 / natural key as JSON text",
            "_source": "来源系统 / source system of the delete",
            "_batch_id": "批次号 / batch that delivered the delete",
            "deleted_at": "删除时间 / when deleted: the row's updated_at, else _extracted_at (UTC)",
        },
    )
    ledger: dict[str, list[BatchRow]] = {}
    for batch in catalog.landed_batches():
        ledger.setdefault(batch.entity, []).append(batch)
    unknown = sorted(set(ledger) - set(registry))
    if unknown:
        raise BuildError(f"the ledger lists batches of unknown entities {unknown}; known: {sorted(registry)}")

    database = _current_db(con)
    lineage_docs = {f.name: (f.zh, f.en) for f in LINEAGE_FIELDS}
    out: dict[str, EntityBuild] = {}
    for name, entity in registry.items():
        t0 = time.perf_counter()
        schema = _core_schema(entity)
        _create_table(con, name, schema)
        _comment_entity(con, entity, schema, lineage_docs)
        carried = (
            only is not None
            and name not in only
            and previous
            and _columns(con, "prev", "core", name) == _columns(con, database, "core", name)
        )
        try:
            if carried:
                con.execute(f"INSERT INTO core.{_ident(name)} SELECT * FROM prev.core.{_ident(name)}")
                con.execute(
                    f"INSERT INTO core.{TOMBSTONES} SELECT * FROM prev.core.{TOMBSTONES} WHERE entity = ?",
                    [name],
                )
                files = 0
            else:
                files = _merge_entity(con, lake, entity, schema, ledger.get(name, []))
        except duckdb.Error as exc:
            raise BuildError(f"entity {name}: merge failed: {exc}") from exc
        rows = _scalar(con, f"SELECT count(*) FROM core.{_ident(name)}")
        tombstones = _scalar(con, f"SELECT count(*) FROM core.{TOMBSTONES} WHERE entity = ?", [name])
        out[name] = EntityBuild(rows, files, time.perf_counter() - t0, tombstones, bool(carried))
    return out


def _core_schema(entity: Entity) -> pa.Schema:
    """The entity's business and lineage columns, without the delete flag."""
    full = entity.arrow_schema(lineage=True)
    return pa.schema([f for f in full if f.name != DELETED])


def _create_table(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> None:
    """Create the typed, empty core table; DuckDB maps the Arrow types (DECIMAL, DATE, TIMESTAMPTZ)."""
    con.register("_empty", schema.empty_table())
    try:
        con.execute(f"CREATE TABLE core.{_ident(name)} AS SELECT * FROM _empty")
    finally:
        con.unregister("_empty")


def _check_files(lake: Lake, entity: Entity, batches: list[BatchRow]) -> tuple[pa.Table, set[str]]:
    """Resolve, open and count every ledgered std file; name the entity and file on failure.

    Returns the (path, landed_seq) table for the merge and the union of the files' columns.
    A row count that differs from the ledger means the file was replaced by a run that never
    committed, so the ledger no longer describes it.
    """
    paths: list[str] = []
    seqs: list[int] = []
    columns: set[str] = set()
    for batch in batches:
        if not batch.std_path:
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
    seq_table = pa.table({"path": pa.array(paths, pa.string()), "landed_seq": pa.array(seqs, pa.int64())})
    return seq_table, columns


def _merge_entity(
    con: duckdb.DuckDBPyConnection, lake: Lake, entity: Entity, schema: pa.Schema, batches: list[BatchRow]
) -> int:
    """Latest version per natural key, by (landed_seq desc, row position desc); deletes become tombstones."""
    seq_table, present = _check_files(lake, entity, batches)
    if seq_table.num_rows == 0:
        return 0
    name = entity.name
    key = list(entity.key)
    missing_key = [k for k in key if k not in present]
    if missing_key:
        raise BuildError(f"entity {name}: key column(s) {missing_key} absent from every std file")
    # Columns no file has yet (a field added to the schema) read as NULL.
    select = [
        (f"f.{_ident(c)}" if c in present else "NULL") + f" AS {_ident(c)}"
        for c in [*schema.names, DELETED]
    ]
    files = "[" + ", ".join(_literal(p) for p in seq_table.column("path").to_pylist()) + "]"
    con.register("_seq", seq_table)
    try:
        con.execute(
            f"""
            CREATE TEMP TABLE _latest AS
            SELECT {", ".join(select)}
            FROM read_parquet({files}, filename = true, file_row_number = true, union_by_name = true) AS f
            JOIN _seq AS s ON f.filename = s.path
            QUALIFY row_number() OVER (
                PARTITION BY {", ".join(f"f.{_ident(k)}" for k in key)}
                ORDER BY s.landed_seq DESC, f.file_row_number DESC
            ) = 1
            """
        )
    finally:
        con.unregister("_seq")
    try:
        columns = ", ".join(_ident(c) for c in schema.names)
        con.execute(
            f"INSERT INTO core.{_ident(name)} ({columns}) SELECT {columns} FROM _latest "
            f"WHERE NOT coalesce({DELETED}, false)"
        )
        natural_key = "json_object(" + ", ".join(f"{_literal(k)}, {_ident(k)}" for k in key) + ")::VARCHAR"
        has_updated_at = "updated_at" in schema.names and pa.types.is_timestamp(schema.field("updated_at").type)
        deleted_at = "coalesce(updated_at, _extracted_at)" if has_updated_at else "_extracted_at"
        con.execute(
            f"INSERT INTO core.{TOMBSTONES} SELECT {_literal(name)}, {natural_key}, _source, _batch_id, "
            f"CAST({deleted_at} AS TIMESTAMPTZ) FROM _latest WHERE coalesce({DELETED}, false)"
        )
    finally:
        con.execute("DROP TABLE IF EXISTS _latest")
    return seq_table.num_rows


# -- comments -------------------------------------------------------------------------------


def _comment_table(con: duckdb.DuckDBPyConnection, table: str, text: str, columns: Mapping[str, str]) -> None:
    con.execute(f"COMMENT ON TABLE {table} IS {_literal(text)}")
    for column, doc in columns.items():
        con.execute(f"COMMENT ON COLUMN {table}.{_ident(column)} IS {_literal(doc)}")


def _comment_entity(
    con: duckdb.DuckDBPyConnection, entity: Entity, schema: pa.Schema, lineage: Mapping[str, tuple[str, str]]
) -> None:
    """Table and column comments from the schema docs: ``zh / en``, PII grade, the grain."""
    text = (
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
    _comment_table(con, f"core.{_ident(entity.name)}", text, {c: docs[c] for c in schema.names})


# -- ops ------------------------------------------------------------------------------------

_BUILDS_SCHEMA = pa.schema(
    [
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("entities", pa.list_(pa.string())),
        ("rows", pa.int64()),
        ("seconds", pa.float64()),
    ]
)


def build_ops(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, result: BuildResult, *, previous: bool = False
) -> None:
    """Schema ``ops``: the ledger and sync state copied from the catalog, and the build log."""
    con.execute("CREATE SCHEMA ops")
    for table, arrow, text, columns in (
        (
            "batches",
            catalog.batches_table(),
            "批次台账 / batch ledger, copied from the ops catalog at build time. Grain: one row per batch id.",
            {
                "rows_in": "读入行数 / rows extracted",
                "rows_loaded": "入库行数 / rows landed in std",
                "rows_quarantined": "隔离行数 / rows quarantined",
                "landed_seq": "落地序号 / merge order: later landings win",
                "status": "状态 / landed or failed",
            },
        ),
        (
            "sync_state",
            catalog.sync_state_table(),
            "同步状态 / incremental sync cursors. Grain: one row per source and entity.",
            {"cursor": "游标 / cursor as JSON text, committed with the batch it describes"},
        ),
    ):
        con.register("_ops", arrow)
        try:
            con.execute(f"CREATE TABLE ops.{table} AS SELECT * FROM _ops")
        finally:
            con.unregister("_ops")
        _comment_table(con, f"ops.{table}", text, columns)

    merged = sorted(n for n, e in result.entities.items() if not e.carried_over)
    log = pa.Table.from_pylist(
        [
            {
                "started_at": result.started_at,
                "finished_at": result.finished_at,
                "entities": merged,
                "rows": result.rows,
                "seconds": result.seconds,
            }
        ],
        schema=_BUILDS_SCHEMA,
    )
    con.register("_log", log)
    try:
        con.execute("CREATE TABLE ops.builds AS SELECT * FROM _log WHERE false")
        if previous and _columns(con, "prev", "ops", "builds") == _columns(con, _current_db(con), "ops", "builds"):
            con.execute("INSERT INTO ops.builds SELECT * FROM prev.ops.builds")
        con.execute("INSERT INTO ops.builds SELECT * FROM _log")
    finally:
        con.unregister("_log")
    _comment_table(
        con,
        "ops.builds",
        "构建记录 / warehouse builds. Grain: one row per completed build.",
        {
            "entities": "重新合并的实体 / entities merged in this build (others carried over)",
            "rows": "行数 / rows in core entity tables after the build",
        },
    )
