"""Change versions, tombstones and history: applying new std rows to ``core``.

Why a builder-side sequence: feed consumers ask for "everything after version N" across the
whole hub, so every applied insert, update and delete needs one number from one strictly
increasing sequence (``ops.change_sequence`` in the builder's warehouse file, written in the
same DuckDB transaction as the data it numbers, so they can never disagree).

How one entity is applied (:func:`apply_entity`), all in set-based SQL over the new files
only, so the work is proportional to the new batches, not to the warehouse:

1. every row of the new files, in merge order (``landed_seq``, then row position);
2. each touched key is seeded with its current state (live in ``core.<entity>`` with its
   record hash, found through the entity's key directory, :func:`key_directory`, or deleted in
   ``core._tombstones``);
3. a row is a *change* when it differs from the key's previous state: a live row whose
   ``_record_hash`` differs (or that revives a deleted/absent key), or a delete of a key that
   is not already deleted. Re-sent identical rows are not changes and get no version;
4. changes are numbered from the sequence in (natural key, merge order), which makes the
   numbering independent of how the same data happened to be split into batches; a first load
   whose keys each arrive once (nothing live or deleted before it) is numbered in merge order
   instead, the order its rows were landed in, so that it is written with no sort;
5. the last change per key decides the key's new state: a row in ``core.<entity>`` or a
   tombstone carrying the natural key, the version and the time;
6. for history entities every live change becomes a ``core.<entity>_history`` row whose
   ``valid_to`` is the next change's ``valid_from`` (the open row has ``valid_to`` NULL).

Steps 2-5 and the history intervals run over a narrow table (key, merge position, hash, event
time) in one pass of windows; the files' wide rows are read where they are written (history,
then core, which for history entities is read back from the history rows just written) and
joined on their position (file, row). Why not one wide table of the changes, as before: at 1M
rows that copy and a second window pass for the intervals were half of a full build's CPU, and at
5M the wide temp tables outgrew the memory limit and spilled (measured: 21.6 → 11.4 CPU-seconds
for a 1M-project + 1M-report rebuild).
"""

from __future__ import annotations

