"""One organisation across sources: match rules, ``core.organization`` and its report.

Organisations reach the hub two ways: as rows of the ``organization`` entity (the municipal
database, 临港集团), and as *mentions* inside other entities (a project's 牵头单位, a
cooperation's school and enterprise, a trainee's host…), each a name and, sometimes, a USCC.
The same organisation is one row in ``core.organization`` whichever way it came:

* the per-source organisation rows are kept as they arrived in ``core.organization_source``
  (one row per source and org id, versioned like any entity);
* every distinct mention (and every organisation row) is resolved in ``core.organization_match``
  with one rule: ``uscc`` when it carries a check-digit-valid USCC (GB 32100, checked by
  :func:`schemas.validators.check_uscc`); ``name`` when its normalised name belongs to exactly
  one USCC-bearing organisation; ``ambiguous`` when it belongs to several (reported, never
  guessed); ``unmatched`` otherwise (reported). Without a USCC, the stable id is
  ``name:<normalised name>`` for every source alike, so the same name without a USCC from the
  municipal database and from a district is one row, not two (an organisation row without even
  a name keeps its source org id). A mention that points at an organisation row by id
  (``project.lead_org_id``, ``project_participant.org_id``) takes that row's resolution;
* ``core.organization`` is the golden table: one row per resolved id, attributes taken column
  by column from the best contribution (organisation rows before mentions, USCC-matched before
  name-matched, latest ``updated_at`` first, then the most mentioned form; ties by source and
  key, never by extraction time, so parallel workers that land streams in another order build
  the same row), with ``match_rule`` and ``sources``. A build whose mentions changed key by key
  (an incremental build of entities other than the organisation rows) resolves only the mentions
  those keys can move and recomputes the golden rows of the ids involved (:func:`_resolve_touched`);
  a build that re-read a whole entity resolves everything. Either way the rows are then diffed
  against the previous golden table through
  :func:`warehouse.versions.apply_rows`, so changed rows take change versions from the
  hub-wide sequence and a row that disappears (folded into a USCC row once that arrived)
  becomes a tombstone, like every other entity's. A golden row's ``_record_hash`` is DuckDB's
  64-bit ``hash()`` of its content: it only has to tell a changed row from an unchanged one
  (10x cheaper than md5 over JSON; a DuckDB upgrade that changed ``hash()`` would re-version
  every organisation once, nothing worse).

Name normalisation (:func:`normalised_name_sql`) is DuckDB SQL so it runs set-based over every
mention: full-width ASCII and the ideographic space to half-width (the NFKC mappings that occur
in names), every whitespace removed, （）→() and 【】〔〕［］→[], Latin letters lower-cased,
有限责任公司→有限公司 (the Company Law lets a 有限责任公司 call itself 有限公司) and
股份公司→股份有限公司, trailing punctuation stripped. 股份有限公司 stays distinct from 有限公司:
they are different legal forms, and two companies may differ only in it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from schemas.validators import check_uscc, validate_array
from warehouse.versions import CHANGE_VERSION, NOW_LINEAGE, Applied, apply_rows, clean_up, ident, literal

if TYPE_CHECKING:
    from schemas import Entity

__all__ = [
    "GOLDEN_COLUMNS",
    "MATCH_DOCS",
    "MATCH_RULES",
    "ORG_ROLES",
    "OrgRole",
    "Refreshed",
    "applies",
    "build_golden",
    "golden_schema",
    "normalise_org_names",
    "normalised_name_sql",
    "refresh_mentions",
    "source_entity",
]

ORGANIZATION = "organization"
SOURCE_TABLE = "organization_source"
MATCH_TABLE = "organization_match"
MENTIONS_TABLE = "_organization_mentions"
USCC_TABLE = "_uscc_checked"
#: A mention row: its key (one row per key), the rest of its content, and its lineage (the latest row carrying it).
_MENTION_KEY = ("entity", "role", "_source", "source_org_id", "name", "uscc")
_MENTION_CONTENT = (*_MENTION_KEY, "mentions", "normalised_name", "uscc_text")
_MENTION_PARTS = _MENTION_KEY[2:]  # a mention's key within one entity and role
_MENTION_LINEAGE = NOW_LINEAGE  # the latest row's lineage: what _count_mentions reads from `_now_<t>`
UNMATCHED_VIEW = "organization_unmatched"
MATCH_RULES: tuple[str, ...] = ("uscc", "name", "unmatched", "ambiguous")

#: Columns the golden table has on top of the organisation entity's.
GOLDEN_COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "match_rule": (pa.string(), "匹配规则 / how the row was identified: uscc (every contribution carried the USCC), "
                                "name (some were folded in by normalised name), unmatched or ambiguous (no USCC: "
                                "see ops.organization_unmatched)"),
    "sources": (pa.list_(pa.string()), "来源系统 / sources that contributed a row or a mention, sorted"),
}


def _same_mention(a: str, b: str, columns: tuple[str, ...] = _MENTION_KEY) -> str:
    """SQL: rows ``a`` and ``b`` (aliases) agree on ``columns``, nulls equal (a mention's key, by default)."""
    return " AND ".join(f"{a}.{c} IS NOT DISTINCT FROM {b}.{c}" for c in columns)


@dataclass(frozen=True)
class OrgRole:
    """Where an entity mentions an organisation: its name column, USCC column and org id column."""

    entity: str
    role: str
    has_uscc: bool = True
    id_column: str | None = None

    @property
    def name_column(self) -> str:
        return f"{self.role}_name"

    @property
    def uscc_column(self) -> str | None:
        return f"{self.role}_uscc" if self.has_uscc else None


#: Every organisation mention in the canonical entities (``schemas.entities._org_name``/``_uscc``).
ORG_ROLES: tuple[OrgRole, ...] = (
    OrgRole("project", "lead_org", id_column="lead_org_id"),
    OrgRole("project_participant", "org", id_column="org_id"),
    OrgRole("training_base", "host_org"),
    OrgRole("training_base", "school"),
    OrgRole("teacher", "org"),
    OrgRole("teacher", "school"),
    OrgRole("talent_demand", "org"),
    OrgRole("talent_supply", "school"),
    OrgRole("trainee", "school"),
    OrgRole("trainee", "enterprise"),
    OrgRole("cooperation", "school"),
    OrgRole("cooperation", "enterprise"),
    OrgRole("rd_project", "lead_org"),
    OrgRole("rd_project", "partner_org", has_uscc=False),
    OrgRole("tech_service", "provider"),
    OrgRole("notice", "publisher"),
)

# Full-width ASCII (U+FF01..U+FF5E) and the ideographic space to half-width; CJK brackets to [].
_WIDE = "".join(chr(c) for c in range(0xFF01, 0xFF5F)) + "\u3000【】〔〕"
_NARROW = "".join(chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)) + " [][]"
_WIDE_CLASS = r"[\x{ff01}-\x{ff5e}\x{3000}\x{3010}\x{3011}\x{3014}\x{3015}]"
_SPACES = r"[\s\x{00a0}\x{2000}-\x{200d}\x{2060}\x{3000}\x{feff}]+"
_TRAILING = r"[.,;:!?'\x{3002}\x{ff0c}\x{3001}\x{ff1b}\x{ff1a}\x{ff01}\x{ff1f}\x{00b7}\x{2026}\x{201c}\x{201d}\x{2018}\x{2019}\"-]+$"


