"""The data dictionary (Markdown and HTML), generated from the schemas and mart declarations.

Generated, never hand-written, so it says exactly what the warehouse COMMENTs say: the same
``schemas`` entities and :data:`warehouse.marts.MARTS` feed both. The ``ops.*`` and ``ref.codes``
tables are declared where the builder makes them, so their sections are read back from the
COMMENTs of an empty warehouse built in a temporary folder (a few seconds) rather than copied
here, where they would drift. The HTML renders the text's `code` spans and starts, like the
Markdown, with a table of contents.
"""

from __future__ import annotations

import html
import re
import tempfile
from pathlib import Path

from schemas import ENTITIES, LINEAGE_FIELDS
from warehouse import identity
from warehouse.marts import INDICATORS, MARTS
from warehouse.versions import (HISTORY_ENTITIES, KEY_DIRECTORY_DOC, KEY_DIRECTORY_PREFIX, KEY_DIRECTORY_TITLE,
                                PROJECT_HASH_DOC)

__all__ = ["render_html", "render_markdown", "write_dictionary"]

_PII_ZH = {"none": "无", "personal": "个人信息", "sensitive": "敏感个人信息"}


def _entities() -> list:
    return list(ENTITIES.values() if isinstance(ENTITIES, dict) else ENTITIES)


def _type(t: object) -> str:
    text = str(t)
    return {"string": "VARCHAR", "bool": "BOOLEAN", "date32[day]": "DATE", "int32": "INTEGER", "int16": "SMALLINT",
            "int64": "BIGINT", "timestamp[us, tz=UTC]": "TIMESTAMPTZ (UTC)"}.get(text, text.replace("decimal128", "DECIMAL"))


def _sections() -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, description, header, rows) per table, in reading order."""
    out = []
    for e in _entities():
        rows = [[f.name, _type(f.type), f.zh, f.en, f"{f.pii} ({_PII_ZH.get(f.pii, f.pii)})",
                 "key" if f.name in e.key else ""] for f in e.fields]
        rows += [[f.name, _type(f.type), f.zh, f.en, "none (无)", "key" if f.name in e.key else "lineage"]
                 for f in LINEAGE_FIELDS if f.name != "_is_deleted"]
        rows.append(["change_version", "BIGINT", "变更版本", "change version from the hub-wide sequence", "none (无)", ""])
        history = (" History: `core.%s_history` adds `valid_from`, `valid_to` (NULL while current)." % e.name
                   if e.name in HISTORY_ENTITIES else "")
        if e.name == identity.ORGANIZATION:
            for name, (dtype, doc) in identity.GOLDEN_COLUMNS.items():
                zh, _, en = doc.partition(" / ")
                rows.insert(len(e.fields), [name, "VARCHAR[]" if name == "sources" else "VARCHAR", zh, en,
                                            "none (无)", ""])
            history += (" One row per organisation across all sources (matched on USCC, else normalised name); "
                        "the rows as each source sent them are `core.organization_source`, keyed by "
                        "(_source, org_id).")
        out.append((f"core.{e.name}", f"{e.zh} / {e.en}. Grain: {e.grain}. Natural key: ({', '.join(e.key)}).{history}",
                    ["column", "type", "中文", "English", "PII", "role"], rows))
    out.append(("core._tombstones", "已删除记录 / deletes with their natural key (JSON), change_version and deleted_at.",
                ["column", "type", "中文", "English", "PII", "role"],
                [["entity", "VARCHAR", "实体", "entity", "none (无)", ""],
                 ["natural_key", "VARCHAR (JSON)", "自然键", "natural key", "none (无)", "key"],
                 ["change_version", "BIGINT", "变更版本", "change version of the delete", "none (无)", ""],
                 ["deleted_at", "TIMESTAMPTZ (UTC)", "删除时间", "when deleted", "none (无)", ""],
                 ["district_code", "VARCHAR", "所属区", "district the deleted row (or its project) lived in",
                  "none (无)", ""]]))
    match_rows = []
    for column, doc in identity.MATCH_DOCS.items():
        zh, _, en = doc.partition(" / ")
        match_rows.append([column, "", zh, en or zh, "none (无)", ""])
    out.append((f"core.{identity.MATCH_TABLE}", "单位匹配 / how each organisation mention was resolved to "
                "core.organization (match_rule: uscc, name, ambiguous, unmatched); unresolved names are listed in "
                "the view ops.organization_unmatched. Grain: one row per distinct mention.",
                ["column", "type", "中文", "English", "PII", "role"], match_rows))
    for m in MARTS:
        rows = []
        for column, doc in m.columns.items():
            zh, _, en = doc.partition(" / ")
            rows.append([column, "", zh, en or zh, "none (无)", ""])
        out.append((f"marts.{m.name}", f"{m.zh} / {m.en}. Grain: {m.grain}.",
                    ["column", "type", "中文", "English", "PII", "role"], rows))
    out.append(("marts.evaluation_indicators — indicators", "产教融合效能评价指标口径 / indicator definitions.",
                ["code", "unit", "指标", "indicator", "口径", "definition"],
                [[i.code, i.unit, i.zh, i.en, i.definition_zh, i.definition_en] for i in INDICATORS]))
    return out + _built_sections()


def _built_sections() -> list[tuple[str, str, list[str], list[list[str]]]]:
    """``ops.*`` and ``ref.codes`` as the builder declares them, read from an empty build's COMMENTs."""
    import duckdb

    from warehouse.build import build
    from warehouse.catalog import Catalog
    from warehouse.publish import current_path

    with tempfile.TemporaryDirectory(prefix="iehub-dictionary-") as tmp:
        catalog = Catalog.for_home(Path(tmp))
        try:
            build(Path(tmp), catalog)
        finally:
            catalog.dispose()
        con = duckdb.connect(str(current_path(Path(tmp))), read_only=True)
        try:
            tables = con.execute(
                "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE schema_name IN ('ops', 'ref') "
                "UNION ALL SELECT schema_name, view_name, comment FROM duckdb_views() "
                "WHERE schema_name IN ('ops', 'ref') AND NOT internal ORDER BY 1 DESC, 2").fetchall()
            out = []
            for schema, table, comment in tables:
                title = f"{schema}.{table}"
                if schema == "ops" and table.startswith(KEY_DIRECTORY_PREFIX):
                    # one per applied entity (an empty build has the organisations'): shown once, for all
                    if any(shown == KEY_DIRECTORY_TITLE for shown, *_ in out):
                        continue
                    title, comment = KEY_DIRECTORY_TITLE, KEY_DIRECTORY_DOC
                rows = []
                for column, dtype, doc in con.execute(
                        "SELECT column_name, data_type, comment FROM duckdb_columns() WHERE schema_name = ? "
                        "AND table_name = ? ORDER BY column_index", [schema, table]).fetchall():
                    zh, _, en = (doc or "").partition(" / ")
                    rows.append([column, dtype.replace("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ (UTC)"), zh,
                                 en or zh, "none (无)", ""])
                if title == KEY_DIRECTORY_TITLE and all(row[0] != "project_hash" for row in rows):
                    # this build's directory (the organisations') has no project: the column shown all the same
                    zh, _, en = PROJECT_HASH_DOC.partition(" / ")
                    rows.append(["project_hash", "UBIGINT", zh, en, "none (无)", ""])
                out.append((title, comment or "", ["column", "type", "中文", "English", "PII", "role"],
                            rows))
            return out
        finally:
            con.close()


