"""The correction file a district steward opens: safe cells, reasons in Chinese, one sheet per entity."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
from openpyxl import load_workbook

from iehub.corrections import reason_zh, write_corrections


def _rows() -> pa.Table:
    def row(entity: str, key: str, field: str, rule: str, reason: str, record: dict) -> dict:
        return {"entity": entity, "_source": "district_fengxian", "_batch_id": "b1", "batch_status": "landed",
                "_page": 1, "_row": 0, "_key": key, "field": field, "rule": rule, "reason": reason,
                "_record": json.dumps(record, ensure_ascii=False)}
    return pa.Table.from_pylist([
        row("project", "FX-3", "category", "mapping.map",
            "field category: '校企联合培养' is not in the value map m (known: 订单培养)",
            {"_file": "fx_20240301.csv", "_file_row": 5, "项目编号": "FX-3", "项目类型": "校企联合培养"}),
        row("project", "FX-5", "start_date", "mapping.date", "field start_date: '2024年2月30日' is not a recognised date",
            {"_file": "fx_20240301.csv", "_file_row": 7, "项目编号": "FX-5", "项目名称": "=1+2\x0b", "备注": "@SUM(A1)"}),
        row("trainee", "T-1", "is_employed", "mapping.map", "field is_employed: '待定' is not in the value map n",
            {"_file": "mh_202403.xlsx", "_file_row": 3, "学员编号": "T-1", "留用就业": "-待定"}),
    ])


def test_xlsx_has_one_sheet_per_entity_with_neutralised_and_holdable_cells(tmp_path: Path) -> None:
    (out,) = write_corrections(_rows(), tmp_path / "fx.xlsx", "xlsx")
    book = load_workbook(out)
    assert book.sheetnames == ["project", "trainee"]
    header, *body = [list(r) for r in book["project"].iter_rows(values_only=True)]
    fx5 = body[1]
    assert fx5[header.index("原始·项目名称")] == "'=1+2\ufffd"  # no live formula, no cell the file cannot hold
    assert fx5[header.index("原始·备注")] == "'@SUM(A1)"
    assert fx5[header.index("原文件行号 line/row")] == "7" and fx5[header.index("文件 file")] == "fx_20240301.csv"
    assert "不是可识别的日期" in fx5[header.index("原因 reason（中文）")]
    trainee = list(book["trainee"].iter_rows(values_only=True))
    assert trainee[1][trainee[0].index("原始·留用就业")] == "'-待定"


def test_csv_folder_has_one_utf8_file_per_entity(tmp_path: Path) -> None:
    written = write_corrections(_rows(), tmp_path / "out", "csv")
    assert sorted(p.name for p in written) == ["project.csv", "trainee.csv"]
    with open(tmp_path / "out" / "project.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["主键 key"] for r in rows] == ["FX-3", "FX-5"] and rows[1]["原始·项目名称"].startswith("'=")


def test_reasons_in_chinese_name_the_field_and_value() -> None:
    text = reason_zh("mapping.map", "category", "project", "field category: '校企联合培养' is not in the value map m")
    assert text.startswith("项目类别（category）的值「校企联合培养」不在本源的映射表中")
    assert reason_zh("mapping.required", "title", "project", "field title: required value is missing").endswith("为必填项，但该行为空")
