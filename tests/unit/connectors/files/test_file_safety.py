"""Issue #19 at the reader and the drop folder: line accounting, stray quotes, caps before
expansion, non-text files named for what they are, symlinks refused, and the guard's arithmetic."""
from __future__ import annotations

import gzip
import os
import re
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook

from connectors.files.location import LocalLocation
from connectors.files.readers import Unreadable, read_csv, read_excel, sniff
from connectors.files.spec import FileStreamSpec
from connectors.guard import ShrinkFigures, SnapshotGuard, shrink_reason

HEADER = "项目编号,项目名称,开始日期,金额(万元)"


def spec(**kw) -> FileStreamSpec:
    base = dict(entity="project", primary_key="项目编号", mapping={"fields": {}, "deleted": {"from": "_deleted"}},
                pattern="*.csv", format="csv", header={"find": "项目编号"}, note_lines="^\\s*注",
                skip=[{"column": "项目编号", "matches": "^合计"}])
    base.update(kw)
    return FileStreamSpec.model_validate(base)


def csv_file(tmp_path: Path, lines: list[str], encoding: str = "gbk") -> Path:
    path = tmp_path / "f.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def rows(n: int) -> list[str]:
    return [f"YP-{i},上海电机学院实训基地{i},2023年4月27日,12.50" for i in range(1, n + 1)]


def test_every_line_is_read_skipped_by_a_named_rule_or_reported_with_its_number(tmp_path: Path) -> None:
    lines = ["杨浦区项目清单", HEADER, *rows(3), "", HEADER, "YP-9,只有两列", ",,,", "合计,,,37.50", "注：单位万元"]
    parsed = read_csv(csv_file(tmp_path, lines), spec())
    assert parsed.table["项目编号"].to_pylist() == ["YP-1", "YP-2", "YP-3"]
    assert parsed.table["_file_row"].to_pylist() == [3, 4, 5]
    assert parsed.skipped == {"title rows": 1, "note lines": 1, "blank lines": 2, "repeated header": 1,
                              "项目编号~^合计": 1}
    assert parsed.bad_lines == [(8, "row has 2 fields, the header has 4")]
    accounted = 2 + parsed.table.num_rows + sum(parsed.skipped.values()) - 1 + len(parsed.bad_lines)
    assert parsed.lines == len(lines) == accounted


@pytest.mark.parametrize("cell", [1, 3], ids=["name cell", "last cell"])
def test_a_quote_that_swallows_lines_refuses_the_file_naming_the_line(tmp_path: Path, cell: int) -> None:
    body = rows(100)
    cells = body[61].split(",")
    cells[cell] = '"' + cells[cell]
    body[61] = ",".join(cells)  # physical line 63
    with pytest.raises(Unreadable, match=r'a quote \(\"\) opened at line 63 is not closed'):
        read_csv(csv_file(tmp_path, [HEADER, *body]), spec())


def test_a_quote_inside_a_cell_is_text_not_an_error(tmp_path: Path) -> None:
    body = rows(5)
    body[2] = 'YP-3,上海"电机"学院,2023年4月27日,1'
    parsed = read_csv(csv_file(tmp_path, [HEADER, *body]), spec())
    assert parsed.table.num_rows == 5 and parsed.table["项目名称"][2].as_py() == '上海"电机"学院'


def test_csv_caps_refuse_before_reading(tmp_path: Path) -> None:
    path = csv_file(tmp_path, [HEADER, *rows(50)])
    with pytest.raises(Unreadable, match="50 rows, more than limits.max_rows = 10"):
        read_csv(path, spec(limits={"max_rows": 10}))
    with pytest.raises(Unreadable, match="limits.max_cells = 100"):
        read_csv(path, spec(limits={"max_cells": 100}))


def workbook(tmp_path: Path, n: int) -> Path:
    wb = Workbook()
    ws = wb.active
    ws.title = "项目"
    ws.append(["项目编号", "项目名称"])
    for i in range(n):
        ws.append([f"MH-{i}", "实训基地"])
    path = tmp_path / "w.xlsx"
    wb.save(path)
    return path


def excel_spec(**kw) -> FileStreamSpec:
    return spec(pattern="*.xlsx", format="excel", sheet="项目", **kw)


