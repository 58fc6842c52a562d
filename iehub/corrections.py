"""The correction loop with a source's data steward: which quarantined rows are open, and the file to fix them.

A district learns what the hub refused from `iehub quarantine export`: per entity, each row as
it was received, its place in the original file, the field, the rule and a reason in Chinese.
The district corrects the rows and sends them back (the next snapshot, or a file of fixed
rows); the hub does not edit anything by hand. A quarantined row is *closed* when a later
landed batch of the same source and entity loads the same source key (or it was replayed);
otherwise it stays *open*. Rows of batches the gate refused (nothing landed) are kept beside
the quarantine (:func:`iehub.pipeline.refused_path`) and take part the same way, because a
refused batch is exactly what a new district most needs to see.

Everything is read from the ledger's files (the lake is never globbed), in one DuckDB query per
call, so the cost is that of reading the quarantine and the keys of later batches.
Text written for people (CSV, Excel) goes through :func:`feeds.formats.neutralise_formulas`, the
hub's one rule against cells a spreadsheet would run as formulas.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from iehub.config import Settings

__all__ = ["quarantine_rows", "district_of_rows", "write_corrections", "reason_zh", "CorrectionError"]

OPEN, CLOSED = "open", "closed"


class CorrectionError(ValueError):
    """A correction export cannot be made as asked (unknown district, format…)."""


@dataclass(frozen=True)
class _Batch:
    batch_id: str
    source: str
    entity: str
    started_at: datetime
    status: str  # landed | refused
    path: Path


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _quarantine_batches(settings: Settings) -> list[_Batch]:
    from iehub.pipeline import refused_path

    out = []
    lake = settings.lake()
    for row in settings.catalog().batches_table().to_pylist():
        started = _aware(row["started_at"])
        if row["status"] == "landed" and row["rows_quarantined"] and row["quarantine_path"]:
            path, status = lake.resolve(row["quarantine_path"]), "landed"
        elif row["status"] == "failed":
            kept = refused_path(settings, row["entity"], row["source"], started, row["batch_id"])
            path, status = lake.resolve(lake.relative(kept)), "refused"
        else:
            continue
        if path.exists():
            out.append(_Batch(row["batch_id"], row["source"], row["entity"], started, status, path))
    return out


def quarantine_rows(settings: Settings, *, source: str | None = None, entity: str | None = None,
                    rule: str | None = None, since: datetime | None = None) -> pa.Table:
    """Every quarantined row (landed and refused batches) with ``state`` open/closed and ``closed_by``.

    ``closed_by`` is the replay batch (or ``superseded``) that took the row out, else the first
    later landed batch of the same source and entity that loaded the row's source key.
    """
    wanted = [b for b in _quarantine_batches(settings)
              if (source is None or b.source == source) and (entity is None or b.entity == entity)
              and (since is None or b.started_at >= since)]
    if not wanted:
        return pa.table({"entity": pa.array([], pa.string()), "state": pa.array([], pa.string())})
    qfiles = pa.table({"path": [str(b.path) for b in wanted], "entity": [b.entity for b in wanted],
                       "batch_status": [b.status for b in wanted],
                       "batch_started_at": pa.array([b.started_at for b in wanted], pa.timestamp("us", tz="UTC"))})
    pairs = {(b.source, b.entity) for b in wanted}
    lake = settings.lake()
    std_files = {b.batch_id: lake.resolve(b.std_path) for b in settings.catalog().landed_batches()
                 if (b.source, b.entity) in pairs and b.rows_loaded and b.std_path}
    loaded = [b for b in settings.catalog().landed_batches()
              if b.batch_id in std_files and std_files[b.batch_id].exists()]
    sfiles = pa.table({"path": [str(std_files[b.batch_id]) for b in loaded],
                       "source": pa.array([b.source for b in loaded], pa.string()),
                       "entity": pa.array([b.entity for b in loaded], pa.string()),
                       "batch_id": pa.array([b.batch_id for b in loaded], pa.string()),
                       "started_at": pa.array([_aware(b.started_at) for b in loaded], pa.timestamp("us", tz="UTC"))})
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("qfiles", qfiles)
        con.register("sfiles", sfiles)
        keys = "SELECT NULL::VARCHAR AS source, NULL::VARCHAR AS entity, NULL::VARCHAR AS batch_id, " \
               "NULL::TIMESTAMPTZ AS started_at, NULL::VARCHAR AS _source_key WHERE false"
        params: list[Any] = [qfiles.column("path").to_pylist()]
        if loaded:
            keys = ("SELECT f.source, f.entity, f.batch_id, f.started_at, s._source_key "
                    "FROM read_parquet(?, filename = true) s JOIN sfiles f ON f.path = s.filename")
            params.append(sfiles.column("path").to_pylist())
        where = "WHERE q.rule = ?" if rule else ""
        params += [rule] if rule else []
        return con.sql(f"""
            WITH q AS (
                SELECT f.entity, f.batch_status, f.batch_started_at, q.* EXCLUDE (filename)
                FROM read_parquet(?, union_by_name = true, filename = true) q JOIN qfiles f ON f.path = q.filename),
            k AS ({keys}),
            firsts AS (
                SELECT q._batch_id, q._row_index, arg_min(k.batch_id, k.started_at) AS loaded_by
                FROM q JOIN k ON k.source = q._source AND k.entity = q.entity AND k._source_key = q._key
                              AND k.started_at > q.batch_started_at
                GROUP BY ALL)
            SELECT q.*, coalesce(q.replayed_in, firsts.loaded_by) AS closed_by,
                   CASE WHEN coalesce(q.replayed_in, firsts.loaded_by) IS NULL THEN '{OPEN}' ELSE '{CLOSED}' END AS state
            FROM q LEFT JOIN firsts USING (_batch_id, _row_index) {where}
            ORDER BY q.batch_started_at, q._batch_id, q._row_index""", params=params).to_arrow_table()
    finally:
        con.close()


# --- district -------------------------------------------------------------------------------
def district_of_rows(rows: pa.Table) -> list[str | None]:
    """Each row's district code: the stream's constant, else its mapped district column resolved by the code list."""
    from connectors.spec import load_spec
    from schemas.codes import CODE_LISTS
    from schemas.mapping import parse_mapping

    districts = CODE_LISTS["district"]
    plans: dict[tuple[str, str], Any] = {}
    out: list[str | None] = []
    for source, entity, record in zip(rows.column("_source").to_pylist(), rows.column("entity").to_pylist(),
                                      rows.column("_record").to_pylist()):
        plan = plans.get((source, entity))
        if plan is None and (source, entity) not in plans:
            try:
                spec = load_spec(source)
            except Exception:  # noqa: BLE001 - a spec removed since: its rows have no known district
                spec = None
            streams = [s for s in (spec.streams.values() if spec else []) if s.entity == entity]
            fm = None
            if streams:
                fm = next((f for f in parse_mapping(entity, streams[0].mapping, f"spec {source}").fields
                           if f.target == "district_code"), None)
            plans[(source, entity)] = plan = fm
        if plan is None:
            out.append(None)
        elif plan.source is None:
            out.append(str(plan.const))
        else:
            try:
                cells = json.loads(record or "{}")
            except ValueError:
                cells = {}
            names = plan.sources or (plan.source,)
            value = next((cells.get(n) for n in names if cells.get(n) not in (None, "")), None)
            out.append(districts.code_for(str(value)) if value is not None else None)
    return out


def resolve_district(text: str) -> str:
    from schemas.codes import CODE_LISTS

    code = CODE_LISTS["district"].code_for(text)
    if code is None:
        raise CorrectionError(f"--district {text!r} is not a Shanghai district code or name "
                              "(`iehub codes district` lists them)")
    return code


# --- reasons in Chinese -----------------------------------------------------------------------
_VALUE = re.compile(r": '(.*?)' ")
_WHAT = {
    "date": "不是可识别的日期（请写成 2024-03-01）",
    "local_timestamp": "不是可识别的时间（请写成 2024-03-01 09:30:00）",
    "excel_date": "不是可识别的日期",
    "wan_to_yuan": "不是可识别的金额（万元，如 12.5）",
    "yuan": "不是可识别的金额（元）",
    "int": "不是整数",
    "bool": "不是“是/否”",
}


def reason_zh(rule: str, field: str | None, entity: str, reason: str) -> str:
    """A sentence a district steward can act on, in Chinese; the English reason stays beside it."""
    from schemas import ENTITIES

    label = field or ""
    if field and entity in ENTITIES:
        try:
            label = f"{ENTITIES[entity].field(field).zh}（{field}）"
        except KeyError:
            pass
    match = _VALUE.search(reason or "")
    value = f"「{match.group(1)}」" if match else ""
    kind = rule.split(".", 1)[1] if "." in rule else rule
    if rule == "mapping.map":
        return f"{label}的值{value}不在本源的映射表中：请改为映射表中的类别，或请数据中心补充映射"
    if rule == "mapping.required":
        return f"{label}为必填项，但该行为空"
    if rule.startswith("mapping.code."):
        return f"{label}的值{value}不是标准代码表中的值（`iehub codes {kind[5:]}` 可查）"
    if rule.startswith("mapping."):
        return f"{label}的值{value}{_WHAT.get(kind, '无法转换为标准格式')}"
    if rule == "source.unreadable":
        return "该行无法读取（列数不符、编码错误或文件不完整），请检查原文件"
    if "repeated" in rule or "duplicate" in rule:
        return "主键重复：同一编号在文件中出现多次，请只保留一行"
    if rule.startswith("quality."):
        return f"{label}的值{value}未通过校验规则 {kind}"
    return f"{label}未通过规则 {rule}"


# --- writing ----------------------------------------------------------------------------------
_META = ("_file", "_file_row", "_deleted", "_line")
HEADERS = ["文件 file", "原文件行号 line/row", "页 page", "页内行 row", "主键 key", "字段 field", "规则 rule",
           "原因 reason（中文）", "reason (en)", "批次 batch", "批次状态 batch status"]


def _sheet(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    records = []
    columns: dict[str, None] = {}
    for r in rows:
        try:
            cells = json.loads(r["_record"] or "{}")
        except ValueError:
            cells = {"_record": r["_record"]}
        if not isinstance(cells, dict):
            cells = {"_record": r["_record"]}
        records.append(cells)
        for name in cells:
            if name not in _META:
                columns.setdefault(name, None)
    header = HEADERS + [f"原始·{c}" for c in columns]
    body = []
    for r, cells in zip(rows, records):
        body.append([cells.get("_file"), cells.get("_file_row"), r["_page"], r["_row"], r["_key"], r["field"],
                     r["rule"], reason_zh(r["rule"], r["field"], r["entity"], r["reason"]), r["reason"],
                     r["_batch_id"], "refused at the gate" if r["batch_status"] == "refused" else "landed"]
                    + [cells.get(c) for c in columns])
    return header, body


def _safe(header: list[str], body: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    """Every cell as text (or a number) with formula-leading text neutralised the hub's one way."""
    from feeds.formats import neutralise_formulas

    columns = {f"c{i}": pa.array([None if row[i] is None else str(row[i]) for row in body], pa.string())
               for i in range(len(header))}
    safe = neutralise_formulas(pa.table(columns)) if body else pa.table(columns)
    head = neutralise_formulas(pa.table({f"c{i}": pa.array([h]) for i, h in enumerate(header)})).to_pylist()[0]
    texts = [safe.column(f"c{i}").to_pylist() for i in range(len(header))]
    return [head[f"c{i}"] for i in range(len(header))], [list(r) for r in zip(*texts)] if body else []


