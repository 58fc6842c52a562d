"""Data Docs load nothing from outside the hub, and GX runs with its analytics off."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from quality import docs
from quality.policy import policy_for
from quality.runner import validate_table
from tests.conftest import REPO
from tests.unit.quality.test_quality_suites import _row, _table

# every URL a browser would fetch or follow: src/href/action attributes and CSS url()
URL_REFERENCE = re.compile(r"""(?:\b(?:src|href|action|srcset)\s*=\s*["']?|url\(\s*["']?)\s*"""
                           r"""((?:[a-z][a-z0-9+.-]*:)?//[^"'\s)>]*)""", re.I)


def outside_references(page_html: str) -> list[str]:
    """URLs pointing at any host other than none/localhost."""
    hosts_ok = {"", "localhost", "127.0.0.1", "[::1]"}
    return [url for url in URL_REFERENCE.findall(page_html) if (urlsplit(url).hostname or "") not in hosts_ok]


def test_the_checker_finds_what_gx_used_to_load() -> None:
    page = ('<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/b.css"/><script src="//cdn.x/y.js"></script>'
            "<style>a { background: url('https://great-expectations-web-assets.s3.amazonaws.com/l.png') }</style>"
            '<img src="static/images/logo.png"><a href="http://localhost:8000/docs">x</a>')
    assert outside_references(page) == ["https://maxcdn.bootstrapcdn.com/b.css", "//cdn.x/y.js",
                                        "https://great-expectations-web-assets.s3.amazonaws.com/l.png"]


def test_data_docs_reference_no_outside_host_and_list_runs_without_scripts(tmp_path: Path) -> None:
    for i, row in enumerate([_row("notice", publisher_uscc="91310115MA1FL5XL1I"), _row("notice")]):
        outcome = validate_table("notice", _table("notice", [row]), policy_for("notice"))
        index = docs.publish(tmp_path, entity="notice", source="lingang_platform", batch_id=f"offline-run-{i}",
                             results=[outcome.gx_result])
    assert index is not None
    site = index.parent
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 3
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert outside_references(text) == [], page
        assert "dataContextId" not in text, page
    # the run list is plain HTML: each run linked to a page that exists, no CDN script needed
    text = index.read_text(encoding="utf-8")
    links = dict((name, href) for href, name in re.findall(r'<a href="([^"]+)">(offline-run-\d)</a>', text))
    assert set(links) == {"offline-run-0", "offline-run-1"}, text[-3000:]
    assert all((site / href).is_file() for href in links.values())
    assert text.index("offline-run-1") < text.index("offline-run-0")  # newest first
    assert (site / "static" / "images" / "logo-long.png").is_file() and 'src="static/images/logo-long.png"' in text


def test_gx_analytics_are_off_wherever_the_hub_runs_gx(tmp_path: Path) -> None:
    """Importing the quality package switches GX analytics off, even when the caller's environment enables it."""
    code = "import quality.gx_engine, os; print(os.environ['GX_ANALYTICS_ENABLED'])"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GX_ANALYTICS_ENABLED": "True"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
    outcome = validate_table("notice", _table("notice", [_row("notice")]), policy_for("notice"))
    docs.publish(tmp_path, entity="notice", source="lingang_platform", batch_id="b", results=[outcome.gx_result])
    config = (tmp_path / "quality" / "gx" / "great_expectations.yml").read_text(encoding="utf-8")
    assert re.search(r"^analytics_enabled: false$", config, re.M), config


def test_data_docs_link_only_pages_that_exist_and_carry_a_local_style(tmp_path: Path) -> None:
    """GX links every expectation to `expectations/*.html` pages it never writes (#17): such links
    become plain text, links to pages that exist stay, and every page is styled without a CDN."""
    outcome = validate_table("notice", _table("notice", [_row("notice")]), policy_for("notice"))
    index = docs.publish(tmp_path, entity="notice", source="lingang_platform", batch_id="links-run",
                         results=[outcome.gx_result])
    assert index is not None
    site = index.parent
    checked = 0
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for href in re.findall(r"""<a\b[^>]*?\bhref=["']([^"'#]+\.html)(?:#[^"']*)?["']""", text):
            if re.match(r"[a-z][a-z0-9+.-]*:", href):
                continue
            assert (page.parent / href).is_file(), f"{page.name} links {href}, which does not exist"
            checked += 1
        assert "readable without the CDN's Bootstrap" in text or page == index, page
    assert checked >= 1  # the index's run list still links its run page
    run_page = next(p for p in site.rglob("*.html") if p != index)
    text = run_page.read_text(encoding="utf-8")
    assert "__none__" not in text and "Data asset: None" not in text
    assert "Data asset: notice from lingang_platform" in text


def test_a_link_to_a_missing_page_is_unwrapped_and_others_kept(tmp_path: Path) -> None:
    from quality.offline_docs import _unlink_missing

    (tmp_path / "there.html").write_text("x", encoding="utf-8")
    page = ('<a href="expectations/notice.html">notice 公告</a> <a class="x" href="there.html#top">ok</a> '
            '<a href="#local">anchor</a>')
    assert _unlink_missing(page, tmp_path) == ('notice 公告 <a class="x" href="there.html#top">ok</a> '
                                               '<a href="#local">anchor</a>')
