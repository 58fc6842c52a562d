"""Where things live under ``IEHUB_HOME``: the lake layout of DESIGN.md in one place.

Every other module asks :class:`Lake` for a path instead of joining strings, so the layout
can change in one file, and the catalog can store paths relative to the home (a home can be
moved or mounted elsewhere without rewriting the ledger). Those relative paths are also the keys
of :class:`warehouse.lakestore.LakeStore`: with the lake in object storage, :meth:`Lake.resolve`
hands back a local copy of the object, so readers never need to know where the lake lives.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime
from pathlib import Path, PurePosixPath

from warehouse.lakestore import LakeStore

__all__ = ["Lake", "batch_id"]

# Names become directory and file names: keep them to one safe path segment.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _segment(kind: str, value: str) -> str:
    """Refuse names that would escape their directory or be ambiguous on disk."""
    if not isinstance(value, str) or not _SEGMENT.match(value) or ".." in value:
        raise ValueError(
            f"{kind} {value!r} is not a safe path segment: use letters, digits, '_', '-' or '.'"
        )
    return value


def _day(dt: date) -> str:
    """``dt=YYYY-MM-DD``; a datetime counts by its own calendar day (callers pass UTC)."""
    if isinstance(dt, datetime):
        dt = dt.date()
    if not isinstance(dt, date):
        raise TypeError(f"dt must be a date, got {type(dt).__name__}")
    return f"dt={dt.isoformat()}"


def batch_id(source: str, entity: str, window: str, run_id: str | None = None) -> str:
    """A batch id derived from (source, entity, window, run id): one per extraction.

    The lake is append-only: two extractions never share an id, so a later one can never
    overwrite an earlier one's files or ledger row (a ``sync --full`` reads ``since=beginning``
    exactly like the first load did; keyed on the window alone it replaced the first load, and
    a rebuild from the lake lost every version in between). ``run_id`` names the extraction
    (an Airflow DAG run, or one CLI invocation): a retry of the same run over the same window
    gets the same id and replaces only its own output. Callers whose window already names one
    extraction (a replay stamps its start time into it) may leave ``run_id`` out.
    """
    _segment("source", source)
    _segment("entity", entity)
    text = f"{source}|{entity}|{window}" + (f"|run={run_id}" if run_id else "")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{source}-{entity}-{digest[:16]}"


class Lake:
    """The paths of one hub home (``IEHUB_HOME``), and the store its lake files live in."""

    def __init__(self, home: Path, store: LakeStore | None = None) -> None:
        self.home = Path(home)
        self.store = store or LakeStore(self.home)

    def __repr__(self) -> str:
        return f"Lake({str(self.home)!r})"

    @staticmethod
    def batch_id(source: str, entity: str, window: str, run_id: str | None = None) -> str:
        """:func:`batch_id`, reachable from a Lake for callers that only hold one."""
        return batch_id(source, entity, window, run_id)

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    def raw_path(self, source: str, entity: str, dt: date, batch_id: str) -> Path:
        """Data as received, partitioned by source first (that is how it arrives)."""
        return (
            self.lake_dir / "raw" / _segment("source", source) / _segment("entity", entity)
            / _day(dt) / f"{_segment('batch_id', batch_id)}.parquet"
        )

    def std_path(self, entity: str, source: str, dt: date, batch_id: str) -> Path:
        """Canonical rows, partitioned by entity first (that is how they are read)."""
        return (
            self.lake_dir / "std" / _segment("entity", entity) / f"source={_segment('source', source)}"
            / _day(dt) / f"{_segment('batch_id', batch_id)}.parquet"
        )

    def quarantine_path(self, entity: str, source: str, dt: date, batch_id: str) -> Path:
        """Rejected rows with their rule and reason, laid out like std for replay."""
        return (
            self.lake_dir / "quarantine" / _segment("entity", entity)
            / f"source={_segment('source', source)}" / _day(dt)
            / f"{_segment('batch_id', batch_id)}.parquet"
        )

    @property
    def warehouse_path(self) -> Path:
        """The builder's DuckDB file (single writer)."""
        return self.home / "warehouse.duckdb"

    @property
    def building_path(self) -> Path:
        """Where a build writes before it is renamed onto :attr:`warehouse_path`."""
        return self.home / "warehouse.duckdb.building"

    @property
    def lock_path(self) -> Path:
        """The builders' exclusive lock file."""
        return self.home / "warehouse.lock"

    @property
    def catalog_path(self) -> Path:
        """The embedded (SQLite) ops catalog."""
        return self.home / "catalog.db"

    def relative(self, path: Path) -> str:
        """A path as the ledger stores it: POSIX, relative to the home."""
        try:
            return PurePosixPath(Path(path).relative_to(self.home)).as_posix()
        except ValueError:
            raise ValueError(f"{path} is not under the hub home {self.home}") from None

    def resolve(self, relative: str) -> Path:
        """The local path of a ledger path: the file itself, or a fresh local copy of a remote object.

        A key with no file or object gives a path that does not exist, for the caller to report.
        """
        rel = PurePosixPath(relative)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"ledger path {relative!r} must be relative to the hub home")
        try:
            return self.store.local(rel.as_posix())
        except FileNotFoundError:
            return self.store.path(rel.as_posix())
