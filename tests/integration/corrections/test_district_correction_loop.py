"""A new district from YAML alone speaks its own category words; what the hub cannot map goes back to it
as a correction workbook, and its corrected snapshot closes those rows (#17 items 2 and 3)."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from connectors.spec import load_spec
from iehub import pipeline
from iehub.cli import main
from iehub.config import Settings
from iehub.corrections import quarantine_rows
from tests.integration.districts.conftest import age, build_core, core

pytestmark = pytest.mark.integration

FENGXIAN = """\
# 奉贤区 (310120): a daily snapshot of its project register, in its own category words
name: district_fengxian
title: 奉贤区产教融合项目登记
kind: file
location: {location}
streams:
  projects:
    entity: project
    pattern: "fx_*.csv"
    format: csv
    mode: snapshot
    header: {{find: 项目编号}}
    complete: {{settle_seconds: 0}}
    primary_key: 项目编号
    mapping:
      fields:
        project_id: {{from: 项目编号, normalise: [trim]}}
        title: {{from: 项目名称, normalise: [trim]}}
        lead_org_name: {{from: [牵头单位, 申报单位]}}
        category:
          from: 项目类型
          map: {{订单培养: other, 现代产业学院: industry_college, 卓越工程师: excellent_engineer}}
        district_code: {{const: "310120"}}
      deleted: {{from: _deleted, values: ["1"]}}
