"""What every stream kind gives the pipeline, whatever the source (REST, SQL, files).

A stream yields raw pages as Arrow tables with three bookkeeping columns the pipeline relies
on — `_key` (the source's primary key as text), `_cursor` (the incremental cursor as
fixed-width, sortable text, or null) and `_digest` (a digest of the row as received) — plus
whatever columns keep the row as received. `source_columns` turns staged raw rows into the
flat text/typed columns the spec's mapping reads. New kinds register in `KINDS`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
import pyarrow as pa

from connectors.errors import FatalError

KEY, CURSOR, DIGEST, RECORD = "_key", "_cursor", "_digest", "_record"
BOOKKEEPING = pa.schema([(KEY, pa.string()), (CURSOR, pa.string()), (DIGEST, pa.string())])


_UTC = frozenset({"UTC", "Etc/UTC", "+00:00"})


def json_text_ready(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column of dates, UTC or naive timestamps or decimals as the text orjson writes for them
    (a date ``2024-12-10``; a timestamp ``2024-10-28T21:15:30.993071+00:00``, the fraction only when
    there is one, no offset when naive; a decimal as ``str(Decimal)``), made in Arrow; any other
    column as it is.

    A quarantined SQL row's record is JSON of its cells: through Python objects, each timestamp
    became a timezone-aware ``datetime`` first (10 µs apiece here), so the records of 15,000
    rejected 1M S1 rows took 0.74 s, 0.5 s of it creating datetimes and dates. A decimal's scale is
    at most 6 here: beyond it ``str(Decimal)`` writes small values in exponent form.
    """
    t = column.type
    if pa.types.is_date(t) or (pa.types.is_decimal(t) and 0 <= t.scale <= 6):
        return column.cast(pa.string())
    if pa.types.is_timestamp(t) and t.unit in ("s", "ms", "us") and (t.tz is None or t.tz in _UTC):
        import pyarrow.compute as pc

        text = pc.strftime(column.cast(pa.timestamp("us", tz=t.tz)), format="%Y-%m-%dT%H:%M:%S")  # seconds.micro
        text = pc.replace_substring_regex(text, pattern=r"\.000000$", replacement="")
        return text if t.tz is None else pc.binary_join_element_wise(text, pa.scalar("+00:00"), "")
    return column


@dataclass
class RawPage:
    number: int
    table: pa.Table  # the stream's raw_schema, bookkeeping columns first


class SourceStream(ABC):
    """One (source, entity) stream. Subclasses set the attributes in __init__."""

    source: str
    name: str
    entity: str
    raw_schema: pa.Schema          # BOOKKEEPING + the columns that keep rows as received
    cursor_format: str | None      # strftime format of `_cursor` values, None when not incremental
    overlap_seconds: int = 0
    expected_total: int | None = None  # what the source says this pass holds, for progress bars

    def start_anchor(self, cursor: str | None) -> str | None:
        """Where an incremental pass starts: the last landed cursor minus the overlap window.

        The overlap re-reads rows committed late with an older cursor value; rows that come back
        unchanged (same digest) are dropped by the pipeline, so it costs reads, not duplicates.
        """
        if self.cursor_format is None or cursor is None:
            return None
        try:
            moment = datetime.strptime(cursor, self.cursor_format)
        except ValueError:
            raise FatalError(f"stored cursor {cursor!r} does not match format {self.cursor_format!r}; "
                             "run a full resync (iehub sync --full)", source=self.source, stream=self.name) from None
        return (moment - timedelta(seconds=self.overlap_seconds)).strftime(self.cursor_format)

    def overlap_floor(self, newest: str) -> str | None:
        """The oldest cursor value still inside the overlap window behind `newest`."""
        if self.cursor_format is None:
            return None
        try:
            moment = datetime.strptime(newest, self.cursor_format)
        except ValueError:
            return None
        return (moment - timedelta(seconds=self.overlap_seconds)).strftime(self.cursor_format)

    def prepare(self, *, state: dict[str, Any] | None, work_dir: Path,
                known_keys: Callable[[], pa.Array]) -> None:
        """Called by the pipeline before `read`.

        `state` is what was committed with the last landed batch (cursor, plus whatever
        `state_extra` returned then); `work_dir` is this stream's staging folder; `known_keys()`
        returns the `_key`s the hub currently holds live for this stream (for key-only diffs that
        turn hard deletes and rows missing from a full snapshot into tombstones).
        """
        self.state, self.work_dir, self.known_keys = state, work_dir, known_keys

    def state_extra(self) -> dict[str, Any]:
        """Kind-specific state to commit together with this pass's data (e.g. a file ledger)."""
        return {}

    @abstractmethod
    def read(self, cursor: str | None) -> Iterator[RawPage]:
        """Pages after `cursor` (None: everything), each a table in `raw_schema`."""

    @classmethod
    @abstractmethod
    def source_columns(cls, raw: pa.Table, names: list[str]) -> pa.Table:
        """The named source columns of staged raw rows, for the mapping (pure: no connection)."""

    @classmethod
    def raw_fields(cls, raw_path: str) -> set[str] | None:
        """Source field names present in a staged raw file, for schema-drift checks."""
        import pyarrow.parquet as pq

        return {n for n in pq.read_schema(raw_path).names if not n.startswith("_")}

    @classmethod
    def record_text(cls, raw: pa.Table) -> pa.Array:
        """Each raw row as JSON text, for quarantine (called on rejected rows only)."""
        if RECORD in raw.column_names:
            return raw.column(RECORD).combine_chunks()
        cols = [c for c in raw.column_names if not c.startswith("_")]
        ready = [json_text_ready(raw.column(c)) for c in cols]
        rows = pa.table(ready, names=cols).to_pylist() if cols else [{}] * raw.num_rows
        return pa.array([orjson.dumps(r, default=str).decode() for r in rows], pa.string())

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        """Release connections."""


KINDS: dict[str, type[SourceStream]] = {}


def register_kind(kind: str, cls: type[SourceStream]) -> None:
    """A stream kind is a SourceStream subclass constructed as cls(spec, stream_name)."""
    KINDS[kind] = cls


def stream_class(spec: Any) -> type[SourceStream]:
    import importlib

    from connectors.spec import KIND_MODULES

    if spec.kind not in KINDS and spec.kind in KIND_MODULES:
        importlib.import_module(KIND_MODULES[spec.kind])  # the kind's package registers its class
    cls = KINDS.get(spec.kind)
    if cls is None:
        raise FatalError(f"source {spec.name}: no stream kind '{spec.kind}' (known: {', '.join(sorted(KINDS))})")
    return cls


def open_stream(spec: Any, name: str) -> SourceStream:
    """The stream `name` of a loaded spec, built by its kind."""
    if name not in spec.streams:
        raise FatalError(f"source {spec.name} has no stream '{name}' (streams: {', '.join(spec.streams)})")
    return stream_class(spec)(spec, name)