_INTRO = (
    "# iehub 数据字典 / data dictionary\n\n"
    "Generated from `schemas/` and `warehouse/marts.py` by `iehub dictionary`; do not edit by hand. "
    "Every table and column below also carries this text as a DuckDB COMMENT. "
    "PII grades: none 无, personal 个人信息 (masked in feeds unless granted), sensitive 敏感个人信息.\n"
    "Open the current snapshot read-only: `iehub sql`, or DuckDB 1.4 or later (`pip install duckdb-cli` gives the "
    "`duckdb` command): `duckdb -readonly $IEHUB_HOME/published/CURRENT/warehouse.duckdb`.\n"
)


def _anchor(title: str) -> str:
    return re.sub(r"[^0-9a-z_.-]+", "-", title.split(" ")[0].lower())


def render_markdown() -> str:
    sections = _sections()
    parts = [_INTRO, "\n## Contents\n\n"]
    parts += [f"- [{title}](#{_anchor(title)})\n" for title, *_ in sections]
    for title, text, header, rows in sections:
        parts.append(f"\n<a id=\"{_anchor(title)}\"></a>\n\n## {title}\n\n{text}\n\n| " + " | ".join(header)
                     + " |\n|" + "---|" * len(header) + "\n")
        for row in rows:
            parts.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |\n")
    return "".join(parts)


def _inline(text: str) -> str:
    """Escaped text with its `code` spans rendered as <code>, so no Markdown backtick shows on the page."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render_html() -> str:
    sections = _sections()
    body = [f"<h1>iehub 数据字典 / data dictionary</h1><p>{_inline(_INTRO.split(chr(10), 2)[2])}</p>",
            "<nav><h2>Contents</h2><ul>"
            + "".join(f"<li><a href='#{html.escape(_anchor(t))}'>{html.escape(t)}</a></li>" for t, *_ in sections)
            + "</ul></nav>"]
    for title, text, header, rows in sections:
        body.append(f"<h2 id='{html.escape(_anchor(title))}'>{html.escape(title)}</h2><p>{_inline(text)}</p><table><tr>"
                    + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            cls = " class='pii'" if any(c.startswith(("personal", "sensitive")) for c in row) else ""
            body.append(f"<tr{cls}>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
        body.append("</table>")
    style = ("body{font-family:sans-serif;max-width:70em;margin:auto}table{border-collapse:collapse;width:100%}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}tr.pii{background:#fde8e8}"
             "code{background:#f3f3f3;padding:0 2px}")
    return (f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>iehub data dictionary</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_dictionary(out_dir: Path) -> list[Path]:
    """Write ``data_dictionary.md`` and ``data_dictionary.html`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "data_dictionary.md", out_dir / "data_dictionary.html"]
    paths[0].write_text(render_markdown(), encoding="utf-8")
    paths[1].write_text(render_html(), encoding="utf-8")
    return paths
