"""Change versions, tombstones and history: applying new std rows to ``core``.

Why a builder-side sequence: feed consumers ask for "everything after version N" across the
whole hub, so every applied insert, update and delete needs one number from one strictly
increasing sequence (``ops.change_sequence`` in the builder's warehouse file, written in the
same DuckDB transaction as the data it numbers, so they can never disagree).

How one entity is applied (:func:`apply_entity`), all in set-based SQL over the new files
only, so the work is proportional to the new batches, not to the warehouse:

1. every row of the new files, in merge order (``landed_seq``, then row position);
2. each touched key is seeded with its current state (live in ``core.<entity>`` with its
   record hash, or deleted in ``core._tombstones``);
3. a row is a *change* when it differs from the key's previous state: a live row whose
   ``_record_hash`` differs (or that revives a deleted/absent key), or a delete of a key that
   is not already deleted. Re-sent identical rows are not changes and get no version;
4. changes are numbered from the sequence in (natural key, merge order), which makes the
   numbering independent of how the same data happened to be split into batches;
5. the last change per key decides the key's new state: a row in ``core.<entity>`` or a
   tombstone carrying the natural key, the version and the time;
6. for history entities every live change becomes a ``core.<entity>_history`` row whose
   ``valid_to`` is the next change's ``valid_from`` (the open row has ``valid_to`` NULL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

if TYPE_CHECKING:
    from schemas import Entity

__all__ = [
    "CHANGE_VERSION",
    "HISTORY_ENTITIES",
    "TOMBSTONES",
    "Applied",
    "apply_entity",
    "apply_rows",
    "duck_type",
    "event_time_sql",
    "natural_key_sql",
    "tombstone_district_sql",
]

CHANGE_VERSION = "change_version"
DELETED = "_is_deleted"
TOMBSTONES = "_tombstones"

#: Slowly-changing entities that keep ``core.<entity>_history``.
HISTORY_ENTITIES: tuple[str, ...] = ("organization", "project", "cooperation", "training_base")


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def natural_key_sql(key: tuple[str, ...] | list[str], alias: str = "") -> str:
    """The natural key as JSON text (``{"_source":"…","project_id":"…"}``): one spelling everywhere."""
    prefix = f"{alias}." if alias else ""
    return "json_object(" + ", ".join(f"{literal(k)}, {prefix}{ident(k)}" for k in key) + ")::VARCHAR"


def event_time_sql(schema: pa.Schema, alias: str = "") -> str:
    """When a version happened: the source's ``updated_at`` when it has one, else extraction time."""
    prefix = f"{alias}." if alias else ""
    if "updated_at" in schema.names and pa.types.is_timestamp(schema.field("updated_at").type):
        return f"CAST(coalesce({prefix}updated_at, {prefix}_extracted_at) AS TIMESTAMPTZ)"
    return f"CAST({prefix}_extracted_at AS TIMESTAMPTZ)"


@dataclass(frozen=True)
class Applied:
    """What applying new rows did to one entity."""

    changes: int
    upserts: int
    deletes: int
    last_version: int


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0] or 0)


def apply_entity(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    schema: pa.Schema,
    files: pa.Table,
    present: set[str],
    last_version: int,
    *,
    history: bool,
) -> Applied:
    """Apply the rows of ``files`` (columns ``path``, ``landed_seq``) to core; see the module doc.

    ``schema`` is the core table's business + lineage columns (without ``change_version``);
    ``present`` the columns the files have (absent ones read as NULL). Returns the counts and
    the sequence's new last value.
    """
    columns = list(schema.names)
    at = event_time_sql(schema)
    select = [(f"f.{ident(c)}" if c in present else f"NULL::{duck_type(schema.field(c).type)}") + f" AS {ident(c)}"
              for c in columns]
    deleted = f"coalesce(f.{ident(DELETED)}, false)" if DELETED in present else "false"
    paths = "[" + ", ".join(literal(p) for p in files.column("path").to_pylist()) + "]"
    con.register("_files", files)
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _in AS
            SELECT *, {at} AS _at FROM (
                SELECT {", ".join(select)}, {deleted} AS _del, s.landed_seq AS _seq, f.file_row_number AS _row
                FROM read_parquet({paths}, filename = true, file_row_number = true, union_by_name = true) AS f
                JOIN _files AS s ON f.filename = s.path
            )
            """
        )
    finally:
        con.unregister("_files")
    return apply_rows(con, entity, schema, last_version, history=history)


def _key_from_json(schema: pa.Schema, key: list[str], column: str) -> str:
    """The key columns read back from a tombstone's JSON natural key, typed as in the core table."""
    return ", ".join(
        f"CAST(json_extract_string({column}, {literal('$.' + k)}) AS {duck_type(schema.field(k).type)}) AS {ident(k)}"
        for k in key
    )


