"""Encoding feed pages from Arrow: JSON envelope, NDJSON, CSV and Parquet; negotiation and ETags.

Why chunks: the API must compute the response digest and write the audit row *before* it
sends a byte (an unaudited response must never leave), so a page is encoded here into a list
of byte chunks, hashed, audited, then streamed chunk by chunk. A page is bounded by ``limit``
(at most ``max_limit`` rows), so the chunks are bounded too; encoding twice to avoid keeping
them would double the dominant cost of a page (encoding is about half of it).

Value rules (one place for every text format): decimals as exact strings, dates ISO 8601,
timestamps RFC 3339 in UTC with microseconds and ``Z``, nulls as JSON null / empty CSV field.
Parquet keeps the Arrow types as they are.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from feeds.datasets import FORMATS

try:  # orjson is several times faster on record lists; json is the exact fallback
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - orjson is a declared dependency
    orjson = None

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


__all__ = [
    "CHUNK_ROWS", "FormatError", "NotAcceptable", "encode", "etag", "etag_matches", "jsonable", "negotiate", "rfc3339",
]

CHUNK_ROWS = 500
_ALIASES = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/parquet": "parquet",
}


class FormatError(ValueError):
    """``format=`` names no format we serve (→ 400)."""


class NotAcceptable(ValueError):
    """Nothing in ``Accept`` is a format we serve (→ 406)."""


def negotiate(format_param: str | None, accept: str | None) -> str:
    """The format name: ``format=`` wins; else the best of ``Accept`` by q; JSON when neither says."""
    known = ", ".join(FORMATS)
    if format_param is not None:
        name = format_param.strip().lower()
        if name not in FORMATS:
            raise FormatError(f"format={format_param[:40]!r} is not served; use one of: {known}")
        return name
    if not accept or not accept.strip():
        return "json"
    offers: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if q <= 0:
            continue
        if media in ("*/*", "application/*"):
            offers.append((q, position, "json"))
        elif media == "text/*":
            offers.append((q, position, "csv"))
        elif media in _ALIASES:
            offers.append((q, position, _ALIASES[media]))
    if not offers:
        raise NotAcceptable(f"Accept {accept[:80]!r} names no served type; served: "
                            + ", ".join(FORMATS.values()) + " (or use format=" + "|".join(FORMATS) + ")")
    offers.sort(key=lambda o: (-o[0], o[1]))
    return offers[0][2]


def _text_column(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    t = column.type
    if pa.types.is_decimal(t) or pa.types.is_date(t):
        return column.cast(pa.string())
    if pa.types.is_timestamp(t):
        return rfc3339(column)
    if pa.types.is_struct(t):
        combined = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        children = [_text_column(combined.field(i)) for i in range(t.num_fields)]
        return pa.StructArray.from_arrays(children, fields=[pa.field(f.name, c.type) for f, c in zip(t, children)],
                                          mask=combined.is_null())
    return column


_DAY_US = 86_400_000_000


def _digits(value: pa.Array | pa.ChunkedArray, width: int) -> pa.Array | pa.ChunkedArray:
    return pc.utf8_lpad(value.cast(pa.string()), width, "0")


def rfc3339(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC), by integer arithmetic.

    Why not ``pc.strftime``: it goes through a time-zone database per value and was a third
    of a 1000-row JSON page's cost; this gives the same text (a unit test compares them) in
    half the time. Naive timestamps are taken as UTC, as the warehouse stores every instant.
    """
    us = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    days = pc.divide(us, _DAY_US)  # truncates toward zero: step back a day before 1970
    tod = pc.subtract(us, pc.multiply(days, _DAY_US))
    before = pc.less(tod, 0)
    days = pc.if_else(before, pc.subtract(days, 1), days)
    tod = pc.if_else(before, pc.add(tod, _DAY_US), tod)
    date = days.cast(pa.int32()).cast(pa.date32()).cast(pa.string())
    hours = _digits(pc.divide(tod, 3_600_000_000), 2)
    minutes = _digits(pc.divide(pc.remainder(tod, 3_600_000_000), 60_000_000), 2)
    seconds = _digits(pc.divide(pc.remainder(tod, 60_000_000), 1_000_000), 2)
    micros = _digits(pc.remainder(tod, 1_000_000), 6)
    return pc.binary_join_element_wise(date, "T", hours, ":", minutes, ":", seconds, ".", micros, "Z", "")


