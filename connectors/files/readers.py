"""Reading one dropped file into text columns: CSV through pyarrow.csv, Excel through calamine.

Every value comes out as text (raw is "as received"): identifiers keep their leading zeros and
trailing X, amounts keep their decimals, and typing is the mapping's job. What is not data is
located by the spec's rules (title rows above the header, merged header cells, notes, totals)
and counted; what cannot be read at all raises `Unreadable` (the file goes to quarantine whole)
or `Incomplete` (the file is still being written: wait for the next pass).

A CSV's every physical line is accounted for: read as a row (whose `_file_row` is its line
number), skipped by a named rule (title rows, blank lines, note lines, repeated headers, the
spec's skip rules), or reported as a bad line with its number. When the lines Arrow returned do
not add up to the lines in the file, a quote has swallowed some, and the file is refused whole
naming the line where that quote opened, rather than losing the rows after it. Caps on bytes,
rows and cells (`limits:`) are checked before a file is expanded: a CSV's lines are counted
(a byte scan) and a workbook's declared sheet size and uncompressed parts are read from its zip
directory before any cell is. A large CSV is decoded and parsed in byte ranges, one per core
(connectors/files/chunks.py), with the same outcome and line numbers as one sequential parse;
the few non-data rows are then dropped by zero-copy slices (`drop_rows`), not a copying filter.
A large worksheet is likewise read in row parts, one per core (connectors/files/sheet_parts.py),
with the rows and row numbers of reading it whole.
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from connectors.files.chunks import (
    DecodeFailed,
    RangeTask,
    not_text_reasons,
    parse_ranges,
    plan_ranges,
    range_count,
)
from connectors.files.sheet_parts import PartRows, SheetParts, gc_paused
from connectors.files.spec import FileLimits, FileStreamSpec, HeaderRule

FILE_ROW = "_file_row"       # 1-based row (Excel) or physical line (CSV) number in the file
ROW_ERROR = "_read_error"    # why a row could not be read; the mapping rejects such rows with it
HEAD_BYTES = 256 << 10
_UTF8 = {"utf-8", "utf8", "utf-8-sig", "utf_8", "utf_8_sig"}


class Unreadable(Exception):
    """The file cannot be read with the spec's rules; the reason names no personal data."""


class Incomplete(Exception):
    """The file looks half-written (truncated archive, cut-off last line)."""


SNIFF_BYTES = 4096


def sniff(head: bytes, size: int, file_format: str) -> str | None:
    """What a complete file looks like when it cannot be the spec's format, from its first bytes
    (None: it may be). Named at once, so such a file is quarantined, not waited for an hour."""
    if size == 0:
        return "empty file"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip archive, not a plain file; ask the district to drop it uncompressed"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text (it starts with a UTF-16 byte-order mark); ask for UTF-8 or GBK, or add utf-16 to `encodings`"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "an old Excel (.xls) or other OLE document; ask for .xlsx or CSV"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if file_format == "csv":
        if head.startswith(b"PK\x03\x04"):
            what = "an Excel workbook (xlsx)" if b"xl/" in head or b"[Content_Types].xml" in head else "a zip archive"
            return f"{what} named as a CSV; drop it under the Excel stream's pattern or export it as CSV"
        sample = head[:SNIFF_BYTES]
        if sample.count(0):
            even, odd = sample[0::2].count(0), sample[1::2].count(0)
            if max(even, odd) > len(sample) // 4 and min(even, odd) < len(sample) // 50 + 1:
                return "UTF-16 text without a byte-order mark (every other byte is zero); ask for UTF-8 or GBK"
            return "binary data (it holds zero bytes), not CSV text"
        return None
    if not head.startswith(b"PK\x03\x04") and len(head) >= 4:
        return "not a workbook (an .xlsx file is a zip archive starting with PK)" + (
            "; it looks like text (a CSV named .xlsx?)" if not head[:SNIFF_BYTES].count(0) else "")
    return None