def tombstone_district_sql(schema: pa.Schema, has_project: bool) -> str:
    """The district a tombstone carries, over ``f`` (the delete) and ``c`` (the core row it deletes).

    Feeds scope consumers by district, so a delete must say where the row lived: the deleted
    core row's last live district, else the delete's own; rows without a district column that
    belong to a project (participants, reports) take their project's district, from
    ``core.project`` or, when the project was deleted first, from the project's tombstone.
    """
    if "district_code" in schema.names:
        return "coalesce(c.district_code, f.district_code)"
    if has_project and "project_id" in schema.names and "_source" in schema.names:
        project_key = natural_key_sql(["_source", "project_id"], "f")
        return (
            "coalesce((SELECT any_value(p.district_code) FROM core.project AS p "
            "WHERE p._source = f._source AND p.project_id = coalesce(c.project_id, f.project_id)), "
            f"(SELECT any_value(t.district_code) FROM core.{TOMBSTONES} AS t "
            f"WHERE t.entity = 'project' AND t.natural_key = {project_key}))"
        )
    return "NULL::VARCHAR"


def apply_rows(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    schema: pa.Schema,
    last_version: int,
    *,
    history: bool,
) -> Applied:
    """Apply the temp table ``_in`` to ``core.<entity.name>``: steps 2-6 of the module doc.

    ``_in`` holds the schema's columns plus ``_del`` (a delete), ``_seq`` and ``_row`` (merge
    order) and ``_at`` (event time). The key columns themselves partition and join (the JSON
    natural key is spelled only for tombstones), which keeps the hot window cheap.
    """
    name = entity.name
    table = f"core.{ident(name)}"
    key = list(entity.key)
    keys = ", ".join(ident(k) for k in key)
    columns = list(schema.names)
    try:
        # The touched keys' state before this build: live (hash) or deleted (tombstone). An entity
        # with no rows and no tombstones yet (a first load, a rebuild) has no state to look up:
        # the lookups are skipped, which saves two DISTINCTs over the input.
        has_tombs = _scalar(con, f"SELECT count(*) FROM (SELECT 1 FROM core.{TOMBSTONES} "
                                 f"WHERE entity = {literal(name)} LIMIT 1)") > 0
        has_rows = _scalar(con, f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)") > 0
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _tomb AS
            SELECT * FROM (
                SELECT t.natural_key, {_key_from_json(schema, key, "t.natural_key")}
                FROM core.{TOMBSTONES} AS t WHERE t.entity = {literal(name)}
            ) SEMI JOIN (SELECT DISTINCT {keys} FROM _in) USING ({keys})
            {"" if has_tombs else "WHERE false"}
            """
        )
        live = (f"FROM {table} AS c SEMI JOIN (SELECT DISTINCT {keys} FROM _in) USING ({keys})" if has_rows
                else f"FROM {table} AS c WHERE false")
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _changes AS
            WITH steps AS (
                SELECT {", ".join(f"c.{ident(k)}" for k in key)}, 0::BIGINT AS _seq, -1::BIGINT AS _row,
                       c._record_hash AS _hash, false AS _del
                {live}
                UNION ALL
                SELECT {keys}, 0, -1, NULL, true FROM _tomb
                UNION ALL
                SELECT {keys}, _seq, _row, _record_hash, _del FROM _in
            ), compared AS (
                SELECT *, lag(_hash) OVER w AS _prev_hash, lag(_del) OVER w AS _prev_del
                FROM steps WINDOW w AS (PARTITION BY {keys} ORDER BY _seq, _row)
            ), changed AS (
                SELECT {keys}, _seq, _row FROM compared
                WHERE _seq > 0 AND (
                    _prev_del IS NULL
                    OR (_del AND NOT _prev_del)
                    OR (NOT _del AND (_prev_del OR _hash IS DISTINCT FROM _prev_hash))
                )
            )
            SELECT {keys}, _seq, _row,
                   {last_version} + row_number() OVER (ORDER BY {keys}, _seq, _row) AS {CHANGE_VERSION},
                   row_number() OVER (PARTITION BY {keys} ORDER BY _seq DESC, _row DESC) = 1 AS _final
            FROM changed
            """
        )
        changes = _scalar(con, "SELECT count(*) FROM _changes")
        if changes == 0:
            return Applied(0, 0, 0, last_version)
        # The changed rows in full, each flagged whether it is its key's final state.
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _changed AS
            SELECT i.*, c.{CHANGE_VERSION}, c._final
            FROM _changes AS c JOIN _in AS i USING ({keys}, _seq, _row)
            """
        )
        con.execute("DROP TABLE _changes")
        con.execute("DROP TABLE _in")  # everything below reads _changed; free the input early
        from warehouse.key_changes import apply_renames, close_renamed_history  # imports this module

        apply_renames(con, entity, schema, table)  # a surrogate under a new natural key: a rename
        if has_tombs:
            con.execute(
                f"""
                DELETE FROM core.{TOMBSTONES} WHERE entity = {literal(name)} AND natural_key IN (
                    SELECT natural_key FROM _tomb SEMI JOIN (SELECT {keys} FROM _changed WHERE _final) USING ({keys}))
                """
            )
        district = tombstone_district_sql(schema, _table_exists(con, "core", "project"))
        key_join = " AND ".join(f"c.{ident(k)} = f.{ident(k)}" for k in key)
        con.execute(
            f"""
            INSERT INTO core.{TOMBSTONES} (entity, natural_key, {CHANGE_VERSION}, deleted_at,
                                           _source, _source_key, _batch_id, _extracted_at, district_code)
            SELECT {literal(name)}, {natural_key_sql(key, "f")}, f.{CHANGE_VERSION}, f._at,
                   f._source, f._source_key, f._batch_id, f._extracted_at, {district}
            FROM _changed AS f LEFT JOIN ({_last_live_sql(table, key, columns)}) AS c ON {key_join}
            WHERE f._final AND f._del
            """
        )
        key_match = " AND ".join(f"{table}.{ident(k)} = f.{ident(k)}" for k in key)
        if has_rows:
            con.execute(f"DELETE FROM {table} USING (SELECT {keys} FROM _changed WHERE _final) AS f WHERE {key_match}")
        col_list = ", ".join(ident(c) for c in [*columns, CHANGE_VERSION])
        # Stored in change-version order: feed pages (change_version > after ORDER BY change_version)
        # then touch one row group by its min/max, not half the table.
        con.execute(f"INSERT INTO {table} ({col_list}) SELECT {col_list} FROM _changed WHERE _final AND NOT _del "
                    f"ORDER BY {CHANGE_VERSION}")
        deletes, upserts, last = con.execute(
            f"SELECT count(*) FILTER (WHERE _final AND _del), count(*) FILTER (WHERE _final AND NOT _del), "
            f"max({CHANGE_VERSION}) FROM _changed"
        ).fetchall()[0]
        if history:
            _apply_history(con, name, key, columns)
            close_renamed_history(con, entity)
        return Applied(changes, int(upserts), int(deletes), int(last))
    finally:
        for temp in ("_in", "_tomb", "_changes", "_changed", "_open", "_timed", "_renames", "_states"):
            con.execute(f"DROP TABLE IF EXISTS {temp}")


def _last_live_sql(table: str, key: list[str], columns: list[str]) -> str:
    """Each key's last live row before its delete: the apply's own last live change, else core's row.

    A delete (above all a hard delete, which carries only the key) takes its district from the
    row it deletes. When that row arrived in the same apply (always so in a rebuild from the lake,
    which applies every batch at once) it is not in core yet; reading core alone gave such
    tombstones no district, so ``build --full`` did not reproduce the incremental warehouse.
    """
    keys = ", ".join(ident(k) for k in key)
    wanted = [c for c in ("district_code", "project_id") if c in columns and c not in key]
    cols = ", ".join([keys, *(ident(c) for c in wanted)])
    return (
        f"SELECT {cols} FROM (SELECT {cols}, row_number() OVER (PARTITION BY {keys} ORDER BY {CHANGE_VERSION} DESC) "
        f"AS _n FROM _changed WHERE NOT _del) WHERE _n = 1 "
        f"UNION ALL SELECT {cols} FROM {table} AS t "
        f"WHERE NOT EXISTS (SELECT 1 FROM _changed AS x WHERE NOT x._del AND "
        + " AND ".join(f"x.{ident(k)} = t.{ident(k)}" for k in key) + ")"
    )


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(_scalar(
        con,
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        f"AND schema_name = {literal(schema)} AND table_name = {literal(table)}",
    ))


def _apply_history(con: duckdb.DuckDBPyConnection, name: str, key: list[str], columns: list[str]) -> None:
    """Close each changed key's open history row and add one row per live change.

    ``valid_from`` never goes backwards within a key (a source may send a correction with an
    older ``updated_at``): it is the running maximum of the event times, starting from the
    open row's ``valid_from``, so intervals never overlap.
    """
    hist = f"core.{ident(name + '_history')}"
    keys = ", ".join(ident(k) for k in key)
    on_keys = " AND ".join(f"h.{ident(k)} = f.{ident(k)}" for k in key)
    open_from, open_join = "NULL::TIMESTAMPTZ", ""
    if _scalar(con, f"SELECT count(*) FROM (SELECT 1 FROM {hist} LIMIT 1)"):
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _open AS
            SELECT {", ".join(f"h.{ident(k)}" for k in key)}, h.valid_from
            FROM {hist} AS h SEMI JOIN (SELECT DISTINCT {keys} FROM _changed) AS c USING ({keys})
            WHERE h.valid_to IS NULL
            """
        )
        # An open row closes where the key's first change starts (never before its own start).
        con.execute(
            f"""
            UPDATE {hist} AS h SET valid_to = f.first_from
            FROM (SELECT {keys}, greatest(arg_min(c._at, c.{CHANGE_VERSION}), any_value(o.valid_from)) AS first_from
                  FROM _changed AS c JOIN _open AS o USING ({keys}) GROUP BY ALL) AS f
            WHERE h.valid_to IS NULL AND {on_keys}
            """
        )
        open_from, open_join = "o.valid_from", f"LEFT JOIN _open AS o USING ({keys})"
    # valid_from: running maximum of event times from the open row's start; valid_to: the next
    # change's valid_from (a delete closes the interval and adds no row). One statement, so the
    # changed rows are not copied into another temp table on the way.
    col_list = ", ".join(ident(c) for c in [*columns, CHANGE_VERSION])
    con.execute(
        f"""
        INSERT INTO {hist} ({col_list}, valid_from, valid_to)
        SELECT {col_list}, _valid_from, _valid_to FROM (
            SELECT *, lead(_valid_from) OVER (PARTITION BY {keys} ORDER BY {CHANGE_VERSION}) AS _valid_to
            FROM (
                SELECT c.*,
                       greatest(max(c._at) OVER (PARTITION BY {", ".join(f"c.{ident(k)}" for k in key)}
                                                 ORDER BY c.{CHANGE_VERSION}
                                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
                                {open_from}) AS _valid_from
                FROM _changed AS c {open_join}
            )
        ) WHERE NOT _del
        """
    )


def duck_type(t: pa.DataType) -> str:
    """The DuckDB type of an Arrow type, for typed NULL columns."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "VARCHAR"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return duck_type(t.value_type) + "[]"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_int8(t):
        return "TINYINT"
    if pa.types.is_int16(t):
        return "SMALLINT"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    return "VARCHAR"
