"""Frictionless Table Schemas of feed rows: types, keys, code lists, masking notes, pseudonym, change version."""

from __future__ import annotations

import pytest
from frictionless import Schema

from feeds.tableschema import CHANGE_VERSION, feed_columns, table_schema
from schemas import ENTITIES


def fields_of(schema: dict) -> dict[str, dict]:
    return {f["name"]: f for f in schema["fields"]}


@pytest.mark.parametrize("dataset", list(ENTITIES))
@pytest.mark.parametrize("personal", [False, True])
def test_every_dataset_has_a_valid_schema_with_key_lineage_and_change_version(dataset: str, personal: bool) -> None:
    schema = table_schema(dataset, personal=personal)
    report = Schema.validate_descriptor(schema)
    assert report.valid, [e.message for e in report.errors]
    names = [f["name"] for f in schema["fields"]]
    assert schema["primaryKey"] == list(ENTITIES[dataset].key)
    assert set(schema["primaryKey"]) <= set(names)
    assert names[-1] == CHANGE_VERSION and fields_of(schema)[CHANGE_VERSION]["type"] == "integer"
    assert {"_source", "_source_key", "_batch_id", "_extracted_at", "_record_hash"} <= set(names)
    assert "_is_deleted" not in names
    assert [n for n in names if n != "id_pseudonym"] == feed_columns(dataset)
    for field in schema["fields"]:
        assert field["type"] in {"string", "integer", "number", "boolean", "date", "datetime", "array"}
        assert field["title"] and field["description"]


def test_organization_describes_the_golden_tables_columns() -> None:
    fields = fields_of(table_schema("organization", personal=False))
    assert fields["sources"]["type"] == "array" and "JSON array" in fields["sources"]["description"]
    assert fields["match_rule"]["constraints"]["enum"] == ["uscc", "name", "unmatched", "ambiguous"]
    names = list(fields)
    assert names.index("address") < names.index("match_rule") < names.index("sources") < names.index("_source")


@pytest.mark.parametrize("dataset", ["project", "trainee", "organization"])
def test_digests_are_described_as_keyed_and_the_source_key_as_a_pseudonym_unless_granted(dataset: str) -> None:
    masked = fields_of(table_schema(dataset, personal=False))
    plain = fields_of(table_schema(dataset, personal=True))
    for fields in (masked, plain):
        assert "HMAC-SHA256" in fields["_record_hash"]["description"]
        assert fields["_record_hash"]["constraints"]["pattern"] == "^[0-9a-f]{32}$"
    assert "pseudonym" in masked["_source_key"]["description"]
    assert masked["_source_key"]["constraints"]["pattern"] == "^[0-9a-f]{32}$"
    assert "pattern" not in plain["_source_key"]["constraints"] and "pseudonym" not in plain["_source_key"]["description"]


def test_types_titles_and_bilingual_descriptions_come_from_the_entity() -> None:
    fields = fields_of(table_schema("project", personal=False))
    assert fields["budget_amount"]["type"] == "number"
    assert fields["approved_on"]["type"] == "date"
    assert fields["updated_at"]["type"] == "datetime"
    assert fields["title"]["title"] == "项目名称" and fields["title"]["constraints"]["required"] is True
    assert fields["budget_amount"]["description"] == "Budget, yuan / 项目预算（元）"


def test_small_code_lists_become_enums() -> None:
    fields = fields_of(table_schema("project", personal=False))
    assert "310115" in fields["district_code"]["constraints"]["enum"]
    assert fields["district_code"]["codeList"] == "district"
    assert fields["status"]["constraints"]["enum"] == ["applied", "approved", "in_progress", "accepted", "terminated"]


def test_personal_fields_say_they_are_masked_unless_granted() -> None:
    masked = fields_of(table_schema("teacher", personal=False))
    plain = fields_of(table_schema("teacher", personal=True))
    assert masked["id_number"]["masked"] is True and "310115********002X" in masked["id_number"]["description"]
    assert masked["phone"]["masked"] is True and "138****5678" in masked["phone"]["description"]
    assert masked["name"]["masked"] is True and "张**" in masked["name"]["description"]
    assert masked["name"]["pii"] == "personal" and masked["id_number"]["pii"] == "sensitive"
    assert "masked" not in plain["id_number"] and "masked" not in plain["name"]
    org = fields_of(table_schema("organization", personal=False))
    assert "masked" not in org["name"] and org["name"]["pii"] == "none"


def test_pseudonym_follows_the_id_number_only_where_there_is_one() -> None:
    names = [f["name"] for f in table_schema("trainee", personal=False)["fields"]]
    assert names[names.index("id_number") + 1] == "id_pseudonym"
    for dataset in ("project", "organization", "talent_demand"):
        assert "id_pseudonym" not in fields_of(table_schema(dataset, personal=False))


def test_unknown_dataset_is_named() -> None:
    with pytest.raises(KeyError, match="unknown entity 'students'"):
        table_schema("students", personal=False)
