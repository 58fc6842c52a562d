"""One CSV's data lines parsed in byte ranges, one range per core, every line still accounted for.

What it owns: cutting a file's data region into ranges at newlines (`plan_ranges`, which also
counts the lines for the caps), parsing each range (`parse_ranges`: decoding GBK/GB18030 or any
Python codec to UTF-8 on the way, Arrow's CSV parser after it) and handing back, per range, the
rows as text columns, each row's physical line number, and what became of the other lines
(empty, a note, a bad line with its number, or a line swallowed by an open quote).

Guarantee: the outcome is the one a single sequential parse gives. The hub refuses a record that
spans lines (a quote left open swallows the lines after it), so in every file it accepts each
newline ends a record and any newline is a real record boundary. Where a cut falls inside a quoted
field, the range before it ends inside that open quote: Arrow closes the field at the range's end
with the newline in its value, and `RangeResult.swallowed` says so, so the caller refuses the file
naming the line the quote opened on, exactly as the sequential read does. Line numbers are exact:
each range knows how many lines precede it from the byte scan. A newline byte is never part of a
GBK, GB18030 or UTF-8 character, so a cut never splits a character either.

Why processes, not threads: Arrow's CSV parser runs single-threaded per range (so the invalid-row
handler gets each bad line's number), and the text conversion around it (Python's codec for
encodings other than GBK/GB18030, `not_text_reasons`, the line bookkeeping) holds the GIL. GBK
and GB18030 go through `transcode.Transcoder`'s C loop (its tables made from Python's codec, so
the text is the codec's; glibc's iconv maps 25 GB18030 codes otherwise and DuckDB's `encodings`
extension corrupts GB18030 text at its buffer boundaries): the 1M-row 杨浦 file's read fell from
0.94-1.12 s to 0.76-0.88 s on two ranges (0.85-0.89 s in one). So the caller's process parses the
first range and forked children the others; a child writes its Arrow table to an IPC file in
shared memory that the parent maps (no copy through a pipe). Small files, or platforms without
fork, parse in one range in-process: the same code path, so both are tested by the same tests.
"""
from __future__ import annotations

import io
import mmap
import multiprocessing
import os
import re
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from connectors.files.transcode import Transcoder, prepare

#: Raw bytes decoded at a time: bounds each range's transcoding memory, and keeps the decoded text
#: and its UTF-8 in cache (half of the 1M 杨浦 file through the codec: 0.45-0.54 CPU-s in 8 MB blocks,
#: 0.35-0.39 in 1 MB ones).
DECODE_BLOCK_BYTES = 1 << 20
SCAN_BLOCK_BYTES = 1 << 20      # bytes read at a time when counting lines (1M 杨浦 file: 0.15 s in 16 MB, 0.09 in 1 MB)
NEWLINE_BLOCK_BYTES = 1 << 20   # mapped bytes compared at a time when finding newlines (stays in cache)
RANGE_MIN_BYTES = 24 << 20      # below this a range is not worth a process of its own
_ENV_WORKERS = "IEHUB_FILE_WORKERS"  # cap on ranges (1: parse in-process only)


