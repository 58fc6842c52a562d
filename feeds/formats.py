"""Encoding feed pages from Arrow: JSON envelope, NDJSON, CSV and Parquet; negotiation and ETags.

Why chunks: the API must compute the response digest and write the audit row *before* it
sends a byte (an unaudited response must never leave), so a page is encoded here into a list
of byte chunks, hashed, audited, then streamed chunk by chunk. A page is bounded by ``limit``
(at most ``max_limit`` rows), so the chunks are bounded too; encoding twice to avoid keeping
them would double the dominant cost of a page (encoding is about half of it).

Value rules (one place for every text format, :func:`_json_value`): decimals as exact strings,
dates ISO 8601, timestamps RFC 3339 in UTC with microseconds and ``Z``, nulls as JSON null /
empty CSV field, non-finite floats as null, lists as JSON arrays and structs as JSON objects
(element by element under the same rules). Parquet keeps the Arrow types as they are. The
text forms and the JSON records are written by an in-memory DuckDB in one call per page
(:mod:`feeds.arrowsql`), which releases the GIL: the API serves many pages at once from threads
of one process, and a page encoded in Python objects held every other request up for its whole
length.

CSV is for people, so it has two rules of its own, in :func:`csv_cells`, which every CSV the hub
writes goes through (feed pages, ``iehub export``, and ``iehub sql --format csv`` through
:func:`neutralise_formulas`): a struct column becomes one column per member (``key.trainee_id``),
and a list is one cell holding its JSON array (Frictionless' ``array`` type), so a cell never
needs a second convention; and a text value beginning with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is prefixed with ``'`` (OWASP, CSV injection), so a spreadsheet shows it instead
of running it. Only text columns are escaped: a number, a decimal (``-3.50``), a date or a time is
written as its value and stays a number for the spreadsheet, and its text form cannot begin a
formula. JSON, NDJSON and Parquet keep every value exactly.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from feeds.arrowsql import select_from
from feeds.datasets import FORMATS
from warehouse.versions import ident

try:  # orjson is several times faster on record lists; json is the exact fallback
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - orjson is a declared dependency
    orjson = None

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


__all__ = [
    "CHUNK_ROWS", "FORMULA_STARTS", "FormatError", "NotAcceptable", "csv_cells", "encode", "etag", "etag_matches",
    "negotiate", "neutralise_formulas", "published",
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


def _json_value(sql: str, t: pa.DataType, *, as_text: bool = False, depth: int = 0) -> str:
    """SQL turning one value of Arrow type ``t`` into what the text formats publish (see the module doc).

    ``as_text``: a list or struct becomes the text of its JSON (one CSV cell) instead of a JSON
    array or object. Types outside this list raise TypeError naming the type: a new column type
    must be given a published form here (``test_every_entity_field_type_has_a_published_form``
    and the every-dataset-in-every-format test keep entities and the warehouse's extra columns honest).
    """
    if pa.types.is_timestamp(t):
        # An instant is written in UTC whatever the session's zone; a naive timestamp is taken as UTC.
        instant = f"({sql} AT TIME ZONE 'UTC')" if t.tz is not None else sql
        return f"strftime({instant}, '%Y-%m-%dT%H:%M:%S.%fZ')"
    if pa.types.is_decimal(t) or pa.types.is_date(t):
        return f"CAST({sql} AS VARCHAR)"
    if pa.types.is_floating(t):  # JSON has no NaN or Infinity: they go out as null
        return f"CASE WHEN isfinite({sql}) THEN {sql} END"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        element = f"x{depth}"  # lambda parameters never clash with columns, which are always t."name"
        each = f"list_transform({sql}, lambda {element}: {_json_value(element, t.value_type, depth=depth + 1)})"
        return f"CASE WHEN {sql} IS NOT NULL THEN CAST(to_json({each}) AS VARCHAR) END" if as_text else each
    if pa.types.is_struct(t):
        members = ", ".join(f"{ident(f.name)} := {_json_value(f'{sql}.{ident(f.name)}', f.type, depth=depth)}"
                            for f in t)
        packed = f"CAST(to_json(struct_pack({members})) AS VARCHAR)" if as_text else f"struct_pack({members})"
        return f"CASE WHEN {sql} IS NOT NULL THEN {packed} END"
    if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_integer(t)
            or pa.types.is_boolean(t) or pa.types.is_null(t)):
        return sql
    raise TypeError(f"no published JSON form for Arrow type {t}; add one in feeds.formats._json_value")


def _members(schema: pa.Schema, *, as_text: bool = False) -> list[str]:
    """``name := <published form>`` for each column, for DuckDB's struct_pack."""
    return [f"{ident(f.name)} := {_json_value('t.' + ident(f.name), f.type, as_text=as_text)}" for f in schema]


def published(table: pa.Table, *, as_text: bool = False) -> pa.Table:
    """The table with decimals, dates and timestamps as the text every text format publishes.

    ``as_text`` (CSV): lists and structs as the text of their JSON too.
    """
    if table.num_columns == 0:
        return table
    return select_from(table, f"UNNEST(struct_pack({', '.join(_members(table.schema, as_text=as_text))}))")


#: What a CSV cell may not begin with, or a spreadsheet takes it for a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA = "^[=+@\t\r-]"


def _neutralised(values: pa.ChunkedArray) -> pa.ChunkedArray:
    t = values.type
    if pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
        values, t = values.cast(t.value_type), t.value_type
    if pa.types.is_string_view(t):
        values, t = values.cast(pa.string()), pa.string()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        formula = pc.match_substring_regex(values, _FORMULA)
        quoted = pc.binary_join_element_wise(pa.scalar("'", t), values, pa.scalar("", t))
        return pc.if_else(formula, quoted, values)
    if pa.types.is_struct(t):
        chunks = []
        for chunk in values.chunks:
            members = [_neutralised(pa.chunked_array([chunk.field(i)], t.field(i).type)).combine_chunks()
                       for i in range(t.num_fields)]
            fields = [t.field(i).with_type(m.type) for i, m in enumerate(members)]
            chunks.append(pa.StructArray.from_arrays(members, fields=fields,
                                                     mask=chunk.is_null() if chunk.null_count else None))
        return pa.chunked_array(chunks, pa.struct(fields)) if chunks else values
    return values  # numbers, decimals, dates, times, booleans: their text cannot start a formula


def neutralise_formulas(table: pa.Table) -> pa.Table:
    """``table`` with every text value that begins with one of :data:`FORMULA_STARTS` prefixed with ``'``.

    The one rule for every CSV the hub writes for people (see the module doc); struct members
    are text columns too. Lists are left alone: their CSV cell is a JSON array, which starts with ``[``.
    """
    columns = [_neutralised(column) for column in table.columns]
    fields = [f.with_type(c.type) for f, c in zip(table.schema, columns)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=table.schema.metadata))


