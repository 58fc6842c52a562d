"""The 闵行 workbook layout the Excel tests share: a title row, then a two-row merged header."""
from __future__ import annotations

from typing import Any


def minhang_sheet() -> tuple[Any, Any]:
    """(workbook, its 项目 sheet) holding the title and the merged two-row header, no data yet."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "项目"
    ws.append(["闵行区产教融合项目月报（2024年3月）"])
    ws.append(["项目编号", "项目周期", None, "经费(万元)", None])
    ws.append([None, "开始日期", "结束日期", "财政", "小计"])
    for rng in ("A1:E1", "A2:A3", "B2:C2", "D2:E2"):
        ws.merge_cells(rng)
    return wb, ws
