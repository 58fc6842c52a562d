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
    "natural_key_sql",
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
    name = entity.name
    table = f"core.{ident(name)}"
    key = list(entity.key)
    columns = list(schema.names)
    at = event_time_sql(schema)
    select = [(f"f.{ident(c)}" if c in present else f"NULL::{_duck_type(schema.field(c).type)}") + f" AS {ident(c)}"
              for c in columns]
    deleted = f"coalesce(f.{ident(DELETED)}, false)" if DELETED in present else "false"
    paths = "[" + ", ".join(literal(p) for p in files.column("path").to_pylist()) + "]"
    con.register("_files", files)
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _in AS
            SELECT *, {natural_key_sql(key)} AS _nk, {at} AS _at FROM (
                SELECT {", ".join(select)}, {deleted} AS _del, s.landed_seq AS _seq, f.file_row_number AS _row
                FROM read_parquet({paths}, filename = true, file_row_number = true, union_by_name = true) AS f
                JOIN _files AS s ON f.filename = s.path
            )
            """
        )
    finally:
        con.unregister("_files")
    try:
        # The touched keys' state before this build: live (hash) or deleted (tombstone).
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _prev AS
            SELECT {natural_key_sql(key, "c")} AS _nk, c._record_hash AS _hash, false AS _del
            FROM {table} AS c SEMI JOIN (SELECT DISTINCT {", ".join(ident(k) for k in key)} FROM _in) AS i
              USING ({", ".join(ident(k) for k in key)})
            UNION ALL
            SELECT t.natural_key, NULL, true FROM core.{TOMBSTONES} AS t
            WHERE t.entity = {literal(name)} AND t.natural_key IN (SELECT _nk FROM _in)
            """
        )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _changes AS
            WITH steps AS (
                SELECT _nk, 0::BIGINT AS _seq, -1::BIGINT AS _row, _hash, _del FROM _prev
                UNION ALL
                SELECT _nk, _seq, _row, _record_hash, _del FROM _in
            ), compared AS (
                SELECT *, lag(_hash) OVER w AS _prev_hash, lag(_del) OVER w AS _prev_del
                FROM steps WINDOW w AS (PARTITION BY _nk ORDER BY _seq, _row)
            )
            SELECT _nk, _seq, _row, _del,
                   {last_version} + row_number() OVER (ORDER BY _nk, _seq, _row) AS {CHANGE_VERSION}
            FROM compared
            WHERE _seq > 0 AND (
                _prev_del IS NULL
                OR (_del AND NOT _prev_del)
                OR (NOT _del AND (_prev_del OR _hash IS DISTINCT FROM _prev_hash))
            )
            """
        )
        changes = _scalar(con, "SELECT count(*) FROM _changes")
        if changes == 0:
            return Applied(0, 0, 0, last_version)
        # The changed rows in full, and each key's final state.
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _changed AS
            SELECT i.*, c.{CHANGE_VERSION},
                   c.{CHANGE_VERSION} = max(c.{CHANGE_VERSION}) OVER (PARTITION BY c._nk) AS _final
            FROM _changes AS c JOIN _in AS i USING (_nk, _seq, _row)
            """
        )
        key_match = " AND ".join(f"{table}.{ident(k)} = f.{ident(k)}" for k in key)
        con.execute(f"DELETE FROM {table} USING (SELECT * FROM _changed WHERE _final) AS f WHERE {key_match}")
        con.execute(
            f"DELETE FROM core.{TOMBSTONES} WHERE entity = {literal(name)} "
            f"AND natural_key IN (SELECT _nk FROM _changed WHERE _final)"
        )
        col_list = ", ".join(ident(c) for c in [*columns, CHANGE_VERSION])
        con.execute(f"INSERT INTO {table} ({col_list}) SELECT {col_list} FROM _changed WHERE _final AND NOT _del")
        con.execute(
            f"""
            INSERT INTO core.{TOMBSTONES} (entity, natural_key, {CHANGE_VERSION}, deleted_at,
                                           _source, _source_key, _batch_id, _extracted_at)
            SELECT {literal(name)}, _nk, {CHANGE_VERSION}, _at, _source, _source_key, _batch_id, _extracted_at
            FROM _changed WHERE _final AND _del
            """
        )
        deletes = _scalar(con, "SELECT count(*) FROM _changed WHERE _final AND _del")
        upserts = _scalar(con, "SELECT count(*) FROM _changed WHERE _final AND NOT _del")
        if history:
            _apply_history(con, name, key, columns)
        last = _scalar(con, f"SELECT max({CHANGE_VERSION}) FROM _changes")
        return Applied(changes, upserts, deletes, last)
    finally:
        for temp in ("_in", "_prev", "_changes", "_changed", "_open"):
            con.execute(f"DROP TABLE IF EXISTS {temp}")


def _apply_history(con: duckdb.DuckDBPyConnection, name: str, key: list[str], columns: list[str]) -> None:
    """Close each changed key's open history row and add one row per live change.

    ``valid_from`` never goes backwards within a key (a source may send a correction with an
    older ``updated_at``): it is the running maximum of the event times, starting from the
    open row's ``valid_from``, so intervals never overlap.
    """
    hist = f"core.{ident(name + '_history')}"
    keys = ", ".join(ident(k) for k in key)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _open AS
        SELECT {natural_key_sql(key, "h")} AS _nk, h.valid_from
        FROM {hist} AS h SEMI JOIN (SELECT DISTINCT {keys} FROM _changed) AS c USING ({keys})
        WHERE h.valid_to IS NULL
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _timed AS
        SELECT c.*,
               greatest(max(c._at) OVER (PARTITION BY c._nk ORDER BY c.{CHANGE_VERSION}
                                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
                        o.valid_from) AS _valid_from
        FROM _changed AS c LEFT JOIN _open AS o USING (_nk)
        """
    )
    con.execute(
        f"""
        UPDATE {hist} AS h SET valid_to = f.first_from
        FROM (SELECT _nk, min(_valid_from) AS first_from FROM _timed GROUP BY _nk) AS f
        WHERE h.valid_to IS NULL AND {natural_key_sql(key, "h")} = f._nk
        """
    )
    col_list = ", ".join(ident(c) for c in [*columns, CHANGE_VERSION])
    con.execute(
        f"""
        INSERT INTO {hist} ({col_list}, valid_from, valid_to)
        SELECT {col_list}, _valid_from, _valid_to FROM (
            SELECT *, lead(_valid_from) OVER (PARTITION BY _nk ORDER BY {CHANGE_VERSION}) AS _valid_to
            FROM _timed
        ) WHERE NOT _del
        """
    )
    con.execute("DROP TABLE IF EXISTS _timed")


def _duck_type(t: pa.DataType) -> str:
    """The DuckDB type of an Arrow type, for typed NULL columns."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "VARCHAR"
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