import re
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
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
    "clean_up",
    "directory_gaps",
    "rows_of_projects",
    "KEY_DIRECTORY_DOC",
    "KEY_DIRECTORY_PREFIX",
    "KEY_DIRECTORY_TITLE",
    "PROJECT_HASH_DOC",
    "key_directory",
    "duck_type",
    "event_time_sql",
    "natural_key_sql",
    "now_table",
    "one_transaction",
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
    #: Whether a row this apply made live carries a ``_source_key`` other than its own key's id
    #: (:func:`warehouse.key_changes.has_foreign_surrogates`); the builder keeps it per entity.
    foreign_surrogates: bool = False


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
    prior: tuple[str, list[str]] | None = None,
    core_own_keyed: bool = False,
) -> Applied:
    """Apply the rows of ``files`` (columns ``path``, ``landed_seq``, ``rows``) to core; see the module doc.

    ``schema`` is the core table's business + lineage columns (without ``change_version``);
    ``present`` the columns the files have (absent ones read as NULL). Returns the counts and
    the sequence's new last value.

    ``_in`` is a view over the files, not a copy: :func:`apply_rows` reads the few columns it
    compares once, and the wide rows only where it writes them (core, history, tombstones), so
    no temp table holds every column of every new row (at 5M rows that copy alone overran the
    build's memory limit and spilled, and a full build paid for it twice).
    """
    columns = list(schema.names)
    at = event_time_sql(schema)
    select = [(f"f.{ident(c)}" if c in present else f"NULL::{duck_type(schema.field(c).type)}") + f" AS {ident(c)}"
              for c in columns]
    deleted = f"coalesce(f.{ident(DELETED)}, false)" if DELETED in present else "false"
    # Merge order: the files in landing order, each file's rows in order. ``_seq`` is the file's place
    # in that list, read by the scan itself (no join on the file name), and with each file's row count
    # a row's place in merge order follows from (``_seq``, ``_row``) alone (:func:`_merge_version`).
    files = files.sort_by("landed_seq")
    paths = "[" + ", ".join(literal(p) for p in files.column("path").to_pylist()) + "]"
    counts = [int(n) for n in files.column("rows").to_pylist()]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW _in AS
        SELECT *, {at} AS _at FROM (
            SELECT {", ".join(select)}, {deleted} AS _del, (f.file_index + 1)::BIGINT AS _seq, f.file_row_number AS _row
            FROM read_parquet({paths}, file_row_number = true, union_by_name = true) AS f
        )
        """
    )
    try:
        return apply_rows(con, entity, schema, last_version, history=history, positioned=True, prior=prior,
                          core_own_keyed=core_own_keyed, file_rows=counts)
    finally:
        clean_up(con, "DROP VIEW IF EXISTS _in")


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
    positioned: bool = False,
    prior: tuple[str, list[str]] | None = None,
    core_own_keyed: bool = False,
    file_rows: list[int] | None = None,
) -> Applied:
    """Apply ``_in`` to ``core.<entity.name>``: steps 2-6 of the module doc.

    ``_in`` (a table or a view, the caller's to drop) holds the schema's columns plus ``_del`` (a delete), ``_seq``
    and ``_row`` (merge order) and ``_at`` (event time). The comparison, the numbering and the
    history intervals run over a narrow copy of it (key, merge order, hash, time) in one window
    pass; the wide rows are read from ``_in`` only where they are written. The key columns
    themselves partition and join (the JSON natural key is spelled only for tombstones).

    ``positioned``: (``_seq``, ``_row``) alone names an ``_in`` row (a file and its row number), so
    the wide rows are joined on those two integers, not on the key's strings as well: at 5M rows
    the smaller hash table is what keeps that join within the memory limit.

    ``prior`` (a temp table's name and columns, the natural key first): keep the touched keys' core
    rows as they were before this apply in that table, from the same scan of core that seeds the
    comparison (the marts kept group by group read it, :func:`warehouse.marts.capture_changed_keys`),
    the touched keys themselves in :func:`touched_table` (``_touched_<table>``), and the rows the
    apply left for them in :func:`now_table` (``_now_<table>``: written, or deleted).
    ``core_own_keyed``: every row in core carries its own key as ``_source_key`` (see
    :func:`warehouse.key_changes.apply_renames`); renames are then looked for only when new rows do not.

    ``file_rows`` (with ``positioned``): how many rows each file holds, in merge order (``_seq`` 1, 2,
    …): a row's place in merge order is then its file's offset plus ``_row``, which numbers a first load.
    """
    name = entity.name
    table = f"core.{ident(name)}"
    hist = f"core.{ident(name + '_history')}"
    key = list(entity.key)
    columns = list(schema.names)
    surrogate = "_source_key" in columns and "_source_key" not in key
    row_key = [] if positioned else key  # the columns besides (_seq, _row) that name an _in row
    # One transaction: the change numbers and the rows they number commit together, and no checkpoint
    # can run in between, so the row ids read into ``_cur`` / ``_open`` still name the same rows when
    # the DELETE and the history UPDATE use them (a checkpoint may compact a table and renumber them).
    # Inside a caller's transaction (:func:`one_transaction`) that one holds it all.
    outer = con in _TRANSACTIONS
    if not outer:
        con.execute("BEGIN TRANSACTION")
    try:
        applied = _apply_rows(con, entity, schema, last_version, history=history, table=table, hist=hist, key=key,
                              columns=columns, surrogate=surrogate, row_key=row_key, prior=prior,
                              core_own_keyed=core_own_keyed, file_rows=file_rows if positioned else None)
        if not outer:
            con.execute("COMMIT")
        return applied
    except BaseException:
        if not outer:
            con.execute("ROLLBACK")
        raise
    finally:
        clean_up(con, *(f"DROP TABLE IF EXISTS {temp}" for temp in
                        ("_new", "_keys", "_cur_versions", "_cur", "_tomb", "_changed", "_open", "_gone", "_renames", "_states")))


def clean_up(con: duckdb.DuckDBPyConnection, *statements: str) -> None:
    """Run a ``finally`` block's clean-up statements (temp tables, views), unless an error is on its way
    out of a :func:`one_transaction` block: that error aborted the transaction, every statement
    would now fail and replace it, and the connection is discarded anyway."""
    if _may_clean_up(con):
        for statement in statements:
            con.execute(statement)


def _may_clean_up(con: duckdb.DuckDBPyConnection) -> bool:
    """False in a ``finally`` block an error is leaving inside a :func:`one_transaction` block."""
    return con not in _TRANSACTIONS or sys.exc_info()[0] is None


#: Connections inside :func:`one_transaction`.
_TRANSACTIONS: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()


@contextmanager
def one_transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Hold everything the block does, every :func:`apply_rows` included, in one transaction.

    The block ends the transaction itself (COMMIT); an error leaves it aborted for the caller to
    discard with its connection. No statement inside may fail on purpose: in DuckDB any error
    aborts the whole transaction.
    """
    con.execute("BEGIN TRANSACTION")
    _TRANSACTIONS.add(con)
    try:
        yield
    finally:
        _TRANSACTIONS.discard(con)


@contextmanager
def insertion_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Preserve insertion order for the block's statements (a build runs without it: see ``_connect``)."""
    before = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute("SET preserve_insertion_order = true")
    reset = f"SET preserve_insertion_order = {'true' if before else 'false'}"
    try:
        yield
    except BaseException:
        try:  # an aborted transaction refuses even a SET: the error on its way out is the one to see
            con.execute(reset)
        except duckdb.Error:
            pass
        raise
    con.execute(reset)


def _apply_rows(con: duckdb.DuckDBPyConnection, entity: Entity, schema: pa.Schema, last_version: int, *,
                history: bool, table: str, hist: str, key: list[str], columns: list[str], surrogate: bool,
                row_key: list[str], prior: tuple[str, list[str]] | None, core_own_keyed: bool,
                file_rows: list[int] | None) -> Applied:
    """:func:`apply_rows` inside its transaction."""
    name = entity.name
    keys = ", ".join(ident(k) for k in key)
    extra = ", _source_key" if surrogate else ""
    # The touched keys' state before this build: live (hash) or deleted (tombstone). An entity
    # with no rows and no tombstones yet (a first load, a rebuild) has no state to look up:
    # the lookups are skipped, which saves two DISTINCTs over the input.
    has_tombs = _scalar(con, f"SELECT count(*) FROM (SELECT 1 FROM core.{TOMBSTONES} "
                             f"WHERE entity = {literal(name)} LIMIT 1)") > 0
    has_rows = _scalar(con, f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)") > 0
    has_history = history and _scalar(con, f"SELECT count(*) FROM (SELECT 1 FROM {hist} LIMIT 1)") > 0
    # The record hash is compared as DuckDB's 64-bit hash() of it: a fixed 8 bytes in the windows'
    # sorts instead of a 64-character string (a false "unchanged" needs a 2^-64 collision).
    con.execute(f"CREATE OR REPLACE TEMP TABLE _new AS SELECT {keys}, _seq, _row, hash(_record_hash) AS _hash, "
                f"_del, _at{extra} FROM _in")
    # The touched keys, found once for the lookups of their tombstones and live rows, the check that
    # each arrives once, and the marts' ``_touched_<table>`` (``prior``), which read the files' keys
    # again before (1M projects, 1% changed: 4 DISTINCTs over the new rows and a file read per entity,
    # ~15 ms). A first load, with nothing to look up, counts distinct keys without keeping them.
    distinct = f"(SELECT DISTINCT {keys} FROM _new)"
    if has_rows or has_tombs or prior:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _keys AS SELECT DISTINCT {keys} FROM _new")
        distinct = "_keys"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _tomb AS
        SELECT * FROM (
            SELECT t.natural_key, {_key_from_json(schema, key, "t.natural_key")}
            FROM core.{TOMBSTONES} AS t WHERE t.entity = {literal(name)}
        ) SEMI JOIN {distinct} USING ({keys})
        {"" if has_tombs else "WHERE false"}
        """
    )
    kept = [c for c in (prior[1] if prior else []) if c not in key]
    by_project = _project_hash(columns, key)
    directory = _key_directory(con, name, table, keys, by_project, has_rows)
    if has_rows:
        # The touched keys' live rows, read once: their hash seeds the comparison and their row id
        # deletes the replaced ones below without a second join of core on the key's strings.
        # Their change versions are found in the key directory (a join of integers, which the scan of
        # the directory filters as it reads), then core's rows by those versions (the same, on core's
        # change_version), and only then the key's strings compared, on the few rows found: a join of
        # core on the strings read the keys of every row (1M projects, 1% changed: 0.16-0.19 ->
        # 0.11-0.12 CPU-seconds for the lookup of the projects). The CTE is materialised so that the
        # planner cannot join core to the keys' strings first.
        con.execute(f"CREATE OR REPLACE TEMP TABLE _cur_versions AS SELECT d.{CHANGE_VERSION} FROM {directory} AS d "
                    f"SEMI JOIN (SELECT hash({keys}) AS key_hash FROM _keys) USING (key_hash)")
        con.execute(f"CREATE OR REPLACE TEMP TABLE _cur AS WITH c AS MATERIALIZED (SELECT c.rowid AS _rid, "
                    f"{''.join(f'c.{ident(k)}, ' for k in [*key, *kept])}hash(c._record_hash) AS _hash, "
                    f"c.{CHANGE_VERSION} AS _cv FROM {table} AS c SEMI JOIN _cur_versions USING ({CHANGE_VERSION})) "
                    f"SELECT * FROM c SEMI JOIN _keys USING ({keys})")
        con.execute("DROP TABLE _cur_versions")
    if has_history:
        # The touched keys' open history rows, before this apply adds any. A key's open row is the
        # one its live core row was read back from (same change version; a delete or a rename
        # closes it): found by that integer, not by a join of history on the key's strings
        # (1M projects, 1% changed: 0.023 -> 0.005 s). A key with no live row has none open.
        source = "_cur AS c" if has_rows else f"(SELECT {keys}, NULL::BIGINT AS _cv FROM {table} WHERE false) AS c"
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _open AS
            SELECT h.rowid AS _rid, {", ".join(f"c.{ident(k)}" for k in key)}, h.valid_from
            FROM {hist} AS h JOIN {source} ON h.{CHANGE_VERSION} = c._cv
            WHERE h.valid_to IS NULL
            """
        )
    if prior and not has_rows:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {ident(prior[0])} AS SELECT "
                    f"{', '.join(ident(c) for c in [*key, *kept])} FROM {table} WHERE false")
    live = ("FROM _cur AS c" if has_rows
            else f"FROM (SELECT {keys}, hash(_record_hash) AS _hash FROM {table} WHERE false) AS c")
    seed_extra = ", NULL::VARCHAR AS _source_key" if surrogate else ""
    # One window (per key, in merge order) gives: each key's last change (_final), and for
    # history the running maximum of event times and the next change's time (the interval).
    per_key = f"PARTITION BY {keys} ORDER BY _seq, _row"
    intervals = (f", max(_at) OVER (PARTITION BY {keys} ORDER BY _seq, _row ROWS BETWEEN UNBOUNDED PRECEDING "
                 f"AND CURRENT ROW) AS _run_at, lead(_at) OVER ({per_key}) AS _next_at" if history else "")
    # A first load (nothing live, no tombstones) whose keys each arrive once: every row is a change
    # and its key's last, so no window is needed. Whether a key repeats is one hash aggregate; if
    # one does, the general way.
    # Rows landed from files (``file_rows`` known) are numbered in merge order (file, then row: the
    # order they were landed in), not by key: a row's change version is its place in that order,
    # computed from (``_seq``, ``_row``) with no sort and no join, so history is written straight
    # from the files and core copied from it (at 1M projects the key-order numbering and core's
    # sorted read-back of the history cost 0.4 and 2.6 s of a 7.3 s build; at 5M both spilled).
    # Rows computed by a query (the golden organisations) have no such order: one sort numbers them
    # by key (a streaming row_number() OVER () over an ORDER BY, insertion order preserved for the
    # statement so that no plan may reorder the sorted rows before they are counted).
    maybe_first = not has_rows and not has_tombs
    # Counted by the keys' 64-bit hash where no distinct keys were kept: distinct hashes mean distinct
    # keys, and a collision only sends the apply the general way (1M projects: 0.13-0.14 s against
    # 0.17-0.24 for the DISTINCT of the key's strings).
    each_once = (f"SELECT (SELECT count(*) FROM _new) = (SELECT count(*) FROM _keys)" if distinct == "_keys" else
                 f"SELECT count(*) = count(DISTINCT hash({keys})) FROM _new")
    first_load = maybe_first and bool(_scalar(con, each_once))
    landing = first_load and file_rows is not None
    firsts = ", _at AS _run_at, NULL::TIMESTAMPTZ AS _next_at" if history else ""
    if landing:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _changed AS
            SELECT {keys}, _seq, _row, _del, _at{extra}, {_merge_version(last_version, file_rows)} AS {CHANGE_VERSION},
                   true AS _last{firsts}, true AS _final
            FROM _new
            """
        )
    elif first_load:
        with insertion_order(con):
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE _changed AS
                SELECT *, {last_version} + row_number() OVER () AS {CHANGE_VERSION}, true AS _last{firsts}, true AS _final
                FROM (SELECT {keys}, _seq, _row, _del, _at{extra} FROM _new ORDER BY {keys}, _seq, _row)
                """
            )
    # An incremental apply whose keys each arrive once (a sync's batch, one row per key) compares each
    # new row with its key's state before the build in a join, and numbers the changes in one sort:
    # at 1M projects and a 1% change the windows below cost 0.02 s per entity for 10,000 rows.
    once = JOIN_WHEN_KEYS_ARRIVE_ONCE and not maybe_first and _scalar(con, each_once)
    if once:
        new_extra = ", n._source_key" if surrogate else ""
        same_key = " AND ".join(f"n.{ident(k)} IS NOT DISTINCT FROM p.{ident(k)}" for k in key)
        runs = ", _at AS _run_at, NULL::TIMESTAMPTZ AS _next_at" if history else ""
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _changed AS
            SELECT *, {last_version} + row_number() OVER (ORDER BY {keys}, _seq, _row) AS {CHANGE_VERSION},
                   true AS _last{runs}, true AS _final
            FROM (
                SELECT {", ".join(f"n.{ident(k)}" for k in key)}, n._seq, n._row, n._del, n._at{new_extra}
                FROM _new AS n LEFT JOIN (
                    SELECT {keys}, _hash, false AS _was_del {live}
                    UNION ALL SELECT {keys}, NULL, true FROM _tomb
                ) AS p ON {same_key}
                WHERE p._was_del IS NULL OR (n._del AND NOT p._was_del)
                   OR (NOT n._del AND (p._was_del OR n._hash IS DISTINCT FROM p._hash))
            )
            """
        )
    elif not first_load:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _changed AS
            WITH steps AS (
                SELECT {", ".join(f"c.{ident(k)}" for k in key)}, 0::BIGINT AS _seq, -1::BIGINT AS _row,
                       c._hash, false AS _del, NULL::TIMESTAMPTZ AS _at{seed_extra}
                {live}
                UNION ALL
                SELECT {keys}, 0, -1, NULL, true, NULL{seed_extra} FROM _tomb
                UNION ALL
                SELECT {keys}, _seq, _row, _hash, _del, _at{extra} FROM _new
            ), compared AS (
                SELECT *, lag(_hash) OVER w AS _prev_hash, lag(_del) OVER w AS _prev_del
                FROM steps WINDOW w AS ({per_key})
            ), changed AS (
                SELECT {keys}, _seq, _row, _del, _at{extra} FROM compared
                WHERE _seq > 0 AND (
                    _prev_del IS NULL
                    OR (_del AND NOT _prev_del)
                    OR (NOT _del AND (_prev_del OR _hash IS DISTINCT FROM _prev_hash))
                )
            )
            SELECT *, _last AS _final FROM (
                SELECT *, {last_version} + row_number() OVER (ORDER BY {keys}, _seq, _row) AS {CHANGE_VERSION},
                       lead(_seq) OVER ({per_key}) IS NULL AS _last{intervals}
                FROM changed
            )
            """
        )
    con.execute("DROP TABLE _new")
    changes = _scalar(con, "SELECT count(*) FROM _changed")
    if changes == 0:
        if prior:
            _write_now(con, prior, key, kept, table, last_version, changed=False)
            _keep_as_prior(con, prior[0], has_rows)
        return Applied(0, 0, 0, last_version)
    from warehouse.key_changes import (  # imports this module
        apply_renames, close_renamed_history, has_foreign_surrogates, supports_key_changes)

    foreign = surrogate and supports_key_changes(entity) and has_foreign_surrogates(
        con, entity, "_changed", "_final AND NOT _del")
    # A surrogate under a new natural key: a rename.
    renamed = apply_renames(con, entity, schema, table, core_empty=not has_rows, core_own_keyed=core_own_keyed)
    if has_tombs:
        con.execute(
            f"""
            DELETE FROM core.{TOMBSTONES} WHERE entity = {literal(name)} AND natural_key IN (
                SELECT natural_key FROM _tomb SEMI JOIN (SELECT {keys} FROM _changed WHERE _final) USING ({keys}))
            """
        )
    deletes, upserts, last = con.execute(
        f"SELECT count(*) FILTER (WHERE _final AND _del), count(*) FILTER (WHERE _final AND NOT _del), "
        f"max({CHANGE_VERSION}) FROM _changed"
    ).fetchall()[0]
    if deletes:
        # the deleted keys' live rows: the ones read into ``_cur`` above, not another scan of core
        _insert_tombstones(con, name, schema, key, _live_rows(con, table, key) if has_rows else table, row_key)
    if has_rows:
        con.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT c._rid FROM _cur AS c "
                    f"SEMI JOIN (SELECT {keys} FROM _changed WHERE _final) USING ({keys}))")
    col_list = ", ".join(ident(c) for c in [*columns, CHANGE_VERSION])
    # Stored in change-version order: feed pages (change_version > after ORDER BY change_version)
    # then touch one row group by its min/max, not half the table.
    if history:
        _apply_history(con, name, key, columns, has_history, row_key, first_load=first_load,
                       merge_version=_merge_version(last_version, file_rows, "i") if landing else None)
        close_renamed_history(con, entity)
        # Core's rows are the history rows just written for each key's final live change: read back
        # from there (native columns) rather than from the files a second time.
        if landing and not has_history:
            # a first load: core is a copy of the history rows just written, in their order (every live
            # change is its key's last), but a renamed key's
            with insertion_order(con):
                con.execute(f"INSERT INTO {table} ({col_list}) SELECT {col_list} FROM {hist} "
                            f"WHERE {CHANGE_VERSION} > {last_version}{_final_only(CHANGE_VERSION, renamed)}")
        else:
            # in slices of change versions that each sort within the memory limit (see _sorted_slices)
            for lo, hi in _sorted_slices(con, last_version, int(last)):
                in_slice = f"{CHANGE_VERSION} > {lo} AND {CHANGE_VERSION} <= {hi}"
                con.execute(f"INSERT INTO {table} ({col_list}) SELECT {col_list} FROM {hist} WHERE {in_slice} "
                            f"AND {CHANGE_VERSION} IN (SELECT {CHANGE_VERSION} FROM _changed "
                            f"WHERE _final AND NOT _del AND {in_slice}) ORDER BY {CHANGE_VERSION}")
    elif landing:
        # straight from the files, in merge order, that is in change-version order (no join, no sort)
        version = _merge_version(last_version, file_rows, "i")
        with insertion_order(con):
            con.execute(f"INSERT INTO {table} ({col_list}) SELECT {', '.join(f'i.{ident(c)}' for c in columns)}, "
                        f"{version} FROM _in AS i WHERE NOT i._del{_final_only(version, renamed)}")
    else:
        con.execute(f"INSERT INTO {table} ({col_list}) SELECT {', '.join(f'i.{ident(c)}' for c in columns)}, "
                    f"c.{CHANGE_VERSION} FROM (SELECT * FROM _changed WHERE _final AND NOT _del) AS c "
                    f"JOIN _in AS i ON {_row_match('c', 'i', row_key)} ORDER BY {CHANGE_VERSION}")
    # every row this apply wrote to core (they alone are numbered above last_version): into the directory
    con.execute(f"INSERT INTO {directory} SELECT {_entry(keys, by_project)} FROM {table} "
                f"WHERE {CHANGE_VERSION} > {last_version}")
    if prior:
        _write_now(con, prior, key, kept, table, last_version, changed=True)
        _keep_as_prior(con, prior[0], has_rows)
    return Applied(changes, int(upserts), int(deletes), int(last), bool(foreign))


