"""Mapping engine: raw Lingang/district rows → canonical entities, with reasons for every refusal."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from schemas.entities import get_entity
from schemas.mapping import (
    REJECTS_SCHEMA,
    EntityMapping,
    FieldMap,
    MappingSpecError,
    apply_mapping,
    mapping_sources,
    parse_mapping,
)

UTC = timezone.utc
WHERE = "connectors/specs/lingang_platform.yaml: streams.talent_demand.mapping"

DEMAND_SPEC = {
    "fields": {
        "demand_id": "id",
        "org_name": {"from": "org.name", "normalise": ["clean_text", "null_if_blank"]},
        "org_uscc": {"from": "org.uscc", "normalise": ["halfwidth", "trim", "upper"]},
        "district_code": {"const": "310115"},
        "industry_code": {"from": "industry", "normalise": "lingang_industry"},
        "occupation": "post",
        "major": "major",
        "education_level": {"from": "education", "normalise": ["education_level"]},
        "headcount": "num",
        "salary_min_amount": {"from": "salaryMin", "normalise": ["wan_to_yuan"]},
        "salary_max_amount": {"from": "salaryMax", "normalise": ["wan_to_yuan"]},
        "published_on": {"from": "publishDate", "normalise": ["date"]},
        "valid_until": "validDate",
        "contact_name": "contact",
        "phone": {"from": "mobile", "normalise": ["halfwidth", "int"]},
        "updated_at": {"from": "updateTime", "normalise": ["local_timestamp"]},
    },
    "deleted": {"from": "isDeleted", "values": ["1"]},
}


def _raw(rows: list[dict]) -> pa.Table:
    names = ["id", "org.name", "org.uscc", "industry", "post", "major", "education", "num", "salaryMin",
             "salaryMax", "publishDate", "validDate", "contact", "mobile", "updateTime", "isDeleted"]  # fmt: skip
    return pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names})


def _row(**overrides: str | None) -> dict:
    row = {
        "id": "D20230427001", "org.name": "上海积塔半导体有限公司", "org.uscc": "９１３１０１１５ｍａ１ｈ７ｇｐｂ６ｘ",
        "industry": "集成电路", "post": "工艺工程师", "major": "微电子科学与工程", "education": "本科", "num": "15",
        "salaryMin": "1.2", "salaryMax": "1.8", "publishDate": "2023/4/27", "validDate": "2023-06-30",
        "contact": "王晓明", "mobile": "13812345678", "updateTime": "2023-04-27 10:30:00", "isDeleted": "0",
    }  # fmt: skip
    row.update(overrides)
    return row


@pytest.fixture(scope="module")
def demand_mapping() -> EntityMapping:
    return parse_mapping("talent_demand", DEMAND_SPEC, WHERE)


def test_parse_builds_field_maps(demand_mapping: EntityMapping) -> None:
    assert demand_mapping.entity == "talent_demand"
    by_target = {fm.target: fm for fm in demand_mapping.fields}
    assert by_target["demand_id"] == FieldMap("demand_id", source="id")
    assert by_target["district_code"] == FieldMap("district_code", const="310115")
    assert by_target["industry_code"].normalise == ("lingang_industry",)
    assert (demand_mapping.deleted_from, demand_mapping.deleted_values) == ("isDeleted", ("1",))
    assert "org.name" in mapping_sources(demand_mapping)


def test_happy_path_types_every_field(demand_mapping: EntityMapping) -> None:
    result = apply_mapping(_raw([_row(), _row(id="D20230427002", industry="新能源汽车", num="1,200")]), demand_mapping)
    assert result.rejects.num_rows == 0
    assert result.accepted.to_pylist() == [0, 1]
    expected = get_entity("talent_demand").arrow_schema()
    assert result.table.schema.names == [f.name for f in get_entity("talent_demand").business_fields] + ["_is_deleted"]
    for f in result.table.schema:
        assert f.type == expected.field(f.name).type
        assert f.metadata == expected.field(f.name).metadata
    first = result.table.to_pylist()[0]
    assert first["org_uscc"] == "91310115MA1H7GPB6X"
    assert first["district_code"] == "310115"
    assert first["industry_code"] == "IC"
    assert first["education_level"] == "bachelor"
    assert first["headcount"] == 15
    assert first["salary_min_amount"] == Decimal("12000.00")
    assert first["salary_max_amount"] == Decimal("18000.00")
    assert first["published_on"] == date(2023, 4, 27)
    assert first["valid_until"] == date(2023, 6, 30)  # no normaliser: natural parser
    assert first["updated_at"] == datetime(2023, 4, 27, 2, 30, tzinfo=UTC)
    assert first["phone"] == "13812345678"
    assert first["_is_deleted"] is False
    assert result.table.column("headcount").to_pylist() == [15, 1200]


@pytest.mark.parametrize("overrides,field,rule,reason", [
    ({"publishDate": "2023-02-30"}, "published_on", "mapping.date", "field published_on: '2023-02-30' is not a real date"),
    ({"validDate": "明年"}, "valid_until", "mapping.date", "field valid_until: '明年' is not a recognised date"),
    ({"salaryMin": "一万"}, "salary_min_amount", "mapping.wan_to_yuan", "field salary_min_amount: '一万' is not a number"),
    ({"salaryMax": "1.0000001"}, "salary_max_amount", "mapping.wan_to_yuan", "needs more than 2 decimal places"),
    ({"num": "十五"}, "headcount", "mapping.int", "field headcount: '十五' is not a whole number"),
    ({"num": "3000000000"}, "headcount", "mapping.int", "is out of range for int32"),
    ({"industry": "房地产"}, "industry_code", "mapping.lingang_industry", "'房地产' is not a Lingang 4+2+2 industry"),
    ({"updateTime": "2023-04-27 25:00:00"}, "updated_at", "mapping.local_timestamp", "is not a real date and time"),
    ({"org.name": "  "}, "org_name", "mapping.required", "field org_name: required value is missing"),
    ({"id": None}, "demand_id", "mapping.required", "field demand_id: required value is missing"),
])  # fmt: skip
def test_each_kind_of_reject(demand_mapping: EntityMapping, overrides: dict, field: str, rule: str, reason: str) -> None:
    raw = _raw([_row(id="D1"), _row(**{"id": "D2", **overrides}), _row(id="D3")])
    result = apply_mapping(raw, demand_mapping)
    assert result.accepted.to_pylist() == [0, 2]
    assert result.table.column("demand_id").to_pylist() == ["D1", "D3"]
    assert result.rejects.schema == REJECTS_SCHEMA
    reject = result.rejects.to_pylist()
    assert len(reject) == 1
    assert (reject[0]["row_index"], reject[0]["field"], reject[0]["rule"]) == (1, field, rule)
    assert reason in reject[0]["reason"]


def test_code_lists_are_left_to_the_quality_gate() -> None:
    """The mapping converts; code-list membership is a GX rule (quality.<field>.in_code_list)."""
    spec = {"fields": {"notice_id": "id", "title": "title", "category": "type"}}
    mapping = parse_mapping("notice", spec, "x.yaml: m")
    raw = pa.table({"id": ["N1", "N2"], "title": ["关于开展2023年产教融合型企业申报的通知", "临港新片区人才政策"],
                    "type": ["通知", "新闻"]})  # fmt: skip
    result = apply_mapping(raw, mapping)
    assert result.accepted.to_pylist() == [0, 1]
    assert result.table.column("category").to_pylist() == ["通知", "新闻"]


def test_personal_values_never_appear_in_reasons() -> None:
    spec = {"fields": {"trainee_id": "编号", "name": "姓名", "id_number": {"from": "身份证号", "normalise": ["int"]},
                       "phone": {"from": "手机", "normalise": ["int"]}}}  # fmt: skip
    mapping = parse_mapping("trainee", spec, "districts/minhang.yaml: sheets.trainees.mapping")
    raw = pa.table({"编号": ["T1", "T2"], "姓名": ["李四", None], "身份证号": ["31011519850427123X", "310115198504271231"],
                    "手机": ["138-1234-5678", "13812345678"]})  # fmt: skip
    result = apply_mapping(raw, mapping)
    rejects = result.rejects.to_pylist()
    assert [r["row_index"] for r in rejects] == [0, 1]
    assert rejects[0]["reason"] == "field id_number: value is not a whole number"
    assert rejects[1]["reason"] == "field name: required value is missing"
    text = " ".join(r["reason"] for r in rejects)
    for secret in ("李四", "31011519850427123X", "138-1234-5678", "1234"):
        assert secret not in text


def test_deleted_rows_keep_only_their_key(demand_mapping: EntityMapping) -> None:
    raw = _raw([
        _row(id="D1", isDeleted="1", **{"org.name": None}, publishDate="2023-02-30"),
        _row(id=None, isDeleted="1"),
        _row(id="D3"),
    ])  # fmt: skip
    result = apply_mapping(raw, demand_mapping)
    assert result.accepted.to_pylist() == [0, 2]
    rows = result.table.to_pylist()
    assert rows[0]["_is_deleted"] is True and rows[0]["org_name"] is None and rows[0]["published_on"] is None
    assert rows[1]["_is_deleted"] is False
    assert result.rejects.to_pylist()[0]["rule"] == "mapping.required"


def test_missing_raw_column_reads_as_nulls(demand_mapping: EntityMapping) -> None:
    raw = _raw([_row()]).drop_columns(["major", "salaryMin", "isDeleted"])
    result = apply_mapping(raw, demand_mapping)
    assert result.rejects.num_rows == 0
    row = result.table.to_pylist()[0]
    assert row["major"] is None and row["salary_min_amount"] is None and row["_is_deleted"] is False


def test_typed_sources_and_boolean_tombstones() -> None:
    spec = {"fields": {"org_id": "uscc", "name": "name", "is_integration_enterprise": "flag",
                       "certified_on": "certified", "updated_at": "updated"}, "deleted": "gone"}  # fmt: skip
    mapping = parse_mapping("organization", spec, "municipal.yaml: tables.org.mapping")
    raw = pa.table({
        "uscc": ["91310115MA1H7GPB6X", "91310000607206953D"], "name": ["上海积塔半导体有限公司", "临港集团"],
        "flag": ["是", "0"], "certified": [date(2022, 12, 1), None],
        "updated": pa.array([datetime(2023, 4, 27, 2, 30, tzinfo=UTC)] * 2, pa.timestamp("ms", tz="UTC")),
        "gone": [False, True],
    })  # fmt: skip
    result = apply_mapping(raw, mapping)
    assert result.rejects.num_rows == 0
    rows = result.table.to_pylist()
    assert [r["is_integration_enterprise"] for r in rows] == [True, False]
    assert [r["_is_deleted"] for r in rows] == [False, True]
    assert rows[0]["updated_at"] == datetime(2023, 4, 27, 2, 30, tzinfo=UTC)


def test_empty_input() -> None:
    mapping = parse_mapping("notice", {"fields": {"notice_id": "id", "title": "title"}}, "x.yaml: m")
    result = apply_mapping(pa.table({"id": pa.array([], pa.string())}), mapping)
    assert result.table.num_rows == 0 and result.rejects.num_rows == 0 and len(result.accepted) == 0


def test_timestamp_without_normaliser_is_a_spec_error() -> None:
    mapping = parse_mapping("notice", {"fields": {"notice_id": "id", "title": "t", "updated_at": "u"}}, "x.yaml: m")
    with pytest.raises(MappingSpecError, match="field updated_at.*local_timestamp"):
        apply_mapping(pa.table({"id": ["1"], "t": ["通知"], "u": ["2023-04-27 10:00:00"]}), mapping)


# --- spec errors ----------------------------------------------------------------------------------------

NOTICE_WHERE = "connectors/specs/lingang_platform.yaml: streams.notices.mapping"


@pytest.mark.parametrize("entity,spec,message", [
    ("notices", {"fields": {"notice_id": "id"}}, f"{NOTICE_WHERE}: unknown entity 'notices' (known: "),
    ("notice", {"fields": {"notice_id": "id", "title": "t", "titel": "t"}},
     f"{NOTICE_WHERE}.fields.titel: unknown field 'titel' of entity notice (known: notice_id, title,"),
    ("notice", {"fields": {"notice_id": "id", "title": {"from": "t", "normalise": ["trim", "tirm"]}}},
     f"{NOTICE_WHERE}.fields.title.normalise[1]: unknown normaliser 'tirm'"),
    ("notice", {"fields": {"notice_id": "id", "title": "t", "_source": "src"}},
     f"{NOTICE_WHERE}.fields._source: lineage field '_source' is set by the pipeline"),
    ("notice", {"fields": {"notice_id": "id", "title": "t", "_is_deleted": "del"}},
     f"{NOTICE_WHERE}.fields._is_deleted: the tombstone flag is set by the 'deleted' rule"),
    ("notice", {"fields": {"notice_id": "id", "title": {"from": "t", "const": "x"}}},
     f"{NOTICE_WHERE}.fields.title: give either 'from' or 'const', not both"),
    ("notice", {"fields": {"notice_id": "id", "title": {"normalise": ["trim"]}}},
     f"{NOTICE_WHERE}.fields.title: give 'from'"),
    ("notice", {"fields": {"notice_id": "id"}},
     f"{NOTICE_WHERE}.fields: required field 'title' of entity notice not mapped"),
    ("notice", {"fields": {"title": "t", "url": "u"}},
     f"{NOTICE_WHERE}.fields: required field 'notice_id' of entity notice not mapped"),
    ("notice", {"fields": {"notice_id": "id", "title": "t"}, "delete": "x"},
     f"{NOTICE_WHERE}.delete: unknown key (allowed: fields, deleted)"),
    ("notice", {"fields": {"notice_id": "id", "title": {"form": "t"}}},
     f"{NOTICE_WHERE}.fields.title.form: unknown key"),
    ("notice", {"fields": {"notice_id": "id", "title": "t", "district_code": {"const": "310102"}}},
     f"{NOTICE_WHERE}.fields.district_code.const: field district_code: '310102' is not a code of district"),
    ("notice", {"fields": {"notice_id": "id", "title": "t", "published_at": {"const": "2023-04-27"}}},
     f"{NOTICE_WHERE}.fields.published_at.const: "),
    ("notice", {"fields": {"notice_id": "id", "title": "t"}, "deleted": {"from": "d", "values": []}},
     f"{NOTICE_WHERE}.deleted.values: must be a non-empty list"),
    ("notice", {"fields": {"notice_id": "id", "title": 3}}, f"{NOTICE_WHERE}.fields.title: expected a source column"),
    ("notice", {"fields": {}}, f"{NOTICE_WHERE}.fields: must map"),
])  # fmt: skip
def test_spec_errors_name_the_path(entity: str, spec: dict, message: str) -> None:
    with pytest.raises(MappingSpecError) as caught:
        parse_mapping(entity, spec, NOTICE_WHERE)
    assert str(caught.value).startswith(message), str(caught.value)


def test_const_is_checked_and_applied() -> None:
    spec = {"fields": {"supply_id": "id", "school_name": "school", "graduation_year": {"const": 2024},
                       "district_code": {"const": "杨浦区", "normalise": ["code.district"]}}}  # fmt: skip
    mapping = parse_mapping("talent_supply", spec, "yangpu.yaml: files.supply.mapping")
    result = apply_mapping(pa.table({"id": ["S1", "S2"], "school": ["上海电机学院", "上海电力大学"]}), mapping)
    assert result.table.column("graduation_year").to_pylist() == [2024, 2024]
    assert result.table.column("graduation_year").type == pa.int16()
    assert result.table.column("district_code").to_pylist() == ["310110", "310110"]
    with pytest.raises(MappingSpecError, match=r"graduation_year\.const: .*out of range for int16"):
        parse_mapping("talent_supply", {"fields": {"supply_id": "id", "school_name": "s",
                                                   "graduation_year": {"const": 70000}}}, "y.yaml: m")  # fmt: skip