def _halfwidth_sql(expr: str) -> str:
    """``expr`` with full-width forms made half-width; translate() is costly, so only where one occurs."""
    return (f"CASE WHEN regexp_matches({expr}, {literal(_WIDE_CLASS)}) "
            f"THEN translate({expr}, {literal(_WIDE)}, {literal(_NARROW)}) ELSE {expr} END")


def normalised_name_sql(expr: str) -> str:
    """A DuckDB expression: the organisation name ``expr`` normalised for matching (NULL when blank)."""
    text = _halfwidth_sql(expr)
    text = f"lower(regexp_replace({text}, {literal(_SPACES)}, '', 'g'))"
    text = f"replace(replace({text}, '有限责任公司', '有限公司'), '股份公司', '股份有限公司')"
    return f"nullif(regexp_replace({text}, {literal(_TRAILING)}, ''), '')"


def _uscc_text_sql(expr: str) -> str:
    """A USCC as given, made comparable: half-width, no whitespace, upper case (NULL when blank)."""
    cleaned = f"nullif(upper(regexp_replace({_halfwidth_sql(expr)}, {literal(_SPACES)}, '', 'g')), '')"
    return f"CASE WHEN regexp_full_match({expr}, '[0-9A-Z]{{18}}') THEN {expr} ELSE {cleaned} END"


