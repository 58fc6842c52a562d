"""The harness's report: a console table, ``bench/results/<date>-<HHMM>.json`` and ``.md``.

Why three forms of one table: the console is read while it runs, the JSON keeps every repeat
(so a figure can be recomputed or compared with another day), and the Markdown is what the
README and the issues quote. All three come from the same rows built here.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any

from bench.harness import HarnessRun
from bench.outcome import Measured
from bench.stats import Spread, spread

RESULTS = Path(__file__).resolve().parent / "results"
STAGE_ORDER = ("extract", "standardise", "validate", "land", "build", "pipeline")

CASE_HEADER = ("scenario", "case", "scale", "hub time (median, min–max)", "rows/s", "MB/s", "peak RSS",
               "stages (s)", "peer", "peer time", "peer/hub")
GOAL_HEADER = ("scenario", "goal", "measured", "target", "verdict")


def fmt_seconds(s: Spread | None) -> str:
    if s is None:
        return "—"
    if s.n < 2:
        return f"{s.median:.2f} s"
    return f"{s.median:.2f} s ({s.low:.2f}–{s.high:.2f})"


def fmt_number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "share":
        return f"{value:.1%}"
    if unit in ("rows/s", "MB", "errors"):
        return f"{value:,.0f} {unit}"
    if unit in ("× dlt", "×"):
        return f"{value:.2f}{unit}"
    return f"{value:,.2f} {unit}"


def fmt_target(op: str, threshold: float | None, unit: str) -> str:
    if threshold is None:
        return "(figure)"
    return f"{op} {fmt_value(threshold, unit)}"


def _stages(m: Measured) -> str:
    if m.summary is None:
        return "—"
    parts = []
    for name in sorted(m.summary.stage_names, key=lambda n: STAGE_ORDER.index(n) if n in STAGE_ORDER else 99):
        s = m.summary.stage(name)
        if s is not None:
            peak = spread((r.extra.get("peak_rss_mb_by_stage") or {}).get(name) for r in m.summary.runs)
            parts.append(f"{name} {s.median:.2f}" + (f" ({peak.median:,.0f} MB)" if peak is not None else ""))
    return ", ".join(parts)


def _error_text(m: Measured) -> str:
    """The error's first line (which run) and its last (the exception), short enough for a table cell."""
    lines = [ln.strip() for ln in (m.error or "").strip().splitlines() if ln.strip()]
    if not lines:
        return "FAILED"
    text = lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}"
    return f"FAILED: {text[:240]}"


@dataclass
class Tables:
    cases: list[tuple[str, ...]]
    goals: list[tuple[str, ...]]


def tables(run: HarnessRun) -> Tables:
    """The report's rows, as text cells, shared by the console and the Markdown."""
    cases: list[tuple[str, ...]] = []
    goals: list[tuple[str, ...]] = []
    for sr in run.runs:
        sid, scale = sr.scenario.id, f"{sr.scale:,}"
        if sr.error:
            cases.append((sid, f"(setup) {sr.scenario.title}", scale, f"FAILED: {sr.error[:200]}", "", "", "", "",
                          "", "", ""))
        for c in sr.cases:
            h = c.hub
            if h.summary is not None:
                s = h.summary
                hub_cells = (fmt_seconds(s.seconds), fmt_number(s.rows_per_s.median if s.rows_per_s else None),
                             fmt_number(s.mb_per_s.median if s.mb_per_s else None, 1),
                             f"{s.peak_rss_mb.median:,.0f} MB", _stages(h))
            else:
                hub_cells = (_error_text(h), "", "", "", "")
            peers = list(c.peers.items()) or [("—", None)]
            for i, (label, pm) in enumerate(peers):
                if pm is None:
                    peer_cells = ("—", "", "")
                elif pm.summary is not None:
                    ratio = c.ratio(label)
                    peer_cells = (label, fmt_seconds(pm.summary.seconds), "—" if ratio is None else f"{ratio:.2f}×")
                elif c.peers and pm.error and (pm.error.startswith(("not installed", "no peer", "not measured"))):
                    peer_cells = (f"{label}: {pm.error}", "", "")
                else:
                    peer_cells = (label, _error_text(pm), "")
                first = i == 0
                cases.append((sid if first else "", c.label if first else "", scale if first else "",
                              *(hub_cells if first else ("", "", "", "", "")), *peer_cells))
        for g in sr.goals:
            measured = fmt_value(g.value, g.goal.unit)
            nominal = g.goal.nominal_scale
            if g.value is not None and nominal and nominal != g.scale:
                measured += f" (at {g.scale:,}; goal set at {nominal:,})"
            goals.append((sid, g.goal.text, measured, fmt_target(g.goal.op, g.goal.threshold, g.goal.unit),
                          g.verdict))
    return Tables(cases, goals)


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}


