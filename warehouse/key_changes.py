"""Key changes: a record whose natural key changed at its source, recorded as a rename, not a delete and an insert.

When is a rename recognisable? Only when the source gives the record a stable surrogate that
is not its natural key. Every landed row carries ``_source_key``, the value of its stream's
``primary_key``; a spec whose ``primary_key`` is the source's internal id (``QYID``, ``id``)
while the natural key is mapped from a code that can change (项目编号, a USCC) therefore lets
the hub see that (``_source``, ``_source_key``) now arrives under another natural key. Where
``primary_key`` *is* the natural key's column (most shipped specs), ``_source_key`` changes
with the key and nothing is recognised: a rename stays a delete plus an insert, as before.
Entities keyed without ``_source`` (``organization``, whose key is the resolved USCC / name id)
are left out: their key is the hub's, not a source's.

What a rename does, in the same DuckDB transaction as the rest of the apply
(:func:`warehouse.versions.apply_rows` calls :func:`apply_renames` once ``_changed`` exists):

* one row in ``core._key_changes`` (entity, old and new natural key as JSON, the new row's
  change version, when, source, the row's district and project for feed scoping);
* the old key's live row leaves ``core.<entity>`` without a tombstone (the feeds' deletes do
  not report a rename), and its open history row is closed where the new key's starts.

Without this, a surrogate-keyed rename left the old key live for ever: the snapshot diff keys
deletes on ``_source_key``, which had not gone away. In a rebuild from the lake (``build
--full``) every batch is applied at once, so a chain A→B→C is recorded as A→C and B→C (each
old key to the current one) instead of A→B, B→C: both map every old key to the live one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from warehouse.versions import CHANGE_VERSION, ident, literal, natural_key_sql

if TYPE_CHECKING:
    from schemas import Entity

__all__ = ["COLUMN_DOCS", "KEY_CHANGES", "TABLE_DOC", "apply_renames", "close_renamed_history", "ensure_table",
           "has_foreign_surrogates", "supports_key_changes"]

KEY_CHANGES = "_key_changes"
TABLE_DOC = ("主键变更 / natural-key changes (renames) recognised through a stable source surrogate, for feeds' "
             "keyChanges. Grain: one row per renamed record and rename.")
COLUMN_DOCS: dict[str, str] = {
    "entity": "实体 / entity (core table name)",
    "old_key": "原自然键 / the natural key before, as JSON text",
    "new_key": "新自然键 / the natural key after, as JSON text (the live row's key)",
    CHANGE_VERSION: "变更版本 / change version of the row under its new key (ops.change_sequence)",
    "changed_at": "变更时间 / when: the new row's updated_at, else _extracted_at (UTC)",
    "_source": "来源系统 / source system",
    "_source_key": "来源系统主键 / the stable surrogate that recognised the rename",
    "district_code": "区 / district of the renamed row (feed scoping)",
    "project_id": "项目编号 / the row's project, for entities scoped through their project",
}


def supports_key_changes(entity: Entity) -> bool:
    """Whether renames of this entity can be recognised: keyed by (``_source``, a source id)."""
    return "_source" in entity.key and len(entity.key) >= 2


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    """``core._key_changes``: one row per recognised rename (created empty, so every snapshot has it)."""
    con.execute(
        f"CREATE TABLE IF NOT EXISTS core.{KEY_CHANGES} (entity VARCHAR, old_key VARCHAR, new_key VARCHAR, "
        f"{CHANGE_VERSION} BIGINT, changed_at TIMESTAMPTZ, _source VARCHAR, _source_key VARCHAR, "
        "district_code VARCHAR, project_id VARCHAR)"
    )


def has_foreign_surrogates(con: duckdb.DuckDBPyConnection, entity: Entity, relation: str, where: str = "true") -> bool:
    """Whether a row of ``relation`` (matching ``where``) carries a ``_source_key`` other than its own key's id.

    The default surrogate (:func:`schemas.lineage.add_lineage`) is the key's id itself; only a spec
    whose ``primary_key`` is another column gives rows a foreign one, and only such rows can be renamed.
    """
    own = " || '|' || ".join(f"CAST({ident(k)} AS VARCHAR)" for k in entity.key if k != "_source")
    return bool(con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {relation} WHERE ({where}) AND "
                            f"_source_key IS NOT NULL AND _source_key IS DISTINCT FROM {own} LIMIT 1)").fetchall()[0][0])


def apply_renames(con: duckdb.DuckDBPyConnection, entity: Entity, schema: pa.Schema, table: str,
                  *, core_empty: bool = False, core_own_keyed: bool = False) -> int:
    """Record the renames among ``_changed`` and take the old keys out of ``table``; returns how many.

    ``_changed`` (see apply_rows) holds the apply's changes with ``_final`` marking each key's
    final state. A surrogate (``_source``, ``_source_key``) whose final live states — the core row
    before this apply, and this apply's final rows — carry more than one natural key was renamed:
    the newest (merge order; core's row is the oldest) is the current key, every other one a rename
    of it. The old keys' final rows in ``_changed`` stop being final, so they are neither inserted
    nor tombstoned.

    ``core_empty`` (a first load, a rebuild) or ``core_own_keyed`` (every row ever applied to core
    carried its own key as ``_source_key``, which the builder keeps in ``ops.build_state``): when
    moreover every final row's ``_source_key`` is its own key (the default surrogate,
    :func:`schemas.lineage.add_lineage`), two rows cannot share a surrogate under different keys,
    so nothing is looked up: no scan of core by surrogate, no ranking.
    """
    if not supports_key_changes(entity):
        return 0
    ensure_table(con)
    key = list(entity.key)
    keys = ", ".join(ident(k) for k in key)
    if (core_empty or core_own_keyed) and not has_foreign_surrogates(con, entity, "_changed", "_final AND NOT _del"):
        return 0
    extra = [c for c in ("district_code", "project_id") if c in schema.names]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _states AS
        SELECT {keys}, _source_key, 0::BIGINT AS _seq, -1::BIGINT AS _row, NULL::BIGINT AS {CHANGE_VERSION},
               NULL::TIMESTAMPTZ AS _at, true AS _in_core
        FROM {table} AS c
        SEMI JOIN (SELECT DISTINCT _source, _source_key FROM _changed
                   WHERE _final AND NOT _del AND _source_key IS NOT NULL) USING (_source, _source_key)
        ANTI JOIN (SELECT {keys} FROM _changed WHERE _final) USING ({keys})
        UNION ALL
        SELECT {keys}, _source_key, _seq, _row, {CHANGE_VERSION}, _at, false
        FROM _changed WHERE _final AND NOT _del AND _source_key IS NOT NULL
        """
    )
    # Only surrogates seen under more than one key are ranked (a GROUP BY, not a window over all).
    # The new row's district and project come from its row in ``_in`` (``_changed`` is narrow).
    row_match = " AND ".join(f"i.{ident(c)} = n.{ident(c)}" for c in [*key, "_seq", "_row"])
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _renames AS
        WITH multi AS (
            SELECT _source, _source_key FROM _states GROUP BY _source, _source_key HAVING count(*) > 1
        ), ranked AS (
            SELECT *, row_number() OVER w AS _rank
            FROM _states SEMI JOIN multi USING (_source, _source_key)
            WINDOW w AS (PARTITION BY _source, _source_key ORDER BY _seq DESC, _row DESC)
        )
        SELECT {natural_key_sql(key, "o")} AS old_key, {natural_key_sql(key, "n")} AS new_key,
               {", ".join(f"o.{ident(k)} AS {ident('_old_' + k)}" for k in key)}, o._in_core,
               n.{CHANGE_VERSION}, n._at, n._source, n._source_key,
               {"i.district_code" if "district_code" in extra else "NULL::VARCHAR"} AS district_code,
               {"CAST(i.project_id AS VARCHAR)" if "project_id" in extra else "NULL::VARCHAR"} AS project_id
        FROM ranked AS o JOIN ranked AS n
          ON n._source = o._source AND n._source_key = o._source_key AND n._rank = 1
        LEFT JOIN _in AS i ON {row_match}
        WHERE o._rank > 1
        """
    )
    renamed = int(con.execute("SELECT count(*) FROM _renames").fetchall()[0][0])
    if renamed:
        con.execute(
            f"INSERT INTO core.{KEY_CHANGES} SELECT {literal(entity.name)}, old_key, new_key, {CHANGE_VERSION}, _at, "
            "_source, _source_key, district_code, project_id FROM _renames ORDER BY " + CHANGE_VERSION
        )
        old_match = " AND ".join(f"{{t}}.{ident(k)} = r.{ident('_old_' + k)}" for k in key)
        con.execute(f"DELETE FROM {table} USING (SELECT * FROM _renames WHERE _in_core) AS r "
                    f"WHERE {old_match.format(t=table)}")
        con.execute(f"UPDATE _changed SET _final = false FROM (SELECT * FROM _renames WHERE NOT _in_core) AS r "
                    f"WHERE {old_match.format(t='_changed')}")
    con.execute("DROP TABLE IF EXISTS _states")
    return renamed


def close_renamed_history(con: duckdb.DuckDBPyConnection, entity: Entity) -> None:
    """Close the open history rows of keys renamed by this apply where the new key's row starts."""
    key = list(entity.key)
    if not supports_key_changes(entity) or not _exists(con, "_renames"):
        return
    hist = f"core.{ident(entity.name + '_history')}"
    match = " AND ".join(f"h.{ident(k)} = r.{ident('_old_' + k)}" for k in key)
    con.execute(f"UPDATE {hist} AS h SET valid_to = greatest(r._at, h.valid_from) FROM _renames AS r "
                f"WHERE h.valid_to IS NULL AND {match}")


def _exists(con: duckdb.DuckDBPyConnection, temp: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?",
                            [temp]).fetchall()[0][0])