def normalise_org_names(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Arrow in, Arrow out: :func:`normalised_name_sql` over a string column (for callers outside SQL)."""
    con = duckdb.connect()
    try:
        con.register("_names", pa.table({"name": values}))
        out = con.sql(f"SELECT {normalised_name_sql('name')} AS n FROM _names").to_arrow_table().column("n")
    finally:
        con.close()
    return out.combine_chunks() if out.num_chunks != 1 else out.chunk(0)


def applies(registry: Mapping[str, Entity]) -> bool:
    """Whether the registry's organisation entity is the canonical one (org_id key, uscc and name)."""
    entity = registry.get(ORGANIZATION)
    if entity is None or tuple(entity.key) != ("org_id",):
        return False
    names = {f.name for f in entity.fields}
    return {"org_id", "uscc", "name"} <= names


def source_entity(entity: Entity) -> Entity:
    """The organisation entity as landed per source: ``core.organization_source``, keyed by (_source, org_id)."""
    return dataclasses.replace(entity, name=SOURCE_TABLE, key=("_source", "org_id"),
                               grain="one row per organisation per source")


def golden_schema(core_schema: pa.Schema) -> pa.Schema:
    """``core.organization``'s columns: the entity's business columns, match_rule, sources, lineage."""
    lineage_at = next(i for i, f in enumerate(core_schema) if f.name.startswith("_"))
    extra = [pa.field(name, dtype) for name, (dtype, _) in GOLDEN_COLUMNS.items()]
    fields = list(core_schema)
    return pa.schema([*fields[:lineage_at], *extra, *fields[lineage_at:]])


# -- mentions -------------------------------------------------------------------------------


def _ensure_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """Create the mention and USCC tables when missing; True when the mention table is new."""
    new = not bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'core' AND table_name = ?", [MENTIONS_TABLE]).fetchall()[0][0])
    con.execute(
        f"CREATE TABLE IF NOT EXISTS core.{MENTIONS_TABLE} (entity VARCHAR, role VARCHAR, _source VARCHAR, "
        "source_org_id VARCHAR, name VARCHAR, uscc VARCHAR, mentions BIGINT, "
        "_source_key VARCHAR, _batch_id VARCHAR, _extracted_at TIMESTAMPTZ, "
        "normalised_name VARCHAR, uscc_text VARCHAR)"
    )
    con.execute(f"CREATE TABLE IF NOT EXISTS core.{USCC_TABLE} (uscc VARCHAR PRIMARY KEY, reason VARCHAR)")
    return new


def _mention_parts(role: OrgRole, columns: set[str]) -> tuple[str, str, str]:
    """SQL of a role's mention (source org id, name, USCC) over a row of its entity."""
    name = f"nullif(trim({ident(role.name_column)}), '')"
    uscc = ident(role.uscc_column) if role.uscc_column and role.uscc_column in columns else "NULL::VARCHAR"
    org_id = ident(role.id_column) if role.id_column and role.id_column in columns else "NULL::VARCHAR"
    return org_id, name, uscc


def _mention_select(role: OrgRole, table: str, columns: set[str]) -> str | None:
    """The distinct mentions of one role, or None when the table lacks the name column."""
    if role.name_column not in columns:
        return None
    org_id, name, uscc = _mention_parts(role, columns)
    return (
        f"SELECT {literal(role.entity)} AS entity, {literal(role.role)} AS role, _source, "
        f"{org_id} AS source_org_id, {name} AS name, {uscc} AS uscc, count(*) AS mentions, "
        "arg_max(_source_key, (_extracted_at, _source_key)) AS _source_key, "
        "arg_max(_batch_id, (_extracted_at, _source_key)) AS _batch_id, "
        f"max(_extracted_at) AS _extracted_at FROM {table} "
        f"WHERE {name} IS NOT NULL OR {uscc} IS NOT NULL GROUP BY ALL"
    )


def mention_columns(entity: str) -> set[str]:
    """The columns of ``entity`` its organisation mentions read."""
    return {c for r in ORG_ROLES if r.entity == entity for c in (r.name_column, r.uscc_column, r.id_column) if c}


def refresh_mentions(
    con: duckdb.DuckDBPyConnection,
    registry: Mapping[str, Entity],
    changed: Iterable[str],
    delta: Mapping[str, tuple[str, str]] | None = None,
) -> Refreshed:
    """Re-read the distinct mentions of the entities that changed (all of them the first time).

    Mentions are kept per entity in ``core._organization_mentions``, so a build re-reads only
    the core tables it changed (a DISTINCT over the mention columns), not the warehouse.
    ``delta``: per changed entity, the temp tables holding its changed keys' rows before the build
    and as the build left them (``_prior_<table>``, ``_now_<table>`` with ``_del``, see
    :func:`warehouse.versions.now_table`), each with ``_source`` and every column of
    :func:`mention_columns` (``prior`` also each row's ``_source_key``, ``now`` its lineage): only
    the mentions those rows were or are in are touched, by deltas (:func:`_count_mentions`; the
    counts and latest lineage equal a whole re-read).

    When every entity was re-read that way and the touched mentions changed only their lineage
    (a status update to a project: same organisation columns, a newer row carrying them), the
    resolution and the golden rows cannot change (they read the mentions' content, and a golden
    row's version follows its content): ``core.organization_match`` takes the new lineage here and
    the result says no resolution is needed (1M projects, 1% updated: ~0.06 s of each build).
    """
    everything = _ensure_tables(con)
    touched_only = not everything
    con.execute(f"CREATE OR REPLACE TEMP TABLE _touched_mentions AS SELECT {', '.join(_MENTION_KEY)} "
                f"FROM core.{MENTIONS_TABLE} WHERE false")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _mentions_before AS SELECT {', '.join(_MENTION_CONTENT)} "
                f"FROM core.{MENTIONS_TABLE} WHERE false")
    roles: dict[str, list[OrgRole]] = {}
    for role in ORG_ROLES:
        if role.entity in registry:
            roles.setdefault(role.entity, []).append(role)
    wanted = set(roles) | {ORGANIZATION}
    todo = wanted if everything else wanted & set(changed)
    for entity in sorted(todo):
        if entity == ORGANIZATION:
            # An organisation row is a mention of itself: its name, its USCC, its org id.
            table = f"(SELECT *, name AS organization_name, uscc AS organization_uscc FROM core.{SOURCE_TABLE})"
            selects = [_mention_select(OrgRole(ORGANIZATION, "organization", id_column="org_id"), table,
                                       {"organization_name", "organization_uscc", "org_id"})]
        else:
            table = f"core.{ident(entity)}"
            columns = {c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'core' AND table_name = ?", [entity]).fetchall()}
            if delta and entity in delta and not everything:
                here = [r for r in roles[entity] if r.name_column in columns]
                if here:
                    _count_mentions(con, entity, registry[entity].key, here, columns, *delta[entity])
                continue
            selects = [_mention_select(r, table, columns) for r in roles[entity]]
        touched_only = False
        union = " UNION ALL ".join(s for s in selects if s) or (
            f"SELECT * EXCLUDE (normalised_name, uscc_text) FROM core.{MENTIONS_TABLE} WHERE false")
        con.execute(f"CREATE OR REPLACE TEMP TABLE _mentions AS {union}")
        _normalise_mentions(con)
        con.execute(f"DELETE FROM core.{MENTIONS_TABLE} WHERE entity = ?", [entity])
        _insert_mentions(con)
    con.execute("DROP TABLE IF EXISTS _mentions")
    con.execute("DROP TABLE IF EXISTS _names")
    lineage_only = bool(todo) and touched_only and _mention_content_unchanged(con)
    if lineage_only:
        _carry_lineage_to_matches(con)
    resolve = bool(todo) and not lineage_only
    # Kept for build_golden when only some mentions were touched: it resolves the ones they can move.
    touched = resolve and touched_only and RESOLVE_TOUCHED
    if not touched:
        _drop_touched(con)
    return Refreshed(todo, resolve=resolve, touched=touched)


def _drop_touched(con: duckdb.DuckDBPyConnection) -> None:
    """Drop what :func:`refresh_mentions` kept for :func:`build_golden` (``Refreshed.touched``)."""
    con.execute("DROP TABLE IF EXISTS _touched_mentions")
    con.execute("DROP TABLE IF EXISTS _mentions_before")


#: Whether a build whose mentions were touched key by key resolves only what those keys can move
#: (:func:`_resolve_touched`); off, every build resolves every mention (the tests compare the two).
RESOLVE_TOUCHED = True


@dataclass(frozen=True)
class Refreshed:
    """What :func:`refresh_mentions` did: the entities re-read, and whether the mentions' content
    changed so that :func:`build_golden` must resolve them again (False: nothing re-read, or only
    the lineage of some mentions moved, which the match rows have already taken), and whether the
    changed mentions are known key by key (``touched``)."""

    entities: set[str]
    resolve: bool
    #: ``_touched_mentions`` (keys) and ``_mentions_before`` (their content before) are kept: every
    #: changed mention is among them, so :func:`build_golden` resolves only what they can move
    touched: bool = False


def _touched(alias: str) -> str:
    """SEMI JOIN of mention rows (``alias``) to the keys in ``_touched_mentions``."""
    return f"SEMI JOIN _touched_mentions AS k ON {_same_mention(alias, 'k')}"


def _mention_content_unchanged(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the touched mentions hold the same content (everything but lineage) as before the re-read.

    A mention's key is unique in the table, so the two sets are equal when they are as many and every
    row of before is still there as it was (a join, not EXCEPT ALL both ways: 6 ms, not 17)."""
    same = _same_mention("b", "m", _MENTION_CONTENT)
    before, after, kept = con.execute(
        f"SELECT (SELECT count(*) FROM _mentions_before), "
        f"(SELECT count(*) FROM core.{MENTIONS_TABLE} AS m {_touched('m')}), "
        f"(SELECT count(*) FROM _mentions_before AS b JOIN core.{MENTIONS_TABLE} AS m ON {same})").fetchall()[0]
    return before == after == kept


def _carry_lineage_to_matches(con: duckdb.DuckDBPyConnection) -> None:
    """The touched mentions' new lineage onto their rows of ``core.organization_match`` (one per mention)."""
    same = _same_mention("o", "m")
    con.execute(
        f"UPDATE core.{MATCH_TABLE} AS o SET " + ", ".join(f"{c} = m.{c}" for c in _MENTION_LINEAGE)
        + f" FROM (SELECT m.* FROM core.{MENTIONS_TABLE} AS m {_touched('m')}) AS m WHERE {same}")


def _normalise_mentions(con: duckdb.DuckDBPyConnection) -> None:
    """``_names``: each distinct name of ``_mentions`` normalised once; names already known (any
    entity) keep their form (so a change to normalised_name_sql takes effect with `iehub build --full`)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _names AS
        WITH wanted AS (SELECT DISTINCT name FROM _mentions WHERE name IS NOT NULL),
        known AS (SELECT k.name, any_value(k.normalised_name) AS normalised_name
                  FROM core.{MENTIONS_TABLE} AS k SEMI JOIN wanted USING (name) GROUP BY k.name)
        SELECT * FROM known
        UNION ALL
        SELECT name, {normalised_name_sql("name")} FROM wanted ANTI JOIN known USING (name)
        """
    )


def _insert_mentions(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"INSERT INTO core.{MENTIONS_TABLE} BY NAME SELECT m.*, n.normalised_name, "
        f"{_uscc_text_sql('m.uscc')} AS uscc_text FROM _mentions AS m LEFT JOIN _names AS n USING (name)"
    )


def _count_mentions(con: duckdb.DuckDBPyConnection, entity: str, key: tuple[str, ...], roles: list[OrgRole],
                    columns: set[str], prior: str, now: str) -> None:
    """Bring the touched mentions of ``entity`` up to date from the apply's own rows, re-reading core
    only for the few mentions that need it.

    A row the apply wrote or deleted leaves the mention it was in (``prior``), a row it wrote joins
    the mention it is in (``_now``): each mention's count moves by the difference, a mention left
    with none is deleted, a new one is inserted. Its lineage (the latest row carrying it) becomes
    the newest joining row when that is newer than the one recorded, or when the recorded row left
    and a joining row is at least as new; when the recorded row left and no joining row is as new,
    the latest is one of the rows that stayed, which only core knows: that mention is re-read
    (counts and lineage equal a whole re-read either way). 1M municipal projects, 1% changed with
    inserts and deletes: the touched mentions' rows (most of the table) are no longer read.
    """
    prior_columns = {c for c, _ in con.execute("SELECT name, type FROM pragma_table_info(?)", [prior]).fetchall()}
    if "_source_key" not in prior_columns:
        # the build captures it with the prior rows (warehouse.build); without it no mention could say
        # whether its latest row left, and a silently wrong lineage is worse than a failed build
        raise ValueError(f"organisation mentions of {entity}: {prior} lacks the rows' _source_key")
    keys = ", ".join(ident(k) for k in key)
    same = _same_mention("m", "d")
    con.execute("CREATE OR REPLACE TEMP TABLE _mdelta (entity VARCHAR, role VARCHAR, _source VARCHAR, "
                "source_org_id VARCHAR, name VARCHAR, uscc VARCHAR, delta BIGINT, gone VARCHAR[], "
                "a_n BIGINT, a_key VARCHAR, a_batch VARCHAR, a_at TIMESTAMPTZ)")
    try:
        for role in roles:
            org_id, name, uscc = _mention_parts(role, columns)
            mentioned = f"({name} IS NOT NULL OR {uscc} IS NOT NULL)"
            on = _same_mention("l", "a", _MENTION_PARTS)
            con.execute(
                f"""
                INSERT INTO _mdelta
                WITH l AS (
                    SELECT _source, {org_id} AS source_org_id, {name} AS name, {uscc} AS uscc, count(*) AS n,
                           list(_source_key) AS gone
                    FROM {ident(prior)} SEMI JOIN {ident(now)} USING ({keys}) WHERE {mentioned} GROUP BY ALL
                ), a AS (
                    SELECT _source, {org_id} AS source_org_id, {name} AS name, {uscc} AS uscc, count(*) AS n,
                           arg_max(_source_key, (_extracted_at, _source_key)) AS a_key,
                           arg_max(_batch_id, (_extracted_at, _source_key)) AS a_batch,
                           max(_extracted_at) AS a_at
                    FROM {ident(now)} WHERE NOT _del AND {mentioned} GROUP BY ALL
                )
                SELECT {literal(entity)}, {literal(role.role)}, coalesce(l._source, a._source),
                       CASE WHEN l._source IS NOT NULL THEN l.source_org_id ELSE a.source_org_id END,
                       CASE WHEN l._source IS NOT NULL THEN l.name ELSE a.name END,
                       CASE WHEN l._source IS NOT NULL THEN l.uscc ELSE a.uscc END,
                       coalesce(a.n, 0) - coalesce(l.n, 0), l.gone, a.n, a.a_key, a.a_batch, a.a_at
                FROM l FULL JOIN a ON {on}
                """
            )
        # what each touched mention takes: new, update (count and lineage), delete, or a re-read
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _mplan AS
            SELECT d.*, m.mentions + d.delta AS n, CASE
                WHEN m.entity IS NULL THEN CASE WHEN d.gone IS NULL AND d.a_n > 0 THEN 'new' ELSE 'reread' END
                WHEN m.mentions + d.delta < 0 THEN 'reread'
                WHEN m.mentions + d.delta = 0 THEN 'delete'
                WHEN list_contains(d.gone, m._source_key) AND NOT coalesce(d.a_at >= m._extracted_at, false)
                    THEN 'reread'
                ELSE 'update' END AS action,
                coalesce(d.a_at > m._extracted_at OR (list_contains(d.gone, m._source_key) AND d.a_at IS NOT NULL),
                         false) AS newer
            FROM _mdelta AS d LEFT JOIN core.{MENTIONS_TABLE} AS m ON {same}
            """
        )
        listed = ", ".join(_MENTION_KEY)
        con.execute(f"INSERT INTO _touched_mentions SELECT {listed} FROM _mplan WHERE action <> 'reread'")
        con.execute(f"INSERT INTO _mentions_before SELECT {', '.join(f'm.{c}' for c in _MENTION_CONTENT)} "
                    f"FROM core.{MENTIONS_TABLE} AS m SEMI JOIN (SELECT * FROM _mplan WHERE action <> 'reread') AS d "
                    f"ON {same}")
        con.execute(f"DELETE FROM core.{MENTIONS_TABLE} AS m WHERE EXISTS (SELECT 1 FROM _mplan AS d "
                    f"WHERE d.action = 'delete' AND {same})")
        con.execute(
            f"UPDATE core.{MENTIONS_TABLE} AS m SET mentions = d.n, "
            "_source_key = CASE WHEN d.newer THEN d.a_key ELSE m._source_key END, "
            "_batch_id = CASE WHEN d.newer THEN d.a_batch ELSE m._batch_id END, "
            "_extracted_at = CASE WHEN d.newer THEN d.a_at ELSE m._extracted_at END "
            f"FROM (SELECT * FROM _mplan WHERE action = 'update') AS d WHERE {same}")
        if con.execute("SELECT count(*) FROM (SELECT 1 FROM _mplan WHERE action = 'new' LIMIT 1)").fetchall()[0][0]:
            con.execute("CREATE OR REPLACE TEMP TABLE _mentions AS SELECT entity, role, _source, source_org_id, name, "
                        "uscc, a_n AS mentions, a_key AS _source_key, a_batch AS _batch_id, a_at AS _extracted_at "
                        "FROM _mplan WHERE action = 'new'")
            _normalise_mentions(con)
            _insert_mentions(con)
        if con.execute("SELECT count(*) FROM (SELECT 1 FROM _mplan WHERE action = 'reread' LIMIT 1)").fetchall()[0][0]:
            _reread_mentions(con, entity, roles, columns, lambda role: (
                f"SELECT _source, source_org_id, name, uscc FROM _mplan WHERE action = 'reread' "
                f"AND role = {literal(role.role)}"))
    finally:
        con.execute("DROP TABLE IF EXISTS _mdelta")
        con.execute("DROP TABLE IF EXISTS _mplan")


def _reread_mentions(con: duckdb.DuckDBPyConnection, entity: str, roles: list[OrgRole], columns: set[str],
                     keys_of: Callable[[OrgRole], str]) -> None:
    """Re-read from core the mentions of ``entity`` whose keys (per role: ``keys_of(role)``, a SELECT of
    _source, source_org_id, name, uscc) are given: every row of core in such a mention."""
    selects = []
    for i, role in enumerate(roles):
        keys = f"_mention_keys_{i}"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {keys} AS {keys_of(role)}")
        con.execute(f"INSERT INTO _touched_mentions SELECT {literal(entity)}, {literal(role.role)}, _source, "
                    f"source_org_id, name, uscc FROM {keys}")
        held = (f"m.entity = {literal(entity)} AND m.role = {literal(role.role)} AND EXISTS (SELECT 1 FROM {keys} "
                f"AS k WHERE {_same_mention('m', 'k', _MENTION_PARTS)})")
        con.execute(f"INSERT INTO _mentions_before SELECT {', '.join(f'm.{c}' for c in _MENTION_CONTENT)} "
                    f"FROM core.{MENTIONS_TABLE} AS m WHERE {held}")
        con.execute(f"DELETE FROM core.{MENTIONS_TABLE} AS m WHERE {held}")
        same = [f"c.{ident(column)} IS NOT DISTINCT FROM k.{target}"
                for column, target in ((role.id_column, "source_org_id"), (role.uscc_column, "uscc"))
                if column and column in columns]
        same += [f"k.{target} IS NULL" for column, target in ((role.id_column, "source_org_id"),
                                                            (role.uscc_column, "uscc")) if not column or column not in columns]
        # The rows are found by the mention columns alone, then read by row id: a join reads every row's
        # projected columns before it filters, so the lineage columns are read for the matched rows only
        # (at 1M projects: 0.045 -> 0.032 CPU-seconds).
        core = f"core.{ident(entity)}"
        table = (f"(SELECT * FROM {core} WHERE rowid IN (SELECT c.rowid FROM {core} AS c SEMI JOIN {keys} AS k "
                 f"ON c._source = k._source AND nullif(trim(c.{ident(role.name_column)}), '') IS NOT DISTINCT FROM "
                 f"k.name AND {' AND '.join(same)}{_few_values(con, role, columns, keys)}))")
        select = _mention_select(role, table, columns)
        assert select is not None
        selects.append(select)
    try:
        if selects:
            con.execute(f"CREATE OR REPLACE TEMP TABLE _mentions AS {' UNION ALL '.join(selects)}")
            _normalise_mentions(con)
            _insert_mentions(con)
    finally:
        for i in range(len(roles)):
            con.execute(f"DROP TABLE IF EXISTS _mention_keys_{i}")


#: Up to this many mentions re-read at once, :func:`_few_values` names their values in the scan of core.
_LITERAL_KEYS = 1000


def _few_values(con: duckdb.DuckDBPyConnection, role: OrgRole, columns: set[str], keys: str) -> str:
    """A filter of core's rows to the few mentions in ``keys``: ``WHERE <column> IN (<their values>)`` on the
    role's USCC column, else its org id column, when every key has a value there; else nothing.

    A re-read is usually a handful of mentions whose latest row left (deletes), and finding their rows
    took a scan of core computing every row's trimmed name for the join. Values spelled out are
    filtered inside the scan, before the join (1M projects, 10 mentions re-read: 44 -> 21 ms).
    """
    if int(con.execute(f"SELECT count(*) FROM {keys}").fetchall()[0][0]) > _LITERAL_KEYS:
        return ""
    for column, target in ((role.uscc_column, "uscc"), (role.id_column, "source_org_id")):
        if column and column in columns:
            values = [v for (v,) in con.execute(f"SELECT DISTINCT {target} FROM {keys} ORDER BY 1").fetchall()]
            if values and None not in values:
                return f" WHERE c.{ident(column)} IN ({', '.join(literal(str(v)) for v in values)})"
    return ""


def _check_new_usccs(con: duckdb.DuckDBPyConnection) -> int:
    """Check (once per distinct value, ever) the USCCs the mentions carry; returns how many were new."""
    new = con.sql(
        f"SELECT DISTINCT m.uscc_text AS uscc FROM core.{MENTIONS_TABLE} AS m "
        f"WHERE m.uscc_text IS NOT NULL AND m.uscc_text NOT IN (SELECT uscc FROM core.{USCC_TABLE})"
    ).to_arrow_table()
    if not new.num_rows:
        return 0
    _, reasons = validate_array(new.column("uscc"), check_uscc)
    con.register("_new_uscc", pa.table({"uscc": new.column("uscc"), "reason": reasons}))
    try:
        con.execute(f"INSERT INTO core.{USCC_TABLE} SELECT uscc, reason FROM _new_uscc")
    finally:
        con.unregister("_new_uscc")
    return new.num_rows


# -- resolution and the golden table --------------------------------------------------------

_RESOLVE = """
WITH m AS MATERIALIZED (
    SELECT m.*, CASE WHEN u.uscc IS NOT NULL AND u.reason IS NULL THEN u.uscc END AS valid_uscc
    FROM {mentions} AS m LEFT JOIN core.{uscc_table} AS u ON u.uscc = m.uscc_text
), names AS (
    SELECT normalised_name, list(DISTINCT valid_uscc ORDER BY valid_uscc) AS usccs
    FROM m WHERE valid_uscc IS NOT NULL AND normalised_name IS NOT NULL GROUP BY 1
), own AS MATERIALIZED (
    SELECT m.*, n.usccs,
           CASE WHEN valid_uscc IS NOT NULL THEN 'uscc'
                WHEN len(n.usccs) = 1 THEN 'name'
                WHEN len(n.usccs) > 1 THEN 'ambiguous'
                ELSE 'unmatched' END AS rule,
           CASE WHEN valid_uscc IS NOT NULL THEN valid_uscc
                WHEN len(n.usccs) = 1 THEN n.usccs[1]
                ELSE coalesce('name:' || normalised_name, CASE WHEN entity = '{org}' THEN source_org_id END)
           END AS resolved
    FROM m LEFT JOIN names AS n USING (normalised_name)
), org_rows AS (
    SELECT _source, source_org_id, rule, resolved, usccs FROM own WHERE entity = '{org}'
)
SELECT o._source, o.entity, o.role, o.source_org_id, o.name, o.uscc, o.normalised_name,
       CASE WHEN r.resolved IS NOT NULL THEN r.resolved ELSE o.resolved END AS org_id,
       CASE WHEN r.resolved IS NOT NULL THEN r.rule ELSE o.rule END AS match_rule,
       CASE WHEN r.resolved IS NOT NULL THEN r.usccs ELSE o.usccs END AS candidate_usccs,
       r.resolved IS NOT NULL AS via_org_id,
       o.mentions, o._source_key, o._batch_id, o._extracted_at
FROM own AS o
LEFT JOIN org_rows AS r ON o.entity <> '{org}' AND o.valid_uscc IS NULL
                   AND r._source = o._source AND r.source_org_id = o.source_org_id
"""

MATCH_DOCS: dict[str, str] = {
    "_source": "来源系统 / source system of the mention",
    "entity": "实体 / entity that carries it (organization: the source's own organisation row)",
    "role": "角色 / the column prefix naming the organisation (lead_org, school, enterprise…; "
            "organization for organisation rows)",
    "source_org_id": "来源单位标识 / the org id given with it (organisation rows, lead_org_id, participants' org_id)",
    "name": "名称（原样）/ the name as given",
    "uscc": "统一社会信用代码（原样）/ the USCC as given (may be invalid)",
    "normalised_name": "规范化名称 / the name normalised for matching (half-width, no spaces, 有限责任公司→有限公司…)",
    "org_id": "单位标识 / resolved core.organization.org_id (NULL: nothing to identify it by)",
    "match_rule": "匹配规则 / uscc (valid USCC), name (normalised name of exactly one USCC organisation), "
                  "ambiguous (of several: not guessed), unmatched (of none)",
    "candidate_usccs": "候选代码 / the USCCs its normalised name belongs to (several when ambiguous)",
    "via_org_id": "经标识解析 / resolved through the organisation row its source org id names",
    "mentions": "提及次数 / how many rows carry this mention",
    "_source_key": "来源系统主键 / key of the latest row carrying it",
    "_batch_id": "批次号 / batch of the latest row carrying it",
    "_extracted_at": "抽取时间（UTC）/ latest extraction carrying it",
}


def _golden_select(schema: pa.Schema, now: datetime, scoped: bool = False) -> str:
    """SELECT of the new golden rows plus deletes of the golden rows that no longer resolve; ``scoped``:
    of the golden ids in ``_gids`` only (:func:`_resolve_touched`), each from all its contributions."""
    only = " AND m.org_id IN (SELECT org_id FROM _gids)" if scoped else ""
    only_here = " AND org_id IN (SELECT org_id FROM _gids)" if scoped else ""
    business = [f.name for f in schema if not f.name.startswith("_") and f.name not in GOLDEN_COLUMNS]
    attributes = [c for c in business if c not in ("org_id", "uscc", "updated_at")]
    picks = ",\n".join(
        f"arg_min({ident(c)}, _rank) FILTER (WHERE {ident(c)} IS NOT NULL) AS {ident(c)}" for c in attributes
    )
    content = ", ".join(ident(c) for c in [*business, *GOLDEN_COLUMNS])
    lineage = [f.name for f in schema if f.name.startswith("_") and f.name != "_record_hash"]
    cols = ", ".join(ident(c) for c in [*business, *GOLDEN_COLUMNS, *lineage])
    return f"""
WITH contributions AS (
    SELECT m.org_id AS gid, m.match_rule, s.* EXCLUDE (org_id, uscc, {CHANGE_VERSION}), 0 AS kind
    FROM core.{SOURCE_TABLE} AS s JOIN core.{MATCH_TABLE} AS m
      ON m.entity = '{ORGANIZATION}' AND m._source = s._source AND m.source_org_id = s.org_id{only}
    UNION ALL BY NAME
    SELECT org_id AS gid, match_rule, name, _source, _source_key, _batch_id, _extracted_at, 1 AS kind,
           mentions, entity, role
    FROM core.{MATCH_TABLE} WHERE entity <> '{ORGANIZATION}'{only_here}
), ranked AS (
    -- Best first: organisation rows, USCC-matched, latest by the source's own updated_at, the most
    -- mentioned form, then source, entity, role, name and key. Never extraction time: which stream
    -- lands first differs between one machine's loop and parallel workers, and the golden row must
    -- not (a struct key: arg_min needs no window).
    SELECT *, {{'kind': kind, 'weak': match_rule <> 'uscc',
                'age': coalesce(-epoch_us(updated_at), 9223372036854775807),
                'mentions': -coalesce(mentions, 1), 'source': _source,
                'entity': coalesce(entity, ''), 'role': coalesce(role, ''), 'name': coalesce(name, ''),
                'key': coalesce(_source_key, '')}} AS _rank
    FROM contributions WHERE gid IS NOT NULL
), golden AS MATERIALIZED (
    SELECT gid AS org_id,
           CASE WHEN bool_or(match_rule IN ('uscc', 'name')) THEN gid END AS uscc,
           {picks},
           max(updated_at) AS updated_at,
           CASE WHEN bool_or(match_rule = 'name') THEN 'name'
                WHEN bool_or(match_rule = 'uscc') THEN 'uscc'
                WHEN bool_or(match_rule = 'ambiguous') THEN 'ambiguous'
                ELSE 'unmatched' END AS match_rule,
           list_sort(list_distinct(list(_source))) AS sources,
           arg_min(_source, _rank) AS _source, arg_min(_source_key, _rank) AS _source_key,
           arg_min(_batch_id, _rank) AS _batch_id, max(_extracted_at) AS _extracted_at
    FROM ranked GROUP BY gid
)
SELECT {cols}, hash({content})::VARCHAR AS _record_hash,
       false AS _del, 1::BIGINT AS _seq, 0::BIGINT AS _row,
       CAST(coalesce(updated_at, _extracted_at) AS TIMESTAMPTZ) AS _at
FROM golden
UNION ALL
SELECT {cols}, _record_hash, true, 1, 0, {literal(now.isoformat())}::TIMESTAMPTZ
FROM core.{ORGANIZATION} WHERE org_id NOT IN (SELECT org_id FROM golden){only_here}
"""


def _write_match(con: duckdb.DuckDBPyConnection, select: str) -> None:
    """``core.organization_match`` := ``select``. A table with the same columns is kept and its rows
    replaced (its comments stay, so a build does not write them again); otherwise it is created."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _match AS {select}")
    try:
        if _same_shape(con):
            con.execute(f"DELETE FROM core.{MATCH_TABLE}")
            con.execute(f"INSERT INTO core.{MATCH_TABLE} SELECT * FROM _match")
        else:
            con.execute(f"CREATE OR REPLACE TABLE core.{MATCH_TABLE} AS SELECT * FROM _match")
    finally:
        con.execute("DROP TABLE IF EXISTS _match")