def range_count(data_bytes: int) -> int:
    """How many ranges a data region of this size is parsed in: one per core, each ≥ RANGE_MIN_BYTES."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = os.environ.get(_ENV_WORKERS)
    if wanted:
        try:
            cores = max(1, min(cores, int(wanted)))
        except ValueError:
            raise ValueError(f"{_ENV_WORKERS}={wanted!r} is not a number; set it to the processes a CSV may use") \
                from None
    return max(1, min(cores, data_bytes // max(RANGE_MIN_BYTES, 1)))


@dataclass(frozen=True)
class ByteRange:
    start: int          # file offset of the range's first byte (the start of a line)
    end: int            # file offset just past its last byte (after a newline, or the end of the file)
    lines_before: int   # data lines before the range
    lines: int          # physical lines in the range (a last line without a newline counts)


def plan_ranges(path: Path, offset: int, parts: int, delimiter: bytes = b",") -> list[ByteRange]:
    """The data region from `offset` cut into `parts` ranges, with each range's lines counted by a
    byte scan (no cell is read). Fewer ranges when the file has fewer lines.

    A cut goes after the first line at or past the nominal point that closes every quote it opens
    (`_closes_its_quotes`), so a quote open at a cut can only have opened on an earlier line of the
    range before it: that range then has fewer rows than lines, and the file is refused as it is
    by a sequential read. (`delimiter`: its byte, or None when it may occur inside a character.)
    """
    size = path.stat().st_size
    cuts = [offset]
    with open(path, "rb") as fh:
        for i in range(1, parts):
            cut = _cut_after(fh, max(offset + (size - offset) * i // parts, cuts[-1]), size, delimiter)
            if cuts[-1] < cut < size:
                cuts.append(cut)
        cuts.append(size)
        ranges, before = [], 0
        for start, end in zip(cuts, cuts[1:]):
            lines = _count_lines(fh, start, end)
            ranges.append(ByteRange(start, end, before, lines))
            before += lines
    return ranges or [ByteRange(offset, size, 0, 0)]


CUT_SEARCH_LINES = 10_000  # lines looked at past a nominal cut before giving the cut up


def _cut_after(fh: Any, nominal: int, size: int, delimiter: bytes | None) -> int:
    """The file offset just past the first line ending at or after `nominal` (the nominal point lies
    inside it) that closes its own quotes; `size` when there is none nearby."""
    fh.seek(nominal)
    line = fh.readline()  # the rest of the line the nominal point falls in
    at = nominal + len(line)
    if not line.endswith(b"\n"):
        return size
    for _ in range(CUT_SEARCH_LINES):
        # the whole line that ends at `at`: read back from its start
        start = _line_start(fh, at - 1)
        fh.seek(start)
        whole = fh.read(at - start)
        if _closes_its_quotes(whole, delimiter):
            return at
        fh.seek(at)
        line = fh.readline()
        if not line.endswith(b"\n"):
            return size
        at += len(line)
    return size


def _line_start(fh: Any, newline_at: int) -> int:
    """Offset of the first byte of the line whose newline is at `newline_at`."""
    pos = newline_at
    while pos > 0:
        step = min(4096, pos)
        fh.seek(pos - step)
        block = fh.read(step)
        found = block.rfind(b"\n")
        if found >= 0:
            return pos - step + found + 1
        pos -= step
    return 0


def _closes_its_quotes(line: bytes, delimiter: bytes | None) -> bool:
    """Whether a line read from a record start ends outside quotes, by Arrow's rules: a quote opens
    a field only at the field's start, `""` inside it is a quote, and a quote closes it."""
    if b'"' not in line:
        return True
    if delimiter is None:
        return False  # the delimiter byte may be part of a character: do not guess
    inside, field_start, i, n = False, True, 0, len(line)
    quote, sep = ord('"'), delimiter[0]
    while i < n:
        c = line[i]
        if inside:
            if c == quote:
                if i + 1 < n and line[i + 1] == quote:
                    i += 2
                    continue
                inside = False
        elif c == quote and field_start:
            inside = True
        field_start = not inside and c == sep
        i += 1
    return not inside


def _count_lines(fh: Any, start: int, end: int) -> int:
    """Physical lines in [start, end); a last line without a newline counts."""
    count, last = 0, b"\n"
    fh.seek(start)
    left = end - start
    while left > 0 and (block := fh.read(min(SCAN_BLOCK_BYTES, left))):
        count += block.count(b"\n")
        last = block[-1:]
        left -= len(block)
    return count + (last != b"\n")