def key_directory(name: str) -> str:
    """The key directory of ``core.<name>``: ``ops.keys_<name>`` (``key_hash``, ``change_version``,
    and ``project_hash`` for rows that belong to a project).

    One row for every row :func:`apply_rows` ever wrote to the core table, appended as it writes
    them: DuckDB's ``hash()`` of the natural key and the row's change version. The key's live row,
    if any, is the core row holding one of the versions listed under its hash (a row replaced or
    deleted since leaves its entry behind, which then names no core row). So the touched keys' live
    rows are found by joins of integers, which DuckDB filters as it scans, rather than by a join of
    core on the key's strings, which reads every row's key (see :func:`_key_directory`). The rows of
    an entity that belong to a project (a ``project_id`` besides their key: reports, participants)
    also list ``hash(_source, project_id)``, so a project's rows are found the same way
    (:func:`rows_of_projects`).
    """
    return f"ops.{ident(KEY_DIRECTORY_PREFIX + name)}"


#: The name of every key directory begins with it (the builder's own tables in ``ops``).
KEY_DIRECTORY_PREFIX = "keys_"
#: The key directories as the data dictionary names and describes them, all at once.
KEY_DIRECTORY_TITLE = f"ops.{KEY_DIRECTORY_PREFIX}{{entity}}"
KEY_DIRECTORY_DOC = ("键目录 / key directory of core.{entity}, one per entity the builder has applied rows to: "
                     "DuckDB's hash() of the natural key and the change version of every row the builder wrote "
                     "there (a replaced row's entry stays), and for rows that belong to a project the hash of "
                     "its _source and project_id, for its lookups of the keys' live rows and of a project's rows; "
                     "the table's own comment names its key and the DuckDB that hashed it")