def build_golden(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    schema: pa.Schema,
    last_version: int,
    now: datetime,
    touched: bool = False,
) -> Applied:
    """Resolve the mentions, recompute the golden rows and apply the difference with versions.

    ``schema`` is :func:`golden_schema` (``core.organization``'s columns without the change
    version); the caller has created the table (and its history) and re-read the mentions.
    ``touched``: :func:`refresh_mentions` kept the touched mentions (``Refreshed.touched``): only
    what they can move is resolved and recomputed (:func:`_resolve_touched`), else everything.
    """
    try:
        _check_new_usccs(con)
        scoped = touched and _resolve_touched(con)
        if not scoped:
            _write_match(con, _RESOLVE.format(mentions=f"core.{MENTIONS_TABLE}", uscc_table=USCC_TABLE,
                                              org=ORGANIZATION))
        con.execute(f"CREATE OR REPLACE TEMP TABLE _in AS {_golden_select(schema, now, scoped)}")
        return apply_rows(con, entity, schema, last_version, history=True)
    finally:
        clean_up(con, "DROP TABLE IF EXISTS _in", "DROP TABLE IF EXISTS _gids")
        if touched:
            clean_up(con, "DROP TABLE IF EXISTS _hit", "DROP TABLE IF EXISTS _touched_mentions",
                     "DROP TABLE IF EXISTS _mentions_before")


