"""``/v1/feeds/{dataset}/keyChanges``: renames read from ``core._key_changes``, as Ed-Fi serves them.

Which renames exist, and why only for some entities, is :mod:`warehouse.key_changes`' business;
this module reads a snapshot's renames of one dataset within a change-version window, scoped to
a key's districts exactly as the dataset's changes are (:func:`feeds.query.scope_sql` over the
rename's ``district_code``, or its ``_source``/``project_id`` for entities tied to a project).

Paging: keyset on the change version, like changes and deletes. A rebuild can give several
renames one change version (A→C and B→C both carry C's), so a page never splits a version: it
holds the first ``limit`` versions after the cursor, which may be a few rows more than ``limit``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from feeds.datasets import Dataset
from feeds.query import SnapshotPool, scope_sql
from warehouse.key_changes import KEY_CHANGES

__all__ = ["KeyChangePage", "fetch_key_changes"]


@dataclass(frozen=True)
class KeyChangePage:
    records: list[dict[str, Any]]
    has_more: bool
    last_change_version: int | None


def fetch_key_changes(pool: SnapshotPool, version: str, dataset: Dataset, *, after: int, low: int, high: int,
                      limit: int, districts: frozenset[str] | None) -> KeyChangePage:
    """The renames of ``dataset`` with change_version in (after, high] and >= low, oldest first."""
    where, params = scope_sql(dataset, districts)
    with pool.cursor(version) as (cur, _):
        present = cur.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'core' AND table_name = ?",
                              [KEY_CHANGES]).fetchall()[0][0]
        if not present:  # a snapshot built before key changes were recorded
            return KeyChangePage([], False, None)
        window = "t.entity = ? AND t.change_version > ? AND t.change_version BETWEEN ? AND ?"
        args = [dataset.name, after, low, high]
        rows = cur.execute(
            f"""
            WITH versions AS (
                SELECT DISTINCT t.change_version FROM core.{KEY_CHANGES} AS t WHERE {window} AND {where}
                ORDER BY 1 LIMIT ?
            )
            SELECT t.change_version, t.old_key, t.new_key FROM core.{KEY_CHANGES} AS t
            WHERE {window} AND {where} AND t.change_version IN (SELECT change_version FROM versions)
            ORDER BY t.change_version, t.old_key
            """,
            [*args, *params, limit + 1, *args, *params],
        ).fetchall()
    versions = sorted({r[0] for r in rows})
    has_more = len(versions) > limit
    if has_more:
        rows = [r for r in rows if r[0] <= versions[limit - 1]]
    records = [{"change_version": int(cv), "oldKeyValues": json.loads(old), "newKeyValues": json.loads(new)}
               for cv, old, new in rows]
    return KeyChangePage(records, has_more, int(rows[-1][0]) if rows else None)