#: The columns naming the project a row belongs to.
PROJECT_KEY = ("_source", "project_id")
#: The doc of a key directory's ``project_hash`` column (directories of rows that belong to a project).
PROJECT_HASH_DOC = ("项目哈希 / DuckDB hash() of the row's _source and project_id (its project); only in the "
                    "directories of entities whose rows belong to a project")


def _project_hash(columns: list[str], key: list[str]) -> str | None:
    """``hash(_source, project_id)`` for an entity whose rows belong to a project (a ``project_id``
    column besides its key, as for tombstones' districts), else None."""
    if set(PROJECT_KEY) <= set(columns) and tuple(key) != PROJECT_KEY:
        return f"hash({', '.join(ident(c) for c in PROJECT_KEY)})"
    return None


def _entry(keys: str, by_project: str | None) -> str:
    """A directory entry of a core row: its key's hash, its change version (and its project's hash)."""
    return f"hash({keys}) AS key_hash, {CHANGE_VERSION}" + (f", {by_project} AS project_hash" if by_project else "")


def _recipe(con: duckdb.DuckDBPyConnection, name: str) -> tuple[str, str, str | None, str] | None:
    """What ``name``'s key directory lists, read from its comment: (table, key columns, project hash
    or None, DuckDB version); None when it has none (or a comment this code did not write)."""
    found = con.execute("SELECT comment FROM duckdb_tables() WHERE database_name = current_database() "
                        "AND schema_name = 'ops' AND table_name = ?", [KEY_DIRECTORY_PREFIX + name]).fetchall()
    match = _RECIPE.fullmatch(str(found[0][0])) if found and found[0][0] is not None else None
    return match.groups() if match is not None else None  # type: ignore[return-value]


