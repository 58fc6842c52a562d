"""A large worksheet read in row ranges, one per core, with the outcome of reading it whole.

What it owns: cutting a sheet's XML at `<row>` elements into parts (`plan_parts`), writing each
part as a workbook of its own (the original's other parts unchanged, other sheets emptied) and
turning the rows of every part but the first into text columns in a forked process
(`SheetParts`), while the caller reads the first part — which holds the title and header rows —
exactly as it reads a whole workbook.

Guarantee: the rows, their numbers and their text are those of the whole sheet. A part keeps
the sheet's head (dimension, columns) and tail, and calamine places each cell by its `r`
reference, so row k of a part is row k of the sheet; a part is cut only before a row that states
its number (`r="…"`), else the sheet is read whole. Rows a part does not reach (trailing empty
rows) come back as empty rows, as the whole read gives them. A part's `<mergeCells>` stands
before its `<sheetData>` (`_merges_first`): python-calamine looks a sheet's merged cells up on
every read by scanning its XML up to that element, a second pass over every row when it stands
in its usual place at the end (~40% of the part's read); the merges found are the same.

Why: calamine parses ~75 MB of sheet XML a second on one core (0.9 s for a 100k-row monthly
workbook) and the cells then become Python objects and text (0.3 s more), all before the first
row is mapped; nothing else in the read can run meanwhile. Cutting the XML costs one inflate of
the sheet (~0.13 s per 64 MB) and a copy to shared memory. Threads would not do: calamine
releases the GIL while parsing, but the Python objects it then builds need it.
"""
from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa

from connectors.files.chunks import _shared_dir, range_count

_SHEET_DATA = re.compile(rb"<((?:\w+:)?)sheetData\b[^>]*?(/?)>")
_ROW_NUMBER = re.compile(rb'\sr="(\d+)"')
PART_MIN_BYTES = 24 << 20  # sheet XML below this (uncompressed) per part is read whole

ColumnsOf = Callable[[list[list[Any]], int], tuple[list[pa.Array], list[pa.Array]]]


@dataclass(frozen=True)
class Cut:
    at: int      # byte offset of the `<row` that starts the part
    row: int     # that row's 0-based sheet row


