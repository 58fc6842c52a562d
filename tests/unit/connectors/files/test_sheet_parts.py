"""A worksheet read in row parts on several processes reads exactly as the whole sheet: the same
rows, row numbers, text, number flags, blank rows and skipped totals, with blank rows before a
cut, a part wider than the header, and parts that reach no further than their last data row; a
sheet whose rows carry no numbers is read whole; a failing part raises and leaves no file."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from openpyxl import Workbook

from connectors.files import readers, sheet_parts
from connectors.files.readers import ROW_ERROR, read_excel
from connectors.files.sheet_parts import SheetParts, plan_parts
from tests.unit.connectors.files.test_file_readers import spec
from tests.unit.connectors.files.workbooks import minhang_sheet

SPEC = dict(format="excel", sheet="项目", header={"find": "项目编号", "rows": 2})


def _workbook(path: Path, rows: int) -> None:
    """Title, a two-row merged header, then data rows each followed by a blank row (so every cut
    falls after rows the part before it does not reach), IDs sometimes stored as numbers, dates,
    amounts, text in the date column, a cell past the header's width late on, and a 合计 row."""
    wb, ws = minhang_sheet()
    for i in range(rows):
        ident: object = 310110199001011234 + i if i % 97 == 5 else f"MH-{i:05d}"
        start: object = "2024.02.30" if i % 50 == 3 else dt.datetime(2024, 1 + i % 12, 1 + i % 28)
        extra = ["备注"] if i == rows - 10 else []
        ws.append([ident, start, dt.datetime(2025, 2, 28) if i % 3 else None, i / 4, i * 2, *extra])
        ws.append([])
    ws.append(["合计", None, None, 13.5, 22])
    wb.save(path)


def _parts(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(sheet_parts, "range_count", lambda size: n)
    monkeypatch.setattr(sheet_parts, "PART_MIN_BYTES", 1)


@pytest.mark.parametrize("parts", [2, 3])
def test_a_sheet_read_in_parts_reads_as_the_whole_sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        parts: int) -> None:
    path = tmp_path / "m.xlsx"
    _workbook(path, 400)
    whole = read_excel(path, spec(**SPEC))
    collected: list[int] = []
    collect = SheetParts.collect

    def counting(self: SheetParts) -> list:
        found = collect(self)
        collected.append(len(found))
        return found

    monkeypatch.setattr(SheetParts, "collect", counting)
    _parts(monkeypatch, parts)
    split = read_excel(path, spec(**SPEC))
    assert collected == [parts - 1]  # the sheet was read in parts
    assert split.table.equals(whole.table) and split.skipped == whole.skipped
    assert whole.skipped == {"blank rows": 400, "项目编号~^合计": 1}
    assert "column_6" in whole.table.column_names  # the cell past the header's width, late in the sheet
    assert whole.table[ROW_ERROR].to_pylist().count(None) == 400 - 5  # IDs stored as numbers


def test_rows_without_numbers_are_not_cut() -> None:
    xml = b"<worksheet><sheetData>" + b"<row><c><v>1</v></c></row>" * 50 + b"</sheetData></worksheet>"
    assert plan_parts(xml, 2, 0) is None
    numbered = b"".join(b'<row r="%d"><c><v>1</v></c></row>' % (i + 1) for i in range(50))
    data_start, data_end, cuts = plan_parts(b"<worksheet><sheetData>" + numbered + b"</sheetData></worksheet>", 2, 30)
    assert len(cuts) == 1 and cuts[0].row > 30  # never among the rows the header may be in


def test_a_failing_part_raises_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.xlsx"
    _workbook(path, 200)
    _parts(monkeypatch, 2)
    shared = tmp_path / "shm"
    shared.mkdir()
    monkeypatch.setattr(sheet_parts, "_shared_dir", lambda size: str(shared))

    def failing(body: list, width: int) -> tuple[list, list]:
        raise ValueError("conversion failed")

    parts = SheetParts(path, "xl/worksheets/sheet1.xml", "项目", after_row=10, max_rows=10**6, max_cells=10**8,
                       columns_of=failing)
    assert parts.first_path is not None
    with pytest.raises(ValueError, match="conversion failed"):
        parts.collect()
    parts.close()
    assert not list(shared.iterdir())


def test_a_sheet_over_the_row_cap_is_refused_when_read_in_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.xlsx"
    _workbook(path, 300)
    _parts(monkeypatch, 2)
    monkeypatch.setattr(readers, "_check_workbook_caps", lambda p, s: ("项目", "xl/worksheets/sheet1.xml"))
    with pytest.raises(readers.Unreadable, match="more than 500 rows"):
        read_excel(path, spec(**SPEC, limits={"max_rows": 500}))