def directory_gaps(con: duckdb.DuckDBPyConnection, name: str) -> int | None:
    """How many rows of ``core.<name>`` its key directory does not list (or lists with another project
    hash); None: it has none. 0 unless something wrote core around :func:`apply_rows`; a gap would hide
    that key's live row from the next apply, which would then add a second row for it. One scan of core."""
    recipe = _recipe(con, name)
    if recipe is None:
        return None
    table, keys, projects, _ = recipe
    columns = "key_hash, " + CHANGE_VERSION + (", project_hash" if projects else "")
    return int(con.execute(f"SELECT count(*) FROM (SELECT {_entry(keys, projects)} FROM {table}) "
                           f"ANTI JOIN {key_directory(name)} USING ({columns})").fetchall()[0][0])


def rows_of_projects(con: duckdb.DuckDBPyConnection, name: str, projects: str) -> str:
    """A SELECT of ``core.<name>``'s rows that belong to the projects of ``projects`` (a relation with
    ``_source`` and ``project_id``).

    Through the key directory when it lists this DuckDB's project hashes: the directory's entries
    under the projects' hashes give change versions, core's rows are read by those (integers, which
    the scans filter as they read), and only those rows' strings are compared (a hash may collide).
    At 1M reports, 10,000 wanted: 26-28 -> 11-16 ms against a join of core on the strings, which
    decodes every row's project_id. Otherwise (no directory yet, another DuckDB's hashes) that join.
    """
    table = f"core.{ident(name)}"
    on = " AND ".join(f"p.{ident(c)} = r.{ident(c)}" for c in PROJECT_KEY)
    recipe = _recipe(con, name)
    if recipe is None or not recipe[2] or recipe[3] != duckdb.__version__:
        return f"SELECT r.* FROM {table} AS r SEMI JOIN {projects} AS p ON {on}"
    return (f"SELECT r.* FROM (WITH c AS MATERIALIZED (SELECT * FROM {table} WHERE {CHANGE_VERSION} IN "
            f"(SELECT d.{CHANGE_VERSION} FROM {key_directory(name)} AS d SEMI JOIN "
            f"(SELECT {recipe[2]} AS project_hash FROM {projects}) USING (project_hash))) SELECT * FROM c) AS r "
            f"SEMI JOIN {projects} AS p ON {on}")