def plan_parts(xml: bytes, parts: int, after_row: int) -> tuple[int, int, list[Cut]] | None:
    """Where the sheet's rows are cut: (end of the `<sheetData>` tag, start of `</sheetData>`,
    cuts), or None when the sheet is not worth cutting or cannot be cut safely. No cut falls at
    or before `after_row` (the rows where the header may be looked for)."""
    if parts < 2:
        return None
    opened = _SHEET_DATA.search(xml)
    if opened is None or opened.group(2):
        return None
    prefix = opened.group(1)
    close = xml.rfind(b"</" + prefix + b"sheetData>")
    if close < opened.end():
        return None
    row_tag = re.compile(rb"<" + re.escape(prefix) + rb"row\b([^>]*)>")
    cuts: list[Cut] = []
    span = close - opened.end()
    for i in range(1, parts):
        at = max(opened.end() + span * i // parts, cuts[-1].at + 1 if cuts else 0)
        while (found := row_tag.search(xml, at, close)) is not None:
            number = _ROW_NUMBER.search(b" " + found.group(1))
            if number is None:
                return None  # rows numbered by position only: a part would renumber them
            row = int(number.group(1)) - 1
            if row > after_row and (not cuts or row > cuts[-1].row):
                cuts.append(Cut(found.start(), row))
                break
            at = found.end()
    return (opened.end(), close, cuts) if cuts else None


_MERGE_CELLS = re.compile(rb"<((?:\w+:)?)mergeCells\b[^>]*?(/?)>")


def _merges_first(xml: bytes, data_start: int, data_end: int) -> tuple[list[memoryview | bytes], bytes]:
    """The sheet's head as pieces up to the end of its `<sheetData>` tag, with the first
    `<mergeCells>` element moved in just before that tag (an empty one when the sheet has none, or
    only an empty tag, which calamine does not count), and the tail (from `</sheetData>`) without it.
    calamine stops its merged-cells scan at the first `<mergeCells>` start tag and its cell reader
    passes over elements it does not know, so a part reads the same rows and merges."""
    view = memoryview(xml)
    opened = xml.rfind(b"<", 0, data_start)  # the `<sheetData …>` tag
    prefix = _SHEET_DATA.match(xml, opened)
    name = (prefix.group(1) if prefix else b"") + b"mergeCells"
    tail = xml[data_end:]
    merges = b"<" + name + b"></" + name + b">"
    found = _MERGE_CELLS.search(tail)
    if found is not None:
        close = b"</" + found.group(1) + b"mergeCells>"
        end = found.end() if found.group(2) else tail.find(close, found.end())
        if end >= 0:
            if not found.group(2):
                end += len(close)
                merges = tail[found.start():end]
            tail = tail[:found.start()] + tail[end:]
    return [view[:opened], merges, view[opened:data_start]], tail


def _part_workbook(source: zipfile.ZipFile, sheet_part: str, pieces: list[memoryview], out: Path) -> None:
    """A workbook of `source` with `sheet_part` replaced by the bytes `pieces` (written one after
    the other, never joined: no copy of the sheet) and every other sheet emptied (calamine reads a
    sheet only when asked for it); stored, not compressed."""
    empty = (b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             b"<sheetData/></worksheet>")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            name = info.filename
            if name == sheet_part:
                with target.open(zipfile.ZipInfo(name, info.date_time), "w", force_zip64=True) as fh:
                    for piece in pieces:
                        fh.write(piece)
                continue
            if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                data = empty
            else:
                data = source.read(name)
            target.writestr(zipfile.ZipInfo(name, info.date_time), data)


def _inflate(path: Path, source: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The part's bytes in one zlib call into a buffer of its declared size, CRC checked: ZipFile.read
    inflates in small chunks and joins them (0.13-0.19 s against 0.08 s for a 64 MB sheet, all of it
    before any part is read). Encrypted or not deflated parts go through ZipFile.read."""
    if info.compress_type != zipfile.ZIP_DEFLATED or info.flag_bits & 0x1:
        return source.read(info)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for {info.filename}")
        fh.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                + int.from_bytes(local[28:30], "little"))
        raw = fh.read(info.compress_size)
    try:
        data = zlib.decompress(raw, -zlib.MAX_WBITS, max(info.file_size, 1))
    except zlib.error as exc:
        raise zipfile.BadZipFile(f"{info.filename} does not inflate: {exc}") from None
    if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"{info.filename} is not the size or CRC its directory states")
    return data


def _temp_path(size: int, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="iehub-sheet-", suffix=suffix, dir=_shared_dir(size))
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a sheet's cells become Python objects and columns:
    the rows are lists (tracked objects), so a 50k-row part triggers dozens of collections that walk
    every object the process holds, ~0.18 CPU-s of a 100k-row read in the parent. The cells form
    no cycles (reference counting frees them); the collector's prior state comes back after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_part(conn: Any, path: str, sheet_part: str, pieces: list[memoryview], sheet_name: str, first: int,
               last: int | None, max_rows: int, max_cells: int, columns_of: ColumnsOf) -> None:
    """In a child: rows [first, last) of the sheet from its part (`pieces` of the parent's XML,
    inherited through fork), as text columns in an Arrow IPC file; sends (file, width, rows of the
    sheet its read reached, rows sent) or the exception."""
    from python_calamine import CalamineWorkbook

    gc.disable()  # this process only reads the part (see gc_paused)
    made: list[Path] = []
    try:
        book = _temp_path(sum(len(p) for p in pieces), ".xlsx")
        made.append(book)
        with zipfile.ZipFile(path) as source:
            _part_workbook(source, sheet_part, pieces, book)
        wb = CalamineWorkbook.from_path(str(book))
        try:
            sheet = wb.get_sheet_by_name(sheet_name)
            width = sheet.end[1] + 1 if sheet.end else 0  # from column A, as the whole read's rows are
            limit = min(max_rows, max_cells // max(width, 1))  # the caller checks the whole sheet's
            # from the part's first cell, not A1: the rows of the parts before it would be empty lists
            top, left = sheet.start or (first, 0)
            rows = sheet.to_python(skip_empty_area=True, nrows=max(limit + 1 - top, 1)) if sheet.start else []
        finally:
            wb.close()
        book.unlink()
        reached = top + len(rows)
        if left:
            rows = [[""] * left + r for r in rows]
        body = [[""] * width for _ in range(max(top - first, 0))]  # the part's first rows are empty
        body.extend(rows[max(first - top, 0):None if last is None else max(last - top, 0)])
        if last is not None and len(body) < last - first:  # trailing empty rows of the part
            body.extend([[""] * width for _ in range(last - first - len(body))])
        texts, numeric = columns_of(body, width)
        table = pa.table({**{f"t{i}": t for i, t in enumerate(texts)}, **{f"n{i}": n for i, n in enumerate(numeric)}}) \
            if texts else pa.table({"t": pa.nulls(len(body), pa.string())})
        out = _temp_path(table.nbytes, ".arrow")
        made.append(out)
        with pa.OSFile(str(out), "wb") as fh, pa.ipc.new_file(fh, table.schema) as writer:
            writer.write_table(table)
        conn.send((str(out), width, reached, len(body), None))
    except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
        for p in made:
            p.unlink(missing_ok=True)
        conn.send((None, 0, 0, 0, exc))
    finally:
        conn.close()


@dataclass
class PartRows:
    """The text columns of one later part: `width` columns, `rows` rows, from sheet row `first`."""

    first: int
    rows: int
    width: int
    reached: int                   # rows of the sheet its read reached (row count if it were whole)
    texts: list[pa.Array]
    numeric: list[pa.Array]


class SheetParts:
    """A sheet cut into parts: `first_path` is the workbook of the first part (None: the sheet is not
    worth cutting), for the caller to read; `collect` waits for the others; `close` cleans up."""

    def __init__(self, path: Path, sheet_part: str, sheet_name: str, *, after_row: int, max_rows: int,
                 max_cells: int, columns_of: ColumnsOf) -> None:
        self.first_path: Path | None = None
        self.first_end: int | None = None   # 0-based sheet row where the first part stops
        self._children: list[tuple[Any, Any, Cut]] = []
        with zipfile.ZipFile(path) as source:
            info = source.getinfo(sheet_part)
            parts = min(range_count(info.file_size), max(1, info.file_size // PART_MIN_BYTES))
            if parts < 2:
                return
            xml = _inflate(path, source, info)
            plan = plan_parts(xml, parts, after_row)
            if plan is None:
                return
            data_start, data_end, cuts = plan
            view = memoryview(xml)
            front, tail = _merges_first(xml, data_start, data_end)
            context = multiprocessing.get_context("fork")
            for i, cut in enumerate(cuts):  # forked: the child sees the parent's XML without a copy
                end = cuts[i + 1] if i + 1 < len(cuts) else None
                receive, send = context.Pipe(duplex=False)
                child = context.Process(target=_read_part, daemon=True,
                                        args=(send, str(path), sheet_part,
                                              [*front, view[cut.at:end.at if end else data_end], tail], sheet_name,
                                              cut.row, end.row if end else None, max_rows, max_cells, columns_of))
                child.start()
                send.close()
                self._children.append((child, receive, cut))
            self.first_end = cuts[0].row
            try:
                self.first_path = _temp_path(cuts[0].at, ".xlsx")
                _part_workbook(source, sheet_part, [*front, view[data_start:cuts[0].at], tail],
                               self.first_path)
            except BaseException:
                self.close()
                raise

    def collect(self) -> list[PartRows]:
        """The later parts' rows, in sheet order; raises what a child raised."""
        found: list[PartRows] = []
        failure: BaseException | None = None
        for child, receive, cut in self._children:
            try:
                name, width, reached, rows, exc = receive.recv()
            except EOFError:
                name, exc = None, RuntimeError(f"the process reading rows {cut.row + 1}- of the sheet ended "
                                               "abruptly (out of memory?); retry, or set IEHUB_FILE_WORKERS=1")
            finally:
                receive.close()
                child.join()
            if exc is not None or failure is not None:
                failure = failure or exc
                if name:
                    Path(name).unlink(missing_ok=True)
                continue
            try:
                with pa.memory_map(name) as source:
                    table = pa.ipc.open_file(source).read_all()
            finally:
                Path(name).unlink(missing_ok=True)
            texts = [table[f"t{i}"].combine_chunks() for i in range(width)]
            numeric = [table[f"n{i}"].combine_chunks() for i in range(width)]
            found.append(PartRows(cut.row, rows, width, reached, texts, numeric))
        self._children = []
        if failure is not None:
            raise failure
        return found

    def close(self) -> None:
        """Stop any part still being read and remove the first part's file."""
        for child, receive, _ in self._children:
            child.kill()
            child.join()
            try:
                name = receive.recv()[0] if receive.poll() else None
            except (EOFError, OSError):
                name = None
            receive.close()
            if name:
                Path(name).unlink(missing_ok=True)
        self._children = []
        if self.first_path is not None:
            self.first_path.unlink(missing_ok=True)


__all__ = ["PART_MIN_BYTES", "PartRows", "SheetParts", "gc_paused", "plan_parts"]