@dataclass
class ParsedFile:
    table: pa.Table                     # text columns named by the header, then FILE_ROW and ROW_ERROR
    encoding: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)   # rule → rows skipped as not data
    bad_lines: list[tuple[int | None, str]] = field(default_factory=list)  # (line, why) unparseable rows
    lines: int | None = None            # physical lines in the file (CSV), every one accounted for


def unique_names(names: list[str]) -> list[str]:
    """Header texts as column names: blanks become column_N, repeats get #2, #3."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(names):
        name = (raw or "").strip() or f"column_{i + 1}"
        if name in seen:
            seen[name] += 1
            name = f"{name}#{seen[name]}"
        else:
            seen[name] = 1
        out.append(name)
    return out


def _find_header(rows: list[list[str]], rule: HeaderRule) -> int:
    """0-based index of the first header row by the spec's rule."""
    if rule.find is None:
        return rule.row - 1
    target = rule.find.strip()
    for i, row in enumerate(rows[: rule.search_rows]):
        if any(isinstance(c, str) and c.strip() == target for c in row):
            return i
    for i, row in enumerate(rows[: rule.search_rows]):
        if any(isinstance(c, str) and target in c for c in row):
            return i
    raise Unreadable(f"no header row holding '{target}' in the first {rule.search_rows} rows; "
                     "check the file or `header.find` in the spec")


def _compose_header(grid: list[list[str]], joiner: str) -> list[str]:
    """Header rows (already filled across merged cells) → one name per column, top to bottom."""
    width = max((len(r) for r in grid), default=0)
    names = []
    for c in range(width):
        parts: list[str] = []
        for row in grid:
            text = str(row[c]).strip() if c < len(row) and row[c] not in (None, "") else ""
            if text and text not in parts:
                parts.append(text)
        names.append(joiner.join(parts))
    return names


def apply_skip_rules(table: pa.Table, spec: FileStreamSpec, skipped: dict[str, int]) -> pa.Table:
    """Drop rows the spec says are not data (totals, notes), counting each rule's rows."""
    for rule in spec.skip:
        if rule.column not in table.column_names:
            continue
        hit = pc.fill_null(pc.match_substring_regex(table[rule.column], rule.matches), False)
        n = pc.sum(hit.cast(pa.int64())).as_py() or 0
        if n:
            skipped[f"{rule.column}~{rule.matches}"] = skipped.get(f"{rule.column}~{rule.matches}", 0) + n
            table = drop_rows(table, hit)
    return table


DROP_BY_SLICES = 256  # up to this many dropped runs, rows are dropped by zero-copy slices


def drop_rows(table: pa.Table, drop: pa.Array | pa.ChunkedArray) -> pa.Table:
    """`table` without the rows where `drop` is true (null keeps the row).

    A file's few non-data rows (a 合计 row, a thousand blank lines) are dropped by slicing around
    them, which copies nothing: `filter` copies every string of every column, ~1 s per million
    rows of a district file, to drop a handful. Many scattered rows still go through `filter`.
    """
    mask = pc.fill_null(drop, False)
    mask = mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask
    hits = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    if not len(hits):
        return table
    runs = np.flatnonzero(np.diff(hits) != 1) + 1   # where a new run of dropped rows begins
    if len(runs) + 1 > DROP_BY_SLICES:
        return table.filter(pc.invert(mask))
    firsts = np.concatenate([hits[:1], hits[runs]])
    lasts = np.concatenate([hits[runs - 1], hits[-1:]]) + 1
    pieces, at = [], 0
    for first, last in zip(firsts.tolist(), lasts.tolist()):
        if first > at:
            pieces.append(table.slice(at, first - at))
        at = last
    if at < table.num_rows:
        pieces.append(table.slice(at))
    return pa.concat_tables(pieces) if pieces else table.slice(0, 0)


def row_numbers(first: int, n: int) -> pa.Array:
    """first, first + 1, … as int64, built in numpy (a Python range costs ~50 ms per million)."""
    return pa.array(np.arange(first, first + n, dtype=np.int64))


