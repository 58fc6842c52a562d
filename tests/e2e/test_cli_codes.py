"""`iehub codes` prints the code lists, and `iehub spec validate` refuses a map target that is not a code."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from iehub.cli import main

SPEC = """\
name: district_fengxian
title: 奉贤区产教融合项目登记
kind: file
location: {location}
streams:
  projects:
    entity: project
    pattern: "fx_*.csv"
    format: csv
    primary_key: 项目编号
    mapping:
      fields:
        project_id: {{from: 项目编号}}
        title: {{from: 项目名称}}
        category: {{from: 项目类型, map: {{订单培养: other, 现代产业学院: {target}}}}}
        district_code: {{const: "310120"}}
      deleted: {{from: _deleted, values: ["1"]}}
"""


def test_codes_lists_every_list_and_one_lists_codes_with_labels() -> None:
    runner = CliRunner()
    every = runner.invoke(main, ["codes"])
    assert every.exit_code == 0 and "project_category" in every.output and "district" in every.output
    one = runner.invoke(main, ["codes", "project_category"])
    assert one.exit_code == 0 and "industry_college" in one.output and "现代产业学院" in one.output
    missing = runner.invoke(main, ["codes", "no_such_list"])
    assert missing.exit_code != 0 and "no code list 'no_such_list'" in missing.output


def test_spec_validate_checks_map_targets_against_the_code_list(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(SPEC.format(location=tmp_path.as_uri(), target="industry_college"), encoding="utf-8")
    bad.write_text(SPEC.format(location=tmp_path.as_uri(), target="modern_college"), encoding="utf-8")
    runner = CliRunner()
    ok = runner.invoke(main, ["spec", "validate", str(good)])
    assert ok.exit_code == 0, ok.output
    refused = runner.invoke(main, ["spec", "validate", str(bad)])
    text = " ".join(refused.output.split())
    assert refused.exit_code != 0
    assert "fields.category.map.现代产业学院" in text and "'modern_college' is not a code of project_category" in text
