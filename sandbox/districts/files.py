"""How 杨浦 and 闵行 drop their files: a GBK (sometimes UTF-8 with BOM) CSV snapshot a day, and an
Excel workbook a month with a title row, merged headers, a 合计 row and a trainee sheet."""
from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

from sandbox.districts.data import Project, Trainee

YANGPU_HEADER = ["项目编号", "项目名称", "牵头单位", "统一社会信用代码", "项目类别", "所属产业", "开始日期", "金额(万元)", "项目状态"]


def _cn_date(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def yangpu_csv_text(projects: list[Project], day: date) -> str:
    """The snapshot as the district's export writes it: blank lines here and there, a note at the end."""
    lines = [",".join(YANGPU_HEADER)]
    for i, p in enumerate(projects):
        start = "2023年13月5日" if p.dirty == "bad_date" else _cn_date(p.start)
        lines.append(",".join([p.project_id, p.title, p.lead_name, p.lead_uscc, p.category, p.industry, start,
                               f"{p.budget_wan:.2f}", p.status]))
        if i % 997 == 500:
            lines.append("")
    lines.append("")
    lines.append(f"注：本表由杨浦区产教融合信息系统于{day:%Y-%m-%d}导出，金额单位为万元，共{len(projects)}条。")
    return "\r\n".join(lines) + "\r\n"


def write_atomic(path: Path, data: bytes) -> None:
    """Write under a hidden name, then rename: what a careful drop does (readers skip dot files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_yangpu(folder: Path, projects: list[Project], day: date, *, utf8_bom: bool = False) -> Path:
    text = yangpu_csv_text(projects, day)
    data = ("\ufeff" + text).encode("utf-8") if utf8_bom else text.encode("gbk")
    path = folder / f"yangpu_projects_{day:%Y%m%d}.csv"
    write_atomic(path, data)
    return path


def write_minhang(folder: Path, projects: list[Project], trainees: list[Trainee], month: date) -> Path:
    """One month's workbook (openpyxl write-only for project rows; merged cells on the header)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment

    wb = Workbook()
    ws = wb.active
    ws.title = "项目"
    ws.append([f"闵行区产教融合项目月报（{month.year}年{month.month}月）"])
    ws.append(["项目编号", "项目名称", "牵头单位", "统一社会信用代码", "项目类别", "项目周期", None, "经费(万元)", None, None, "状态"])
    ws.append([None, None, None, None, None, "开始日期", "结束日期", "财政", "自筹", "小计", None])
    for rng in ("A1:K1", "A2:A3", "B2:B3", "C2:C3", "D2:D3", "E2:E3", "F2:G2", "H2:J2", "K2:K3"):
        ws.merge_cells(rng)
    ws["A1"].alignment = Alignment(horizontal="center")
    fiscal = own = 0.0
    for p in projects:
        start: object = datetime(p.start.year, p.start.month, p.start.day)
        if p.dirty == "bad_date":
            start = "2024.02.30"
        ws.append([p.project_id, p.title, p.lead_name, p.lead_uscc, p.category, start,
                   datetime(p.end.year, p.end.month, p.end.day), p.fiscal_wan, p.own_wan, p.budget_wan, p.status])
        fiscal += p.fiscal_wan
        own += p.own_wan
    ws.append(["合计", None, None, None, None, None, None, round(fiscal, 2), round(own, 2), round(fiscal + own, 2), None])
    for row in ws.iter_rows(min_row=4, min_col=6, max_col=7):
        for cell in row:
            if isinstance(cell.value, datetime):
                cell.number_format = "yyyy-mm-dd"
    ts = wb.create_sheet("学员")
    ts.append([f"闵行区产教融合学员名册（{month.year}年{month.month}月）"])
    ts.merge_cells("A1:L1")
    ts.append(["学员编号", "姓名", "身份证号", "手机号", "学员类型", "学校", "企业", "专业", "学历", "开始日期", "项目编号",
               "留用就业"])
    for t in trainees:
        id_cell: object = float(t.id_number[:17]) * 10 + (int(t.id_number[17]) if t.id_number[17] != "X" else 0) \
            if t.id_as_number else t.id_number
        ts.append([t.trainee_id, t.name, id_cell, t.phone, t.trainee_type, t.school, t.company, t.major, t.education,
                   datetime(t.start.year, t.start.month, t.start.day), t.project_id, t.employed or None])
    for row in ts.iter_rows(min_row=3, min_col=10, max_col=10):
        for cell in row:
            cell.number_format = "yyyy-mm-dd"
    for row in ts.iter_rows(min_row=3, min_col=3, max_col=4):
        for cell in row:
            if isinstance(cell.value, str):
                cell.number_format = "@"
    path = folder / f"minhang_{month:%Y%m}.xlsx"
    tmp = path.with_name(f".{path.name}.part")
    folder.mkdir(parents=True, exist_ok=True)
    wb.save(tmp)
    os.replace(tmp, path)
    return path