#: A directory holding more entries than this many times its core table's rows, plus
#: ``DIRECTORY_ALLOWANCE`` (a row group), is rewritten from core with one entry per live row.
DIRECTORY_SLACK = 2
DIRECTORY_ALLOWANCE = 122_880


def _key_directory(con: duckdb.DuckDBPyConnection, name: str, table: str, keys: str, by_project: str | None,
                   has_rows: bool) -> str:
    """:func:`key_directory` of ``name``, ready for a lookup: created (from core's rows) when missing,
    rewritten when it was hashed by another DuckDB (``hash()`` is DuckDB's own and may change between
    its versions: the recipe is the table's comment) or of another key or project, or has gathered
    too many entries of replaced rows (:data:`DIRECTORY_SLACK`)."""
    directory = key_directory(name)
    recipe = _RECIPE_TEXT.format(table=table, keys=keys, version=duckdb.__version__,
                                 projects=_PROJECT_TEXT.format(hash=by_project) if by_project else "")
    if _recipe(con, name) == (table, keys, by_project, duckdb.__version__):
        if not has_rows:
            return directory
        entries, rows = con.execute(f"SELECT (SELECT count(*) FROM {directory}), (SELECT count(*) FROM {table})"
                                    ).fetchall()[0]
        if entries <= DIRECTORY_SLACK * rows + DIRECTORY_ALLOWANCE:
            return directory
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute(f"CREATE OR REPLACE TABLE {directory} AS SELECT {_entry(keys, by_project)} FROM {table}")
    project_doc = (f";\nCOMMENT ON COLUMN {directory}.project_hash IS {literal(PROJECT_HASH_DOC)}"
                   if by_project else "")
    con.execute(f"COMMENT ON TABLE {directory} IS {literal(recipe)};\n"
                f"COMMENT ON COLUMN {directory}.key_hash IS '键哈希 / DuckDB hash() of the natural key';\n"
                f"COMMENT ON COLUMN {directory}.{CHANGE_VERSION} IS '变更版本 / change version of a row written "
                f"with that key (the live one, if any, is the core row holding it)'{project_doc}")
    return directory


#: A key directory's table comment: which table and key (and project) it lists, hashed by which
#: DuckDB; and the same read back (table, key columns, project hash, DuckDB version).
_RECIPE_TEXT = ("键目录 / key directory of {table}: hash({keys}){projects} of DuckDB {version}, with the change "
                "version of every row the builder wrote there (a replaced row's entry stays), for its lookups")
_PROJECT_TEXT = " and project_hash = {hash}"
_RECIPE = re.compile(re.escape(_RECIPE_TEXT).replace(r"\{table\}", "(.+?)").replace(r"\{keys\}", "(.+?)")
                     .replace(r"\{projects\}", "(?:" + re.escape(_PROJECT_TEXT).replace(r"\{hash\}", "(.+?)") + ")?")
                     .replace(r"\{version\}", r"(\S+)"))


def _keep_as_prior(con: duckdb.DuckDBPyConnection, prior: str, has_rows: bool) -> None:
    """``_cur`` (the touched keys' live rows before this apply, with the prior's columns among its
    own) kept under the prior's name, and ``_keys`` (the touched keys) as :func:`touched_table`:
    renamed, not copied (10,000 rows of 1M projects: 7-10 ms a copy). The prior keeps ``_cur``'s
    bookkeeping columns (``_rid``, ``_hash``, ``_cv``) too, which no reader of it names. Without
    live rows the prior was created empty above."""
    renames = [("_keys", touched_table(prior))] + ([("_cur", prior)] if has_rows else [])
    for temp, kept in renames:
        con.execute(f"DROP TABLE IF EXISTS {ident(kept)}")
        con.execute(f"ALTER TABLE {temp} RENAME TO {ident(kept)}")


#: Whether an incremental apply whose keys each arrive once takes the join (see :func:`_apply_rows`);
#: off, every incremental apply takes the windows (the tests compare the two).
JOIN_WHEN_KEYS_ARRIVE_ONCE = True

#: Bytes of memory limit per row of one sorted slice of core's read-back (see :func:`_sorted_slices`).
SORT_BYTES_PER_ROW = 1024
_MIN_SLICE_ROWS = 100_000
_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "KB": 10**3, "MB": 10**6,
          "GB": 10**9, "TB": 10**12}


