"""Comparing two warehouse files: does a rebuild from the lake reproduce the incremental one?

The lake is append-only (every extraction lands under its own batch id), so ``iehub build
--full`` replays every ledgered batch in ``landed_seq`` order and must arrive at the same
``core`` as the builds that applied them one by one: the same current rows, the same
``*_history`` rows and the same tombstones (with their districts). This module measures the
difference as row counts per table, both ways, in DuckDB set operations (``EXCEPT ALL``), so a
million-row table compares without passing through Python.

Left out, because they depend on when builds ran rather than on the lake:

* ``change_version`` everywhere: a rebuild continues the change sequence instead of reusing
  numbers consumers have already seen, so the numbers differ by design while their order does not;
* the golden ``core.organization``'s lineage and its ``_history``: it is re-resolved across all
  sources once per build (:mod:`warehouse.identity`), so it holds one version per build that
  changed it, and its lineage (``_source``, ``_source_key``, ``_batch_id``, ``_extracted_at``)
  names the best contribution at the build that last changed its content (between equal
  mentions a later build may rank another first without a new version). Its business columns
  and content hash must still match; the per-source rows it is resolved from
  (``core.organization_source``) are compared in full.

Everything else (business columns, lineage, validity intervals, tombstone keys, times and
districts) must match exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

__all__ = ["Drift", "core_drift", "core_tables"]

#: Columns that legitimately differ between two builds of the same batches.
PER_BUILD_COLUMNS = frozenset({"change_version"})
#: Per table, more such columns (the golden organisation row: see the module doc).
PER_BUILD_TABLE_COLUMNS = {"organization": frozenset({"_source", "_source_key", "_batch_id", "_extracted_at"})}
#: Tables whose rows follow the build cadence (one version per build): not compared.
PER_BUILD_TABLES = frozenset({"organization_history"})


@dataclass(frozen=True)
class Drift:
    """Rows of one ``core`` table found only on the left or only on the right."""

    table: str
    left_rows: int
    right_rows: int
    only_left: int
    only_right: int

    @property
    def rows(self) -> int:
        return self.only_left + self.only_right


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def core_tables(con: duckdb.DuckDBPyConnection, database: str) -> dict[str, list[str]]:
    """``core`` table → its comparable columns, in order (per-build tables and columns left out)."""
    rows = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'core' "
        "ORDER BY table_name, column_index", [database]).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        if table in PER_BUILD_TABLES:
            continue
        if column not in PER_BUILD_COLUMNS and column not in PER_BUILD_TABLE_COLUMNS.get(table, ()):
            out.setdefault(table, []).append(column)
    return out


def core_drift(left: Path, right: Path, *, tables: list[str] | None = None) -> list[Drift]:
    """Per ``core`` table of either file, how many rows differ (a table missing on one side counts whole).

    Both files are opened read-only; pass published snapshots or copies, never a file a build
    is writing.
    """
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {_literal(str(left))} AS l (READ_ONLY)")
        con.execute(f"ATTACH {_literal(str(right))} AS r (READ_ONLY)")
        lt, rt = core_tables(con, "l"), core_tables(con, "r")
        names = sorted(set(lt) | set(rt)) if tables is None else tables
        out = []
        for name in names:
            lcount = con.execute(f"SELECT count(*) FROM l.core.{_q(name)}").fetchone()[0] if name in lt else 0
            rcount = con.execute(f"SELECT count(*) FROM r.core.{_q(name)}").fetchone()[0] if name in rt else 0
            if name not in lt or name not in rt:
                out.append(Drift(name, lcount, rcount, lcount, rcount))
                continue
            common = [c for c in lt[name] if c in set(rt[name])]
            cols = ", ".join(_q(c) for c in common)
            only_l = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM l.core.{_q(name)} EXCEPT ALL "
                                 f"SELECT {cols} FROM r.core.{_q(name)})").fetchone()[0]
            only_r = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM r.core.{_q(name)} EXCEPT ALL "
                                 f"SELECT {cols} FROM l.core.{_q(name)})").fetchone()[0]
            # a column on one side only differs in every row that has a value there
            extra = (set(lt[name]) ^ set(rt[name]))
            if extra:
                only_l, only_r = max(only_l, lcount if set(lt[name]) - set(rt[name]) else 0), \
                    max(only_r, rcount if set(rt[name]) - set(lt[name]) else 0)
            out.append(Drift(name, int(lcount), int(rcount), int(only_l), int(only_r)))
        return out
    finally:
        con.close()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
