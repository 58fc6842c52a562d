"""A REST stream: one (source, entity) endpoint read page by page into raw Arrow rows.

The records of a batch of pages become Arrow in one DuckDB query over the page bodies
(`rawpages.RawConverter`). Python parses each body once, with orjson, for what the paginator
must decide and for key and cursor; no record is re-serialised or hashed in Python. Why the
page chain does not run on a thread of its own, ahead of the conversion: measured over a million
records it was slower (13.4/10.4 s against 9.8/9.3 s, and more CPU): the chain's thread and the
caller's Python fight for the GIL, and every wait adds to a chain that cannot be split anyway
(each request needs the last answer: re-anchored pages, cursors).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa

from connectors.base import RECORD, RawPage, SourceStream, register_kind
from connectors.errors import FatalError
from connectors.records import extract_columns, to_json_lines
from connectors.rest.client import RestClient, dig
from connectors.rest.paginators import CursorPaginator, PageNumberPaginator
from connectors.rest.rawpages import BATCH_ROWS, RAW_SCHEMA, PageRecords, RawConverter
from connectors.spec import CursorPaging, RestSourceSpec
from schemas import duckdb_compute

log = logging.getLogger(__name__)

@dataclass
class ExtractedPage:
    number: int
    label: str
    records: list[dict[str, Any]]    # the new records (exploded rows for an `explode` stream)
    body: bytes | None = None        # the answer's body (UTF-8), when `records` are a subset of its list
    keep: list[int] | None = None    # positions in the body's list of `records`; None: all of them
    total: int = 0                   # records in the body's list

    def to_convert(self, key_field: str, cursor_field: str | None) -> PageRecords:
        """What the converter needs: the body (or JSON texts) plus each record's key and cursor."""
        # keys as `str` of the parsed value (as the paginator compares them); cursors only when text
        keys = [None if (k := r.get(key_field)) is None else str(k) for r in self.records]
        cursors = [c if isinstance(c := r.get(cursor_field), str) else None for r in self.records] \
            if cursor_field else [None] * len(self.records)
        if self.body is None:
            return PageRecords(self.number, len(self.records), keys, cursors, texts=to_json_lines(self.records))
        return PageRecords(self.number, self.total, keys, cursors, body=self.body, keep=self.keep)


class RestStream:
    """Reads one stream of a REST source; the caller lands what it yields."""

    def __init__(self, spec: RestSourceSpec, name: str, client: RestClient) -> None:
        if name not in spec.streams:
            raise FatalError(f"source {spec.name} has no stream '{name}' (streams: {', '.join(spec.streams)})")
        self.spec, self.name, self.client = spec, name, client
        self.stream = spec.streams[name]
        self.paginator: PageNumberPaginator | CursorPaginator | None = None
        self.first_total: int | None = None  # what the source said the pass holds, for progress

    @property
    def cursor_field(self) -> str | None:
        return self.spec.incremental.cursor_field if self.spec.incremental else None

    def pages(self, start_anchor: str | None) -> Iterator[ExtractedPage]:
        """Pages from `start_anchor` (an updatedSince value; None reads everything)."""
        paging = self.spec.paging
        inc = self.spec.incremental
        if isinstance(paging, CursorPaging):
            self.paginator = CursorPaginator(paging.cursor_param, paging.size_param, paging.page_size)
        else:
            self.paginator = PageNumberPaginator(
                paging.page_param, paging.size_param, paging.page_size, paging.first_page,
                anchor_param=inc.param if inc else None, anchor_field=inc.cursor_field if inc else None,
                key_field=self.stream.primary_key, start_anchor=start_anchor)
        number = 0
        anchor = {inc.param: start_anchor} if (isinstance(paging, CursorPaging) and inc and start_anchor) else {}
        while not self.paginator.done:
            request = self.paginator.next_request()
            params = {**self.stream.params, **anchor, **request.params}
            answer = self.client.fetch(self.stream.path, params, stream=self.name, page=request.label)
            payload = answer.payload
            records = dig(payload, self.spec.envelope.records_path)
            if records is None:
                records = []
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise FatalError(f"'{self.spec.envelope.records_path}' is not a list of objects",
                                 source=self.spec.name, stream=self.name, endpoint=self.stream.path, page=request.label)
            number += 1
            if isinstance(self.paginator, CursorPaginator):
                fresh = self.paginator.accept(records, dig(payload, paging.next_cursor_path))  # type: ignore[union-attr]
            else:
                total = dig(payload, self.spec.envelope.total_path)
                if self.first_total is None and total is not None:
                    self.first_total = int(total)
                try:
                    fresh = self.paginator.accept(records, int(total) if total is not None else None)
                except FatalError as exc:
                    raise FatalError(str(exc), source=self.spec.name, stream=self.name, endpoint=self.stream.path,
                                     page=request.label) from None
            if fresh and self.stream.explode is not None:
                fresh = explode(fresh, self.stream.explode.path, self.stream.explode.parent_as, self.cursor_field)
                if fresh:
                    yield ExtractedPage(number, request.label, fresh)
            elif fresh:
                yield ExtractedPage(number, request.label, fresh, answer.body, kept_positions(records, fresh),
                                    len(records))


