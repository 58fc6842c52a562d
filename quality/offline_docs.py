"""Data Docs that load nothing from outside the hub: no CDN, no GX logo from a public bucket.

GX renders its pages with Bootstrap, jQuery, bootstrap-table, Vega and Font Awesome from five
CDNs, and its logo from a public S3 bucket with ``?dataContextId=<uuid>`` appended: opening a
page on a connected machine tells outsiders who looks at which hub's quality results, and on the
hub's offline machines the index's run list (drawn by bootstrap-table from a JS array) stays
empty. GX has no switch for either, so after each build every page is rewritten here: external
scripts, stylesheets and links go, the logo comes from the site's own ``static/`` copy, and the
index gets its run list as a plain HTML table (newest first, each run linked to its page). Plain
HTML rather than vendored JS because the list is the only thing the scripts did that a reader
needs, and nothing vendored has to be kept up to date.
"""
from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

#: ``//host…`` or ``http(s)://host…``: anything a browser would fetch from elsewhere
EXTERNAL = r"""(?:https?:)?//[^"'\s)>]+"""
_EXTERNAL_SCRIPT = re.compile(rf"""<script\b[^>]*\bsrc=["']{EXTERNAL}["'][^>]*>\s*</script>\s*""", re.I)
_EXTERNAL_LINK_TAG = re.compile(rf"""<link\b[^>]*\bhref=["']{EXTERNAL}["'][^>]*>\s*""", re.I)
_EXTERNAL_CSS_URL = re.compile(rf"""url\(\s*["']?{EXTERNAL}["']?\s*\)""", re.I)
_EXTERNAL_IMG_SRC = re.compile(rf"""(<img\b[^>]*?\bsrc=)["']{EXTERNAL}["']""", re.I | re.S)
_EXTERNAL_ATTR = re.compile(rf"""\s(?:href|src|action|srcset)=["']{EXTERNAL}["']""", re.I)
_INDEX_TABLE = re.compile(r"""<table\s+id="(?P<id>[^"]+)"\s+"""
                          r"""class="table-sm ge-index-page-validation-results-table"[^>]*>\s*</table>""", re.S)
_TABLE_SCRIPT = re.compile(r"<script>(?:(?!</script>).)*?(?:bootstrapTable|\$\(document\))"
                           r"(?:(?!</script>).)*</script>\s*", re.S)
# GX links a validation page's favicon one folder too shallow (a file that is not there): re-aimed per page
_FAVICON = re.compile(r"""(<link\b[^>]*\bhref=)["'](?:\.\./)*static/images/favicon\.ico["']""", re.I)
# a link to another page of the site (relative .html, never a scheme or an anchor alone)
_LOCAL_PAGE_LINK = re.compile(r"""<a\b[^>]*?\bhref=["'](?P<href>(?![a-z][a-z0-9+.-]*:|/|#)[^"'#]+\.html(?:#[^"']*)?)["']"""
                              r"""[^>]*>(?P<body>.*?)</a>""", re.I | re.S)
_PAGE_STYLE_MARK = "/* iehub: readable without the CDN's Bootstrap */"
_PAGE_STYLE = f"""<style>{_PAGE_STYLE_MARK}
body {{ font-family: "Noto Sans CJK SC", "WenQuanYi Zen Hei", sans-serif; margin: 1rem 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }}
.card {{ border: 1px solid #ddd; margin: 0.75rem 0; padding: 0.5rem 0.75rem; }}
.hide-succeeded-validations-column-section, .navbar-toggler, .sr-only {{ display: none; }}
</style>
"""
_TOOLBAR = re.compile(r"""<div id="[^"]*-table-toolbar"[^>]*>.*?</div>\s*""", re.S)
_STYLE = """<style>/* iehub: the run list without the CDN's bootstrap-table */
table.iehub-runs { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
table.iehub-runs th, table.iehub-runs td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
table.iehub-runs td.failed { color: #b00020; font-weight: bold; } table.iehub-runs td.passed { color: #1b5e20; }
</style>
"""


