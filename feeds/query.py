"""Reading feed pages out of a published snapshot: keyset paging, scope, projection, deletes.

Why keyset paging: Ed-Fi's offset paging skips rows when the set moves between pages. Here a
page is ``WHERE change_version > after ... ORDER BY change_version LIMIT n + 1``; the extra
row only says whether there is a next page. ``change_version`` is unique within a table, so
ordering by it alone is the contract's order by (change_version, key). Pages come from one
immutable snapshot for a whole pass (the cursor names it), so nothing can move under a pass.

Connections: one read-only DuckDB connection per snapshot, kept in a small LRU (opening a
file costs more than a page) and closed when evicted and no request still uses it; every
request takes its own ``.cursor()`` of it, because a DuckDB connection is not for sharing
between threads. While a snapshot is open here, ``warehouse.publish.prune`` keeps it, so the
cache is also the passes' lease: a snapshot read within the last ``lease`` seconds is not
evicted for being least recent (builds may publish faster than consumers page), only when more
than ``max_open`` snapshots are leased at once. A pass idle for longer than the lease may find
its snapshot pruned: 410, restart the pass.

Values leave as Arrow tables, never Python rows: the formats encode straight from Arrow.
District codes are always bound as parameters; column names only ever come from the
snapshot's own catalogue, quoted.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from feeds.datasets import Dataset, ScopeRule
from warehouse.publish import DATABASE, current_version, published_dir
from warehouse.versions import CHANGE_VERSION, TOMBSTONES

__all__ = [
    "DELETE_FIELDS",
    "MAX_CHANGE_VERSION",
    "FieldError",
    "NoSnapshot",
    "Page",
    "SnapshotGone",
    "SnapshotPool",
    "Window",
    "coverage",
    "fetch_changes",
    "fetch_deletes",
    "masked_page",
    "newest_change_version",
    "resolve_fields",
    "scope_sql",
    "tombstone_scope_sql",
    "versions",
]

MAX_CHANGE_VERSION = 2**63 - 1
#: How many page lengths after the cursor the first look for a page's end spans (see _page).
PROBE_SPAN = 8
DISTRICT = "district_code"


class NoSnapshot(RuntimeError):
    """Nothing is published yet: the API has nothing to serve."""


class SnapshotGone(RuntimeError):
    """The snapshot a pass started on has been pruned; the consumer must restart the pass."""


class FieldError(ValueError):
    """A requested field is not a column of the dataset (message names it and the known ones)."""


@dataclass(frozen=True)
class Window:
    """Where a page starts and how far a pass reaches: rows with after < change_version, in [low, high]."""

    after: int
    low: int
    high: int
    limit: int


@dataclass(frozen=True)
class Page:
    """One page of a feed: the rows (Arrow), and where the next page starts, if there is one."""

    table: pa.Table
    has_more: bool
    last_change_version: int | None

    @property
    def count(self) -> int:
        return self.table.num_rows


class _Entry:
    """A cached connection with a count of requests using it, so eviction never closes it under one."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.used_at = time.monotonic()
        self.users = 0
        self.evicted = False
        self.columns: dict[str, list[str]] = {}