def csv_cells(table: pa.Table) -> pa.Table:
    """The CSV form of ``table``: structs flattened into columns, formulas neutralised, every value as its text."""
    return published(neutralise_formulas(table.flatten()), as_text=True)


def _record_chunks(table: pa.Table, terminator: bytes) -> list[bytes]:
    """The records as JSON texts, each followed by ``terminator``, in chunks of CHUNK_ROWS rows.

    Why DuckDB: ``to_pylist`` + orjson held the GIL for the whole page (~60 % of a loaded
    server's GIL time, so concurrent requests queued behind each other's encoding); DuckDB's
    ``to_json`` writes the same records in one call that releases the GIL, and the texts come
    back as one Arrow buffer that is sliced into chunks without a Python object per record.
    """
    if table.num_rows == 0:
        return []
    texts = select_from(table, f"to_json(struct_pack({', '.join(_members(table.schema))})) || ?",
                        [terminator.decode()]).column(0).combine_chunks()
    if texts.type != pa.string():
        texts = texts.cast(pa.string())
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset:texts.offset + len(texts) + 1]
    data = texts.buffers()[2]
    bounds = [int(offsets[i]) for i in range(0, len(texts), CHUNK_ROWS)] + [int(offsets[-1])]
    return [data.slice(a, b - a).to_pybytes() for a, b in zip(bounds, bounds[1:])]


def _json(table: pa.Table, envelope: dict[str, Any]) -> list[bytes]:
    head = _dumps({**envelope, "records": []})
    if not head.endswith(b"[]}"):  # the envelope is ours; records is always last and empty here
        raise AssertionError("envelope must end with an empty records list")
    body = _record_chunks(table, b",")
    if body:
        body[-1] = body[-1][:-1]  # the last record's comma
    return [head[:-2], *body, b"]}"]


def _ndjson(table: pa.Table) -> list[bytes]:
    return _record_chunks(table, b"\n")


def _csv(table: pa.Table) -> list[bytes]:
    flat = csv_cells(table)  # see the module doc: structs flattened, lists as JSON, formulas neutralised
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