def _sorted_slices(con: duckdb.DuckDBPyConnection, after: int, last: int) -> list[tuple[int, int]]:
    """Change-version ranges (lo, hi] of ``after``..``last``, each small enough to sort in memory.

    Core's rows are written sorted by change version. Sorted whole, a full build's rows (every
    column) outgrew the build's memory limit and spilled: at 5M projects and 512 MB the sort
    cost 6 s of a 30 s build, at 1M 0.6 s of 5.7 s. A slice per ``memory_limit /
    SORT_BYTES_PER_ROW`` rows (512 MB: ~500,000) sorts without spilling; each slice is one more
    filtered scan of the history rows, so slices much smaller than that cost more than they
    save (measured at 5M: 250,000-row slices gave the time back). An incremental build's few
    thousand changes are one slice.
    """
    text = str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
    try:
        amount, unit = text.split()
        step = max(_MIN_SLICE_ROWS, int(float(amount) * _UNITS[unit] // SORT_BYTES_PER_ROW))
    except (ValueError, KeyError):  # no limit, or one DuckDB spells differently: one slice, as before
        return [(after, last)] if last > after else []
    return [(lo, min(lo + step, last)) for lo in range(after, last, step)]


def _final_only(version: str, renamed: bool) -> str:
    """A first load's filter to its keys' final live changes: every live change is one, but a renamed
    key's (``apply_renames`` took its final mark); ``version`` is the row's change version expression."""
    return (f" AND {version} IN (SELECT {CHANGE_VERSION} FROM _changed WHERE _final AND NOT _del)"
            if renamed else "")


def _merge_version(last_version: int, file_rows: list[int], alias: str = "") -> str:
    """A first load's change version of a row from files: ``last_version`` plus its 1-based place in
    merge order, that is the rows of the files before its own (``_seq`` is 1 for the first file) plus
    its row number in its file. Every row of a first load is a change, so the places are the versions."""
    offsets, total = [], 0
    for n in file_rows:
        offsets.append(total)
        total += n
    col = f"{alias}." if alias else ""
    return f"({last_version + 1} + list_extract({offsets}::BIGINT[], {col}_seq) + {col}_row)"


def now_table(prior_table: str) -> str:
    """The name of the table :func:`apply_rows` writes beside ``prior``: ``_prior_x`` -> ``_now_x``."""
    return "_now_" + prior_table.removeprefix("_prior_")


def touched_table(prior_table: str) -> str:
    """The name of the touched keys :func:`apply_rows` leaves beside ``prior``: ``_prior_x`` -> ``_touched_x``."""
    return "_touched_" + prior_table.removeprefix("_prior_")


def _write_now(con: duckdb.DuckDBPyConnection, prior: tuple[str, list[str]], key: list[str], kept: list[str],
               table: str, last_version: int, *, changed: bool) -> None:
    """The touched keys this apply changed, as it left them: the rows it wrote (``_del`` false, the
    prior's columns and the rows' lineage, see :data:`NOW_LINEAGE`) and the keys it deleted (``_del``
    true, NULL columns). A touched key not here kept its prior row. Read back from core by change
    version (the rows just written sit at the end of the table, in change-version order: the zone
    maps skip the rest)."""
    lineage = [c for c in NOW_LINEAGE if c not in kept]
    cols = ", ".join(ident(c) for c in [*key, *kept, *lineage])
    if not changed:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {ident(now_table(prior[0]))} AS SELECT {cols}, false AS _del "
                    f"FROM {table} WHERE false")
        return
    keys = ", ".join(ident(k) for k in key)
    nulls = "".join(f", NULL AS {ident(c)}" for c in [*kept, *lineage])
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {ident(now_table(prior[0]))} AS "
        f"SELECT {cols}, false AS _del FROM {table} WHERE {CHANGE_VERSION} > {last_version} "
        f"UNION ALL BY NAME SELECT {keys}{nulls}, true AS _del FROM _changed WHERE _final AND _del")


#: The lineage columns ``_now_<table>`` carries for the rows an apply wrote (which row, batch and
#: extraction), so the organisation mentions can follow a row that changed nothing they count.
NOW_LINEAGE = ("_source_key", "_batch_id", "_extracted_at")


def _row_match(changed: str, rows: str, key: list[str]) -> str:
    """Join condition of a ``_changed`` row to its ``_in`` row: merge position, and ``key`` when given."""
    return " AND ".join(f"{changed}.{ident(c)} = {rows}.{ident(c)}" for c in [*key, "_seq", "_row"])


def _live_rows(con: duckdb.DuckDBPyConnection, table: str, key: list[str]) -> str:
    """The touched keys' core rows as a relation: ``_cur`` itself when it holds every column the
    tombstones read (the marts' capture puts them there), else core's rows read by the row ids in ``_cur``.
    Either way core is not scanned for the keys' strings again (1M projects, 1% changed: 8-12 ms a build).
    """
    held = {c for c, _ in con.execute("SELECT name, type FROM pragma_table_info('_cur')").fetchall()}
    wanted = {*key, *_LAST_LIVE_COLUMNS}
    columns = {c for c, _ in con.execute(f"SELECT name, type FROM pragma_table_info({literal(table)})").fetchall()}
    if wanted & columns <= held:
        return "_cur"
    return f"(SELECT * FROM {table} WHERE rowid IN (SELECT _rid FROM _cur))"


def _insert_tombstones(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema, key: list[str],
                       table: str, row_key: list[str]) -> None:
    """A tombstone for each key whose final change is a delete, with the district it lived in.

    ``table``: where the deleted keys' live rows are read (core, or :func:`_live_rows`)."""
    keys = ", ".join(ident(k) for k in key)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _gone AS SELECT {keys}, _seq, _row, {CHANGE_VERSION} "
                "FROM _changed WHERE _final AND _del")
    district = tombstone_district_sql(schema, _table_exists(con, "core", "project"))
    key_join = " AND ".join(f"c.{ident(k)} = f.{ident(k)}" for k in key)
    con.execute(
        f"""
        INSERT INTO core.{TOMBSTONES} (entity, natural_key, {CHANGE_VERSION}, deleted_at,
                                       _source, _source_key, _batch_id, _extracted_at, district_code)
        SELECT {literal(name)}, {natural_key_sql(key, "f")}, g.{CHANGE_VERSION}, f._at,
               f._source, f._source_key, f._batch_id, f._extracted_at, {district}
        FROM _gone AS g JOIN _in AS f ON {_row_match("g", "f", row_key)}
        LEFT JOIN ({_last_live_sql(table, key, list(schema.names), row_key)}) AS c ON {key_join}
        """
    )