def write_corrections(rows: pa.Table, out: Path, fmt: str) -> list[Path]:
    """Write open rows per entity: one sheet each (xlsx), or one CSV each in the folder ``out``."""
    if fmt not in ("xlsx", "csv"):
        raise CorrectionError(f"--format {fmt!r}: give xlsx or csv")
    by_entity: dict[str, list[dict[str, Any]]] = {}
    for r in rows.to_pylist():
        by_entity.setdefault(r["entity"], []).append(r)
    written: list[Path] = []
    if fmt == "xlsx":
        from openpyxl import Workbook
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        def cell(value: Any) -> Any:  # control characters a workbook cannot hold (a stray \x0b) become U+FFFD
            return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value) if isinstance(value, str) else value

        book = Workbook(write_only=True)
        for entity, items in sorted(by_entity.items()):
            sheet = book.create_sheet(entity[:31])
            header, body = _safe(*_sheet(items))
            sheet.append(header)
            for line in body:
                sheet.append([cell(v) for v in line])
        if not by_entity:
            book.create_sheet("none").append(["没有待更正的行 / no open quarantined rows"])
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        book.save(tmp)
        tmp.replace(out)
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    for entity, items in sorted(by_entity.items()):
        header, body = _safe(*_sheet(items))
        path = out / f"{entity}.csv"
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8-sig", newline="") as handle:  # BOM: Excel reads it as UTF-8
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(body)
        tmp.replace(path)
        written.append(path)
    return written