def to_json(run: HarnessRun) -> dict[str, Any]:
    return {"started_at": run.started_at.isoformat(), "seconds": run.seconds, "repeat": run.repeat,
            "quick": run.quick, "warmup_each": run.warmup_each, "seed": run.seed, "machine": machine(),
            "scenarios": [r.to_dict() for r in run.runs]}


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(run: HarnessRun, command: str) -> str:
    t = tables(run)
    m = machine()
    lines = [f"# iehub benchmarks, {run.started_at:%Y-%m-%d %H:%M} UTC",
             "",
             f"`{command}`: {'quick' if run.quick else 'full'} run, "
             f"{'one warm-up per measurement' if run.warmup_each else 'one warm-up per scenario'}, then "
             f"{run.repeat} repeat(s) of each measurement, each in a fresh process; {m['cpus']} CPUs, "
             f"Python {m['python']}; "
             f"{run.seconds / 60:.1f} min in all. Times are medians (min–max over the repeats); peer/hub is "
             "peer_time / hub_time on the same data (above 1: the hub is faster).",
             "",
             "| " + " | ".join(CASE_HEADER) + " |",
             "|" + "|".join("---" for _ in CASE_HEADER) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.cases]
    lines += ["", "## Goals", "", "| " + " | ".join(GOAL_HEADER) + " |", "|" + "|".join("---" for _ in GOAL_HEADER) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.goals]
    return "\n".join(lines) + "\n"


def result_stem(run: HarnessRun, label: str = "") -> str:
    """`<date>-<HHMM>` (the run's start, UTC), `-quick` after it for a quick run, and a label for a partial
    run (`2026-12-06-1209-quick-S1-1000000`): a run never replaces an earlier one, whether of the same
    scenarios on the same day (results already committed) or of some scenarios beside a run of all."""
    started = run.started_at if run.started_at.tzinfo is None else run.started_at.astimezone(timezone.utc)
    return f"{started:%Y-%m-%d-%H%M}" + ("-quick" if run.quick else "") + (f"-{label}" if label else "")


def write(run: HarnessRun, command: str, folder: Path = RESULTS, label: str = "") -> tuple[Path, Path]:
    """Write `<stem>.json` and `<stem>.md`; where a run that started in the same minute wrote that stem,
    `<stem>-2` (and so on): nothing written before is replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    first = stem = result_stem(run, label)
    n = 1
    while any((folder / f"{stem}{suffix}").exists() for suffix in (".json", ".md")):
        n += 1
        stem = f"{first}-{n}"
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    for path, text in ((json_path, json.dumps({**to_json(run), "command": command}, indent=1, ensure_ascii=False,
                                              default=str)),
                       (md_path, to_markdown(run, command))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return json_path, md_path


def print_console(run: HarnessRun) -> None:
    """The same two tables with rich, for the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(160, Console().width))
    t = tables(run)
    cases = Table(title="iehub benchmarks: hub vs peers", show_lines=False)
    for h in CASE_HEADER:
        cases.add_column(h, overflow="fold")
    for row in t.cases:
        cases.add_row(*row)
    console.print(cases)
    goals = Table(title="goals")
    for h in GOAL_HEADER:
        goals.add_column(h, overflow="fold")
    for row in t.goals:
        style = "green" if row[-1] == "PASS" else ("red" if row[-1].startswith("MISS") else None)
        goals.add_row(*row, style=style)
    console.print(goals)