@dataclass(frozen=True)
class Run:
    """One validation run as the index lists it."""

    entity: str
    source: str
    run_name: str
    run_time: str  # ISO, UTC
    success: bool
    page: str  # path of its page, relative to the site root


def make_offline(site: Path, runs: list[Run]) -> None:
    """Rewrite every page under ``site`` so it references nothing outside the site."""
    logo = site / "static" / "images" / "logo-long.png"
    run_of = {(site / r.page).resolve(): r for r in runs}
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if (run := run_of.get(page.resolve())) is not None:
            text = _name_the_asset(text, run)
        local_logo = os.path.relpath(logo, page.parent) if logo.exists() else ""
        text = _EXTERNAL_SCRIPT.sub("", text)
        text = _EXTERNAL_LINK_TAG.sub("", text)
        text = _EXTERNAL_CSS_URL.sub("none", text)
        text = _EXTERNAL_IMG_SRC.sub(lambda m: f'{m.group(1)}"{local_logo}"', text)
        text = _EXTERNAL_ATTR.sub("", text)
        favicon = os.path.relpath(site / "static" / "images" / "favicon.ico", page.parent)
        text = _FAVICON.sub(lambda m: f'{m.group(1)}"{favicon}"', text)
        text = _unlink_missing(text, page.parent)
        if page.parent == site and page.name == "index.html":
            text = _static_index(text, runs)
        elif _PAGE_STYLE_MARK not in text:
            text = text.replace("</head>", _PAGE_STYLE + "</head>", 1)
        tmp = page.with_name(f".{page.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, page)


def _name_the_asset(text: str, run: Run) -> str:
    """GX names the hub's in-memory batches ``__none__`` / ``Data asset: None``: say which entity from which source."""
    asset = html.escape(f"{run.entity} from {run.source}")
    text = text.replace("Data asset: None<", f"Data asset: {asset}<")
    text = text.replace(f"/ {html.escape(run.entity)} / __none__<", f"/ {asset}<")
    return text.replace(">__none__<", f">{asset}<")


def _unlink_missing(text: str, folder: Path) -> str:
    """Links to pages of the site that GX never wrote (its ``expectations/*.html``) become plain text."""
    def keep_or_unwrap(m: re.Match[str]) -> str:
        target = m.group("href").split("#", 1)[0]
        if not target or (folder / target).exists():
            return m.group(0)
        return m.group("body")
    return _LOCAL_PAGE_LINK.sub(keep_or_unwrap, text)


def _static_index(text: str, runs: list[Run]) -> str:
    """The index's run list as a plain table; the scripts that drew it from a JS array go."""
    rows = "".join(
        f'<tr><td class="{"passed" if r.success else "failed"}">{"passed" if r.success else "failed"}</td>'
        f"<td>{html.escape(r.run_time[:19].replace('T', ' '))} UTC</td>"
        f'<td><a href="{html.escape(r.page)}">{html.escape(r.run_name)}</a></td>'
        f"<td>{html.escape(r.entity)}</td><td>{html.escape(r.source)}</td></tr>\n"
        for r in sorted(runs, key=lambda r: r.run_time, reverse=True))
    table = ('<table class="iehub-runs"><thead><tr><th>status</th><th>run time</th><th>run (batch)</th>'
             f"<th>entity</th><th>source</th></tr></thead>\n<tbody>\n{rows}</tbody></table>")
    text = _TOOLBAR.sub("", text)
    text = _TABLE_SCRIPT.sub("", text)
    text, found = _INDEX_TABLE.subn(lambda m: table, text, count=1)
    if not found:  # GX changed its index layout: still list the runs, before the page's end
        text = text.replace("</body>", table + "\n</body>", 1)
    return text.replace("</head>", _STYLE + "</head>", 1)