def _blank_rows(table: pa.Table, names: list[str]) -> pa.Array | None:
    """Rows whose every cell is null (a line of delimiters only); None when there are none."""
    if not table.num_rows or not names:
        return None
    empty = pc.is_null(table[names[0]])
    for n in names[1:]:
        empty = pc.and_(empty, pc.is_null(table[n]))
    return empty if pc.any(empty).as_py() else None


def _flag_text_columns(table: pa.Table, spec: FileStreamSpec, numeric: dict[str, pa.Array]) -> pa.Array:
    """Per row, why a must-be-text column is not text (a number, or a number's text form)."""
    return not_text_reasons(table, [n for n in spec.text_columns if n in table.column_names], numeric)


# ---------------------------------------------------------------------------------------- CSV
def _decodes(head: bytes, encoding: str) -> bool:
    try:
        codecs.getincrementaldecoder(encoding)().decode(head, final=False)
        return True
    except UnicodeDecodeError:
        return False


def read_csv(path: Path, spec: FileStreamSpec) -> ParsedFile:
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    tried = []
    for encoding in spec.encodings:
        if not _decodes(head, encoding):
            tried.append(f"{encoding} (fails in the first {len(head)} bytes)")
            continue
        try:
            return _read_csv_as(path, head, encoding, spec)
        except DecodeFailed as exc:
            tried.append(f"{encoding} (fails at byte {exc.at})")
        except UnicodeDecodeError as exc:
            tried.append(f"{encoding} (fails at byte {exc.start})")
        except pa.ArrowInvalid as exc:
            if "UTF8" not in str(exc) and "utf8" not in str(exc).lower():
                raise Unreadable(f"not a valid CSV: {str(exc)[:200]}") from None
            tried.append(f"{encoding} (invalid bytes)")
    raise Unreadable(f"cannot be decoded as {' or '.join(spec.encodings)}: {'; '.join(tried)}; "
                     "ask the district to re-export it, or add its encoding to `encodings` in the spec")


