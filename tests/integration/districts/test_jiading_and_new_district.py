"""嘉定's cursor-paged API with nested members, and a fifth district added from YAML alone."""
from __future__ import annotations

from pathlib import Path

import pytest

from connectors.errors import SpecError
from connectors.spec import load_spec
from iehub import pipeline
from iehub.config import Settings
from sandbox.districts import JiadingApi
from tests.integration.districts.conftest import age, build_core, core, quarantine, sync

pytestmark = pytest.mark.integration


def test_jiading_cursor_pages_nested_members_and_deletes(iehub_home: Path, jiading: JiadingApi) -> None:
    first = sync(iehub_home, "district_jiading")
    truth = jiading.records()
    assert first["projects"]["rows_in"] == len(truth) > 200  # more than one 200-row page
    assert first["project_members"]["rows_in"] == sum(len(r["members"]) for r in truth)
    removed = jiading.mutate(0.05)["deleted"]
    second = sync(iehub_home, "district_jiading")
    assert second["projects"]["rows_in"] < len(truth) / 2  # incremental: modifiedSince + overlap
    build_core(iehub_home)
    live = {r["projId"] for r in jiading.records() if not r["deleted"] and r["period"]["begin"] != "2024-02-30"}
    got = {k for (k,) in core(iehub_home, "select project_id from core.project where _source = 'district_jiading'")}
    assert got == live and removed > 0
    lead = core(iehub_home, "select lead_org_name, district_code from core.project where _source = 'district_jiading' limit 1")
    assert lead[0][0].startswith("上海") and lead[0][1] == "310114"  # nested leader.orgName, constant district
    members = core(iehub_home, "select count(*), count(distinct project_id) from core.project_participant "
                               "where _source = 'district_jiading'")
    assert members[0][0] == sum(len(r["members"]) for r in jiading.records() if not r["deleted"])
    assert {r["field"] for r in quarantine(iehub_home, "project", "district_jiading")} <= {"start_date"}


FIFTH = """\
# 浦东新区 (310115): a weekly CSV of cooperation projects, in its own words
name: district_pudong
title: 浦东新区产教融合信息系统
kind: file
location: {location}
streams:
  projects:
    entity: project
    pattern: "pd_*.csv"
    format: csv
    header: {{find: 编号}}
    complete: {{settle_seconds: 0}}
    primary_key: 编号
    mapping:
      fields:
        project_id: {{from: 编号, normalise: [trim]}}
        title: {{from: 名称, normalise: [trim, halfwidth]}}
        start_date: {{from: 起始日, normalise: [date]}}
        budget_amount: {{from: 投入（万元）, normalise: [halfwidth, wan_to_yuan]}}
        status: {{from: 进展, normalise: [trim, code.project_status]}}
        district_code: {{const: "310115"}}
      deleted: {{from: _deleted, values: ["1"]}}
"""


def test_a_fifth_district_from_yaml_alone(iehub_home: Path, tmp_path: Path) -> None:
    drop = tmp_path / "pudong"
    drop.mkdir()
    (drop / "pd_20240301.csv").write_bytes(
        "浦东新区产教融合项目周报\n编号,名称,起始日,投入（万元）,进展\n"
        "PD-1,海洋装备现代产业学院,2024/3/1,１２.５,在建\nPD-2,临港集成电路实训基地,2024年1月5日,30,已立项\n"
        "PD-3,坏日期的项目,2024年2月30日,1,在建\n".encode("gb18030"))
    age(drop)
    path = tmp_path / "district_pudong.yaml"
    path.write_text(FIFTH.format(location=drop.as_uri()), encoding="utf-8")
    spec = load_spec(path)
    settings = Settings.from_env(iehub_home)
    result = pipeline.sync_stream(settings, spec.name, "projects", spec=spec)
    assert (result["rows_in"], result["rows_loaded"], result["rows_quarantined"]) == (3, 2, 1)
    build_core(iehub_home)
    rows = core(iehub_home, "select project_id, budget_amount, district_code, status from core.project "
                            "where _source = 'district_pudong' order by 1")
    assert [(r[0], float(r[1]), r[2], r[3]) for r in rows] == [
        ("PD-1", 125000.0, "310115", "in_progress"), ("PD-2", 300000.0, "310115", "approved")]


@pytest.mark.parametrize("mistake, expected", [
    ("normalise: [trim, halfwidth]}}", "normalise: [trim, no_such_normaliser]}}"),
    ("project_id: {{from: 编号", "projekt_id: {{from: 编号"),
    ("entity: project", "entity: projects"),
])
def test_mistakes_in_a_new_spec_point_at_the_line(tmp_path: Path, mistake: str, expected: str) -> None:
    path = tmp_path / "district_pudong.yaml"
    path.write_text(FIFTH.replace(mistake, expected, 1).format(location=tmp_path.as_uri()), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value) and "line" in str(err.value)