class _Utf8Transcoder(io.RawIOBase):
    """A file's bytes in [start, end), decoded from ``encoding`` and handed to Arrow as UTF-8.

    Decoding runs a block at a time through `transcode.Transcoder` (GBK and GB18030 by its C loop,
    other encodings by Python's incremental decoder; a character split across blocks is whole
    again); memory stays bounded by the block size. A decoding error is kept with the file offset
    where it happened, for the caller's reason.
    """

    def __init__(self, path: Path, start: int, end: int, encoding: str) -> None:
        super().__init__()
        self._raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._raw.seek(start)
        self._left = end - start
        self._decoder = Transcoder(encoding, start)
        self._out = memoryview(b"")    # UTF-8 not handed out yet
        self._eof = False

    @property
    def error_at(self) -> int | None:
        """The file offset of the first byte the codec refused, after a UnicodeDecodeError."""
        return self._decoder.error_at

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        raw = self._raw.read(min(DECODE_BLOCK_BYTES, self._left)) if self._left > 0 else b""
        final = not raw
        self._out = memoryview(self._decoder.feed(raw, final=final))
        self._left -= len(raw)
        self._eof = final

    def readinto(self, buffer: Any) -> int:
        # fill the whole buffer (short reads only at the end): Arrow cuts its blocks by what it gets
        done = 0
        while done < len(buffer):
            if not len(self._out):
                if self._eof:
                    break
                self._fill()
                continue
            n = min(len(buffer) - done, len(self._out))
            buffer[done:done + n] = self._out[:n]
            self._out = self._out[n:]
            done += n
        return done

    def close(self) -> None:
        self._raw.close()
        super().close()


class DecodeFailed(Exception):
    """The file is not in this encoding; `at` is the file offset of the first bad byte, if known."""

    def __init__(self, at: int | None) -> None:
        super().__init__(at)
        self.at = at


@dataclass(frozen=True)
class RangeTask:
    path: str
    range: ByteRange
    encoding: str | None       # None: the bytes are UTF-8 already (Arrow reads them as they are)
    names: list[str]
    delimiter: str
    note_lines: str | None     # regex of note lines (counted, not rows)
    text_columns: tuple[str, ...] = ()  # columns that must arrive as text (see `not_text_reasons`)


@dataclass
class RangeResult:
    table: pa.Table                 # text columns of the range's rows
    rows_at: np.ndarray             # each row's data line number (1-based, counted from the data start)
    not_text: pa.Array | None = None  # per row, why a must-be-text column holds a number's text form
    notes: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)  # (data line, why)
    other: int = 0                  # lines the handler took that are not notes or bad (whitespace only)
    empty: int = 0                  # empty lines Arrow skipped
    swallowed: bool = False         # a row ran over several lines: a quote was left open


def _empty_lines(path: str, rng: ByteRange) -> np.ndarray:
    """0-based indexes (within the range) of its empty lines ('' or a lone '\\r'), which Arrow skips:
    from the newline positions, found by numpy over the mapped bytes (no Python step per line), a
    block at a time: one comparison over a whole range made a mask as large as the range (72 MB
    of fresh pages per 1M-row half of a district file, 0.1-0.2 s of page faults in each process)."""
    size = rng.end - rng.start
    if size <= 0:
        return np.zeros(0, dtype=np.int64)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        data = np.frombuffer(mapped, dtype=np.uint8, count=size, offset=rng.start)
        try:
            ends = np.concatenate([np.flatnonzero(data[at:at + NEWLINE_BLOCK_BYTES] == 10) + at
                                   for at in range(0, size, NEWLINE_BLOCK_BYTES)])
            if len(ends) < rng.lines:  # a last line without a newline
                ends = np.append(ends, size)
            starts = np.empty_like(ends)
            starts[:1] = 0
            starts[1:] = ends[:-1] + 1
            length = ends - starts
            empty = length == 0
            one = np.flatnonzero(length == 1)
            if len(one):
                empty[one[data[starts[one]] == 13]] = True
            return np.flatnonzero(empty).astype(np.int64)
        finally:
            del data  # release the export before the mapping closes