def _quote_opened_at(path: Path, offset: int, first_line: int) -> int | None:
    """The line where a quote that never closes on its own line opens (odd count of '"');
    read only when lines went missing. A '"' byte is never inside a GBK or UTF-8 character."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        for i, line in enumerate(fh):
            if line.count(b'"') % 2:
                return first_line + i
    return None


def _check_caps(lines: int, width: int, limits: FileLimits, what: str, *, workbook: bool = False) -> None:
    if lines > limits.max_rows:
        raise Unreadable(f"{what} has {lines} rows, more than limits.max_rows = {limits.max_rows}; "
                         "refused before reading: split the file or raise the limit in the spec")
    cap, name = (limits.max_workbook_cells, "max_workbook_cells") if workbook else (limits.max_cells, "max_cells")
    if lines * max(width, 1) > cap:
        raise Unreadable(f"{what} has {lines} rows × {width} columns, more than limits.{name} = "
                         f"{cap}; refused before reading: split the file or raise the limit in the spec")


def _read_csv_as(path: Path, head: bytes, encoding: str, spec: FileStreamSpec) -> ParsedFile:
    utf8 = encoding.lower().replace("_", "-") in _UTF8
    bom = 3 if head.startswith(codecs.BOM_UTF8) else 0
    lines = head[bom:].split(b"\n")
    decoded = [codecs.decode(line, encoding, errors="replace").rstrip("\r") for line in lines[:-1]]
    rows = [next(csv.reader([text], delimiter=spec.delimiter), []) if text.strip() else [] for text in decoded]
    start = _find_header(rows, spec.header)
    if start + spec.header.rows > len(rows):
        raise Incomplete("the header is not complete yet")
    header_rows = [r for r in rows[start:start + spec.header.rows]]
    names = unique_names(_compose_header(header_rows, spec.header.joiner))
    offset = bom + sum(len(line) + 1 for line in lines[:start + spec.header.rows])
    first_data_line = start + spec.header.rows  # data line k (1-based) is physical line first_data_line + k
    # the delimiter's byte, unless (as 0x40 and above may be) it can be part of a GBK character
    sep = spec.delimiter.encode("ascii") if spec.delimiter.isascii() and (utf8 or ord(spec.delimiter) < 0x40) else None
    ranges = plan_ranges(path, offset, range_count(path.stat().st_size - offset), sep)
    data_lines = sum(r.lines for r in ranges)
    _check_caps(data_lines, len(names), spec.limits, "the file")
    tasks = [RangeTask(str(path), r, None if utf8 else encoding, names, spec.delimiter, spec.note_lines,
                       tuple(spec.text_columns)) for r in ranges]
    parts = parse_ranges(tasks)
    read_rows = sum(p.table.num_rows + len(p.bad) + p.notes + p.other + p.empty for p in parts)
    if any(p.swallowed for p in parts) or read_rows != data_lines:
        opened = _quote_opened_at(path, offset, first_data_line + 1)
        where = f"line {opened}" if opened else "a line the hub could not find"
        raise Unreadable(f"a quote (\") opened at {where} is not closed on that line, so the lines after it were "
                         f"read as one cell ({read_rows} rows for {data_lines} lines); "
                         "the file is refused whole: fix or remove the stray quote and drop the file again")
    table = pa.concat_tables([p.table for p in parts if p.table.num_rows] or [parts[0].table])
    line_numbers = pa.chunked_array([pa.array(p.rows_at + first_data_line) for p in parts], pa.int64())
    bad = [(line + first_data_line if line else None, why) for p in parts for line, why in p.bad]
    notes = sum(p.notes for p in parts)
    skipped = {"title rows": start} if start else {}
    if notes:
        skipped["note lines"] = notes
    blank = sum(p.empty + p.other for p in parts)  # lines of nothing
    table = table.append_column(FILE_ROW, line_numbers)
    # each part's flags as chunks (a ChunkedArray handed to pa.chunked_array would be converted
    # value by value in Python: 0.2 s per million rows)
    flags = [c for p in parts for c in (p.not_text.chunks if isinstance(p.not_text, pa.ChunkedArray)
                                        else [p.not_text])]
    table = table.append_column(ROW_ERROR, pa.chunked_array(flags, pa.string()))
    # a row made only of blanks and delimiters is an empty line
    empty = _blank_rows(table, names)
    if empty is not None:
        blank += pc.sum(empty.cast(pa.int64())).as_py()
        table = drop_rows(table, empty)
    if blank:
        skipped["blank lines"] = blank
    if spec.header.rows == 1 and table.num_rows:  # the header again (files concatenated by hand)
        again = None
        for name, text in zip(names, header_rows[0]):
            same = pc.fill_null(pc.equal(table[name], (text or "").strip() or None), text in (None, ""))
            again = same if again is None else pc.and_(again, same)
        n_again = pc.sum(again.cast(pa.int64())).as_py() or 0 if again is not None else 0
        if n_again:
            skipped["repeated header"] = n_again
            table = drop_rows(table, again)
    table = apply_skip_rules(table, spec, skipped)
    return ParsedFile(table, encoding, skipped, bad, lines=first_data_line + data_lines)


# -------------------------------------------------------------------------------------- Excel
def _cell_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _per_distinct_text(arr: pa.Array) -> pa.Array:
    """`_cell_text` once per distinct value of a typed column (the rare values no cast covers)."""
    encoded = pc.dictionary_encode(arr)
    texts = pa.array([_cell_text(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.take(texts, encoded.indices)


_REPR_LIKE_CAST = (1e-4, 1e10)  # |x| where Arrow's float → text cast writes what repr() writes


def _typed_text(arr: pa.Array) -> pa.Array:
    """A column of one Python type (see `_TYPED`) as `_cell_text` writes it, by casts; values
    no cast writes the same way go through `_cell_text` once per distinct value."""
    t = arr.type
    if pa.types.is_floating(t):
        # whole numbers below 1e15 print as integers; others as repr(), which the cast matches
        # for amounts of ordinary size (checked value by value in the tests)
        magnitude = pc.abs(arr)
        whole = pc.fill_null(pc.and_(pc.equal(pc.floor(arr), arr), pc.less(magnitude, 1e15)), False)
        plain = pc.fill_null(pc.and_(pc.greater_equal(magnitude, _REPR_LIKE_CAST[0]),
                                     pc.less(magnitude, _REPR_LIKE_CAST[1])), False)
        texts = pc.if_else(whole, pc.if_else(whole, arr, pa.scalar(None, t)).cast(pa.int64()).cast(pa.string()),
                           arr.cast(pa.string()))
        odd = pc.and_(pc.is_valid(arr), pc.invert(pc.or_(whole, plain)))
        return pc.if_else(odd, _per_distinct_text(arr), texts) if pc.any(odd).as_py() else texts
    if pa.types.is_timestamp(t):
        day = arr.cast(pa.date32())
        dates = day.cast(pa.string())
        odd = pc.fill_null(pc.not_equal(day.cast(t), arr), False)  # a time of day: isoformat
        return pc.if_else(odd, _per_distinct_text(arr), dates) if pc.any(odd).as_py() else dates
    return arr.cast(pa.string())  # booleans (true/false), integers, dates (ISO): as _cell_text


# Python types of calamine cells that convert by casts (one Arrow type each).
_TYPED = {float: pa.float64(), int: pa.int64(), bool: pa.bool_(), dt.datetime: pa.timestamp("us"), dt.date: pa.date32()}
_ALL_FALSE = pa.scalar(False)


def _group_text(values: list[Any]) -> tuple[pa.Array, pa.Array]:
    """Cells of one Python type: (text, typed in the workbook)."""
    kind = type(values[0])
    n = len(values)
    if kind is type(None):
        return pa.nulls(n, pa.string()), pa.repeat(_ALL_FALSE, n)
    if kind is str:
        arr = pa.array(values, pa.string())
        return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr), pa.repeat(_ALL_FALSE, n)
    if kind in _TYPED:
        try:
            return _typed_text(pa.array(values, _TYPED[kind])), pa.repeat(pa.scalar(True), n)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass  # e.g. integers beyond int64
    return pa.array([_cell_text(v) for v in values], pa.string()), pa.repeat(pa.scalar(True), n)


def _text_column(values: list[Any]) -> tuple[pa.Array, pa.Array]:
    """Cells of one column as text, and which cells were not text in the workbook.

    Cells are grouped by Python type in numpy (no Python step per cell): text goes as it is,
    numbers, dates and booleans by casts written to agree with `_cell_text`, and the groups are
    put back in row order. An ID column with a few cells typed as numbers is two groups.
    """
    n = len(values)
    if not n:
        return pa.array([], pa.string()), pa.array([], pa.bool_())
    kinds = list(set(map(type, values)))
    if len(kinds) == 1:
        return _group_text(values)
    cells = np.empty(n, dtype=object)
    cells[:] = values
    # each cell's kind as a small integer (an object array of types costs ~0.6 s per million cells)
    code = {kind: i for i, kind in enumerate(kinds)}
    codes = np.fromiter(map(code.__getitem__, map(type, values)), dtype=np.int16, count=n)
    texts, numeric, order = [], [], []
    for i, kind in enumerate(kinds):
        rows = np.flatnonzero(codes == i)
        t, m = _group_text(cells[rows].tolist())
        texts.append(t)
        numeric.append(m)
        order.append(rows)
    back = np.empty(n, dtype=np.int64)
    back[np.concatenate(order)] = np.arange(n)
    take = pa.array(back)
    return pa.concat_arrays(texts).take(take), pa.concat_arrays(numeric).take(take)


def _merged_ranges(path: Path, sheet: Any, sheet_name: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    ranges = sheet.merged_cell_ranges
    if ranges is not None:
        return list(ranges)
    # calamine does not report merges for every format; openpyxl does, at a cost paid only here
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=False)
    try:
        return [((r.min_row - 1, r.min_col - 1), (r.max_row - 1, r.max_col - 1))
                for r in wb[sheet_name].merged_cells.ranges]
    finally:
        wb.close()


_TAG = {name: re.compile(rb"<(?:\w+:)?" + name + rb"\b([^>]*)>") for name in (b"sheet", b"Relationship")}
_ATTR = re.compile(rb'([\w:]+)="([^"]*)"')
_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\b[^>]*?\bref="([A-Z]+)?(\d+)(?::([A-Z]+)(\d+))?"')


def _tags(xml: bytes, name: bytes) -> list[dict[bytes, bytes]]:
    """The attributes of each `name` element (in any order), by regex: enough for these two parts."""
    return [dict(_ATTR.findall(attrs)) for attrs in _TAG[name].findall(xml)]


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters.decode():
        n = n * 26 + ord(ch) - 64
    return n


def _check_workbook_caps(path: Path, spec: FileStreamSpec) -> tuple[str, str] | None:
    """Refuse a workbook bomb from its zip directory, before a cell is expanded: the parts'
    uncompressed size against limits.max_bytes, the sheet's declared dimension against the row
    and cell caps. (A workbook that declares nothing is still capped while reading: nrows.)
    Returns the chosen sheet's (name, zip part) when the directory names them."""
    import html

    limits = spec.limits
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            expanded = sum(i.file_size for i in infos)
            if expanded > limits.max_bytes:
                raise Unreadable(f"its parts expand to {expanded} bytes, more than limits.max_bytes = "
                                 f"{limits.max_bytes}; refused before reading: split the workbook or raise the limit")
            names = {i.filename for i in infos}
            if "xl/workbook.xml" not in names or "xl/_rels/workbook.xml.rels" not in names:
                return None
            sheets = [(html.unescape(t.get(b"name", b"").decode("utf-8", "replace")), t.get(b"r:id"))
                      for t in _tags(zf.read("xl/workbook.xml"), b"sheet")]
            rels = {t.get(b"Id"): t.get(b"Target", b"") for t in _tags(zf.read("xl/_rels/workbook.xml.rels"),
                                                                      b"Relationship")}
            want = spec.sheet if spec.sheet is not None else 0
            chosen = sheets[want] if isinstance(want, int) and want < len(sheets) else \
                next((s for s in sheets if s[0] == want), None)
            if chosen is None or chosen[1] not in rels:
                return None
            target = rels[chosen[1]].decode()
            part = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            if part not in names:
                return None
            with zf.open(part) as fh:
                start = fh.read(64 << 10)
    except zipfile.BadZipFile:
        return None  # calamine says what is wrong (a half-written archive waits)
    found = _DIMENSION.search(start)
    if found is None:
        return chosen[0], part
    rows = int(found.group(4) or found.group(2))
    cols = _column_number(found.group(3) or found.group(1) or b"A")
    _check_caps(rows, cols, limits, f"sheet '{chosen[0]}' (by its declared size)", workbook=True)
    return chosen[0], part


