"""The hub quality report: one self-contained HTML site under ``IEHUB_HOME/quality/site/``.

This is the page people open to see how the hub's data is doing (the GX Data Docs stay, for GX
users, next to it under ``quality/docs``). Per source and per district it shows batches, rows in /
loaded / quarantined over time, the rules that reject most (mapping rejects included: a row
refused at mapping is in quarantine with a ``mapping.*`` or ``source.*`` rule), freshness against
each source spec's ``schedule``, and 定期报送 timeliness per district from ``marts.report_status``.

Guarantees, and why:

- It reads the current published snapshot read-only (``ops.batches``, ``ops.quarantine``,
  ``marts``, ``core.project``), never the builder's file, so it can be generated while a build
  runs, and its numbers are the ones analysts see in ``iehub sql``.
- Offline: one HTML file per page, CSS inline, charts as inline SVG, a Content-Security-Policy
  that forbids every fetch. A CDN chart library would leave the page blank on the hub's offline
  machines and tell outsiders who looks at which hub; vendored JS would need keeping up to date.
- Every value from a source (district names, titles, rules) is HTML-escaped; only counts, rule
  texts and district codes are shown, never row values, so the site holds no personal data
  (the rows are in quarantine, where access is governed).
- Written to a temporary name and renamed, so a reader never sees half a page.

It lives in ``iehub/`` because it joins three rooms: the warehouse's read side, the source specs
(schedules, which district a source speaks for) and the quality suites (rule texts).
"""
from __future__ import annotations

import html
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["SiteError", "collect", "freshness_state", "refresh_site", "render", "site_dir", "write_site"]

#: How long after its expected delivery a source is still on time (a half-interval of grace).
GRACE = 0.5
SCHEDULE_INTERVAL: dict[str, timedelta] = {
    "@hourly": timedelta(hours=1), "@daily": timedelta(days=1), "@weekly": timedelta(weeks=1),
    "@monthly": timedelta(days=31),
}
CHART_BUCKETS = 36  # the newest time buckets drawn per chart

# Chinese (and English, where the rule itself has none) texts of each kind of rejection.
_CHECK_TEXT: dict[str, tuple[str, str]] = {
    "not_null": ("必填值缺失", "is required but missing"),
    "valid_district_code": ("不是现行上海区划代码", "is not a current Shanghai district code"),
    "in_code_list": ("不在代码表中", "is not in its code list"),
    "valid_uscc": ("不是有效的统一社会信用代码", "is not a valid unified social credit code"),
    "valid_resident_id": ("不是有效的居民身份证号码", "is not a valid resident ID number"),
    "plausible_age": ("身份证号推算的年龄不合理", "gives an implausible age"),
    "readable_text": ("文字乱码（编码错误）", "looks garbled (wrong encoding)"),
    "control_characters": ("含有控制字符", "contains a control character"),
    "max_length": ("超过长度上限", "is longer than allowed"),
    "valid_mobile": ("不是大陆手机号码", "is not a mainland mobile number"),
    "between": ("数值或日期超出合理范围", "is outside its plausible range"),
    "not_before": ("早于对应的起始值", "is before the value it must follow"),
    "unique": ("同一批次内自然键重复", "repeats a natural key already in this batch"),
}
_MAPPING_TEXT: dict[str, tuple[str, str]] = {
    "required": ("必填值缺失", "required value is missing"),
    "date": ("日期无法识别或不存在", "is not a real date"),
    "excel_date": ("Excel 日期无法识别", "is not a readable Excel date"),
    "local_timestamp": ("时间无法识别", "is not a readable local time"),
    "utc_timestamp": ("时间无法识别", "is not a readable UTC time"),
    "timestamp": ("时间无法识别", "is not a readable time"),
    "yuan": ("金额不是数字", "amount is not a number"),
    "wan_to_yuan": ("金额（万元）不是数字", "amount in 万元 is not a number"),
    "int": ("不是整数", "is not a whole number"),
    "bool": ("不是“是/否”值", "is not a yes/no value"),
    "string": ("文本列被读成了数字", "text arrived as a number"),
    "type": ("类型无法转换", "cannot be converted to its type"),
    "lingang_industry": ("不是临港 4+2+2 产业", "is not a Lingang 4+2+2 industry"),
    "education_level": ("不是已知的学历层次", "is not a known education level"),
}
_SOURCE_TEXT: dict[str, tuple[str, str]] = {
    "unreadable": ("源文件中该行无法可靠读取（如身份证号被存成数字），已隔离而非修复",
                   "the row could not be read reliably from the source (e.g. an ID column stored as a number); "
                   "quarantined, not repaired"),
}