def jsonable(table: pa.Table) -> pa.Table:
    """The table with decimals, dates and timestamps as the text every text format publishes."""
    return pa.table({name: _text_column(table.column(name)) for name in table.column_names})


def _record_chunks(table: pa.Table, separator: bytes) -> list[bytes]:
    """The records as JSON texts joined by ``separator``, in chunks of CHUNK_ROWS rows.

    (Building the texts column-wise in Arrow was tried: no faster than ``to_pylist`` + orjson
    on a 1000-row page, so the simpler path stays.)
    """
    text = jsonable(table)
    chunks = []
    for start in range(0, text.num_rows, CHUNK_ROWS):
        rows = text.slice(start, CHUNK_ROWS).to_pylist()
        # one call per chunk for JSON (a list without its brackets); NDJSON needs a line per record
        chunks.append(_dumps(rows)[1:-1] if separator == b"," else separator.join(_dumps(r) for r in rows))
    return chunks


def _json(table: pa.Table, envelope: dict[str, Any]) -> list[bytes]:
    head = _dumps({**envelope, "records": []})
    if not head.endswith(b"[]}"):  # the envelope is ours; records is always last and empty here
        raise AssertionError("envelope must end with an empty records list")
    body = _record_chunks(table, b",")
    return [head[:-2], *(chunk if i == 0 else b"," + chunk for i, chunk in enumerate(body)), b"]}"]


def _ndjson(table: pa.Table) -> list[bytes]:
    return [chunk + b"\n" for chunk in _record_chunks(table, b"\n")]


def _csv(table: pa.Table) -> list[bytes]:
    flat = jsonable(table).flatten()  # a struct column becomes key._source, key.project_id …
    chunks = []
    for start in range(0, max(flat.num_rows, 1), CHUNK_ROWS):
        buffer = io.BytesIO()
        part = flat.slice(start, CHUNK_ROWS)
        pcsv.write_csv(part, buffer, write_options=pcsv.WriteOptions(include_header=start == 0))
        chunks.append(buffer.getvalue())
    return chunks


def _parquet(table: pa.Table) -> list[bytes]:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return [buffer.getvalue()]


def encode(fmt: str, table: pa.Table, envelope: dict[str, Any]) -> list[bytes]:
    """The body of one page in ``fmt`` as byte chunks; ``envelope`` is the JSON format's paging info."""
    if fmt == "json":
        return _json(table, envelope)
    if fmt == "ndjson":
        return _ndjson(table)
    if fmt == "csv":
        return _csv(table)
    if fmt == "parquet":
        return _parquet(table)
    raise FormatError(f"format {fmt!r} is not served; use one of: {', '.join(FORMATS)}")


def etag(parts: dict[str, Any]) -> str:
    """A strong ETag over what determines a body: snapshot, dataset, normalised params, scope, format.

    Snapshots never change, so the same parts always give the same bytes.
    """
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f'"{digest[:40]}"'


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an If-None-Match header matches ``tag`` (weak comparison, as RFC 9110 asks for GET)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False


@dataclass(frozen=True)
class Encoded:
    """A page ready to send: its chunks, their sha256, and its media type."""

    chunks: list[bytes]
    digest: str
    media_type: str

    @classmethod
    def of(cls, fmt: str, chunks: list[bytes]) -> Encoded:
        h = hashlib.sha256()
        for chunk in chunks:
            h.update(chunk)
        media = FORMATS[fmt] + ("; charset=utf-8" if fmt in ("json", "csv", "ndjson") else "")
        return cls(chunks, h.hexdigest(), media)