def _columns_text(body: list[list[Any]], width: int) -> tuple[list[pa.Array], list[pa.Array]]:
    """Rows of cells → `width` text columns and which cells were not text (see `_text_column`)."""
    if body and min(map(len, body)) < width:  # calamine's rows are as wide as the sheet; others pad
        body = [r + [None] * (width - len(r)) for r in body]
    columns = list(zip(*body))[:width] if body else [()] * width
    pairs = [_text_column(list(values)) for values in columns]
    return [t for t, _ in pairs], [m for _, m in pairs]


def _sheet_parts(path: Path, located: tuple[str, str] | None, sheet_name: str, spec: FileStreamSpec) -> SheetParts | None:
    """The sheet cut into row ranges read on every core, when it is large enough (sheet_parts.py)."""
    if located is None or located[0] != sheet_name:
        return None
    try:
        parts = SheetParts(path, located[1], sheet_name, after_row=spec.header.search_rows + spec.header.rows,
                           max_rows=spec.limits.max_rows, max_cells=spec.limits.max_workbook_cells,
                           columns_of=_columns_text)
    except (zipfile.BadZipFile, KeyError, OSError):
        return None  # read whole: calamine says what is wrong, if anything
    if parts.first_path is None:
        parts.close()
        return None
    return parts


def read_excel(path: Path, spec: FileStreamSpec) -> ParsedFile:
    from python_calamine import CalamineError, CalamineWorkbook

    located = _check_workbook_caps(path, spec)
    try:
        wb = CalamineWorkbook.from_path(str(path))
    except (CalamineError, OSError, ValueError) as exc:
        raise Incomplete(f"not a readable workbook ({type(exc).__name__})") from None
    try:
        names = wb.sheet_names
        want = spec.sheet if spec.sheet is not None else 0
        if isinstance(want, int):
            if want >= len(names):
                raise Unreadable(f"has {len(names)} sheets, the spec asks for sheet index {want}")
            sheet_name = names[want]
        elif want in names:
            sheet_name = want
        else:
            raise Unreadable(f"has no sheet '{want}' (sheets: {', '.join(names)}); fix `sheet` in the spec")
    finally:
        wb.close()
    with gc_paused():
        parts = _sheet_parts(path, located, sheet_name, spec)
        try:
            return _read_sheet(path, parts, sheet_name, spec)
        finally:
            if parts is not None:
                parts.close()