class SiteError(RuntimeError):
    """The quality site cannot be written (no snapshot to read, or a snapshot without the ops tables)."""


def site_dir(home: Path) -> Path:
    return home / "quality" / "site"


# ------------------------------------------------------------------------------------ reading
@dataclass
class _Totals:
    batches: int = 0
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    failed: int = 0
    buckets: dict[datetime, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, batch: dict[str, Any]) -> None:
        if batch["status"] != "landed":
            self.failed += 1
            return
        self.batches += 1
        self.rows_in += batch["rows_in"]
        self.rows_loaded += batch["rows_loaded"]
        self.rows_quarantined += batch["rows_quarantined"]
        when = batch["finished_at"] or batch["started_at"]
        bucket = self.buckets[when.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)]
        bucket[0] += batch["rows_loaded"]
        bucket[1] += batch["rows_quarantined"]


def _spec_facts() -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], str]]:
    """Per source: title, kind, schedule; and the district each (source, entity) speaks for, when constant."""
    from connectors.spec import available_sources, load_spec

    sources: dict[str, dict[str, Any]] = {}
    districts: dict[tuple[str, str], str] = {}
    for name in available_sources():
        spec = load_spec(name)
        sources[name] = {"title": spec.title or name, "kind": spec.kind, "schedule": spec.schedule}
        consts: dict[str, set[str | None]] = defaultdict(set)
        for stream in spec.streams.values():
            target = (stream.mapping.get("fields") or {}).get("district_code")
            if target is not None:
                consts[stream.entity].add(str(target["const"]) if isinstance(target, dict) and "const" in target
                                          else None)
        every = set().union(*consts.values()) if consts else set()
        for stream in spec.streams.values():
            if len(every) == 1 and None not in every:  # a district system: all it sends is its district's
                districts[(name, stream.entity)] = next(iter(every))  # type: ignore[arg-type]
            elif len(consts[stream.entity]) == 1 and None not in consts[stream.entity]:
                districts[(name, stream.entity)] = next(iter(consts[stream.entity]))  # type: ignore[arg-type]
    return sources, districts


def _rule_text(rule: str, entity: str) -> tuple[str, str]:
    """(Chinese, English) text of a quarantine rule such as ``quality.uscc.valid_uscc`` or ``mapping.date``."""
    stage, _, rest = rule.partition(".")
    if stage == "quality":
        from quality.suites import rules_for

        try:
            found = next((r for r in rules_for(entity) if r.rule_id == rest), None)
        except KeyError:  # an entity this version no longer has
            found = None
        check = found.check if found else rest.rsplit(".", 1)[-1]
        zh, en = _CHECK_TEXT.get(check, ("其他质量规则", "another quality rule"))
        column = rest.split(".", 1)[0]
        return f"{column}：{zh}", f"{column} {found.describe if found else en}"
    if stage == "mapping":
        if rest.startswith("code."):
            return f"不在代码表 {rest[5:]} 中", f"is not in code list {rest[5:]}"
        return _MAPPING_TEXT.get(rest, ("映射时无法转换", "could not be converted at mapping"))
    if stage == "source":
        return _SOURCE_TEXT.get(rest, ("源数据无法读取", "could not be read from the source"))
    return ("其他规则", "another rule")


def _stage(rule: str) -> str:
    return "quality" if rule.startswith("quality.") else "mapping"


def freshness_state(last: datetime | None, schedule: str, now: datetime) -> tuple[str, int]:
    """("fresh" | "overdue" | "never", deliveries missed) of a source last landed at LAST on SCHEDULE."""
    if last is None:
        return "never", 0
    interval = SCHEDULE_INTERVAL[schedule]
    if now - last <= interval * (1 + GRACE):
        return "fresh", 0
    return "overdue", int((now - last) / interval)


