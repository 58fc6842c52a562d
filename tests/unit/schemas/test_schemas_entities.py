"""The canonical entities: declarations every other package relies on."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from schemas.codes import CODE_LISTS
from schemas.entities import ENTITIES, get_entity
from schemas.model import LINEAGE_FIELDS, PII_GRADES, Entity, Field

LINGANG = {
    "notice": ("notice_id", "title", "category", "publisher_name", "publisher_uscc", "district_code",
               "published_at", "summary", "url", "updated_at"),
    "talent_demand": ("demand_id", "org_name", "org_uscc", "district_code", "industry_code", "occupation", "major",
                      "education_level", "headcount", "salary_min_amount", "salary_max_amount", "published_on",
                      "valid_until", "contact_name", "phone", "updated_at"),
    "talent_supply": ("supply_id", "school_name", "school_uscc", "district_code", "major", "education_level",
                      "graduates_count", "graduation_year", "industry_code", "published_on", "updated_at"),
    "cooperation": ("cooperation_id", "school_name", "school_uscc", "enterprise_name", "enterprise_uscc",
                    "cooperation_type", "industry_code", "district_code", "start_date", "end_date",
                    "investment_amount", "status", "updated_at"),
    "rd_project": ("rd_project_id", "title", "lead_org_name", "lead_org_uscc", "partner_org_name", "industry_code",
                   "budget_amount", "start_date", "end_date", "status", "district_code", "updated_at"),
    "tech_service": ("service_id", "title", "provider_name", "provider_uscc", "service_type", "industry_code",
                     "price_amount", "district_code", "published_on", "updated_at"),
}  # fmt: skip

ALL = ("organization", "project", "project_participant", "project_report", "training_base", "teacher",
       "talent_demand", "talent_supply", "trainee", "cooperation", "rd_project", "tech_service", "notice")  # fmt: skip


def test_there_are_exactly_the_thirteen_entities() -> None:
    assert sorted(ENTITIES) == sorted(ALL)


@pytest.mark.parametrize("name", sorted(LINGANG))
def test_lingang_entities_have_exactly_the_platform_fields(name: str) -> None:
    entity = get_entity(name)
    assert tuple(f.name for f in entity.business_fields) == LINGANG[name]
    assert entity.key == ("_source", LINGANG[name][0])
    assert entity.field("updated_at").type == pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize("name,required", [
    ("notice", {"notice_id", "title"}), ("talent_demand", {"demand_id", "org_name"}),
    ("talent_supply", {"supply_id", "school_name"}), ("rd_project", {"rd_project_id", "title"}),
    ("tech_service", {"service_id", "title"}), ("cooperation", {"cooperation_id"}),
])  # fmt: skip
def test_lingang_required_fields(name: str, required: set[str]) -> None:
    entity = get_entity(name)
    assert {f.name for f in entity.business_fields if entity.is_required(f.name)} == required


def test_lingang_code_lists_and_types() -> None:
    assert get_entity("notice").field("category").code_list == "notice_category"
    assert get_entity("notice").field("published_at").type == pa.timestamp("us", tz="UTC")
    demand = get_entity("talent_demand")
    assert demand.field("headcount").type == pa.int32()
    assert demand.field("salary_min_amount").type == pa.decimal128(18, 2)
    assert demand.field("published_on").type == pa.date32()
    assert demand.field("industry_code").code_list == "lingang_industry"
    assert demand.field("education_level").code_list == "education_level"
    assert (demand.field("contact_name").pii, demand.field("phone").pii) == ("personal", "personal")
    assert get_entity("talent_supply").field("graduation_year").type == pa.int16()
    assert get_entity("cooperation").field("cooperation_type").code_list == "cooperation_type"
    assert get_entity("cooperation").field("status").code_list == "cooperation_status"
    assert get_entity("rd_project").field("status").code_list == "rd_status"
    assert get_entity("tech_service").field("service_type").code_list == "tech_service_type"


@pytest.mark.parametrize("name", ALL)
def test_every_field_is_documented_and_graded(name: str) -> None:
    entity = get_entity(name)
    assert entity.grain.startswith("one row per")
    for f in entity.all_fields:
        assert f.zh and f.en, f.name
        assert f.pii in PII_GRADES
        assert f.code_list is None or f.code_list in CODE_LISTS


@pytest.mark.parametrize("name", ALL)
def test_naming_conventions_match_types(name: str) -> None:
    for f in get_entity(name).business_fields:
        if f.name.endswith("_amount"):
            assert f.type == pa.decimal128(18, 2), f.name
        if f.name.endswith("_at"):
            assert f.type == pa.timestamp("us", tz="UTC"), f.name
        if f.name.endswith(("_on", "_date")):
            assert f.type == pa.date32(), f.name
        if f.name.startswith(("is_", "has_")):
            assert f.type == pa.bool_(), f.name
        if pa.types.is_boolean(f.type):
            assert f.name.startswith(("is_", "has_")), f.name


@pytest.mark.parametrize("name", ALL)
def test_arrow_schema_carries_docs_key_and_lineage(name: str) -> None:
    entity = get_entity(name)
    schema = entity.arrow_schema()
    assert schema.names == [f.name for f in entity.business_fields] + [
        "_source", "_source_key", "_batch_id", "_extracted_at", "_record_hash", "_is_deleted"
    ]  # fmt: skip
    assert schema.metadata[b"entity"] == name.encode()
    assert json.loads(schema.metadata[b"key"]) == list(entity.key)
    for arrow_field in schema:
        declared = entity.field(arrow_field.name)
        assert arrow_field.metadata[b"zh"].decode() == declared.zh
        assert arrow_field.metadata[b"en"].decode() == declared.en
        assert arrow_field.metadata[b"pii"].decode() == declared.pii
        assert arrow_field.type == declared.type
    for key in entity.key:
        assert not schema.field(key).nullable
    assert entity.arrow_schema(lineage=False).names == [f.name for f in entity.business_fields]


def test_lineage_fields_order_types_and_requiredness() -> None:
    assert [(f.name, f.type, f.required) for f in LINEAGE_FIELDS] == [
        ("_source", pa.string(), True),
        ("_source_key", pa.string(), False),
        ("_batch_id", pa.string(), True),
        ("_extracted_at", pa.timestamp("us", tz="UTC"), True),
        ("_record_hash", pa.string(), True),
        ("_is_deleted", pa.bool_(), True),
    ]


@pytest.mark.parametrize("name", ALL)
def test_table_schema_is_frictionless_json(name: str) -> None:
    entity = get_entity(name)
    ts = json.loads(json.dumps(entity.table_schema(), ensure_ascii=False))
    assert ts["primaryKey"] == list(entity.key)
    names = [f["name"] for f in ts["fields"]]
    assert set(ts["primaryKey"]) <= set(names)
    for f in ts["fields"]:
        assert f["type"] in {"string", "integer", "number", "boolean", "date", "datetime"}
        assert f["title"] and f["description"]
        assert f["pii"] in PII_GRADES
        assert isinstance(f["constraints"]["required"], bool)
    by_name = {f["name"]: f for f in ts["fields"]}
    for key in entity.key:
        assert by_name[key]["constraints"]["required"] is True
    if "district_code" in by_name:
        assert len(by_name["district_code"]["constraints"]["enum"]) == 16


def test_table_schema_types_for_notice() -> None:
    fields = {f["name"]: f for f in get_entity("notice").table_schema()["fields"]}
    assert fields["published_at"]["type"] == "datetime"
    assert fields["category"]["constraints"]["enum"] == ["政策", "通知", "公示", "活动"]
    assert fields["title"]["title"] == "标题"
    demand = {f["name"]: f for f in get_entity("talent_demand").table_schema()["fields"]}
    assert (demand["headcount"]["type"], demand["salary_max_amount"]["type"]) == ("integer", "number")
    assert demand["phone"]["pii"] == "personal"


def test_personal_fields_use_plain_names_and_grades() -> None:
    for name in ("teacher", "trainee"):
        entity = get_entity(name)
        assert entity.field("name").pii == "personal"
        assert entity.field("phone").pii == "personal"
        assert entity.field("id_number").pii == "sensitive"
        assert set(entity.pii_fields()) == {"name", "id_number", "phone"}
    assert get_entity("talent_demand").pii_fields() == ["contact_name", "phone"]
    assert get_entity("notice").pii_fields() == []
    # Anything that looks personal elsewhere must be graded.
    for entity in ENTITIES.values():
        for f in entity.business_fields:
            if f.name in ("id_number", "phone", "contact_name"):
                assert f.pii != "none", (entity.name, f.name)


def test_source_local_entities_are_keyed_with_source_and_organization_by_org_id() -> None:
    assert get_entity("organization").key == ("org_id",)
    for entity in ENTITIES.values():
        if entity.name != "organization":
            assert entity.key[0] == "_source" and len(entity.key) == 2
            assert entity.key[1].endswith("_id")


def test_municipal_entities_have_the_fields_the_programme_reports_on() -> None:
    org = get_entity("organization")
    assert org.field("integration_status").code_list == "integration_status"
    assert org.field("is_integration_enterprise").type == pa.bool_()
    project = get_entity("project")
    assert project.field("funding_type").code_list == "funding_type"
    assert project.field("category").code_list == "project_category"
    report = get_entity("project_report")
    for name in ("project_id", "period_start", "period_end", "students_trained", "teachers_involved",
                 "spent_amount", "submitted_at", "due_on"):  # fmt: skip
        report.field(name)
    assert get_entity("teacher").field("teacher_type").code_list == "teacher_type"
    assert get_entity("project_participant").field("role").code_list == "participant_role"
    for name in ("school_name", "enterprise_name", "major"):
        get_entity("trainee").field(name)


def test_unknown_names_give_helpful_key_errors() -> None:
    with pytest.raises(KeyError, match="unknown entity 'notices'.*known: .*notice"):
        get_entity("notices")
    with pytest.raises(KeyError, match="unknown field 'titel' of entity notice.*title"):
        get_entity("notice").field("titel")


def test_declarations_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="pii grade"):
        Field("x", pa.string(), "某", "x", pii="secret")
    with pytest.raises(ValueError, match="unknown code list"):
        Field("x", pa.string(), "某", "x", code_list="nope")
    with pytest.raises(ValueError, match="money"):
        Field("fee_amount", pa.float64(), "费用", "fee")
    with pytest.raises(ValueError, match="key fields"):
        Entity("e", "某", "e", "one row per e", ("_source", "e_id"), (Field("x", pa.string(), "某", "x"),))
    with pytest.raises(ValueError, match="duplicate"):
        Entity("e", "某", "e", "one row per e", ("x",), (Field("x", pa.string(), "某", "x"),) * 2)