#: What a tombstone takes from the row it deletes (see :func:`tombstone_district_sql`).
_LAST_LIVE_COLUMNS = ("district_code", "project_id")


def _last_live_sql(table: str, key: list[str], columns: list[str], row_key: list[str]) -> str:
    """Each deleted key's last live row before its delete: the apply's own last live change, else core's row.

    A delete (above all a hard delete, which carries only the key) takes its district from the
    row it deletes. When that row arrived in the same apply (always so in a rebuild from the lake,
    which applies every batch at once) it is not in core yet; reading core alone gave such
    tombstones no district, so ``build --full`` did not reproduce the incremental warehouse.
    Only the keys in ``_gone`` are looked up.
    """
    keys = ", ".join(ident(k) for k in key)
    wanted = [c for c in _LAST_LIVE_COLUMNS if c in columns and c not in key]
    cols = ", ".join([keys, *(ident(c) for c in wanted)])
    inner = ", ".join([*(f"i.{ident(k)}" for k in key), *(f"i.{ident(c)}" for c in wanted)])
    return (
        f"SELECT {cols} FROM (SELECT {inner}, row_number() OVER (PARTITION BY {', '.join(f'i.{ident(k)}' for k in key)} "
        f"ORDER BY x.{CHANGE_VERSION} DESC) AS _n FROM (SELECT * FROM _changed WHERE NOT _del) AS x "
        f"SEMI JOIN _gone USING ({keys}) JOIN _in AS i ON {_row_match('x', 'i', row_key)}) WHERE _n = 1 "
        f"UNION ALL SELECT {cols} FROM {table} AS t SEMI JOIN _gone USING ({keys}) "
        f"WHERE NOT EXISTS (SELECT 1 FROM _changed AS x WHERE NOT x._del AND "
        + " AND ".join(f"x.{ident(k)} = t.{ident(k)}" for k in key) + ")"
    )


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(_scalar(
        con,
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        f"AND schema_name = {literal(schema)} AND table_name = {literal(table)}",
    ))


def _apply_history(con: duckdb.DuckDBPyConnection, name: str, key: list[str], columns: list[str],
                   has_history: bool, row_key: list[str], *, first_load: bool = False,
                   merge_version: str | None = None) -> None:
    """Close each changed key's open history row and add one row per live change.

    ``valid_from`` never goes backwards within a key (a source may send a correction with an
    older ``updated_at``): it is the running maximum of the event times (``_run_at``, from the
    window that numbered the changes), starting from the open row's ``valid_from``, so
    intervals never overlap; ``valid_to`` is the next change's ``valid_from``.

    ``first_load``: every key arrives once into an empty history, so each row opens at its own
    event time and stays open; the join to ``_in`` then carries the change version alone (at 5M
    projects the wider hash table spilled: 9.7 -> 7.9 s for the insert). ``merge_version``: a first
    load from files, whose change versions follow from each row's place (see :func:`_merge_version`):
    no join at all, the rows are written as the files are read.
    """
    hist = f"core.{ident(name + '_history')}"
    keys = ", ".join(ident(k) for k in key)
    open_from, open_join = "NULL::TIMESTAMPTZ", ""
    if has_history:
        # An open row closes where the key's first change starts (never before its own start).
        # By row id (read into _open in this transaction): no second join of history on the key's strings.
        con.execute(
            f"""
            UPDATE {hist} AS h SET valid_to = f.first_from
            FROM (SELECT o._rid, k.first_from FROM _open AS o JOIN (
                      SELECT {keys}, greatest(arg_min(c._at, c.{CHANGE_VERSION}), any_value(o.valid_from)) AS first_from
                      FROM _changed AS c JOIN _open AS o USING ({keys}) GROUP BY ALL) AS k USING ({keys})) AS f
            WHERE h.rowid = f._rid
            """
        )
        on_open = " AND ".join(f"o.{ident(k)} = c.{ident(k)}" for k in key)
        open_from, open_join = "o.valid_from", f"LEFT JOIN _open AS o ON {on_open}"
    col_list = ", ".join(ident(c) for c in [*columns, CHANGE_VERSION])
    if first_load and not has_history and merge_version is not None:
        with insertion_order(con):  # written in merge order, that is in change-version order
            con.execute(f"INSERT INTO {hist} ({col_list}, valid_from, valid_to) "
                        f"SELECT {', '.join(f'i.{ident(c)}' for c in columns)}, {merge_version}, i._at, NULL "
                        "FROM _in AS i WHERE NOT i._del")
        return
    if first_load and not has_history:
        matched = ", ".join(ident(c) for c in [*row_key, "_seq", "_row"])
        con.execute(
            f"""
            INSERT INTO {hist} ({col_list}, valid_from, valid_to)
            SELECT {", ".join(f"i.{ident(c)}" for c in columns)}, c.{CHANGE_VERSION}, i._at, NULL
            FROM (SELECT {matched}, {CHANGE_VERSION} FROM _changed WHERE NOT _del) AS c
            JOIN _in AS i ON {_row_match("c", "i", row_key)}
            """
        )
        return
    con.execute(
        f"""
        INSERT INTO {hist} ({col_list}, valid_from, valid_to)
        SELECT {", ".join(f"i.{ident(c)}" for c in columns)}, c.{CHANGE_VERSION},
               greatest(c._run_at, {open_from}),
               CASE WHEN NOT c._last THEN greatest(c._run_at, c._next_at, {open_from}) END
        FROM (SELECT * FROM _changed WHERE NOT _del) AS c {open_join}
        JOIN _in AS i ON {_row_match("c", "i", row_key)}
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