def _has(con: Any, schema: str, name: str) -> bool:
    query = ("SELECT count(*) FROM (SELECT table_name AS n FROM duckdb_tables() WHERE schema_name = ? "
             "UNION ALL SELECT view_name FROM duckdb_views() WHERE schema_name = ?) WHERE n = ?")
    return bool(con.execute(query, [schema, schema, name]).fetchall()[0][0])


def collect(home: Path, now: datetime | None = None) -> dict[str, Any]:
    """Everything the site shows, read from the current published snapshot."""
    from schemas.codes import CODE_LISTS
    from warehouse.publish import PublishError, connect_current, current_version

    now = now or datetime.now(timezone.utc)
    try:
        con = connect_current(home)
    except PublishError:
        raise SiteError(f"no published warehouse under {home} to report on; run `iehub sync` and `iehub build` "
                        "first") from None
    try:
        if not _has(con, "ops", "batches"):
            raise SiteError(f"the current snapshot under {home} has no ops.batches; run `iehub build` to rebuild it")
        columns = ["batch_id", "source", "entity", "rows_in", "rows_loaded", "rows_quarantined", "started_at",
                   "finished_at", "status"]
        batches = [dict(zip(columns, row)) for row in con.execute(
            f"SELECT {', '.join(columns)} FROM ops.batches ORDER BY coalesce(finished_at, started_at)").fetchall()]
        rejects = []
        if _has(con, "ops", "quarantine"):
            rejects = con.execute(
                "SELECT _source, entity, rule, count(*) AS rows, count(DISTINCT _batch_id) AS batches "
                "FROM ops.quarantine GROUP BY ALL ORDER BY rows DESC, rule").fetchall()
        timeliness = None
        if _has(con, "marts", "report_status") and _has(con, "core", "project"):
            timeliness = con.execute(
                "SELECT p.district_code, count(*) AS total, "
                "count(*) FILTER (WHERE r.timeliness = 'on_time'), count(*) FILTER (WHERE r.timeliness = 'late'), "
                "count(*) FILTER (WHERE r.timeliness = 'missing'), count(*) FILTER (WHERE r.timeliness = 'pending') "
                "FROM marts.report_status AS r "
                "LEFT JOIN core.project AS p ON p._source = r._source AND p.project_id = r.project_id "
                "GROUP BY ALL ORDER BY p.district_code NULLS LAST").fetchall()
    finally:
        con.close()

    specs, spec_districts = _spec_facts()
    by_source: dict[str, _Totals] = defaultdict(_Totals)
    by_entity: dict[str, dict[str, _Totals]] = defaultdict(lambda: defaultdict(_Totals))
    by_district: dict[str, _Totals] = defaultdict(_Totals)
    district_sources: dict[str, set[str]] = defaultdict(set)
    last_landed: dict[str, datetime] = {}
    last_run: dict[str, dict[str, Any]] = {}
    for b in batches:
        by_source[b["source"]].add(b)
        by_entity[b["source"]][b["entity"]].add(b)
        code = spec_districts.get((b["source"], b["entity"]))
        if code:
            by_district[code].add(b)
            district_sources[code].add(b["source"])
        when = b["finished_at"] or b["started_at"]
        if b["status"] == "landed" and (b["source"] not in last_landed or when > last_landed[b["source"]]):
            last_landed[b["source"]] = when
        if b["source"] not in last_run or b["started_at"] >= last_run[b["source"]]["started_at"]:
            last_run[b["source"]] = b

    freshness = []
    for name in sorted(set(specs) | set(by_source)):
        schedule = specs.get(name, {}).get("schedule", "@hourly")
        last = last_landed.get(name)
        state, missed = freshness_state(last, schedule, now)
        freshness.append({"source": name, "schedule": schedule, "last": last, "state": state, "missed": missed,
                          "age": (now - last) if last else None,
                          "last_failed": last_run.get(name, {}).get("status") == "failed"})

    rules: dict[str, dict[str, Any]] = {}
    stage_rows: dict[str, dict[str, int]] = defaultdict(lambda: {"mapping": 0, "quality": 0})
    for source, entity, rule, rows, n_batches in rejects:
        entry = rules.setdefault(rule, {"rule": rule, "rows": 0, "batches": 0, "sources": set(), "entities": set(),
                                        "text": _rule_text(rule, entity), "stage": _stage(rule)})
        entry["rows"] += rows
        entry["batches"] += n_batches
        entry["sources"].add(source)
        entry["entities"].add(entity)
        stage_rows[source][_stage(rule)] += rows

    district_list = CODE_LISTS["district"]
    names = {code: (district_list.label(code, "zh"), district_list.label(code, "en")) for code in district_list.entries}
    return {"now": now, "version": current_version(home), "specs": specs, "sources": dict(by_source),
            "entities": {s: dict(e) for s, e in by_entity.items()},
            "districts": dict(by_district), "district_sources": district_sources, "district_names": names,
            "freshness": freshness, "rules": sorted(rules.values(), key=lambda r: (-r["rows"], r["rule"])),
            "stage_rows": stage_rows, "timeliness": timeliness, "batches": len(batches),
            "data_docs": (home / "quality" / "docs" / "index.html").exists()}