class SnapshotPool:
    """Read-only connections to published snapshots, LRU-cached; see the module doc."""

    def __init__(self, home: Path, size: int = 4, *, lease: float = 300.0, max_open: int = 64) -> None:
        self.home = Path(home)
        self.size = max(1, size)
        self.lease = max(0.0, lease)
        self.max_open = max(self.size, max_open)
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def current(self) -> str:
        """The version CURRENT points at now; NoSnapshot before the first build."""
        version = current_version(self.home)
        if version is None:
            raise NoSnapshot(f"no published snapshot under {published_dir(self.home)}; run `iehub build` first")
        return version

    def _open(self, version: str) -> _Entry:
        path = published_dir(self.home) / version / DATABASE
        gone = f"snapshot {version} is no longer published; restart the pass without a cursor"
        if "/" in version or version.startswith(".") or not path.is_file():
            raise SnapshotGone(gone)
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.IOException:  # pruned between the check and the open
            raise SnapshotGone(gone) from None
        con.execute("SET TimeZone = 'UTC'")
        return _Entry(con)

    @contextmanager
    def cursor(self, version: str) -> Iterator[tuple[duckdb.DuckDBPyConnection, _Entry]]:
        """A per-request cursor on ``version`` (and its cache entry, for column lookups)."""
        with self._lock:
            entry = self._entries.get(version)
            if entry is not None:
                self._entries.move_to_end(version)
            else:
                entry = self._open(version)
                self._entries[version] = entry
                self._evict(keep=version)
            entry.used_at = time.monotonic()
            entry.users += 1
            cur = entry.con.cursor()
        try:
            yield cur, entry
        finally:
            cur.close()
            with self._lock:
                entry.users -= 1
                if entry.evicted and entry.users == 0:
                    entry.con.close()

    def _evict(self, keep: str) -> None:
        """Beyond ``size``, drop the least recent snapshots whose lease ran out; beyond ``max_open``, any."""
        now = time.monotonic()
        for version in list(self._entries):
            if len(self._entries) <= self.size:
                return
            entry = self._entries[version]
            if version != keep and (now - entry.used_at > self.lease or len(self._entries) > self.max_open):
                del self._entries[version]
                entry.evicted = True
                if entry.users == 0:
                    entry.con.close()

    def close(self) -> None:
        """Close every cached connection not in use (the rest close when their request ends)."""
        with self._lock:
            for entry in self._entries.values():
                entry.evicted = True
                if entry.users == 0:
                    entry.con.close()
            self._entries.clear()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def withheld_columns(table: str) -> set[str]:
    """Fields of entity ``table`` whose own share class is 不予共享 (schemas.Field.share_class)."""
    from schemas import ENTITIES

    entity = ENTITIES.get(table)
    return {f.name for f in entity.fields if f.share_class == "not_shared"} if entity is not None else set()


def _columns(cur: duckdb.DuckDBPyConnection, entry: _Entry, table: str) -> list[str]:
    """The snapshot's columns of ``core.<table>`` in order (cached per snapshot: snapshots never change)."""
    cols = entry.columns.get(table)
    if cols is None:
        withheld = withheld_columns(table)  # a field declared 不予共享 is never read for a feed
        cols = [c for (c,) in cur.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'core' AND table_name = ? "
            "ORDER BY column_index", [table]).fetchall() if c not in withheld]
        entry.columns[table] = cols
    return cols