def parse_range(task: RangeTask) -> RangeResult:
    """One range through the codec and Arrow's CSV parser, single-threaded (the handler then gets
    each bad line's number, and the other cores parse the other ranges)."""
    rng = task.range
    note = re.compile(task.note_lines) if task.note_lines else None
    result = RangeResult(pa.table({}), np.zeros(0, dtype=np.int64))
    handled: list[int] = []  # non-empty line numbers (1-based) the handler took

    def invalid(row: Any) -> str:
        text = row.text or ""
        number = row.number if row.number is not None and row.number > 0 else None
        if number is not None:
            handled.append(number)
        if "\n" in text:
            result.swallowed = True
        if note is not None and note.search(text):
            result.notes += 1
        elif text.strip(task.delimiter + " \t\r"):
            result.bad.append((number or 0, f"row has {row.actual_columns} fields, the header has "
                                            f"{row.expected_columns}"))
        else:
            result.other += 1
        return "skip"

    if task.encoding is None:  # Arrow reads the mapped bytes as they are (and refuses invalid UTF-8)
        mapped = pa.memory_map(task.path)
        mapped.seek(rng.start)
        source: Any = pa.BufferReader(mapped.read_buffer(rng.end - rng.start))
        mapped.close()
    else:
        source = _Utf8Transcoder(Path(task.path), rng.start, rng.end, task.encoding)
    read = pcsv.ReadOptions(column_names=task.names, block_size=8 << 20, use_threads=False)
    parse = pcsv.ParseOptions(delimiter=task.delimiter, invalid_row_handler=invalid, newlines_in_values=False,
                              ignore_empty_lines=True)
    # blank cells are null (empty text means nothing was given), quoted or not. Text the transcoder
    # wrote is valid UTF-8 by construction (Python's codec decoded it strictly, then encoded it), so
    # Arrow checks only bytes it reads as they are (a million 杨浦 rows in one range: 1.11 -> 0.98 CPU-s).
    convert = pcsv.ConvertOptions(column_types={n: pa.string() for n in task.names}, null_values=[""],
                                  strings_can_be_null=True, quoted_strings_can_be_null=True,
                                  check_utf8=task.encoding is None)
    try:
        table = pcsv.read_csv(source, read_options=read, parse_options=parse, convert_options=convert)
    except (UnicodeDecodeError, pa.ArrowException) as exc:
        if isinstance(source, _Utf8Transcoder) and source.error_at is not None:
            raise DecodeFailed(source.error_at) from None
        if isinstance(exc, UnicodeDecodeError):
            raise DecodeFailed(None) from None
        raise
    finally:
        source.close()
    empty = _empty_lines(task.path, rng)
    # Arrow numbers the lines it did not skip; map them back to physical lines of the range
    nonempty = np.ones(rng.lines, dtype=bool)
    nonempty[empty[empty < rng.lines]] = False
    physical = np.flatnonzero(nonempty).astype(np.int64) + 1   # data line (in range) of each non-empty line
    result.empty = len(empty)
    taken = np.zeros(len(physical), dtype=bool)
    if handled:
        idx = np.asarray(handled, dtype=np.int64) - 1
        idx = idx[idx < len(physical)]
        taken[idx] = True
    result.bad = [(int(physical[n - 1]) + rng.lines_before if 0 < n <= len(physical) else 0, why)
                  for n, why in result.bad]
    rows_at = physical[~taken]
    if len(rows_at) != table.num_rows or len(handled) + table.num_rows + len(empty) != rng.lines:
        result.swallowed = True  # lines and rows do not add up: lines were read as one cell
    elif table.num_rows and rng.end < Path(task.path).stat().st_size and _ends_in_open_quote(table):
        result.swallowed = True
    result.table = table
    result.rows_at = rows_at[: table.num_rows] + rng.lines_before
    result.not_text = not_text_reasons(table, [c for c in task.text_columns if c in task.names], {})
    return result


def _ends_in_open_quote(table: pa.Table) -> bool:
    """Whether the range's last row holds a newline in a cell: its range was cut inside a quoted field."""
    last = table.slice(table.num_rows - 1, 1)
    for column in last.columns:
        value = column[0].as_py()
        if value is not None and "\n" in value:
            return True
    return False