# ---------------------------------------------------------------------------------- rendering
def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _chart(totals: _Totals, label: str) -> str:
    """Stacked bars per hour (UTC): loaded below, quarantined on top; inline SVG, no script."""
    buckets = sorted(totals.buckets.items())[-CHART_BUCKETS:]
    if not buckets:
        return "<p class='muted'>no landed batches yet / 尚无入库批次</p>"
    width, height, pad, gap = 640, 140, 28, 2
    bar = min(48.0, max(4.0, (width - pad) / len(buckets) - gap))
    top = max(sum(v) for _, v in buckets) or 1
    scale = (height - 30) / top
    parts = [f"<svg class='chart' viewBox='0 0 {width} {height}' role='img' aria-label='{_e(label)}' "
             f"xmlns='http://www.w3.org/2000/svg'>",
             f"<text x='0' y='10' class='axis'>{_n(top)}</text>",
             f"<line x1='{pad}' y1='{height - 18}' x2='{width}' y2='{height - 18}' class='base'/>"]
    for i, (when, (loaded, quarantined)) in enumerate(buckets):
        x = pad + i * (bar + gap)
        h_loaded, h_quarantined = loaded * scale, quarantined * scale
        y_loaded = height - 18 - h_loaded
        tip = _e(f"{when:%Y-%m-%d %H:00} UTC — loaded {loaded:,}, quarantined {quarantined:,}")
        parts.append(f"<g><title>{tip}</title>"
                     f"<rect class='loaded' x='{x:.1f}' y='{y_loaded:.1f}' width='{bar:.1f}' height='{h_loaded:.1f}'/>"
                     f"<rect class='quarantined' x='{x:.1f}' y='{y_loaded - h_quarantined:.1f}' width='{bar:.1f}' "
                     f"height='{max(h_quarantined, 1.5 if quarantined else 0):.1f}'/></g>")
    first, last = buckets[0][0], buckets[-1][0]
    parts.append(f"<text x='{pad}' y='{height - 4}' class='axis'>{first:%m-%d %H:00}</text>")
    if last != first:
        parts.append(f"<text x='{width}' y='{height - 4}' class='axis' text-anchor='end'>{last:%m-%d %H:00} UTC</text>")
    parts.append("</svg>")
    return "".join(parts) + ("<p class='legend'><i class='loaded'></i>loaded 入库 <i class='quarantined'></i>"
                             "quarantined 隔离 <span class='muted'>per hour (UTC) of the batch's end; hover a bar "
                             "for its counts</span></p>")