def _first_part_columns(rows: list[list[Any]], first_end: int, rule: HeaderRule
                        ) -> tuple[int, int, list[pa.Array], list[pa.Array]] | None:
    """The first part's body as columns, made before the later parts are collected: (row where the
    body starts, its rows, text columns, numeric flags), as wide as its longest row (`_widen`
    fits them to the header once the later parts' widths are known). None when no header is found
    here: the read raises that after the sheet's caps are checked, as it did before."""
    try:
        end = _find_header([[c if isinstance(c, str) else "" for c in r] for r in rows[:rule.search_rows]],
                           rule) + rule.rows
    except Unreadable:
        return None
    if end > first_end:
        return None
    body = rows[end:first_end]  # rows the read did not reach are blank: padded by _widen
    n = max(map(len, body), default=0)
    texts, flags = _columns_text(body, n)
    short = max(first_end - end - len(body), 0)
    if short:
        texts = [pa.concat_arrays([t, pa.nulls(short, pa.string())]) for t in texts]
        flags = [pa.concat_arrays([m, pa.repeat(_ALL_FALSE, short)]) for m in flags]
    return end, len(body) + short, texts, flags


def _widen(texts: list[pa.Array], flags: list[pa.Array], rows: int, width: int) -> tuple[list[pa.Array], list[pa.Array]]:
    """Columns cut or padded (with blank, not-numeric cells) to `width`, as `_columns_text` makes them."""
    extra = max(width - len(texts), 0)
    return (texts[:width] + [pa.nulls(rows, pa.string())] * extra,
            flags[:width] + [pa.repeat(_ALL_FALSE, rows)] * extra)


