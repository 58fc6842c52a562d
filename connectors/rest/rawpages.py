"""REST pages → raw Arrow rows (`_key`, `_cursor`, `_digest`, `_record`) in bulk.

A batch of page bodies goes through one DuckDB query that unnests the records list of each
envelope, writes each record out as compact JSON text (the raw lake's lossless form) and takes
a 16-hex MD5 digest of that text, on DuckDB's threads.
Key and cursor come from the records the paginator already parsed (a dict lookup each, cheaper
than DuckDB parsing every record again). Guarantees: rows come out in page and record order
(DuckDB preserves insertion order); for the JSON the platforms send, the text equals what
`orjson.dumps` wrote before (same key order, no spaces), so digests remembered from earlier
passes still match. Why not `orjson.dumps` + `hashlib` per record: ~3 µs of Python a record
against ~2 µs of DuckDB; and one query per page costs ~3 ms of setup, which is why pages are
batched (`BATCH_ROWS`).

Records that are not a slice of a body (streams that `explode` a nested list) come as JSON
texts made in Python (`records.to_json_lines`) and take the same digest, so the rules live in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import duckdb
import pyarrow as pa

from connectors.base import BOOKKEEPING, RECORD

RAW_SCHEMA = pa.schema([*BOOKKEEPING, (RECORD, pa.string())])
BATCH_ROWS = 20_000  # records converted per query: the ~3 ms a query costs vanishes at this size


@dataclass
class PageRecords:
    """One page's records to convert: its body (records at `records_path`) or ready JSON texts.

    `keep` lists the positions (in the body's records list) to keep, in order; None keeps all.
    """

    number: int
    total: int                       # records in the body's list (or texts)
    keys: list[str | None]           # of the kept records, in order
    cursors: list[str | None]
    body: bytes | None = None
    keep: list[int] | None = None
    texts: list[str] | None = None   # when there is no body to unnest

    @property
    def count(self) -> int:
        """Rows this page contributes."""
        return self.total if self.keep is None else len(self.keep)


def records_path(dotted: str) -> str:
    """The JSON path to every record at an envelope's dotted records path (`data.list` →
    `$."data"."list"[*]`)."""
    return "$" + "".join('."' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in dotted.split(".")) + "[*]"


class RawConverter:
    """Turns batches of pages into raw tables; one DuckDB connection per stream pass."""

    def __init__(self, records_at: str) -> None:
        self.records_at = records_path(records_at)
        self._con: duckdb.DuckDBPyConnection | None = None

    def convert(self, pages: Sequence[PageRecords]) -> list[tuple[int, pa.Table]]:
        """(page number, raw table) per page with rows, in the order given."""
        pages = [p for p in pages if p.count]
        if not pages:
            return []
        with_body = [p for p in pages if p.body is not None]
        parts: dict[int, pa.Table] = {}
        if with_body:
            # a view, not a cast: the client parsed every body, so it is valid UTF-8 (a cast checks again)
            bodies = pa.array([p.body for p in with_body], pa.binary()).view(pa.string())
            table = self._query("SELECT unnest(json_extract(b, ?))::VARCHAR AS j FROM src",
                                pa.table({"b": bodies}), [self.records_at])
            parts.update(self._split(with_body, table, unnested=True))
        texts = [p for p in pages if p.body is None]
        if texts:
            table = self._query("SELECT j FROM src", pa.table({"j": pa.array(
                [t for p in texts for t in (p.texts or [])], pa.string())}), [])
            parts.update(self._split(texts, table, unnested=False))
        return [(p.number, parts[id(p)]) for p in pages]

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- internals --------------------------------------------------------------------------
    def _query(self, records_sql: str, src: pa.Table, params: list[Any]) -> pa.Table:
        """`records_sql` yields one JSON text `j` per record from `src`; add its digest."""
        if self._con is None:
            self._con = duckdb.connect()
        con = self._con
        con.register("src", src)
        try:
            return con.sql(f"WITH rec AS ({records_sql}) SELECT left(md5(j), 16) AS d, j FROM rec",
                           params=params).to_arrow_table()
        finally:
            con.unregister("src")

    @staticmethod
    def _split(pages: Sequence[PageRecords], table: pa.Table, *, unnested: bool) -> dict[int, pa.Table]:
        """Cut the batch's rows back into pages (applying `keep` on unnested bodies)."""
        digests, texts = table.column(0).combine_chunks(), table.column(1).combine_chunks()
        sizes = [p.total if unnested else p.count for p in pages]
        if sum(sizes) != len(texts):
            raise RuntimeError(f"raw conversion: {len(texts)} records unnested, {sum(sizes)} expected "
                               "(a body's records list does not match what was parsed from it)")
        keys = pa.array([k for p in pages for k in p.keys], pa.string())  # one conversion per batch
        cursors = pa.array([c for p in pages for c in p.cursors], pa.string())
        out: dict[int, pa.Table] = {}
        offset = kept = 0
        for p, size in zip(pages, sizes):
            d, j = digests.slice(offset, size), texts.slice(offset, size)
            if unnested and p.keep is not None:
                if p.keep and p.keep[-1] - p.keep[0] + 1 == len(p.keep):  # a run (a re-anchored page's tail)
                    d, j = d.slice(p.keep[0], len(p.keep)), j.slice(p.keep[0], len(p.keep))
                else:
                    rows = pa.array(p.keep, pa.int64())
                    d, j = d.take(rows), j.take(rows)
            out[id(p)] = pa.table([keys.slice(kept, p.count), cursors.slice(kept, p.count), d, j], schema=RAW_SCHEMA)
            offset += size
            kept += p.count
        return out