def _rate(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "–"


def _age(delta: timedelta | None) -> str:
    if delta is None:
        return "–"
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


_STATE_TEXT = {"fresh": ("按时", "on schedule"), "overdue": ("逾期", "overdue"), "never": ("未同步", "no batch yet")}


def _counts_row(attrs: str, first_cells: str, t: _Totals) -> str:
    return (f"<tr {attrs}>{first_cells}<td class='num batches'>{_n(t.batches)}</td>"
            f"<td class='num rows-in'>{_n(t.rows_in)}</td><td class='num rows-loaded'>{_n(t.rows_loaded)}</td>"
            f"<td class='num rows-quarantined'>{_n(t.rows_quarantined)}</td>"
            f"<td class='num'>{_rate(t.rows_quarantined, t.rows_in)}</td>"
            f"<td class='num failed'>{_n(t.failed)}</td></tr>")


_COUNT_HEAD = ("<th>batches<br>批次</th><th>rows in<br>接收行</th><th>loaded<br>入库</th>"
               "<th>quarantined<br>隔离</th><th>rejected<br>拒收率</th><th>failed runs<br>失败批次</th>")


def render(data: dict[str, Any]) -> str:
    specs, sources, districts = data["specs"], data["sources"], data["districts"]
    names = data["district_names"]
    total = _Totals()
    for t in sources.values():
        total.batches += t.batches
        total.rows_in += t.rows_in
        total.rows_loaded += t.rows_loaded
        total.rows_quarantined += t.rows_quarantined
        total.failed += t.failed
    overdue = sum(1 for f in data["freshness"] if f["state"] != "fresh")
    generated = f"{data['now']:%Y-%m-%d %H:%M}"
    out: list[str] = []
    out.append(
        "<header><h1>iehub 数据质量报告 <span>hub quality report</span></h1>"
        f"<p class='muted'>generated {_e(generated)} UTC from snapshot "
        f"<code>{_e(data['version'])}</code> · counts from <code>ops.batches</code> and <code>ops.quarantine</code>"
        " · <a href='data_dictionary.html'>数据字典 data dictionary</a>"
        + (" · <a href='../docs/index.html'>GX Data Docs</a>" if data.get("data_docs") else "") + "</p>"
        "<nav><a href='#sources'>来源 sources</a><a href='#districts'>各区 districts</a>"
        "<a href='#freshness'>时效 freshness</a><a href='#rules'>拒收规则 rules</a>"
        "<a href='#reports'>定期报送 report timeliness</a></nav></header>")
    out.append(
        "<section class='cards'>"
        f"<div class='card'><b id='total-rows-in'>{_n(total.rows_in)}</b>rows in 接收行</div>"
        f"<div class='card'><b id='total-rows-loaded'>{_n(total.rows_loaded)}</b>loaded 入库</div>"
        f"<div class='card'><b id='total-rows-quarantined'>{_n(total.rows_quarantined)}</b>quarantined 隔离 "
        f"({_rate(total.rows_quarantined, total.rows_in)})</div>"
        f"<div class='card{' warn' if overdue else ''}'><b>{overdue}</b>sources not on schedule 未按时来源</div>"
        "</section>")

    out.append("<section id='sources'><h2>来源 Sources</h2><table class='counts'><thead><tr>"
               f"<th>source 来源</th><th>schedule 频率</th>{_COUNT_HEAD}<th>mapping rejects<br>映射拒收</th>"
               "<th>quality rejects<br>质量拒收</th></tr></thead><tbody>")
    for name in sorted(set(specs) | set(sources)):
        t = sources.get(name, _Totals())
        stage = data["stage_rows"].get(name, {"mapping": 0, "quality": 0})
        title = specs.get(name, {}).get("title", name)
        row = _counts_row(f"data-source='{_e(name)}'",
                          f"<td><a href='#source-{_e(name)}'>{_e(name)}</a><br><small>{_e(title)}</small></td>"
                          f"<td>{_e(specs.get(name, {}).get('schedule', '–'))}</td>", t)
        out.append(row.replace("</tr>", f"<td class='num'>{_n(stage['mapping'])}</td>"
                                        f"<td class='num'>{_n(stage['quality'])}</td></tr>"))
    out.append("</tbody></table>")
    for name in sorted(sources):
        out.append(f"<article id='source-{_e(name)}'><h3>{_e(name)} <small>{_e(specs.get(name, {}).get('title', ''))}"
                   "</small></h3>" + _chart(sources[name], f"rows per hour, {name}"))
        out.append(f"<table class='counts entities'><thead><tr><th>entity 实体</th>{_COUNT_HEAD}</tr></thead><tbody>")
        for entity, t in sorted(data.get("entities", {}).get(name, {}).items()):
            out.append(_counts_row(f"data-entity='{_e(name)}.{_e(entity)}'", f"<td>{_e(entity)}</td>", t))
        out.append("</tbody></table></article>")
    out.append("</section>")

    out.append("<section id='districts'><h2>各区 Districts</h2><p class='muted'>Batches of the district and "
               "industry systems that speak for one district (the district is a constant in their spec, for the "
               "whole source or for an entity); sources spanning districts are counted under their source above."
               "</p><table class='counts'>"
               f"<thead><tr><th>district 区</th><th>sources 来源</th>{_COUNT_HEAD}</tr></thead><tbody>")
    for code in sorted(districts):
        zh, en = names.get(code, (code, code))
        out.append(_counts_row(
            f"data-district='{_e(code)}'",
            f"<td><a href='#district-{_e(code)}'>{_e(zh)}</a> <small>{_e(en)} · {_e(code)}</small></td>"
            f"<td>{_e(', '.join(sorted(data['district_sources'][code])))}</td>", districts[code]))
    if not districts:
        out.append("<tr><td colspan='8' class='muted'>no district batches yet / 尚无区级批次</td></tr>")
    out.append("</tbody></table>")
    for code in sorted(districts):
        zh, en = names.get(code, (code, code))
        out.append(f"<article id='district-{_e(code)}'><h3>{_e(zh)} <small>{_e(en)} · {_e(code)}</small></h3>"
                   + _chart(districts[code], f"rows per hour, {zh}") + "</article>")
    out.append("</section>")

    out.append("<section id='freshness'><h2>时效 Freshness</h2><p class='muted'>Last landed batch against the "
               f"source spec's <code>schedule</code>; on schedule while younger than the interval plus "
               f"{GRACE:.0%} grace.</p><table><thead><tr><th>source 来源</th><th>schedule 频率</th>"
               "<th>last landed (UTC) 最近入库</th><th>age 距今</th><th>state 状态</th></tr></thead><tbody>")
    for f in data["freshness"]:
        zh, en = _STATE_TEXT[f["state"]]
        note = f" — about {f['missed']} deliveries missed 约漏 {f['missed']} 次" if f["missed"] else ""
        note += " · last run failed 最近一次失败" if f["last_failed"] else ""
        last = f"{f['last']:%Y-%m-%d %H:%M}" if f["last"] else "–"
        out.append(f"<tr data-freshness='{_e(f['source'])}' class='{_e(f['state'])}'><td>{_e(f['source'])}</td>"
                   f"<td>{_e(f['schedule'])}</td><td>{_e(last)}</td><td class='num'>{_e(_age(f['age']))}</td>"
                   f"<td class='state'>{_e(zh)} {_e(en)}{_e(note)}</td></tr>")
    out.append("</tbody></table></section>")

    out.append("<section id='rules'><h2>拒收最多的规则 Rules that reject most</h2><p class='muted'>From "
               "<code>ops.quarantine</code>: mapping rejects (映射) and quality-gate rejects (质量) alike. "
               "Row values are not shown here; <code>iehub quarantine list</code> and "
               "<code>iehub quarantine show BATCH</code> give the rows to those allowed to see them.</p>"
               "<table><thead><tr><th>rule 规则</th><th>stage 环节</th><th>reason 原因</th><th>rows 行</th>"
               "<th>batches 批次</th><th>sources 来源</th></tr></thead><tbody>")
    for r in data["rules"][:25]:
        zh, en = r["text"]
        stage = "映射 mapping" if r["stage"] == "mapping" else "质量 quality"
        out.append(f"<tr data-rule='{_e(r['rule'])}'><td><code>{_e(r['rule'])}</code></td><td>{stage}</td>"
                   f"<td><span lang='zh'>{_e(zh)}</span><br><span lang='en'>{_e(en)}</span></td>"
                   f"<td class='num'>{_n(r['rows'])}</td><td class='num'>{_n(r['batches'])}</td>"
                   f"<td>{_e(', '.join(sorted(r['sources'])))}</td></tr>")
    if not data["rules"]:
        out.append("<tr><td colspan='6' class='muted'>nothing quarantined / 无隔离数据</td></tr>")
    out.append("</tbody></table></section>")

    out.append("<section id='reports'><h2>定期报送及时性 Periodic report timeliness by district</h2>"
               "<p class='muted'>From <code>marts.report_status</code> joined to each report's project "
               "(<code>core.project.district_code</code>); on-time rate = on time ÷ (on time + late + missing), "
               "reports not yet due excluded.</p>")
    if data["timeliness"] is None:
        out.append("<p class='muted'>this snapshot has no marts.report_status / 本快照无定期报送集市</p>")
    else:
        out.append("<table><thead><tr><th>district 区</th><th>reports 报送</th><th>on time 按时</th><th>late 逾期</th>"
                   "<th>missing 缺报</th><th>pending 未到期</th><th>on-time rate 按时率</th><th></th></tr></thead><tbody>")
        for code, count, on_time, late, missing, pending in data["timeliness"]:
            zh, en = names.get(code, (code or "未知区", "district unknown")) if code else ("未知区", "district unknown")
            due = on_time + late + missing
            share = on_time / due if due else 0.0
            bar = (f"<svg class='meter' viewBox='0 0 100 8' xmlns='http://www.w3.org/2000/svg'>"
                   f"<rect width='100' height='8' class='track'/><rect width='{share * 100:.1f}' height='8' "
                   f"class='loaded'/></svg>")
            out.append(f"<tr data-report-district='{_e(code or '')}'><td>{_e(zh)} <small>{_e(en)} {_e(code or '')}"
                       f"</small></td><td class='num'>{_n(count)}</td><td class='num'>{_n(on_time)}</td>"
                       f"<td class='num'>{_n(late)}</td><td class='num'>{_n(missing)}</td>"
                       f"<td class='num'>{_n(pending)}</td><td class='num'>{_rate(on_time, due)}</td>"
                       f"<td>{bar}</td></tr>")
        if not data["timeliness"]:
            out.append("<tr><td colspan='8' class='muted'>no periodic reports yet / 尚无定期报送</td></tr>")
        out.append("</tbody></table>")
    out.append("</section>")
    return _page("iehub 数据质量报告 / hub quality report", "".join(out))


_STYLE = """
:root{--ok:#2e7d32;--bad:#c62828;--ink:#1d2433;--muted:#5f6b7a;--line:#d9dee5}
body{font:14px/1.5 system-ui,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",
"WenQuanYi Zen Hei",sans-serif;color:var(--ink);
max-width:72em;margin:0 auto;padding:1em 1.5em 3em}
h1{font-size:1.6em;margin:.2em 0}h1 span{font-weight:400;color:var(--muted);font-size:.7em}
h2{margin-top:2em;border-bottom:2px solid var(--line);padding-bottom:.2em}h3{margin:1.2em 0 .3em}
small,.muted{color:var(--muted)}nav a{margin-right:1.2em}a{color:#1f5fbf}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{border-bottom:1px solid var(--line);
padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f5f8;font-weight:600;font-size:.9em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.cards{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}.card{border:1px solid var(--line);border-radius:6px;
padding:.6em 1em;min-width:10em}.card b{display:block;font-size:1.6em}.card.warn b{color:var(--bad)}
svg.chart{width:100%;max-width:640px;height:auto;background:#fafbfc;border:1px solid var(--line)}
svg.meter{width:100px;height:8px}rect.loaded{fill:var(--ok)}rect.quarantined{fill:var(--bad)}
rect.track{fill:#eee}.legend i{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 .8em}
.legend i.loaded{background:var(--ok)}.legend i.quarantined{background:var(--bad)}.legend{margin:.2em 0;font-size:.9em}line.base{stroke:#999}text.axis{font-size:10px;fill:var(--muted)}
tr.overdue td.state,tr.never td.state{color:var(--bad);font-weight:600}tr.fresh td.state{color:var(--ok)}
"""

#: Nothing may be fetched: no scripts, fonts, images or styles from anywhere, inline CSS and SVG only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='zh'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_e(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_site(home: Path, now: datetime | None = None) -> Path:
    """Write ``quality/site/index.html`` (and the data dictionary beside it); return the index's path."""
    from warehouse.dictionary import render_html

    page = render(collect(home, now))
    folder = site_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "data_dictionary.html", render_html())
    _write(folder / "index.html", page)
    log.info("quality site: %s", folder / "index.html")
    return folder / "index.html"


def refresh_site(home: Path) -> Path | None:
    """Rewrite the site after a build; a failure is logged and never fails the build it reports on."""
    try:
        return write_site(home)
    except (SiteError, OSError, ValueError) as exc:  # the build is published; only its report is stale
        log.warning("quality site under %s not refreshed (%s); run `iehub quality site` to retry",
                    site_dir(home), exc)
        return None