"""
HEADER = "奉贤区产教融合项目登记表\n项目编号,项目名称,牵头单位,申报单位,项目类型\n"
FIRST = HEADER + ("FX-001,智能网联汽车订单班,上海电机学院,,订单培养\n"
                  "FX-002,海洋装备现代产业学院,,上海海洋大学,现代产业学院\n"
                  "FX-003,生物医药实训项目,上海农林职院,,校企联合培养\n"
                  "FX-004,集成电路卓越工程师,上海电力大学,,ＥＸ卓越工程师\n"
                  "FX-005,=HYPERLINK(\"http://x\"),上海建桥学院,,产教融合实践\n")


def _drop(folder: Path, name: str, text: str) -> None:
    (folder / name).write_bytes(text.encode("gb18030"))
    age(folder)


def test_a_new_districts_words_map_and_its_corrections_close_the_rows(iehub_home: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    drop = tmp_path / "fengxian"
    drop.mkdir()
    path = tmp_path / "district_fengxian.yaml"
    path.write_text(FENGXIAN.format(location=drop.as_uri()), encoding="utf-8")
    spec = load_spec(path)
    settings = Settings.from_env(iehub_home)
    _drop(drop, "fx_20240301.csv", FIRST)
    first = pipeline.sync_stream(settings, spec.name, "projects", spec=spec)
    assert (first["rows_in"], first["rows_loaded"], first["rows_quarantined"]) == (5, 2, 3)

    build_core(iehub_home)
    assert core(iehub_home, "select project_id, category, lead_org_name from core.project "
                            "where _source = 'district_fengxian' order by 1") == [
        ("FX-001", "other", "上海电机学院"), ("FX-002", "industry_college", "上海海洋大学")]

    monkeypatch.setenv("IEHUB_SPEC_DIR", str(tmp_path))  # the CLI finds the district's spec by name
    runner = CliRunner()
    workbook = tmp_path / "fengxian.xlsx"
    done = runner.invoke(main, ["--home", str(iehub_home), "quarantine", "export", "--source", "district_fengxian",
                                "--district", "奉贤", "--out", str(workbook)])
    assert done.exit_code == 0, done.output
    sheet = load_workbook(workbook)["project"]
    header, *body = [list(r) for r in sheet.iter_rows(values_only=True)]
    by_key = {row[header.index("主键 key")]: row for row in body}
    assert set(by_key) == {"FX-003", "FX-004", "FX-005"}
    fx3 = by_key["FX-003"]
    assert fx3[header.index("规则 rule")] == "mapping.map" and fx3[header.index("字段 field")] == "category"
    assert "「校企联合培养」不在本源的映射表中" in fx3[header.index("原因 reason（中文）")]
    assert "'校企联合培养'" in fx3[header.index("reason (en)")]
    assert fx3[header.index("原始·项目类型")] == "校企联合培养"  # the row as received
    assert str(fx3[header.index("原文件行号 line/row")]) == "5"  # its physical line in fx_20240301.csv
    assert fx3[header.index("文件 file")] == "fx_20240301.csv"
    # A cell a spreadsheet would run as a formula is neutralised, never a live formula in the steward's file
    assert by_key["FX-005"][header.index("原始·项目名称")].startswith("'=")

    listed = runner.invoke(main, ["--home", str(iehub_home), "quarantine", "list"])
    assert "3 open rows, 0 closed" in " ".join(listed.output.split())

    # The district corrects two rows in its next snapshot (FX-005 stays wrong).
    corrected = FIRST.replace("校企联合培养", "订单培养").replace("ＥＸ卓越工程师", "卓越工程师")
    _drop(drop, "fx_20240302.csv", corrected)
    pipeline.sync_stream(settings, spec.name, "projects", spec=spec)
    states = {r["_key"]: (r["state"], r["closed_by"] is not None)
              for r in quarantine_rows(settings, source="district_fengxian").to_pylist()}
    assert states == {"FX-003": ("closed", True), "FX-004": ("closed", True), "FX-005": ("open", False)}
    listed = runner.invoke(main, ["--home", str(iehub_home), "quarantine", "list"])
    assert "1 open rows, 2 closed" in " ".join(listed.output.split())
    again = tmp_path / "again.xlsx"
    runner.invoke(main, ["--home", str(iehub_home), "quarantine", "export", "--source", "district_fengxian",
                         "--out", str(again)])
    rows = list(load_workbook(again)["project"].iter_rows(values_only=True))[1:]
    assert [r[HEADER_KEY] for r in rows] == ["FX-005"]
    build_core(iehub_home)
    assert core(iehub_home, "select project_id, category from core.project where _source = 'district_fengxian' "
                            "order by 1") == [("FX-001", "other"), ("FX-002", "industry_college"),
                                              ("FX-003", "other"), ("FX-004", "excellent_engineer")]


HEADER_KEY = 4  # "主键 key" column


def test_a_refused_batch_says_why_and_can_be_shown_exported_and_counted(iehub_home: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    drop = tmp_path / "fengxian"
    drop.mkdir()
    path = tmp_path / "district_fengxian.yaml"
    path.write_text(FENGXIAN.format(location=drop.as_uri()), encoding="utf-8")
    spec = load_spec(path)
    settings = Settings.from_env(iehub_home)
    lines = [f"FX-{i:03d},项目{i},上海电机学院,,{'订单培养' if i % 4 == 0 else '校企联合培养'}" for i in range(40)]
    _drop(drop, "fx_20240301.csv", HEADER + "\n".join(lines) + "\n")
    with pytest.raises(pipeline.QualityGateError) as refused:
        pipeline.sync_stream(settings, spec.name, "projects", spec=spec)
    message = str(refused.value)
    assert "30 of 40 rows" in message
    assert "top rules: mapping.map 30 rows" in message and "'校企联合培养'" in message
    assert "iehub quarantine export --source district_fengxian" in message
    batch = message.split("batch ", 1)[1].split(":", 1)[0]

    monkeypatch.setenv("IEHUB_SPEC_DIR", str(tmp_path))
    runner = CliRunner()
    shown = runner.invoke(main, ["--home", str(iehub_home), "quarantine", "show", batch])
    assert shown.exit_code == 0, shown.output
    assert "refused at the gate" in shown.output and "mapping.map" in shown.output
    out = tmp_path / "csv"
    done = runner.invoke(main, ["--home", str(iehub_home), "quarantine", "export", "--source", "district_fengxian",
                                "--format", "csv", "--out", str(out)])
    assert done.exit_code == 0, done.output
    text = (out / "project.csv").read_text(encoding="utf-8-sig")
    assert text.count("校企联合培养") >= 30 and "refused at the gate" in text
    later = runner.invoke(main, ["--home", str(iehub_home), "quarantine", "export", "--source", "district_fengxian",
                                 "--since", "2999-01-01", "--format", "csv", "--out", str(tmp_path / "none")])
    assert later.exit_code == 0 and later.output.startswith("0 rows")  # --since: only batches from that day on
    wrong = runner.invoke(main, ["--home", str(iehub_home), "quarantine", "export", "--source", "district_fengxian",
                                 "--district", "火星区"])
    assert wrong.exit_code != 0 and "not a Shanghai district" in wrong.output
    report = runner.invoke(main, ["--home", str(iehub_home), "quality", "report"])
    assert "mapping.map" in report.output and "100.00%" not in report.output


def test_a_coalesce_column_the_file_does_not_have_is_not_a_missing_column(iehub_home: Path, tmp_path: Path) -> None:
    drop = tmp_path / "fengxian"
    drop.mkdir()
    path = tmp_path / "district_fengxian.yaml"
    path.write_text(FENGXIAN.format(location=drop.as_uri()), encoding="utf-8")
    spec = load_spec(path)
    # this year's template has only 牵头单位; `from: [牵头单位, 申报单位]` takes whichever the file has
    _drop(drop, "fx_20240301.csv", "项目编号,项目名称,牵头单位,项目类型\nFX-001,智能网联汽车订单班,上海电机学院,订单培养\n")
    result = pipeline.sync_stream(Settings.from_env(iehub_home), spec.name, "projects", spec=spec)
    assert (result["rows_in"], result["rows_loaded"], result["rows_quarantined"]) == (1, 1, 0)
    _drop(drop, "fx_20240302.csv", "项目编号,项目名称,项目类型\nFX-001,智能网联汽车订单班,订单培养\n")
    # neither alternative: the file is quarantined whole, naming both
    second = pipeline.sync_stream(Settings.from_env(iehub_home), spec.name, "projects", spec=spec)
    assert second["rows_quarantined"] == 1
    (refused,) = quarantine_rows(Settings.from_env(iehub_home), source="district_fengxian").to_pylist()
    assert "no column 牵头单位 or 申报单位" in refused["reason"]


def test_a_file_of_only_the_fixed_rows_closes_them_for_a_changes_district(iehub_home: Path, tmp_path: Path) -> None:
    drop = tmp_path / "fengxian"
    drop.mkdir()
    path = tmp_path / "district_fengxian.yaml"
    path.write_text(FENGXIAN.format(location=drop.as_uri()).replace("mode: snapshot", "mode: changes"),
                    encoding="utf-8")
    spec = load_spec(path)
    settings = Settings.from_env(iehub_home)
    _drop(drop, "fx_20240301.csv", FIRST)
    pipeline.sync_stream(settings, spec.name, "projects", spec=spec)
    _drop(drop, "fx_20240302.csv", HEADER + "FX-003,生物医药实训项目,上海农林职院,,订单培养\n")  # just the fix
    second = pipeline.sync_stream(settings, spec.name, "projects", spec=spec)
    assert (second["rows_in"], second["rows_loaded"]) == (1, 1)
    states = {r["_key"]: r["state"] for r in quarantine_rows(settings, source="district_fengxian").to_pylist()}
    assert states == {"FX-003": "closed", "FX-004": "open", "FX-005": "open"}
