"""Reading one dropped file into text columns: CSV through pyarrow.csv, Excel through calamine.

Every value comes out as text (raw is "as received"): identifiers keep their leading zeros and
trailing X, amounts keep their decimals, and typing is the mapping's job. What is not data is
located by the spec's rules (title rows above the header, merged header cells, notes, totals)
and counted; what cannot be read at all raises `Unreadable` (the file goes to quarantine whole)
or `Incomplete` (the file is still being written: wait for the next pass).
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from connectors.files.spec import FileStreamSpec, HeaderRule

FILE_ROW = "_file_row"       # 1-based row number in the file (Excel) or data row ordinal (CSV)
ROW_ERROR = "_read_error"    # why a row could not be read; the mapping rejects such rows with it
HEAD_BYTES = 256 << 10
_UTF8 = {"utf-8", "utf8", "utf-8-sig", "utf_8", "utf_8_sig"}
_FLOAT_TEXT = re.compile(r"^\s*[+-]?[0-9]+(\.[0-9]+)?[eE][+-]?[0-9]+\s*$|^\s*[0-9]+\.0+\s*$")


class Unreadable(Exception):
    """The file cannot be read with the spec's rules; the reason names no personal data."""


class Incomplete(Exception):
    """The file looks half-written (truncated archive, cut-off last line)."""


@dataclass
class ParsedFile:
    table: pa.Table                     # text columns named by the header, then FILE_ROW and ROW_ERROR
    encoding: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)   # rule → rows skipped as not data
    bad_lines: list[tuple[int | None, str]] = field(default_factory=list)  # (line, text) unparseable rows


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
            table = table.filter(pc.invert(hit))
    return table


def _flag_text_columns(table: pa.Table, spec: FileStreamSpec, numeric: dict[str, pa.Array]) -> pa.Array:
    """Per row, why a must-be-text column is not text (a number, or a number's text form)."""
    n = table.num_rows
    reason = pa.nulls(n, pa.string())
    for name in spec.text_columns:
        if name not in table.column_names:
            continue
        looks_float = pc.fill_null(pc.match_substring_regex(table[name], _FLOAT_TEXT.pattern), False)
        bad = pc.or_(looks_float, numeric[name]) if name in numeric else looks_float
        msg = pa.scalar(f"column {name} arrived as a number, not text (digits may already be lost, e.g. "
                        "scientific notation); it is quarantined, not repaired: store the column as text in the source")
        reason = pc.if_else(pc.and_(pc.is_null(reason), bad), msg, reason)
    return reason


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
        except UnicodeDecodeError as exc:
            tried.append(f"{encoding} (fails at byte {exc.start})")
        except pa.ArrowInvalid as exc:
            if "UTF8" not in str(exc) and "utf8" not in str(exc).lower():
                raise Unreadable(f"not a valid CSV: {str(exc)[:200]}") from None
            tried.append(f"{encoding} (invalid bytes)")
    raise Unreadable(f"cannot be decoded as {' or '.join(spec.encodings)}: {'; '.join(tried)}; "
                     "ask the district to re-export it, or add its encoding to `encodings` in the spec")


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
    note = re.compile(spec.note_lines) if spec.note_lines else None
    notes = 0
    bad: list[tuple[int | None, str]] = []

    def invalid(row: Any) -> str:
        nonlocal notes
        text = row.text or ""
        if note is not None and note.search(text):
            notes += 1
        elif text.strip(spec.delimiter + " \t\r"):
            bad.append((row.number, f"row has {row.actual_columns} fields, the header has {row.expected_columns}"))
        return "skip"

    source = pa.memory_map(str(path))
    source.seek(offset)
    read = pcsv.ReadOptions(column_names=names, encoding="utf8" if utf8 else encoding, block_size=8 << 20)
    parse = pcsv.ParseOptions(delimiter=spec.delimiter, invalid_row_handler=invalid, newlines_in_values=False)
    convert = pcsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                                  quoted_strings_can_be_null=False)
    try:
        table = pcsv.read_csv(source, read_options=read, parse_options=parse, convert_options=convert)
    finally:
        source.close()
    # blank cells are null (empty text means nothing was given)
    table = pa.table({n: pc.if_else(pc.equal(table[n], ""), pa.scalar(None, pa.string()), table[n])
                      for n in names}) if table.num_rows else table
    skipped = {"note lines": notes} if notes else {}
    # a row made only of blanks and delimiters is an empty line in disguise
    if table.num_rows and names:
        empty = pc.is_null(table[names[0]])
        for n in names[1:]:
            empty = pc.and_(empty, pc.is_null(table[n]))
        k = pc.sum(empty.cast(pa.int64())).as_py() or 0
        if k:
            table = table.filter(pc.invert(empty))
            skipped["blank rows"] = k
    table = table.append_column(FILE_ROW, pa.array(range(1, table.num_rows + 1), pa.int64()))
    table = apply_skip_rules(table, spec, skipped)
    table = table.append_column(ROW_ERROR, _flag_text_columns(table, spec, {}))
    return ParsedFile(table, encoding, skipped, bad)


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


def _text_column(values: list[Any]) -> tuple[pa.Array, pa.Array]:
    """Cells of one column as text, and which cells were not text in the workbook."""
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        arr = None
    if arr is not None and pa.types.is_string(arr.type):
        texts = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
        return texts, pc.is_valid(pa.nulls(len(values), pa.bool_()))  # all false
    texts = pa.array([_cell_text(v) for v in values], pa.string())
    numeric = pa.array([v is not None and not isinstance(v, str) for v in values], pa.bool_())
    return texts, numeric


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


def read_excel(path: Path, spec: FileStreamSpec) -> ParsedFile:
    from python_calamine import CalamineError, CalamineWorkbook

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
        sheet = wb.get_sheet_by_name(sheet_name)
        rows = sheet.to_python(skip_empty_area=False)
        merged = _merged_ranges(path, sheet, sheet_name)
    except CalamineError as exc:
        raise Incomplete(f"sheet cannot be read ({type(exc).__name__})") from None
    finally:
        wb.close()
    start = _find_header([[c if isinstance(c, str) else "" for c in r] for r in rows[:spec.header.search_rows]],
                         spec.header)
    end = start + spec.header.rows
    grid = [[_cell_text(c) or "" for c in r] for r in rows[start:end]]
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
    body = rows[end:]
    width = len(names)
    columns = list(zip(*[(r + [None] * (width - len(r)))[:width] for r in body])) if body else [()] * width
    arrays, numeric = {}, {}
    for name, values in zip(names, columns):
        arrays[name], numeric[name] = _text_column(list(values))
    table = pa.table(arrays) if names else pa.table({})
    table = table.append_column(FILE_ROW, pa.array(range(end + 1, end + 1 + len(body)), pa.int64()))
    numeric_table = pa.table(numeric) if numeric else None
    skipped: dict[str, int] = {}
    if names and table.num_rows:
        empty = pc.is_null(table[names[0]])
        for n in names[1:]:
            empty = pc.and_(empty, pc.is_null(table[n]))
        k = pc.sum(empty.cast(pa.int64())).as_py() or 0
        if k:
            skipped["blank rows"] = k
            keep = pc.invert(empty)
            table, numeric_table = table.filter(keep), numeric_table.filter(keep) if numeric_table else None
    # skip rules, carrying the numeric flags along row for row
    if numeric_table is not None:
        table = table.append_column("__numeric", pa.array(range(table.num_rows), pa.int64()))
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