def _resolve_touched(con: duckdb.DuckDBPyConnection) -> bool:
    """Resolve again only the mentions the touched ones can move, and list the golden ids that may change.

    A mention's resolution reads its own USCC, the USCCs of every mention sharing its normalised name
    and, without a valid USCC of its own, the resolution of the organisation row its source org id
    names. So the mentions to resolve (``_hit``) are the touched ones that remain, every mention sharing
    a normalised name with a touched one (before or after), and the mentions naming by id an
    organisation row among those; every other mention's inputs are unchanged. They are resolved by the
    same query as a full build, over a scope holding each of their name groups whole and the
    organisation rows they name; their match rows are replaced, those of touched mentions that are gone
    deleted. ``_gids`` gets every golden id those rows had or now have: no other golden row gains or
    loses a contribution. At 20,000 organisations and a 1% project change the full resolution and golden
    recompute took 0.10-0.13 s of each build. Returns False (nothing done) when the match table has other
    columns than the resolution gives: the caller resolves everything then.
    """
    mentions, org = f"core.{MENTIONS_TABLE}", literal(ORGANIZATION)
    # Row ids, not rows: the sets are unions, and a union of whole mention rows hashes every column. They
    # stay valid: an incremental build is one transaction and checkpoints only at its end.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _hit AS
        WITH touched AS (SELECT m.rowid AS r, m.normalised_name FROM {mentions} AS m {_touched('m')}),
        names AS (SELECT normalised_name FROM _mentions_before UNION SELECT normalised_name FROM touched),
        named AS (
            SELECT m.rowid AS r FROM {mentions} AS m SEMI JOIN names AS n ON m.normalised_name = n.normalised_name
            UNION SELECT r FROM touched
        ), orgs AS (
            SELECT DISTINCT _source, source_org_id FROM {mentions} WHERE entity = {org} AND rowid IN (SELECT r FROM named)
        )
        SELECT r FROM named
        UNION
        SELECT m.rowid FROM {mentions} AS m SEMI JOIN orgs AS o ON m._source = o._source AND m.source_org_id = o.source_org_id
        WHERE m.entity <> {org}
        """
    )
    hit = f"(SELECT * FROM {mentions} WHERE rowid IN (SELECT r FROM _hit))"
    scope = (
        f"""(
        WITH pairs AS (SELECT DISTINCT _source, source_org_id FROM {hit} WHERE entity <> {org}),
        orgs AS (SELECT m.rowid AS r, m.normalised_name FROM {mentions} AS m SEMI JOIN pairs AS p
                 ON m._source = p._source AND m.source_org_id = p.source_org_id WHERE m.entity = {org}),
        names AS (SELECT normalised_name FROM {hit} UNION SELECT normalised_name FROM orgs)
        SELECT * FROM {mentions} WHERE rowid IN (
            SELECT m.rowid FROM {mentions} AS m SEMI JOIN names AS n ON m.normalised_name = n.normalised_name
            UNION SELECT r FROM _hit UNION SELECT r FROM orgs)
        )"""
    )
    resolved = _RESOLVE.format(mentions=scope, uscc_table=USCC_TABLE, org=ORGANIZATION)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _match AS SELECT r.* FROM ({resolved}) AS r "
                f"SEMI JOIN {hit} AS h ON {_same_mention('r', 'h')}")
    try:
        if not _same_shape(con):
            return False
        keys = ", ".join(_MENTION_KEY)
        replaced = (f"SEMI JOIN (SELECT {keys} FROM {hit} UNION SELECT {keys} FROM _touched_mentions) AS k "
                    f"ON {_same_mention('o', 'k')}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE _gids AS SELECT o.org_id FROM core.{MATCH_TABLE} AS o {replaced} "
                    "WHERE o.org_id IS NOT NULL UNION SELECT org_id FROM _match WHERE org_id IS NOT NULL")
        con.execute(f"DELETE FROM core.{MATCH_TABLE} AS d WHERE EXISTS (SELECT 1 FROM (SELECT o.rowid AS r "
                    f"FROM core.{MATCH_TABLE} AS o {replaced}) AS x WHERE x.r = d.rowid)")
        con.execute(f"INSERT INTO core.{MATCH_TABLE} SELECT * FROM _match")
        return True
    finally:
        con.execute("DROP TABLE IF EXISTS _match")


def _same_shape(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``core.organization_match`` has the columns (names and types, in order) of ``_match``."""
    shapes = con.execute(
        "SELECT database_name, list((column_name, data_type) ORDER BY column_index) FROM duckdb_columns() "
        "WHERE (database_name = 'temp' AND table_name = '_match') OR (database_name = current_database() "
        f"AND schema_name = 'core' AND table_name = {literal(MATCH_TABLE)}) GROUP BY database_name").fetchall()
    return len(shapes) == 2 and shapes[0][1] == shapes[1][1]