# a number's text form: scientific notation, or a whole number written with ".0"
FLOAT_TEXT = r"^\s*[+-]?[0-9]+(\.[0-9]+)?[eE][+-]?[0-9]+\s*$|^\s*[0-9]+\.0+\s*$"


def not_text_reasons(table: pa.Table, columns: list[str], numeric: dict[str, pa.Array]) -> pa.Array:
    """Per row, why a must-be-text column is not text (a number in the workbook, or a number's text
    form such as 3.10110199001011E+17), else null. Both readers flag rows with this; a CSV's ranges
    run it in their own processes."""
    reason = pa.nulls(table.num_rows, pa.string())
    for name in columns:
        looks_float = pc.fill_null(pc.match_substring_regex(table[name], FLOAT_TEXT), False)
        bad = pc.or_(looks_float, numeric[name]) if name in numeric else looks_float
        msg = pa.scalar(f"column {name} arrived as a number, not text (digits may already be lost, e.g. "
                        "scientific notation); it is quarantined, not repaired: store the column as text in the source")
        reason = pc.if_else(pc.and_(pc.is_null(reason), bad), msg, reason)
    return reason


def _shared_dir(size: int) -> str | None:
    """Shared memory when it has room for a child's table, else the temp dir."""
    try:
        if shutil.disk_usage("/dev/shm").free > 4 * size:
            return "/dev/shm"
    except OSError:
        pass
    return None


def _parse_range_to_file(task: RangeTask) -> tuple[str, RangeResult]:
    """In a child: parse the range and leave its table in an Arrow IPC file for the parent to map."""
    result = parse_range(task)
    fd, name = tempfile.mkstemp(prefix="iehub-csv-", suffix=".arrow",
                                dir=_shared_dir(task.range.end - task.range.start))
    try:
        with os.fdopen(fd, "wb") as fh, pa.ipc.new_file(fh, result.table.schema) as writer:
            writer.write_table(result.table)
    except BaseException:
        os.unlink(name)
        raise
    result.table = pa.table({})
    if result.not_text is not None:  # a small column: pickled with the result
        result.not_text = result.not_text.combine_chunks() if isinstance(result.not_text, pa.ChunkedArray) \
            else result.not_text
    return name, result


def _mapped(name: str) -> pa.Table:
    try:
        with pa.memory_map(name) as source:
            return pa.ipc.open_file(source).read_all()  # the table keeps the mapping alive
    finally:
        os.unlink(name)


def parse_ranges(tasks: list[RangeTask]) -> list[RangeResult]:
    """Every range parsed: the first in this process, the others in forked children at the same time."""
    if len(tasks) == 1:
        return [parse_range(tasks[0])]
    if tasks[0].encoding is not None:
        prepare(tasks[0].encoding)  # the decoding tables, built once and inherited by the children
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=len(tasks) - 1, mp_context=context) as pool:
        futures = [pool.submit(_parse_range_to_file, task) for task in tasks[1:]]
        try:
            results = [parse_range(tasks[0])]
        except BaseException:
            for future in futures:
                future.cancel()
            _discard(futures)
            raise
        for future in futures:
            try:
                name, result = future.result()
            except BrokenProcessPool as exc:
                _discard(futures)
                raise RuntimeError(f"the process parsing bytes {tasks[futures.index(future) + 1].range.start}- of "
                                   f"{tasks[0].path} ended abruptly (out of memory?); the file was not read: retry, "
                                   f"or set {_ENV_WORKERS}=1 to parse files in one process") from exc
            except BaseException:
                _discard(futures)
                raise
            result.table = _mapped(name)
            results.append(result)
    return results


def _discard(futures: list[Any]) -> None:
    """Remove the table files of children that finished when the read failed elsewhere."""
    for future in futures:
        try:
            name, _ = future.result()
        except BaseException:  # noqa: BLE001 - the first failure is the one raised; these only clean up
            continue
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


__all__ = ["ByteRange", "DecodeFailed", "RangeResult", "RangeTask", "parse_ranges", "plan_ranges", "range_count"]
