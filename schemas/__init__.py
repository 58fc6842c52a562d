"""Canonical entities v1, code lists, validators, normalisers and the raw → canonical mapping.

Imports nothing of the rest of iehub; every other package imports from here.
Submodules: model, entities, codes, validators, normalise, mapping, lineage.
"""

from __future__ import annotations

from schemas.codes import CODE_LISTS, CodeList
from schemas.entities import ENTITIES, SCHEMA_VERSION, get_entity
from schemas.model import LINEAGE_FIELDS, PII_GRADES, SHARE_CLASSES, Entity, Field

__all__ = [
    "CODE_LISTS",
    "CodeList",
    "ENTITIES",
    "SCHEMA_VERSION",
    "get_entity",
    "LINEAGE_FIELDS",
    "PII_GRADES",
    "SHARE_CLASSES",
    "Entity",
    "Field",
]