def test_a_workbook_over_the_row_cap_is_refused_from_its_declared_size_before_any_cell(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import python_calamine

    path = workbook(tmp_path, 5000)

    def never(*args: object) -> None:
        raise AssertionError("the workbook's cells were opened")

    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_path", never)
    with pytest.raises(Unreadable, match=r"sheet '项目' \(by its declared size\) has 5001 rows, more than limits.max_rows"):
        read_excel(path, excel_spec(limits={"max_rows": 1000}))
    with pytest.raises(Unreadable, match="expand to .* bytes, more than limits.max_bytes = 1000"):
        read_excel(path, excel_spec(limits={"max_bytes": 1000}))


def test_a_workbook_that_declares_no_size_stops_at_the_row_cap(tmp_path: Path) -> None:
    path = workbook(tmp_path, 5000)
    stripped = tmp_path / "nodim.xlsx"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(stripped, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("xl/worksheets/"):
                data, n = re.subn(rb"<dimension [^>]*>", b"", data)
                assert n == 1
            dst.writestr(info, data)
    with pytest.raises(Unreadable, match=r"more than 1000 rows of 2 columns \(limits.max_rows = 1000"):
        read_excel(stripped, excel_spec(limits={"max_rows": 1000}))
    assert read_excel(stripped, excel_spec()).table.num_rows == 5000


@pytest.mark.parametrize("data, expected", [
    (b"", "empty file"),
    (gzip.compress("项目编号\n".encode()), "gzip archive"),
    ("项目编号,项目名称\nYP-1,x\n".encode("utf-16"), "UTF-16 text (it starts with a UTF-16 byte-order mark)"),
    ("项目编号,项目名称\nYP-1,x\n".encode("utf-16-le"), "UTF-16 text without a byte-order mark"),
    (bytes(range(256)), "binary data"),
    (b"PK\x03\x04\x14\x00[Content_Types].xml xl/workbook.xml", "an Excel workbook (xlsx) named as a CSV"),
    ("项目编号,项目名称\n".encode("gbk"), None),
])
def test_non_text_csv_files_are_named_for_what_they_are(data: bytes, expected: str | None) -> None:
    found = sniff(data, len(data), "csv")
    assert (found is None) if expected is None else (expected in found)


def test_a_csv_named_xlsx_is_not_a_workbook() -> None:
    data = "项目编号,项目名称\n".encode("gbk")
    assert "a CSV named .xlsx" in sniff(data, len(data), "excel")


def test_symlinks_and_paths_leading_outside_the_drop_folder_are_listed_as_refused(tmp_path: Path) -> None:
    drop, outside = tmp_path / "drop", tmp_path / "outside"
    drop.mkdir()
    (outside / "sub").mkdir(parents=True)
    (outside / "data.csv").write_text("x\n")
    (outside / "sub" / "f_2.csv").write_text("x\n")
    (drop / "f_0.csv").write_text("x\n")
    os.symlink(outside / "data.csv", drop / "f_1.csv")
    os.symlink("/etc/passwd", drop / "f_3.csv")
    os.symlink(outside / "sub", drop / "linked")
    location = LocalLocation(str(drop), drop)
    entries = {e.name: e.refused for e in location.list("f_*.csv")}
    assert entries["f_0.csv"] is None
    assert "symbolic link" in entries["f_1.csv"] and "symbolic link" in entries["f_3.csv"]
    nested = {e.name: e.refused for e in location.list("*/f_*.csv")}  # through the linked folder
    assert all(reason is not None for reason in nested.values())


@pytest.mark.parametrize("figures, suspect", [
    (ShrinkFigures(rows=0, live=200, deleting=200), True),
    (ShrinkFigures(rows=60, live=200, deleting=140), True),
    (ShrinkFigures(rows=195, live=200, deleting=10), False),
    (ShrinkFigures(rows=5, live=0, deleting=0), False),                      # a fresh source
    (ShrinkFigures(rows=90, live=200, deleting=0, previous_rows=200), True),  # much smaller than the last
    (ShrinkFigures(rows=3, live=4, deleting=1), False),                      # too small to judge
])
def test_the_guard_holds_a_read_that_deletes_too_much_or_shrinks_sharply(figures: ShrinkFigures,
                                                                        suspect: bool) -> None:
    reason = shrink_reason(figures, SnapshotGuard())
    assert (reason is not None) == suspect
    if reason:
        assert f"of {figures.live} live rows" in reason or "last accepted" in reason


def test_the_guard_limit_is_set_per_spec() -> None:
    figures = ShrinkFigures(rows=150, live=200, deleting=50)
    assert shrink_reason(figures, SnapshotGuard()) is not None  # 25 % > 20 %
    assert shrink_reason(figures, spec(snapshot_guard={"max_delete_share": 0.3}).snapshot_guard) is None


def test_a_workbook_bomb_is_refused_by_the_default_caps_before_its_cells_become_objects(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import python_calamine

    path = workbook(tmp_path, 10)  # declares A1:B11; rewrite it to declare a million rows × 11 columns
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("xl/worksheets/"):
                data = re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:K1000000"', data)
            dst.writestr(info, data)
    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_path", lambda *a: pytest.fail("cells opened"))
    with pytest.raises(Unreadable, match=r"1000000 rows × 11 columns, more than limits.max_workbook_cells"):
        read_excel(bomb, excel_spec())