def _read_sheet(path: Path, parts: SheetParts | None, sheet_name: str, spec: FileStreamSpec) -> ParsedFile:
    from python_calamine import CalamineError, CalamineWorkbook

    later: list[PartRows] = []
    first: tuple[int, int, list[pa.Array], list[pa.Array]] | None = None
    try:
        wb = CalamineWorkbook.from_path(str(parts.first_path if parts else path))
    except (CalamineError, OSError, ValueError) as exc:
        raise Incomplete(f"not a readable workbook ({type(exc).__name__})") from None
    try:
        sheet = wb.get_sheet_by_name(sheet_name)
        width = sheet.width
        # rows become Python objects here (~160 bytes a cell): read no further than the caps allow
        limit = min(spec.limits.max_rows, spec.limits.max_workbook_cells // max(width, 1))
        rows = sheet.to_python(skip_empty_area=False, nrows=limit + 1)
        merged = _merged_ranges(path, sheet, sheet_name)
        if parts is not None:
            # the first part's rows become columns while the later parts are still being read
            first = _first_part_columns(rows, parts.first_end, spec.header)
            later = parts.collect()
            width = max([width, *(p.width for p in later)])
            limit = min(spec.limits.max_rows, spec.limits.max_workbook_cells // max(width, 1))
        if max([len(rows), *(p.reached for p in later)]) > limit:
            raise Unreadable(f"sheet '{sheet_name}' has more than {limit} rows of {width} columns "
                             f"(limits.max_rows = {spec.limits.max_rows}, limits.max_workbook_cells = "
                             f"{spec.limits.max_workbook_cells}); refused: split the workbook or raise the limit")
    except CalamineError as exc:
        raise Incomplete(f"sheet cannot be read ({type(exc).__name__})") from None
    finally:
        wb.close()
    start = _find_header([[c if isinstance(c, str) else "" for c in r] for r in rows[:spec.header.search_rows]],
                         spec.header)
    end = start + spec.header.rows
    grid = [[_cell_text(c) or "" for c in r] + [""] * (width - len(r)) for r in rows[start:end]]
    for (r0, c0), (r1, c1) in merged:  # a merged header cell names every column under it
        if r1 < start or r0 >= end:
            continue
        top = rows[r0][c0] if r0 < len(rows) and c0 < len(rows[r0]) else ""
        for r in range(max(r0, start), min(r1, end - 1) + 1):
            row = grid[r - start]
            row.extend([""] * (c1 + 1 - len(row)))
            for c in range(c0, c1 + 1):
                row[c] = _cell_text(top) or ""
    names = unique_names(_compose_header(grid, spec.header.joiner))
    if first is not None and first[0] == end:
        rows_read = first[1]
        texts, flags = _widen(first[2], first[3], rows_read, len(names))
    else:
        body = rows[end:]
        if parts is not None:  # the first part's rows stop where the next part's begin
            body = body[:parts.first_end - end]
            body.extend([[""] * width for _ in range(parts.first_end - end - len(body))])
        rows_read = len(body)
        texts, flags = _columns_text(body, len(names))
    for part in later:  # columns past a part's width are blank in it
        texts = [pa.concat_arrays([t, part.texts[i] if i < part.width else pa.nulls(part.rows, pa.string())])
                 for i, t in enumerate(texts)]
        flags = [pa.concat_arrays([m, part.numeric[i] if i < part.width else pa.repeat(_ALL_FALSE, part.rows)])
                 for i, m in enumerate(flags)]
    arrays, numeric = dict(zip(names, texts)), dict(zip(names, flags))
    table = pa.table(arrays) if names else pa.table({})
    table = table.append_column(FILE_ROW, row_numbers(end + 1, rows_read + sum(p.rows for p in later)))
    numeric_table = pa.table(numeric) if numeric else None
    skipped: dict[str, int] = {}
    empty = _blank_rows(table, names)
    if empty is not None:
        skipped["blank rows"] = pc.sum(empty.cast(pa.int64())).as_py()
        keep = pc.invert(empty)
        table, numeric_table = table.filter(keep), numeric_table.filter(keep) if numeric_table else None
    # skip rules, carrying the numeric flags along row for row
    if numeric_table is not None:
        table = table.append_column("__numeric", row_numbers(0, table.num_rows))
    table = apply_skip_rules(table, spec, skipped)
    flags: dict[str, pa.Array] = {}
    if numeric_table is not None:
        idx = table["__numeric"]
        flags = {n: numeric_table[n].take(idx).combine_chunks() for n in spec.text_columns if n in numeric_table.column_names}
        table = table.drop_columns(["__numeric"])
    table = table.append_column(ROW_ERROR, _flag_text_columns(table, spec, flags))
    return ParsedFile(table, None, skipped, [])


def read_file(path: Path, spec: FileStreamSpec) -> ParsedFile:
    return read_csv(path, spec) if spec.format == "csv" else read_excel(path, spec)

