"""Reading dropped files: encodings, header rules, notes, totals, text columns, half-written files."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.files.readers import (
    ROW_ERROR,
    Incomplete,
    Unreadable,
    _cell_text,
    _text_column,
    read_csv,
    read_excel,
)
from connectors.files.spec import FileStreamSpec
from tests.unit.connectors.files.workbooks import minhang_sheet

HEADER = "项目编号,项目名称,开始日期,金额(万元)"


def spec(**kw) -> FileStreamSpec:
    base = dict(entity="project", primary_key="项目编号", mapping={"fields": {}, "deleted": {"from": "_deleted"}},
                pattern="*.csv", format="csv", header={"find": "项目编号"}, note_lines="^\\s*注",
                skip=[{"column": "项目编号", "matches": "^合计"}], text_columns=["项目编号"])
    base.update(kw)
    return FileStreamSpec.model_validate(base)


def write(tmp_path: Path, text: str, encoding: str) -> Path:
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig"])
def test_gbk_and_bom_files_read_the_same_with_notes_blanks_and_totals_skipped(tmp_path: Path, encoding: str) -> None:
    text = (f"杨浦区项目清单\n{HEADER}\n00123,上海电机学院实训基地,2023年4月27日,12.50\n\n"
            "YP-2,上海海事大学产业学院,2023年5月1日,8\n合计,,,20.50\n注：金额单位为万元\n")
    parsed = read_csv(write(tmp_path, text, encoding), spec())
    rows = parsed.table.to_pylist()
    assert [r["项目编号"] for r in rows] == ["00123", "YP-2"]  # leading zeros kept: text
    assert rows[0]["开始日期"] == "2023年4月27日" and rows[0]["金额(万元)"] == "12.50"
    # every line accounted for: 1 title, 1 header, 2 rows (lines 3 and 5), 1 blank, 1 total, 1 note
    assert parsed.skipped == {"title rows": 1, "blank lines": 1, "note lines": 1, "项目编号~^合计": 1}
    assert [r["_file_row"] for r in rows] == [3, 5] and parsed.lines == 7
    assert parsed.encoding == ("gb18030" if encoding == "gbk" else "utf-8-sig")
    assert not parsed.bad_lines


def test_a_file_in_no_listed_encoding_is_unreadable_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(HEADER.encode("utf-8") + b"\n\x81\x30\xff\xfe,x,y,z\n")
    with pytest.raises(Unreadable, match="cannot be decoded as utf-8-sig or gb18030"):
        read_csv(path, spec())


def test_a_row_with_the_wrong_number_of_fields_is_reported_not_dropped(tmp_path: Path) -> None:
    parsed = read_csv(write(tmp_path, f"{HEADER}\nA,b,2023-01-01,1\nB,only-two\n", "utf-8"), spec())
    assert parsed.table.num_rows == 1
    assert len(parsed.bad_lines) == 1 and "2 fields" in parsed.bad_lines[0][1]


def test_float_looking_text_in_an_id_column_is_flagged(tmp_path: Path) -> None:
    parsed = read_csv(write(tmp_path, f"{HEADER}\n3.10110199001011E+17,x,,\nYP-1,y,,\n", "utf-8"), spec())
    errors = parsed.table[ROW_ERROR].to_pylist()
    assert errors[0] and "not repaired" in errors[0] and "3.1011" not in errors[0]
    assert errors[1] is None


def _workbook(path: Path, *, id_as_number: bool) -> None:
    wb, ws = minhang_sheet()
    import datetime as dt

    ws.append([310110199001011234 if id_as_number else "MH-001", dt.datetime(2024, 3, 1), dt.datetime(2025, 2, 28), 12.5, 20])
    ws.append(["MH-002", dt.datetime(2024, 4, 1), None, 1, 2])
    ws.append(["合计", None, None, 13.5, 22])
    wb.save(path)


def test_excel_title_merged_headers_dates_and_totals(tmp_path: Path) -> None:
    path = tmp_path / "m.xlsx"
    _workbook(path, id_as_number=False)
    parsed = read_excel(path, spec(format="excel", sheet="项目", header={"find": "项目编号", "rows": 2}))
    assert [c for c in parsed.table.column_names if not c.startswith("_")] == [
        "项目编号", "项目周期/开始日期", "项目周期/结束日期", "经费(万元)/财政", "经费(万元)/小计"]
    rows = parsed.table.to_pylist()
    assert [r["项目编号"] for r in rows] == ["MH-001", "MH-002"]
    assert rows[0]["项目周期/开始日期"] == "2024-03-01" and rows[0]["经费(万元)/财政"] == "12.5"
    assert rows[0]["_file_row"] == 4 and parsed.skipped == {"项目编号~^合计": 1}


def test_excel_id_stored_as_a_number_is_flagged_never_repaired(tmp_path: Path) -> None:
    path = tmp_path / "m.xlsx"
    _workbook(path, id_as_number=True)
    parsed = read_excel(path, spec(format="excel", sheet="项目", header={"find": "项目编号", "rows": 2}))
    errors = parsed.table[ROW_ERROR].to_pylist()
    assert errors[0] and "arrived as a number" in errors[0] and errors[1] is None


def test_a_truncated_workbook_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "m.xlsx"
    _workbook(path, id_as_number=False)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(Incomplete):
        read_excel(path, spec(format="excel"))


def test_a_snapshot_spec_without_the_tombstone_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="deleted"):
        spec(mapping={"fields": {}})


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.lists(st.one_of(st.none(), st.floats(allow_nan=True), st.floats(min_value=-1e16, max_value=1e16).map(round),
                       st.sampled_from([0.1, 12.5, 1e15, 999999999999999.0, -0.0, 1.5e-07, 316.56, 1e-4, 9.9999e-05,
                                       9999999999.5, 10000000000.5, -0.00012, float('inf')]),
                       st.integers(min_value=0, max_value=10**9).map(lambda c: c / 100))),
    st.lists(st.one_of(st.none(), st.datetimes(min_value=dt.datetime(1900, 1, 1)),
                       st.dates(min_value=dt.date(1900, 1, 1)).map(lambda d: dt.datetime(d.year, d.month, d.day)))),
    st.lists(st.one_of(st.none(), st.dates())),
    st.lists(st.one_of(st.none(), st.booleans())),
    st.lists(st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1))),
    st.lists(st.one_of(st.none(), st.just(""), st.text(max_size=5), st.floats(), st.dates(), st.booleans(),
                       st.integers(min_value=-(2**70), max_value=2**70), st.times())),
))
def test_excel_columns_convert_by_type_exactly_as_cell_by_cell(values: list) -> None:
    texts, numeric = _text_column(list(values))
    assert texts.to_pylist() == [_cell_text(v) for v in values]
    assert numeric.to_pylist() == [v not in (None, "") and not isinstance(v, str) for v in values]


def test_gbk_decoded_in_small_blocks_splits_no_character(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # blocks of 7 bytes cut through nearly every two-byte GBK character: the result must not change
    rows = [f"YP-{i:03d},上海海洋大学（临港）实训基地{i},2023年4月{i % 28 + 1}日,{i}.5" for i in range(60)]
    path = write(tmp_path, f"{HEADER}\n" + "\n".join(rows) + "\n注：完\n", "gbk")
    whole = read_csv(path, spec()).table
    monkeypatch.setattr("connectors.files.chunks.DECODE_BLOCK_BYTES", 7)
    small = read_csv(path, spec()).table
    assert small.equals(whole) and small.num_rows == 60
    assert small["项目名称"][59].as_py() == "上海海洋大学（临港）实训基地59"


def test_a_bad_byte_past_the_sniffed_head_names_its_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connectors.files.readers.HEAD_BYTES", 64)
    good = f"{HEADER}\n" + "".join(f"YP-{i},上海电力大学,2023-01-01,1\n" for i in range(20))
    data = good.encode("gb18030")
    path = tmp_path / "f.csv"
    path.write_bytes(data + b"YP-x,\xff\xff,2023-01-01,1\n")
    with pytest.raises(Unreadable, match=f"gb18030 \\(fails at byte {len(data) + 5}\\)"):
        read_csv(path, spec())


def test_blank_cells_quoted_or_not_are_null_and_delimiter_only_lines_are_skipped(tmp_path: Path) -> None:
    parsed = read_csv(write(tmp_path, f'{HEADER}\nYP-1,"",,\n,,,\nYP-2, ,2023-01-01,""\n', "utf-8"), spec())
    assert parsed.table.select(["项目编号", "项目名称", "开始日期"]).to_pylist() == [
        {"项目编号": "YP-1", "项目名称": None, "开始日期": None},
        {"项目编号": "YP-2", "项目名称": " ", "开始日期": "2023-01-01"}]
    assert parsed.skipped == {"blank lines": 1}
    assert parsed.table["_file_row"].to_pylist() == [2, 4]  # physical lines of the file
