"""The vocabulary every other package uses to talk about canonical data.

An :class:`Entity` is declared once (in entities.py) and everything else is derived from it:
the Arrow schema the lake is written with, the Frictionless Table Schema the feeds publish,
the list of personal fields masking must hide. Deriving instead of restating keeps the lake,
the warehouse and the feeds from drifting apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

from schemas.codes import CODE_LISTS

__all__ = [
    "PII_GRADES",
    "SHARE_CLASSES",
    "Field",
    "Entity",
    "LINEAGE_FIELDS",
    "LINEAGE_NAMES",
    "TIMESTAMP",
    "MONEY",
]

PII_GRADES: tuple[str, ...] = ("none", "personal", "sensitive")

#: Share classes of the government data-sharing rules (政务数据共享), strictest last. A dataset
#: declares one; a field may declare a stricter one. ``unconditional`` (无条件共享): any registered
#: consumer; ``conditional`` (有条件共享): only under an approved access request stating purpose and
#: scope, with an expiry; ``not_shared`` (不予共享): never leaves the hub (feeds.sharing enforces it).
SHARE_CLASSES: dict[str, str] = {"unconditional": "无条件共享", "conditional": "有条件共享", "not_shared": "不予共享"}

TIMESTAMP: pa.DataType = pa.timestamp("us", tz="UTC")
"""All instants are stored in UTC with microseconds."""

MONEY: pa.DataType = pa.decimal128(18, 2)
"""All money is stored in yuan with 2 decimals (sources in 万元 are converted)."""


@dataclass(frozen=True)
class Field:
    """One column of an entity, with the documentation and PII grade that travel with it."""

    name: str
    type: pa.DataType
    zh: str
    en: str
    pii: str = "none"
    required: bool = False
    code_list: str | None = None
    #: ``not_shared`` withholds this one field from every feed, schema and export (None: the entity's class).
    share_class: str | None = None
    #: Text only: the longest value allowed, in characters (the quality gate quarantines longer ones).
    max_length: int | None = None
    #: Text only: whether line breaks and tabs belong in the value (free text); other control
    #: characters (NUL, escape, …) are never allowed.
    multiline: bool = False

    def __post_init__(self) -> None:
        # Fail at import time: a typo in a declaration must never reach the lake.
        if self.pii not in PII_GRADES:
            raise ValueError(f"field {self.name}: pii grade {self.pii!r} is not one of {PII_GRADES}")
        if self.code_list is not None and self.code_list not in CODE_LISTS:
            raise ValueError(f"field {self.name}: unknown code list {self.code_list!r}")
        if self.share_class is not None and self.share_class not in SHARE_CLASSES:
            raise ValueError(f"field {self.name}: share class {self.share_class!r} is not one of {tuple(SHARE_CLASSES)}")
        if not self.zh or not self.en:
            raise ValueError(f"field {self.name}: zh and en descriptions are both required")
        if self.name.endswith("_amount") and self.type != MONEY:
            raise ValueError(f"field {self.name}: *_amount fields are money, decimal128(18, 2) yuan")
        if self.max_length is not None and (not pa.types.is_string(self.type) or self.max_length < 1):
            raise ValueError(f"field {self.name}: max_length applies to text fields and must be at least 1")
        if self.multiline and not pa.types.is_string(self.type):
            raise ValueError(f"field {self.name}: only text fields can be multiline")


LINEAGE_FIELDS: tuple[Field, ...] = (
    Field("_source", pa.string(), "来源系统", "Source system the row came from", required=True),
    Field("_source_key", pa.string(), "来源系统主键", "The record's key in its source system"),
    Field("_batch_id", pa.string(), "批次号", "Batch that landed the row", required=True),
    Field("_extracted_at", TIMESTAMP, "抽取时间（UTC）", "When the row was extracted, UTC", required=True),
    Field(
        "_record_hash",
        pa.string(),
        "记录指纹",
        "MD5 over the business fields, to detect changes between batches",
        required=True,
    ),
    Field(
        "_is_deleted",
        pa.bool_(),
        "是否已删除",
        "Soft delete / tombstone flag from the source",
        required=True,
    ),
)
LINEAGE_NAMES: tuple[str, ...] = tuple(f.name for f in LINEAGE_FIELDS)

def _frictionless_type(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_decimal(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "datetime"
    raise TypeError(f"no Frictionless type for Arrow type {t}")


@dataclass(frozen=True)
class Entity:
    """A canonical entity: its grain, natural key and business fields.

    Lineage fields are not declared per entity; they are appended to every one.
    """

    name: str
    zh: str
    en: str
    grain: str
    key: tuple[str, ...]
    fields: tuple[Field, ...]
    share_class: str = "conditional"  # the safe default: an undeclared entity needs an approved request

    def __post_init__(self) -> None:
        if self.share_class not in SHARE_CLASSES:
            raise ValueError(f"entity {self.name}: share class {self.share_class!r} is not one of {tuple(SHARE_CLASSES)}")
        # A field may only withhold itself (不予共享: the feeds never read it); a per-field access
        # request is not a thing the hub runs, so a field cannot be 'conditional' on its own.
        odd = [f.name for f in self.fields if f.share_class not in (None, "not_shared", self.share_class)]
        if odd:
            raise ValueError(f"entity {self.name}: fields {odd} declare a share class other than the entity's "
                             f"{self.share_class!r} or 'not_shared'; a field may only be withheld")
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"entity {self.name}: duplicate fields {dupes}")
        lineage_clash = [n for n in names if n.startswith("_")]
        if lineage_clash:
            raise ValueError(f"entity {self.name}: business fields may not start with '_': {lineage_clash}")
        known = set(names) | set(LINEAGE_NAMES)
        missing = [k for k in self.key if k not in known]
        if missing:
            raise ValueError(f"entity {self.name}: key fields {missing} are not fields")

    def field(self, name: str) -> Field:
        """The business or lineage field called ``name``."""
        for f in self.all_fields:
            if f.name == name:
                return f
        raise KeyError(
            f"unknown field {name!r} of entity {self.name} "
            f"(known: {', '.join(f.name for f in self.all_fields)})"
        )

    @property
    def business_fields(self) -> tuple[Field, ...]:
        """The declared fields, in schema order."""
        return self.fields

    @property
    def all_fields(self) -> tuple[Field, ...]:
        """Business fields followed by the lineage fields."""
        return self.fields + LINEAGE_FIELDS

    def is_required(self, name: str) -> bool:
        """Key fields are required even if not declared so: a row without its key is unusable."""
        return name in self.key or self.field(name).required

    def arrow_schema(self, lineage: bool = True) -> pa.Schema:
        """The Arrow schema of landed rows (with lineage) or of mapped rows (without).

        Only key fields and required lineage fields are non-nullable: a tombstone from the
        source may lack required business values, and must still land.
        """
        fields = self.all_fields if lineage else self.fields
        arrow_fields = []
        for f in fields:
            nullable = not (f.name in self.key or (f.name in LINEAGE_NAMES and f.required))
            meta = {b"zh": f.zh.encode(), b"en": f.en.encode(), b"pii": f.pii.encode()}
            arrow_fields.append(pa.field(f.name, f.type, nullable=nullable, metadata=meta))
        meta = {b"entity": self.name.encode(), b"key": json.dumps(list(self.key)).encode()}
        return pa.schema(arrow_fields, metadata=meta)

    def table_schema(self, lineage: bool = True) -> dict:
        """Frictionless Table Schema, as the feeds' /schema endpoint and datapackage.json publish it."""
        fields = self.all_fields if lineage else self.fields
        out = []
        for f in fields:
            constraints: dict[str, object] = {"required": self.is_required(f.name)}
            if f.code_list is not None:
                constraints["enum"] = list(CODE_LISTS[f.code_list].codes)
            out.append(
                {
                    "name": f.name,
                    "type": _frictionless_type(f.type),
                    "format": "default",
                    "title": f.zh,
                    "description": f.en,
                    "constraints": constraints,
                    "pii": f.pii,
                }
            )
        return {
            "name": self.name,
            "title": self.zh,
            "description": f"{self.en}. Grain: {self.grain}",
            "fields": out,
            "primaryKey": list(self.key),
            "missingValues": [""],
        }

    def pii_fields(self) -> list[str]:
        """Names of fields graded personal or sensitive, which feeds must mask unless granted."""
        return [f.name for f in self.all_fields if f.pii != "none"]