def resolve_fields(
    dataset: Dataset, columns: Sequence[str], requested: Sequence[str] | None, derived: dict[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """(columns to read, fields to return) for a ``fields=`` request.

    ``derived`` maps extra output fields (a pseudonym) to the column they are computed from.
    ``change_version`` and the natural key are always returned, so every record can be placed.
    Unknown names raise :class:`FieldError` naming them and listing the known ones.
    """
    derived = derived or {}
    known: list[str] = []
    for column in columns:  # a derived field follows the column it is made from
        known.append(column)
        known.extend(d for d, source in derived.items() if source == column and d not in columns)
    if requested is None:
        return list(columns), known
    unknown = [f for f in requested if f not in known]
    if unknown:
        raise FieldError(f"unknown field(s) {', '.join(repr(u) for u in unknown)} for dataset {dataset.name} "
                         f"(known: {', '.join(known)})")
    always = [CHANGE_VERSION, *dataset.entity.key]
    wanted = [c for c in known if c in always or c in requested]
    read = [c for c in columns if c in wanted or c in {derived[d] for d in wanted if d in derived}]
    return read, wanted


def scope_sql(dataset: Dataset, districts: frozenset[str] | None, alias: str = "t") -> tuple[str, list[Any]]:
    """The WHERE fragment limiting ``dataset``'s rows to ``districts`` (None = all), with its parameters."""
    if districts is None:
        return "TRUE", []
    if dataset.scope is ScopeRule.ALL_DISTRICTS_ONLY or not districts:
        return "FALSE", []
    marks = ", ".join("?" for _ in districts)
    params = sorted(districts)
    if dataset.scope is ScopeRule.COLUMN:
        return f"{alias}.{DISTRICT} IN ({marks})", params
    if dataset.scope is ScopeRule.PROJECT:
        return (f"EXISTS (SELECT 1 FROM core.project AS p WHERE p._source = {alias}._source "
                f"AND p.project_id = {alias}.project_id AND p.{DISTRICT} IN ({marks}))", params)
    raise AssertionError(f"unhandled scope rule {dataset.scope}")


def tombstone_scope_sql(
    dataset: Dataset, districts: frozenset[str] | None, has_district: bool, alias: str = "t"
) -> tuple[str, list[Any]]:
    """The WHERE fragment for deletes: the tombstone's own district; unknown (NULL) only for all-district keys."""
    if districts is None:
        return "TRUE", []
    if dataset.scope is ScopeRule.ALL_DISTRICTS_ONLY or not districts or not has_district:
        return "FALSE", []
    return f"{alias}.{DISTRICT} IN ({', '.join('?' for _ in districts)})", sorted(districts)


def _page(cur: duckdb.DuckDBPyConnection, select: str, source: str, where: str, params: list[Any],
          window: Window, version: str = f"t.{CHANGE_VERSION}", tiebreak: str = "") -> Page:
    """The rows of ``source`` after ``window.after`` in ``version`` order, ``limit`` of them, in two steps.

    Why two steps: ``ORDER BY change_version LIMIT n`` over all columns makes DuckDB read every
    column of every row after the cursor to find the first n (measured: ~20 ms per 27,000 rows,
    so early pages of a million rows would take a second). The first step finds the page's last
    version reading that one column only; the second reads whole rows in the narrow range
    ``(after, upper]``, which the column's zone maps prune to a row group or two.

    ``version`` is unique per row for a table's own ``change_version``; where it is not (a
    participant's version is raised to its project's, see :func:`fetch_changes`), rows sharing
    a version are ordered by ``tiebreak`` (the natural key) and a page never splits them, so it
    may hold a few more than ``limit``.
    """
    limit = window.limit
    condition = f"({where}) AND {version} > ? AND {version} BETWEEN ? AND ?"
    bounds = [*params, window.after, window.low, window.high]
    # One row past the page says whether there is a next page, so no third query is needed
    # unless that row shares the page's last version (then it belongs to this page).
    bound_sql = (f"SELECT count(*), list(v ORDER BY v)[?], max(v) FROM (SELECT {version} AS v FROM {source} AS t "
                 f"WHERE {condition} AND {version} <= ? ORDER BY v LIMIT ?)")
    # Probe a span first: versions of one table are mostly dense, so a page usually lies within
    # a few limits after the cursor, and a bounded span lets the zone maps skip all the rest.
    probe = min(window.high, window.after + limit * PROBE_SPAN)  # never past high, so never past BIGINT
    found, at_limit, last = cur.execute(bound_sql, [limit, *bounds, probe, limit + 1]).fetchall()[0]
    if found <= limit and probe < window.high:  # sparse here: look in the whole window
        found, at_limit, last = cur.execute(bound_sql, [limit, *bounds, window.high, limit + 1]).fetchall()[0]
    if found > limit:
        upper = at_limit
        has_more = last > upper or bool(cur.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {source} AS t WHERE {condition} AND {version} > ? LIMIT 1)",
            [*bounds, upper]).fetchall()[0][0])
    else:
        upper, has_more = (last if last is not None else window.after), False
    table = cur.sql(f"SELECT {select} FROM {source} AS t WHERE {condition} AND {version} <= ? "
                    f"ORDER BY {version}{tiebreak}", params=[*bounds, upper]).to_arrow_table()
    return Page(table, has_more, upper if table.num_rows else None)


