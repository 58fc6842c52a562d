"""Repeated natural keys inside one batch: which copies the gate quarantines, and why.

A key twice in one batch used to be resolved by row order (the later copy won in the build,
silently), so a snapshot with two rows for one project, or 100,000 copies of one, "loaded".
Order is not evidence of which copy is right, so the rule is:

* **in one file** (file streams: each file is one export, one row per key): every copy of a
  repeated key is quarantined, identical or not. The same key in two files of one pass is
  two snapshots, applied in file order, and is left alone;
* **in a paged read** (REST, SQL): a row edited while the source was being paged legitimately
  arrives again, later in the read and with a newer ``updated_at`` (the re-anchoring paginator
  and the "rows changing between pages" fault). Those copies are kept as successive versions
  (the build versions each, the last wins) and counted as ``superseded``; copies identical in
  content are kept and counted as ``identical`` (the build sees no change in them). Any other
  repeat (different content without a strictly newer ``updated_at`` later in the read) is a
  conflict: every copy is quarantined.

The check runs over the whole staged batch in DuckDB (bounded memory, spills to disk), not per
validation chunk, so a repeat that spans chunks is found too. It reads only the key columns,
the record hash, ``updated_at`` and the raw row positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

__all__ = ["RULE", "RepeatedKeys", "repeated_keys"]

#: The rule id a quarantined copy carries (the GX declaration is the suite's `_key.unique`).
RULE = "_key.unique"
MAX_POSITIONS_SHOWN = 5


@dataclass(frozen=True)
class RepeatedKeys:
    """What the check found in one batch."""

    quarantine: pa.Table  # raw_row (int64, ascending), field, reason: every copy to quarantine
    keys: int             # distinct keys whose copies are quarantined
    superseded: int       # copies kept as earlier versions of a key edited during a paged read
    identical: int        # copies kept that repeat an identical row (no version in the build)

    @property
    def rows(self) -> int:
        return self.quarantine.num_rows


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def repeated_keys(mapped_path: str | Path, raw_path: str | Path, key: list[str], *, raw_row: str,
                  per_file: str | None, line: str | None, updated_at: str | None) -> RepeatedKeys:
    """Find repeated keys in a staged batch (see the module doc for the verdicts).

    ``mapped_path`` holds the canonical rows with ``raw_row`` (their position in the staged raw
    file at ``raw_path``); ``per_file`` names the raw column holding the file a row came from
    (file streams) and ``line`` its line in that file; ``updated_at`` the canonical change time,
    or None when the entity has none.
    """
    import duckdb

    keys = ", ".join(f"m.{_q(k)}" for k in key)
    shown = [k for k in key if not k.startswith("_")] or key
    label = " || '/' || ".join(f"coalesce(CAST(m.{_q(k)} AS VARCHAR), '')" for k in shown)
    group = keys + (f", r.{_q(per_file)}" if per_file else "")
    file_sel = f"r.{_q(per_file)} AS _f" if per_file else "NULL::VARCHAR AS _f"
    line_sel = f"r.{_q(line)} AS _line" if line else "NULL::BIGINT AS _line"
    upd = f"m.{_q(updated_at)}" if updated_at else "NULL::TIMESTAMPTZ"
    not_null = " AND ".join(f"m.{_q(k)} IS NOT NULL" for k in key)
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"""
            CREATE TEMP TABLE rows AS
            SELECT {keys}, {label} AS _label, m._record_hash AS _hash, coalesce(m._is_deleted, false) AS _del,
                   {upd} AS _upd, m.{_q(raw_row)} AS _pos, {file_sel}, {line_sel}
            FROM read_parquet({_lit(str(mapped_path))}) AS m
            JOIN (SELECT *, file_row_number AS _pos FROM read_parquet({_lit(str(raw_path))}, file_row_number = true))
                 AS r ON r._pos = m.{_q(raw_row)}
            WHERE {not_null}
            QUALIFY count(*) OVER (PARTITION BY {group}) > 1
        """)
        con.execute(f"""
            CREATE TEMP TABLE verdict AS
            SELECT {", ".join(_q(k) for k in key)}, _f, count(*) AS n, any_value(_label) AS _label,
                   count(DISTINCT (_hash, _del)) = 1 AS same,
                   -- newer updated_at strictly later in the read, for every copy after the first
                   bool_and(_upd IS NOT NULL) AND count(DISTINCT _upd) = count(*)
                     AND list(_upd ORDER BY _pos) = list_sort(list(_upd)) AS ordered,
                   (list(coalesce(_line, _pos + 1) ORDER BY _pos))[1:{MAX_POSITIONS_SHOWN}] AS _where
            FROM rows AS m GROUP BY ALL
        """)
        conflict = "true" if per_file else "NOT same AND NOT ordered"
        unit = "lines" if line else "rows"
        where = (f"' in file ' || _f" if per_file else "''")
        # one reason per key, then joined to its copies (building it per copy was quadratic in the copies)
        con.execute(f"""
            CREATE TEMP TABLE reasons AS
            SELECT *, 'key ' || _label || ' appears ' || format('{{:,}}', n) || ' times in this batch'
                   || {where} || ' ({unit} '
                   || array_to_string(list_transform(_where, lambda x: format('{{:,}}', x)), ', ')
                   || CASE WHEN n > {MAX_POSITIONS_SHOWN} THEN ', …' ELSE '' END || ')'
                   || CASE WHEN same THEN ', identical copies' ELSE ' with different content' END
                   || ': every copy is quarantined, none is chosen by order' AS reason
            FROM verdict WHERE {conflict}
        """)
        join = " AND ".join(f"r.{_q(k)} = v.{_q(k)}" for k in key) + (" AND r._f = v._f" if per_file else "")
        quarantine = con.sql(f"""
            SELECT r._pos AS raw_row, {_lit(shown[0])} AS field, v.reason
            FROM rows AS r JOIN reasons AS v ON {join}
            ORDER BY raw_row
        """).to_arrow_table()
        counts = con.execute(f"""
            SELECT count(*) FILTER (WHERE {conflict}),
                   coalesce(sum(n - 1) FILTER (WHERE NOT ({conflict}) AND ordered AND NOT same), 0),
                   coalesce(sum(n - 1) FILTER (WHERE NOT ({conflict}) AND same), 0)
            FROM verdict
        """).fetchone()
    finally:
        con.close()
    return RepeatedKeys(quarantine.cast(pa.schema([("raw_row", pa.int64()), ("field", pa.string()),
                                                   ("reason", pa.string())])),
                        int(counts[0]), int(counts[1]), int(counts[2]))
