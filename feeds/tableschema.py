"""Frictionless Table Schemas of the feed datasets, as served by ``/schema`` and written by exports.

The entity's own schema (:meth:`schemas.model.Entity.table_schema`) describes the lake rows;
a feed row differs in these ways, added here and only here: it carries the warehouse's
``change_version``, it has no ``_is_deleted`` flag (deletes are a separate feed), it has
``id_pseudonym`` where the entity has an ID number, ``core.organization`` adds the columns of
the golden table (``match_rule``, and ``sources``, a list: Frictionless ``array``, a JSON array
in CSV), and its ``_record_hash`` (always) and ``_source_key`` (without the personal grant) are
keyed digests (:mod:`feeds.masking`). Masked fields stay strings, but their description says
they are masked and how, so a consumer knows ``张**`` is not a data error.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from schemas import CODE_LISTS, get_entity
from schemas.model import LINEAGE_NAMES
from warehouse.identity import GOLDEN_COLUMNS, MATCH_RULES, ORGANIZATION

from feeds.masking import ID_NUMBER, PHONE, PSEUDONYM, RECORD_HASH, SOURCE_KEY

__all__ = ["table_schema", "feed_columns", "CHANGE_VERSION", "MAX_ENUM"]

CHANGE_VERSION = "change_version"
DELETED = "_is_deleted"
#: Code lists up to this size are published as ``enum`` constraints; longer ones only by name.
MAX_ENUM = 50
_HEX32 = "^[0-9a-f]{32}$"

_MASKS = {
    ID_NUMBER: ("首6位和末4位以外以*遮盖", "masked: first 6 and last 4 characters kept, e.g. 310115********002X"),
    PHONE: ("前3位和末4位以外以*遮盖", "masked: first 3 and last 4 digits kept, e.g. 138****5678"),
}
_NAME_MASK = ("仅保留姓氏，其余每字以*遮盖", "masked: surname kept, every other character a *, e.g. 张**")
_KEYED = {
    RECORD_HASH: ("记录内容的密钥摘要（HMAC-SHA256，32位十六进制），记录变化时随之变化，无法由记录重算",
                  "Keyed digest of the record's content (HMAC-SHA256 under the hub's secret, 32 hex characters): "
                  "changes exactly when the record changes; it cannot be recomputed from the record"),
    SOURCE_KEY: ("来源系统主键的密钥假名（HMAC-SHA256，32位十六进制），未授权个人信息的密钥只得到假名",
                 "Keyed pseudonym of the record's key in its source system (HMAC-SHA256 under the hub's secret, "
                 "32 hex characters), the same in changes and deletes; the key itself is served only to keys "
                 "granted personal data, since a source may key its records on a personal field"),
}


def _golden(dataset: str) -> list[str]:
    return list(GOLDEN_COLUMNS) if dataset == ORGANIZATION else []


def feed_columns(dataset: str) -> list[str]:
    """The columns of ``core.<dataset>`` a feed row has, in order (before ``id_pseudonym``)."""
    entity = get_entity(dataset)
    lineage = [n for n in LINEAGE_NAMES if n != DELETED]
    shared = [f.name for f in entity.business_fields if f.share_class != "not_shared"]  # 不予共享 fields never leave
    return shared + _golden(dataset) + lineage + [CHANGE_VERSION]


def _golden_field(name: str) -> dict[str, Any]:
    dtype, doc = GOLDEN_COLUMNS[name]
    zh, _, en = doc.partition(" / ")
    field: dict[str, Any] = {"name": name, "type": "string", "format": "default", "title": zh.strip(),
                             "description": f"{en.strip()} / {zh.strip()}", "constraints": {"required": False},
                             "pii": "none"}
    if pa.types.is_list(dtype):
        field["type"] = "array"
        field["description"] += " (a JSON array; in CSV the cell holds the array's JSON text)"
    if name == "match_rule":
        field["constraints"] = {"required": True, "enum": list(MATCH_RULES)}
    return field


def table_schema(dataset: str, *, personal: bool) -> dict[str, Any]:
    """The Table Schema of a feed row for a key with (``personal``) or without personal data."""
    entity = get_entity(dataset)
    base = entity.table_schema(lineage=True)
    fields: list[dict[str, Any]] = []
    for spec in base["fields"]:
        name = spec["name"]
        if name == DELETED or entity.field(name).share_class == "not_shared":
            continue
        if name == "_source":  # the golden table's own columns come before the lineage
            fields.extend(_golden_field(g) for g in _golden(dataset))
        field = dict(spec)
        field["constraints"] = dict(spec["constraints"])
        code_list = entity.field(name).code_list
        if code_list is not None:
            field["codeList"] = code_list
            if len(CODE_LISTS[code_list].codes) > MAX_ENUM:
                field["constraints"].pop("enum", None)
        description = f"{spec['description']} / {spec['title']}"
        if name == RECORD_HASH or (name == SOURCE_KEY and not personal):
            zh, en = _KEYED[name]
            description = f"{en} / {zh}"
            field["constraints"]["pattern"] = _HEX32
        if spec["pii"] != "none" and not personal:
            zh, en = _MASKS.get(name, _NAME_MASK)
            description += f" ({en}; {zh})"
            field["type"] = "string"
            field["masked"] = True
        field["description"] = description
        fields.append(field)
        if name == ID_NUMBER:
            fields.append(
                {
                    "name": PSEUDONYM,
                    "type": "string",
                    "format": "default",
                    "title": "身份证号假名",
                    "description": "Keyed pseudonym of id_number (HMAC-SHA256 under the hub's secret, first 32 hex "
                    "characters): the same person has the same value in every dataset and for every key "
                    "/ 身份证号的密钥假名，可跨数据集关联同一人而不暴露身份",
                    "constraints": {"required": False, "pattern": "^[0-9a-f]{32}$"},
                    "pii": "none",
                }
            )
    fields.append(
        {
            "name": CHANGE_VERSION,
            "type": "integer",
            "format": "default",
            "title": "变更版本",
            "description": "Hub-wide change version of the row's last change; feeds are ordered by it "
            "/ 全局变更版本号，增量同步按其排序",
            "constraints": {"required": True, "minimum": 1},
            "pii": "none",
        }
    )
    lineage = [n for n in LINEAGE_NAMES if n != DELETED]
    return {
        "name": dataset.replace("_", "-"),
        "title": f"{entity.zh} / {entity.en}",
        "description": f"{entity.en}. Grain: {entity.grain}. Lineage columns: {', '.join(lineage)}; "
        f"personal fields {'included' if personal else 'masked'}.",
        "fields": fields,
        "primaryKey": list(entity.key),
        "missingValues": [""],
    }