def comment_tables(con: duckdb.DuckDBPyConnection, comment: object) -> None:
    """COMMENT the match table and create the report view ``ops.organization_unmatched``.

    ``comment`` is the builder's ``_comment_table(con, table, text, columns)``.
    """
    comment(  # type: ignore[operator]
        con, f"core.{MATCH_TABLE}",
        "单位匹配 / how each organisation mention was resolved to core.organization. Grain: one row per "
        "distinct (source, entity, role, source org id, name, USCC); organisation rows are mentions of "
        "entity 'organization'. Recomputed by every build that touched an organisation or a mention.",
        MATCH_DOCS,
    )
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute(
        f"""
        CREATE OR REPLACE VIEW ops.{UNMATCHED_VIEW} AS
        SELECT match_rule, normalised_name, any_value(name ORDER BY mentions DESC) AS example_name,
               any_value(candidate_usccs) AS candidate_usccs,
               list(DISTINCT _source ORDER BY _source) AS sources,
               list(DISTINCT entity || '.' || role ORDER BY entity || '.' || role) AS used_as,
               sum(mentions) AS mentions, any_value(org_id) AS org_id
        FROM core.{MATCH_TABLE} WHERE match_rule IN ('unmatched', 'ambiguous')
        GROUP BY match_rule, normalised_name
        ORDER BY match_rule, mentions DESC, normalised_name
        """
    )
    comment(  # type: ignore[operator]
        con, f"core.{MENTIONS_TABLE}",
        "单位提及 / the builder's working set for matching: distinct organisation mentions per entity, re-read "
        "only for entities a build changed. Grain: one row per distinct mention. Read core.organization_match.",
        {c: d for c, d in MATCH_DOCS.items() if c in (
            "_source", "entity", "role", "source_org_id", "name", "uscc", "mentions", "_source_key", "_batch_id",
            "_extracted_at", "normalised_name")}
        | {"uscc_text": "代码文本 / the USCC as given, half-width, upper case, without spaces (checked in "
                        "core._uscc_checked)"},
    )
    comment(  # type: ignore[operator]
        con, f"core.{USCC_TABLE}",
        "已校验代码 / every USCC text seen in a mention, checked once against GB 32100 (check characters "
        "included). Grain: one row per distinct normalised USCC text.",
        {"uscc": "统一社会信用代码 / the USCC as given, half-width, upper case, without spaces",
         "reason": "原因 / why it is not a valid USCC; NULL when valid"},
    )
    view_docs = {
        "match_rule": "匹配规则 / unmatched or ambiguous",
        "normalised_name": MATCH_DOCS["normalised_name"],
        "example_name": "名称示例 / the most mentioned spelling as given",
        "candidate_usccs": MATCH_DOCS["candidate_usccs"],
        "sources": "来源系统 / sources mentioning it",
        "used_as": "用作 / entity.role pairs mentioning it",
        "mentions": "提及次数 / rows mentioning it",
        "org_id": "单位标识 / the core.organization row it was given (name:<normalised name>)",
    }
    for column, doc in view_docs.items():
        con.execute(f"COMMENT ON COLUMN ops.{UNMATCHED_VIEW}.{ident(column)} IS {literal(doc)}")
    con.execute(
        f"COMMENT ON VIEW ops.{UNMATCHED_VIEW} IS "
        + literal("未匹配单位 / organisation names the hub could not tie to a USCC: unmatched (no USCC organisation "
                  "has the normalised name) or ambiguous (several have it; candidate_usccs lists them). Grain: one "
                  "row per rule and normalised name, with the rows mentioning it. Fix at the source (add the "
                  "USCC) rather than guessing.")
    )
