"""A CSV parsed in byte ranges on several processes reads exactly as one sequential parse: the
same rows, line numbers, skipped lines and bad lines; GB18030 characters (two- and four-byte)
and quoted fields across the cuts; a quote that swallows lines across a cut still refuses the
file naming the line it opened on; a bad byte in a child's range names its file offset."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.files import chunks
from connectors.files.readers import ParsedFile, Unreadable, read_csv
from tests.unit.connectors.files.test_file_readers import HEADER, spec


def ranges(monkeypatch: pytest.MonkeyPatch, n: int, block: int = 5) -> None:
    """Parse in `n` ranges (n - 1 forked children) however small the file, decoding `block` bytes at a time."""
    monkeypatch.setattr("connectors.files.readers.range_count", lambda size: n)
    monkeypatch.setattr(chunks, "DECODE_BLOCK_BYTES", block)


def body(n: int) -> list[str]:
    """Rows with two-byte GBK text, four-byte GB18030 characters (𠀀, 𡃁) and quoted cells with commas."""
    out = []
    for i in range(1, n + 1):
        name = f'"上海电机学院,实训基地𠀀{i}"' if i % 7 == 0 else f"上海海洋大学（临港）𡃁{i}"
        out.append(f"YP-{i:04d},{name},2023年4月{i % 28 + 1}日,{i}.50")
    return out


def lines_with_everything(n: int) -> list[str]:
    lines = ["杨浦区项目清单", HEADER, *body(n)]
    lines[10:10] = ["", "   ", ",,,", "YP-bad,只有两列"]
    lines[25:25] = [HEADER, "", ""]
    lines[40:40] = ["注：中间的说明"]
    return [*lines, "合计,,,1.00", "注：金额单位为万元"]


def write(tmp_path: Path, lines: list[str], encoding: str = "gb18030", newline: str = "\r\n") -> Path:
    path = tmp_path / "f.csv"
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


def same(a: ParsedFile, b: ParsedFile) -> None:
    assert a.table.equals(b.table)
    assert (a.skipped, a.bad_lines, a.lines, a.encoding) == (b.skipped, b.bad_lines, b.lines, b.encoding)


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig"])
@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_ranges_read_exactly_as_one_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str,
                                          newline: str) -> None:
    lines = lines_with_everything(120)
    path = write(tmp_path, lines, encoding, newline)
    whole = read_csv(path, spec())
    assert whole.table.num_rows == 120 and whole.lines == len(lines)
    assert whole.table["项目名称"][6].as_py() == "上海电机学院,实训基地𠀀7"
    for n in (2, 3, 5, 8):
        ranges(monkeypatch, n)
        assert len(chunks.plan_ranges(path, 0, n)) == n  # the file really is cut n ways
        same(read_csv(path, spec()), whole)


def test_line_numbers_stay_exact_when_a_cut_meets_blank_notes_and_bad_lines(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lines = lines_with_everything(60)
    path = write(tmp_path, lines)
    rows = read_csv(path, spec())
    # every physical line is a row, or skipped by a named rule, or a bad line with its number
    assert [lines[n - 1].split(",")[0] for n in rows.table["_file_row"].to_pylist()] == \
        rows.table["项目编号"].to_pylist()
    assert rows.bad_lines == [(lines.index("YP-bad,只有两列") + 1, "row has 2 fields, the header has 4")]
    assert rows.skipped == {"title rows": 1, "blank lines": 5, "repeated header": 1, "note lines": 2,
                            "项目编号~^合计": 1}
    # cuts at every few lines: each lands on another kind of line
    for n in range(2, 12):
        ranges(monkeypatch, n, block=3)
        same(read_csv(path, spec()), rows)


def test_a_quoted_field_over_several_lines_is_refused_naming_its_line_wherever_the_cut_falls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [HEADER, *body(30)]
    opened = 16  # physical line of the opening quote; the field closes 12 lines later
    lines[opened - 1] = 'YP-0015,"上海电机学院实训基地'
    lines[opened:opened] = [f"说明第{i}行" for i in range(11)] + ['完",2023年4月1日,1.00']
    path = write(tmp_path, lines)
    message = f'a quote \\(\\"\\) opened at line {opened} is not closed'
    with pytest.raises(Unreadable, match=message):
        read_csv(path, spec())
    inside = 0
    for n in range(2, 9):
        ranges(monkeypatch, n)
        cuts = [r.start for r in chunks.plan_ranges(path, len(HEADER.encode("gb18030")) + 2, n)[1:]]
        starts = [sum(len(line.encode("gb18030")) + 2 for line in lines[:i]) for i in range(opened, opened + 12)]
        inside += any(cut in starts for cut in cuts)
        with pytest.raises(Unreadable, match=message):
            read_csv(path, spec())
    assert inside  # some cut fell inside the quoted field, and the file was still refused


@pytest.mark.parametrize("cell", [1, 3], ids=["name cell", "last cell"])
def test_a_stray_quote_on_the_last_line_before_a_cut_still_refuses_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cell: int) -> None:
    for row in range(10, 21):  # the stray quote on each line around the middle cut
        lines = [HEADER, *body(30)]
        if '"' in lines[row]:
            continue  # a quoted cell already
        cells = lines[row].split(",")
        cells[cell] = '"' + cells[cell]
        lines[row] = ",".join(cells)
        path = write(tmp_path, lines)
        ranges(monkeypatch, 2)
        with pytest.raises(Unreadable, match=f'opened at line {row + 1} is not closed'):
            read_csv(path, spec())


def test_a_bad_byte_in_a_childs_range_names_its_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connectors.files.readers.HEAD_BYTES", 64)
    data = ("\r\n".join([HEADER, *body(200)]) + "\r\n").encode("gb18030")
    path = tmp_path / "f.csv"
    path.write_bytes(data + b"YP-x,\xff\xff,2023-01-01,1\r\n" + ("\r\n".join(body(50)) + "\r\n").encode("gb18030"))
    ranges(monkeypatch, 3)
    with pytest.raises(Unreadable, match=f"gb18030 \\(fails at byte {len(data) + 5}\\)"):
        read_csv(path, spec())


def test_ranges_leave_no_table_files_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "shm"
    folder.mkdir()
    monkeypatch.setattr(chunks, "_shared_dir", lambda size: str(folder))
    path = write(tmp_path, lines_with_everything(80))
    ranges(monkeypatch, 4)
    assert read_csv(path, spec()).table.num_rows == 80
    assert not list(folder.iterdir())


@pytest.mark.parametrize(("line", "closed"), [
    (b'YP-1,plain,2023,1\r\n', True), (b'YP-1,"a,b",2023,1\r\n', True), (b'YP-1,"a""b",x\r\n', True),
    (b'YP-1,a"b,c\r\n', True), (b'YP-1,"open,c\r\n', False), (b'YP-1,x,"open\r\n', False),
    (b'YP-1,"a""\r\n', False), (b'"x"y",z\r\n', True)])
def test_a_cut_goes_only_after_a_line_that_closes_its_quotes(line: bytes, closed: bool) -> None:
    assert chunks._closes_its_quotes(line, b",") is closed
    assert chunks._closes_its_quotes(line, None) is (b'"' not in line)


def test_range_count_follows_size_cores_and_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert chunks.range_count(chunks.RANGE_MIN_BYTES // 2) == 1
    assert chunks.range_count(100 * chunks.RANGE_MIN_BYTES) == 2
    monkeypatch.setenv("IEHUB_FILE_WORKERS", "1")
    assert chunks.range_count(100 * chunks.RANGE_MIN_BYTES) == 1
    monkeypatch.setenv("IEHUB_FILE_WORKERS", "many")
    with pytest.raises(ValueError, match="IEHUB_FILE_WORKERS='many' is not a number"):
        chunks.range_count(100 * chunks.RANGE_MIN_BYTES)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="\n\ra,", max_size=40))
def test_empty_lines_are_found_as_a_line_by_line_reading_finds_them(tmp_path_factory: pytest.TempPathFactory,
                                                                     text: str) -> None:
    data = text.encode()
    path = tmp_path_factory.mktemp("e") / "f.csv"
    path.write_bytes(data)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline ends the last line
    rng = chunks.ByteRange(0, len(data), 0, len(lines))
    expected = [i for i, line in enumerate(lines) if line in (b"", b"\r")]
    for block in (chunks.NEWLINE_BLOCK_BYTES, 3):  # newlines found a block at a time, blocks cut anywhere
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(chunks, "NEWLINE_BLOCK_BYTES", block)
            assert chunks._empty_lines(str(path), rng).tolist() == expected


def test_a_range_process_that_dies_fails_the_read_saying_what_to_do(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, lines_with_everything(80))
    ranges(monkeypatch, 2)
    monkeypatch.setattr(chunks, "_parse_range_to_file", _die)
    with pytest.raises(RuntimeError, match="ended abruptly .* set IEHUB_FILE_WORKERS=1"):
        read_csv(path, spec())


def _die(task: chunks.RangeTask) -> None:
    import os

    os._exit(9)  # as the kernel's OOM killer would end it