def fetch_changes(
    pool: SnapshotPool,
    version: str,
    dataset: Dataset,
    window: Window,
    *,
    requested: Sequence[str] | None,
    districts: frozenset[str] | None,
    derived: dict[str, str] | None = None,
) -> tuple[Page, list[str]]:
    """One page of live rows in ``window``; returns it and the fields to return."""
    with pool.cursor(version) as (cur, entry):
        columns = _columns(cur, entry, dataset.name)
        read, wanted = resolve_fields(dataset, columns, requested, derived)
        select = ", ".join("t." + _ident(c) for c in read)
        if dataset.scope is ScopeRule.PROJECT and districts:
            select = ", ".join(f"t.{FEED_VERSION} AS {_ident(c)}" if c == CHANGE_VERSION else "t." + _ident(c)
                               for c in read)
            source, params = _through_project(dataset, districts)
            tiebreak = "".join(f", t.{_ident(k)}" for k in dataset.entity.key)
            page = _page(cur, select, source, "TRUE", params, window, version=f"t.{FEED_VERSION}", tiebreak=tiebreak)
            return page, wanted
        where, params = scope_sql(dataset, districts)
        return _page(cur, select, dataset.table, where, params, window), wanted


#: The change version a project-scoped row has for a key with districts (see :func:`_through_project`).
FEED_VERSION = "_feed_version"


def _through_project(dataset: Dataset, districts: frozenset[str]) -> tuple[str, list[Any]]:
    """The rows of a PROJECT-scoped dataset in ``districts``, each with its :data:`FEED_VERSION`.

    A participant or report enters a key's districts when its project does (moves there, or
    comes back from a delete) without changing itself: for scoped keys its change_version is
    the later of its own and its project's, so the pass that covers the project's change
    carries it too (a consumer may get it again: same content).
    """
    marks = ", ".join("?" for _ in districts)
    return (f"(SELECT c.*, greatest(c.{CHANGE_VERSION}, p.{CHANGE_VERSION}) AS {FEED_VERSION} "
            f"FROM {dataset.table} AS c JOIN core.project AS p "
            f"ON p._source = c._source AND p.project_id = c.project_id WHERE p.{DISTRICT} IN ({marks}))",
            sorted(districts))


#: What a delete record carries, in order; ``key`` is the natural key as an object.
DELETE_FIELDS = (CHANGE_VERSION, "key", "deleted_at", "_source", "_source_key", "_batch_id", "_extracted_at")


def fetch_deletes(
    pool: SnapshotPool,
    version: str,
    dataset: Dataset,
    window: Window,
    *,
    districts: frozenset[str] | None,
) -> Page:
    """One page of tombstones of ``dataset`` with the natural key decoded into a struct column."""
    with pool.cursor(version) as (cur, entry):
        has_district = DISTRICT in _columns(cur, entry, TOMBSTONES)
        where, params = tombstone_scope_sql(dataset, districts, has_district)
        key = ", ".join(f"{_ident(k)} := json_extract_string(t.natural_key, {_json_path(k)})"
                        for k in dataset.entity.key)
        select = (f"t.{CHANGE_VERSION}, struct_pack({key}) AS key, t.deleted_at, t._source, t._source_key, "
                  "t._batch_id, t._extracted_at")
        return _page(cur, select, f"core.{TOMBSTONES}", f"t.entity = ? AND ({where})", [dataset.name, *params], window)


def _json_path(key: str) -> str:
    # Key names are declared identifiers ([a-z_]); quoted in the path so '_source' stays one member.
    return "'$.\"" + key.replace("'", "''").replace('"', '') + "\"'"


def versions(
    pool: SnapshotPool, version: str, dataset: Dataset, districts: frozenset[str] | None
) -> dict[str, int | None]:
    """The change versions of what a key with ``districts`` may see of ``dataset``: its rows and deletes.

    ``oldest_change_version`` is None and ``newest_change_version`` 0 when it may see nothing.
    Scoped like the data, not hub-wide: a key learns nothing of other districts' or datasets'
    activity from it. The newest is still a safe place to start the next pass after: every later
    change to a row the key may see takes a change version above the hub's newest, so above it.
    """
    with pool.cursor(version) as (cur, entry):
        oldest, newest = _scoped_range(cur, entry, dataset, districts)
    return {"oldest_change_version": oldest, "newest_change_version": newest or 0}


