"""The data dictionary has a table of contents, renders its formatting, and covers ops.* and ref.codes (#17 item 4)."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from warehouse.dictionary import write_dictionary


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.links.append(attrs["href"][1:])

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_dictionary_has_contents_rendered_code_and_ops_and_ref_tables(tmp_path: Path) -> None:
    md_path, html_path = write_dictionary(tmp_path)
    markdown = md_path.read_text(encoding="utf-8")
    page = _Text()
    page.feed(html_path.read_text(encoding="utf-8"))
    shown = "".join(page.text)
    assert "`" not in shown  # code spans are rendered, not printed as backticks
    assert "<code>core.organization_source</code>" in html_path.read_text(encoding="utf-8")
    for table in ("ops.batches", "ops.quarantine", "ops.sync_state", "ref.codes", "core.project"):
        assert f"## {table}" in markdown and table in shown
    # every contents entry leads to a section, in both renderings
    assert page.links and set(page.links) <= page.ids and "ops.batches" in page.links
    toc = re.findall(r"^- \[[^\]]+\]\(#([^)]+)\)$", markdown, flags=re.M)
    assert "ops.batches" in toc and all(f'<a id="{a}"></a>' in markdown for a in toc)
    assert "| rows_quarantined | BIGINT | 隔离行数 | rows quarantined |" in markdown
    assert "| code_list | VARCHAR | 代码表名 | code list name |" in markdown
