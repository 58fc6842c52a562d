"""`iehub sql`, `iehub dictionary` and `iehub snapshots` on a real build."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from iehub.cli import main
from tests.unit.warehouse.warehouse_fixtures import REGISTRY, land, notice_rows
from warehouse.build import build
from warehouse.catalog import Catalog


def built_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1", "title": "产教融合通知"}]))
    build(home, catalog, registry=REGISTRY)
    catalog.dispose()
    return home


def test_sql_one_shot_and_shell_read_the_current_snapshot(tmp_path: Path) -> None:
    home = built_home(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["--home", str(home), "sql", "--format", "csv",
                                  "select notice_id, title, change_version from core.notice"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["notice_id,title,change_version", "N1,产教融合通知,1"]
    shell = runner.invoke(main, ["--home", str(home), "sql", "--format", "json"],
                          input="select count(*) as n\nfrom core.notice;\ncreate table core.x (a int);\n.quit\n")
    assert shell.exit_code == 0
    assert '{"n": 1}' in shell.output
    assert "read-only" in shell.output  # the write was refused by the read-only snapshot
    bad = runner.invoke(main, ["--home", str(home), "sql", "select * from core.nope"])
    assert bad.exit_code == 1


def test_sql_before_any_build_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--home", str(tmp_path / "empty"), "sql", "select 1"])
    assert result.exit_code == 1 and "run `iehub build` first" in result.output


def test_dictionary_lists_every_entity_mart_and_pii_grade(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["dictionary", "--out", str(tmp_path / "docs")])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "docs" / "data_dictionary.md").read_text(encoding="utf-8")
    html = (tmp_path / "docs" / "data_dictionary.html").read_text(encoding="utf-8")
    for heading in ("## core.teacher", "## core.project", "## marts.report_timeliness_by_lead_org"):
        assert heading in markdown
    assert "| id_number | VARCHAR | " in markdown and "sensitive (敏感个人信息)" in markdown
    assert "class='pii'" in html and "产教融合效能评价" in html


def test_snapshots_lists_current(tmp_path: Path) -> None:
    home = built_home(tmp_path)
    result = CliRunner().invoke(main, ["--home", str(home), "snapshots"])
    assert result.exit_code == 0 and "*" in result.output
