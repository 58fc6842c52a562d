"""Value maps, coalesce, join and split: a district's own words become the hub's codes (#17 item 3)."""
from __future__ import annotations

import pyarrow as pa
import pytest

from schemas.field_ops import ValueMap, coalesce_columns, join_columns, split_part
from schemas.mapping import MappingSpecError, apply_mapping, mapping_sources, parse_mapping

WHERE = "district_fengxian.yaml: streams.projects.mapping"
CATEGORY_MAP = {"订单培养": "other", "现代产业学院": "industry_college", "就业实践基地": "employment_base",
                "Excellent Engineer": "excellent_engineer"}


def _spec(**category: object) -> dict:
    return {"fields": {
        "project_id": {"from": "项目编号", "normalise": ["trim"]},
        "title": {"join": ["项目名称", "子项目"], "sep": "·"},
        "lead_org_name": {"coalesce": ["牵头单位", "申报单位"]},
        "start_date": {"from": "起止日期", "split": {"sep": "至", "part": 0}, "normalise": ["date"]},
        "end_date": {"from": "起止日期", "split": {"sep": "至", "part": 1}, "normalise": ["date"]},
        "category": {"from": "项目类型", **category},
        "district_code": {"const": "310120"},
    }}


def _raw(*rows: tuple) -> pa.Table:
    names = ["项目编号", "项目名称", "子项目", "牵头单位", "申报单位", "起止日期", "项目类型"]
    return pa.table({n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(names)})


ROWS = _raw(
    ("FX-001", "智能网联汽车订单班", None, "上海电机学院", None, "2024-03-01 至 2025-02-28", "订单培养"),
    ("FX-002", "海洋装备现代产业学院", "一期", "", "上海海洋大学", "2023/9/1至2026/8/31", "  现代产业学院 "),
    ("FX-003", "集成电路卓越工程师", None, "上海电力大学", None, "2024年1月5日", "ＥＸＣＥＬＬＥＮＴ ｅｎｇｉｎｅｅｒ"),
    ("FX-004", "生物医药实训项目", None, "上海农林职院", None, "2024-05-01", "校企联合培养"),
    ("FX-005", "已是代码的项目", None, "上海建桥学院", None, "2024-05-01", "employment_base"),
)


def test_labels_map_to_codes_width_and_case_insensitively_and_unknown_labels_are_named() -> None:
    mapping = parse_mapping("project", _spec(map=CATEGORY_MAP), WHERE)
    result = apply_mapping(ROWS, mapping)
    got = dict(zip(result.table["project_id"].to_pylist(), result.table["category"].to_pylist()))
    assert got == {"FX-001": "other", "FX-002": "industry_college", "FX-003": "excellent_engineer",
                   "FX-005": "employment_base"}
    (reject,) = result.rejects.to_pylist()
    assert reject["row_index"] == 3 and reject["field"] == "category" and reject["rule"] == "mapping.map"
    assert "'校企联合培养'" in reject["reason"] and f"{WHERE}.fields.category.map" in reject["reason"]
    assert "订单培养" in reject["reason"]  # the known labels, so a steward sees what the hub understands


def test_a_default_takes_unknown_labels_but_not_empty_cells() -> None:
    rows = _raw(("FX-9", "名称", None, "上海电机学院", None, "2024-01-01", "校企联合培养"),
                ("FX-10", "名称", None, "上海电机学院", None, "2024-01-01", " "))
    result = apply_mapping(rows, parse_mapping("project", _spec(map=CATEGORY_MAP, default="other"), WHERE))
    assert result.rejects.num_rows == 0
    assert result.table["category"].to_pylist() == ["other", None]


def test_coalesce_join_and_split_fill_fields_from_the_districts_columns() -> None:
    result = apply_mapping(ROWS, parse_mapping("project", _spec(map=CATEGORY_MAP), WHERE))
    table = result.table.to_pydict()
    assert table["lead_org_name"][:2] == ["上海电机学院", "上海海洋大学"]  # empty 牵头单位 → 申报单位
    assert table["title"][:2] == ["智能网联汽车订单班", "海洋装备现代产业学院·一期"]
    assert [str(d) for d in table["start_date"][:3]] == ["2024-03-01", "2023-09-01", "2024-01-05"]
    assert [str(d) if d else None for d in table["end_date"][:3]] == ["2025-02-28", "2026-08-31", None]
    assert set(mapping_sources(parse_mapping("project", _spec(), WHERE))) >= {"牵头单位", "申报单位", "子项目"}


def test_from_a_list_is_coalesce() -> None:
    spec = _spec()
    spec["fields"]["lead_org_name"] = {"from": ["牵头单位", "申报单位"]}
    result = apply_mapping(ROWS, parse_mapping("project", spec, WHERE))
    assert result.table["lead_org_name"].to_pylist()[1] == "上海海洋大学"


def test_pure_functions_keep_rows_aligned() -> None:
    a = pa.array(["", None, "上海电机学院", "  "])
    b = pa.array(["上海海事大学", "临港集团", "x", None])
    assert coalesce_columns([a, b]).to_pylist() == ["上海海事大学", "临港集团", "上海电机学院", None]
    assert join_columns([a, b], "/").to_pylist() == ["上海海事大学", "临港集团", "上海电机学院/x", None]
    assert split_part(pa.array(["2024-01-01至2024-12-31", "2024-01-01", None]), "至", 1).to_pylist() == \
        ["2024-12-31", None, None]
    vm = ValueMap({"是": "true", "否": "false"}, where="m")
    result = vm.apply(pa.array(["是", "否", "不详", None]))
    assert result.values.to_pylist() == ["true", "false", None, None]
    assert result.errors.to_pylist()[2].startswith("is not in the value map m")


@pytest.mark.parametrize("category, message", [
    ({"map": {"订单培养": "order_training"}}, "'order_training' is not a code of project_category"),
    ({"map": {"订单培养": "other"}, "default": "misc"}, "default: 'misc' is not a code of project_category"),
    ({"default": "other"}, "a default belongs to a 'map'"),
    ({"map": {"订单培养": "other", "订单培养 ": "industry_college"}}, "matches the same label as another entry"),
    ({"map": []}, "must map the source's labels"),
    ({"split": {"sep": "至", "part": -1}}, "split.part: must be a whole number"),
])
def test_map_and_split_mistakes_fail_when_the_spec_is_read(category: dict, message: str) -> None:
    with pytest.raises(MappingSpecError) as caught:
        parse_mapping("project", _spec(**category), WHERE)
    assert message in str(caught.value) and str(caught.value).startswith(f"{WHERE}.fields.category")