def test_a_part_whose_first_column_is_empty_reads_as_the_whole_sheet(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.xlsx"
    wb = Workbook()
    ws = wb.active
    ws.title = "项目"
    ws.append(["项目编号", "项目名称", "金额"])
    for i in range(300):  # after the first rows column A is empty: a later part starts at column B
        ws.append([f"MH-{i}" if i < 20 else None, f"项目{i}", i * 1.5])
    wb.save(path)
    whole = read_excel(path, spec(format="excel", header={"find": "项目编号"}))
    _parts(monkeypatch, 3)
    split = read_excel(path, spec(format="excel", header={"find": "项目编号"}))
    assert split.table.equals(whole.table)
    assert whole.table["项目名称"].to_pylist()[-1] == "项目299" and whole.table["项目编号"].null_count == 280


def test_the_first_part_becomes_columns_before_the_later_parts_are_collected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent turns its own rows into columns while the other parts are still read (the work
    overlaps), and the table is the whole read's."""
    path = tmp_path / "m.xlsx"
    _workbook(path, 300)
    whole = read_excel(path, spec(**SPEC))
    calls: list[str] = []
    columns_text, collect = readers._columns_text, SheetParts.collect
    monkeypatch.setattr(readers, "_columns_text", lambda body, width: (calls.append("columns"),
                                                                        columns_text(body, width))[1])
    monkeypatch.setattr(SheetParts, "collect", lambda self: (calls.append("collect"), collect(self))[1])
    _parts(monkeypatch, 2)
    split = read_excel(path, spec(**SPEC))
    assert calls == ["columns", "collect"]
    assert split.table.equals(whole.table) and split.skipped == whole.skipped


def test_a_sheet_without_its_header_read_in_parts_fails_as_a_whole_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.xlsx"
    _workbook(path, 300)
    wrong = {**SPEC, "header": {"find": "学员编号", "rows": 2}}
    with pytest.raises(readers.Unreadable, match="no header row holding '学员编号'"):
        read_excel(path, spec(**wrong))
    _parts(monkeypatch, 2)
    with pytest.raises(readers.Unreadable, match="no header row holding '学员编号'"):
        read_excel(path, spec(**wrong))


def test_a_sheet_is_inflated_as_zipfile_reads_it_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "m.xlsx"
    _workbook(path, 50)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("xl/worksheets/sheet1.xml")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert sheet_parts._inflate(path, zf, info) == zf.read(info)
    stored = tmp_path / "stored.xlsx"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as out:
        for item in src.infolist():
            out.writestr(item.filename, src.read(item))
    with zipfile.ZipFile(stored) as zf, zipfile.ZipFile(path) as original:
        assert sheet_parts._inflate(stored, zf, zf.getinfo(info.filename)) == original.read(info.filename)
    damaged = bytearray(path.read_bytes())  # one byte of the sheet's compressed data changed
    at = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    damaged[at] ^= 0xFF
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(bytes(damaged))
    with zipfile.ZipFile(bad) as zf, pytest.raises(zipfile.BadZipFile):
        sheet_parts._inflate(bad, zf, zf.getinfo(info.filename))


def test_a_parts_merged_cells_stand_before_its_rows_and_are_the_sheets(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """calamine finds a part's merges without a second pass over its rows, and finds the same ones."""
    import zipfile

    from python_calamine import CalamineWorkbook

    path = tmp_path / "m.xlsx"
    _workbook(path, 300)
    _parts(monkeypatch, 2)
    parts = SheetParts(path, "xl/worksheets/sheet1.xml", "项目", after_row=10, max_rows=10**6, max_cells=10**8,
                       columns_of=readers._columns_text)
    try:
        assert parts.first_path is not None
        with zipfile.ZipFile(parts.first_path) as zf:
            xml = zf.read("xl/worksheets/sheet1.xml")
        assert xml.index(b"<mergeCells") < xml.index(b"<sheetData") and xml.count(b"<mergeCells") == 1
        whole = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("项目")
        first = CalamineWorkbook.from_path(str(parts.first_path)).get_sheet_by_name("项目")
        assert sorted(first.merged_cell_ranges) == sorted(whole.merged_cell_ranges) and len(whole.merged_cell_ranges) == 4
        rows = first.to_python(skip_empty_area=False)  # narrower than the whole sheet, which widens late
        assert 0 < len(rows) <= parts.first_end
        assert rows == [r[:len(rows[0])] for r in whole.to_python(skip_empty_area=False)[:len(rows)]]
        assert len(parts.collect()) == 1
    finally:
        parts.close()


@pytest.mark.parametrize(("tail", "moved", "left"), [
    (b'</sheetData><mergeCells count="1"><mergeCell ref="A1:B1"/></mergeCells><pageMargins/></worksheet>',
     b'<mergeCells count="1"><mergeCell ref="A1:B1"/></mergeCells>', b"</sheetData><pageMargins/></worksheet>"),
    (b"</sheetData><pageMargins/></worksheet>", b"<mergeCells></mergeCells>", b"</sheetData><pageMargins/></worksheet>"),
    (b"</sheetData><mergeCells/></worksheet>", b"<mergeCells></mergeCells>", b"</sheetData></worksheet>"),
])
def test_merges_are_moved_before_the_rows(tail: bytes, moved: bytes, left: bytes) -> None:
    head = b'<worksheet><dimension ref="A1:B3"/><sheetData>'
    xml = head + b'<row r="1"><c r="A1"><v>1</v></c></row>' + tail
    front, rest = sheet_parts._merges_first(xml, len(head), xml.index(b"</sheetData>"))
    assert b"".join(front) == b'<worksheet><dimension ref="A1:B3"/>' + moved + b"<sheetData>"
    assert rest == left
    prefixed = b'<x:worksheet><x:sheetData><x:row r="1"/></x:sheetData></x:worksheet>'
    front, _ = sheet_parts._merges_first(prefixed, prefixed.index(b"<x:row"), prefixed.index(b"</x:sheetData>"))
    assert b"".join(front) == b"<x:worksheet><x:mergeCells></x:mergeCells><x:sheetData>"


def test_the_collector_is_paused_only_while_a_workbook_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    path = tmp_path / "m.xlsx"
    _workbook(path, 100)
    seen: list[bool] = []
    columns_text = readers._columns_text
    monkeypatch.setattr(readers, "_columns_text", lambda body, width: (seen.append(gc.isenabled()),
                                                                        columns_text(body, width))[1])
    assert gc.isenabled()
    read_excel(path, spec(**SPEC))
    assert seen == [False] and gc.isenabled()
    with pytest.raises(readers.Unreadable):
        read_excel(path, spec(**{**SPEC, "header": {"find": "学员编号"}}))
    assert gc.isenabled()
    gc.disable()
    try:
        with sheet_parts.gc_paused():
            pass
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()