def kept_positions(records: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> list[int] | None:
    """Where the paginator's `fresh` (an ordered subset of `records`) sits in `records`; None: all.

    A re-anchored page usually repeats its first rows, so `fresh` is most often a tail: an
    ordered subset as long as the tail that starts with the tail's first record is that tail.
    """
    if len(fresh) == len(records):
        return None
    start = len(records) - len(fresh)
    if fresh and fresh[0] is records[start]:
        return list(range(start, len(records)))
    kept = {id(r) for r in fresh}
    return [i for i, r in enumerate(records) if id(r) in kept]


def explode(records: list[dict[str, Any]], path: str, parent_as: str,
            cursor_field: str | None) -> list[dict[str, Any]]:
    """Rows of the nested list at `path`, each with its enclosing record under `parent_as`.

    The parent's incremental cursor is copied onto a child that has none, so children move the
    stream's cursor with their parent.
    """
    head, _, last = path.rpartition(".")
    out: list[dict[str, Any]] = []
    for record in records:
        holder = dig(record, head) if head else record
        children = holder.get(last) if isinstance(holder, dict) else None
        if not isinstance(children, list):
            continue
        parent = {k: v for k, v in record.items() if k != path}
        for child in children:
            if not isinstance(child, dict):
                continue
            row = {**child, parent_as: parent}
            if cursor_field and cursor_field not in row and cursor_field in record:
                row[cursor_field] = record[cursor_field]
            out.append(row)
    return out


class RestSourceStream(SourceStream):
    """The REST kind as the pipeline sees it: raw rows are each record's JSON as received."""

    raw_schema = RAW_SCHEMA

    def __init__(self, spec: RestSourceSpec, name: str) -> None:
        self.client = RestClient(spec)
        self.reader = RestStream(spec, name, self.client)
        self.source, self.name, self.entity = spec.name, name, spec.streams[name].entity
        inc = spec.incremental
        self.cursor_format = inc.format if inc else None
        self.overlap_seconds = inc.overlap_seconds if inc else 0
        self.key_field = spec.streams[name].primary_key

    @property
    def expected_total(self) -> int | None:  # type: ignore[override]
        return self.reader.first_total

    def read(self, cursor: str | None) -> Iterator[RawPage]:
        """Raw pages in page order, converted `BATCH_ROWS` records at a time."""
        converter = RawConverter(self.reader.spec.envelope.records_path)
        cursor_field = self.reader.cursor_field
        pages = self.reader.pages(self.start_anchor(cursor))
        batch: list[PageRecords] = []
        rows = 0
        try:
            for page in pages:
                batch.append(page.to_convert(self.key_field, cursor_field))
                rows += batch[-1].count
                if rows >= BATCH_ROWS:
                    yield from self._raw_pages(converter, batch)
                    batch, rows = [], 0
            yield from self._raw_pages(converter, batch)
        finally:
            pages.close()
            converter.close()

    @staticmethod
    def _raw_pages(converter: RawConverter, batch: list[PageRecords]) -> Iterator[RawPage]:
        for number, table in converter.convert(batch):
            yield RawPage(number, table)

    @classmethod
    def source_columns(cls, raw: pa.Table, names: list[str]) -> pa.Table:
        return extract_columns(raw.column(RECORD), names)

    @classmethod
    def raw_fields(cls, raw_path: str, sample_rows: int = 2000) -> set[str] | None:
        """Top-level keys seen in a sample of the staged records (drift is systematic, so a
        sample finds it; reading every record's keys would cost as much as the mapping)."""
        with duckdb_compute.cursor() as con:
            rows = con.sql(f"SELECT DISTINCT unnest(json_keys(_record)) FROM (SELECT _record FROM read_parquet(?) "
                           f"USING SAMPLE {int(sample_rows)} ROWS)", params=[raw_path]).fetchall()
        return {r[0] for r in rows}

    def stats(self) -> dict[str, Any]:
        st = self.client.stats
        return {"requests": st.requests, "retries": st.retries, "token_refreshes": st.token_refreshes,
                "retry_reasons": st.reasons}

    def close(self) -> None:
        self.client.close()


register_kind("rest", RestSourceStream)