def _scoped_range(cur: duckdb.DuckDBPyConnection, entry: _Entry, dataset: Dataset,
                  districts: frozenset[str] | None) -> tuple[int | None, int | None]:
    """min and max change version over the rows and tombstones of ``dataset`` in ``districts``."""
    if dataset.scope is ScopeRule.PROJECT and districts:
        source, params = _through_project(dataset, districts)
        rows = f"SELECT min(t.{FEED_VERSION}) AS lo, max(t.{FEED_VERSION}) AS hi FROM {source} AS t"
    else:
        where, params = scope_sql(dataset, districts)
        rows = f"SELECT min(t.{CHANGE_VERSION}) AS lo, max(t.{CHANGE_VERSION}) AS hi FROM {dataset.table} AS t " \
               f"WHERE {where}"
    has_district = DISTRICT in _columns(cur, entry, TOMBSTONES)
    where, tomb_params = tombstone_scope_sql(dataset, districts, has_district)
    tombs = (f"SELECT min(t.{CHANGE_VERSION}), max(t.{CHANGE_VERSION}) FROM core.{TOMBSTONES} AS t "
             f"WHERE t.entity = ? AND ({where})")
    lo, hi = cur.execute(f"SELECT min(lo), max(hi) FROM ({rows} UNION ALL {tombs})",
                         [*params, dataset.name, *tomb_params]).fetchall()[0]
    return lo, hi


def _newest(cur: duckdb.DuckDBPyConnection) -> int:
    """The builder's sequence value in this snapshot (0 before any change)."""
    row = cur.execute("SELECT max(last_change_version) FROM ops.change_sequence").fetchall()
    return int(row[0][0] or 0)


def coverage(pool: SnapshotPool, version: str, dataset: Dataset, districts: frozenset[str] | None) -> dict[str, Any]:
    """What the caller can see of ``dataset`` in the snapshot: event-date range and change versions (as /versions)."""
    with pool.cursor(version) as (cur, entry):
        columns = _columns(cur, entry, dataset.name)
        event = "coalesce(t.updated_at, t._extracted_at)" if "updated_at" in columns else "t._extracted_at"
        where, params = scope_sql(dataset, districts)
        start, end = cur.execute(
            f"SELECT min({event})::DATE::VARCHAR, max({event})::DATE::VARCHAR FROM {dataset.table} AS t WHERE {where}",
            params).fetchall()[0]
        oldest, newest = _scoped_range(cur, entry, dataset, districts)
    return {"start": start, "end": end, "oldest_change_version": oldest, "newest_change_version": newest or 0}


def newest_change_version(pool: SnapshotPool, version: str) -> int:
    """The snapshot's last change version hub-wide (the benchmark's window; the API scopes its own: :func:`versions`)."""
    with pool.cursor(version) as (cur, _):
        return _newest(cur)


def masked_page(
    pool: SnapshotPool,
    version: str,
    dataset: Dataset,
    kind: str,
    window: Window,
    *,
    districts: frozenset[str] | None,
    personal: bool,
    secret: bytes,
    requested: Sequence[str] | None = None,
) -> tuple[Page, pa.Table, list[str]]:
    """One page of changes or deletes as a key receives it: scoped, masked by its grant, projected.

    The one path from a snapshot to what leaves the hub, for the pull API (``serve_page``) and
    push subscriptions (:mod:`feeds.delivery`) alike, so both mask identically. Returns the
    page (paging facts), the masked table and the fields it holds.
    """
    from feeds.masking import ID_NUMBER, PSEUDONYM, mask_table  # masking is a sibling, not a dependency of paging

    if kind == "changes":
        page, wanted = fetch_changes(pool, version, dataset, window, requested=requested, districts=districts,
                                     derived={PSEUDONYM: ID_NUMBER})
        return page, mask_table(page.table, dataset.name, personal=personal, secret=secret).select(wanted), wanted
    page = fetch_deletes(pool, version, dataset, window, districts=districts)
    return page, mask_table(page.table, dataset.name, personal=personal, secret=secret), list(DELETE_FIELDS)
