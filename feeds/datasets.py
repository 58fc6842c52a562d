"""The feed datasets: one per canonical entity, with catalogue metadata and the district scope rule.

Why the scope rule lives in one declared table (:data:`DISTRICT_SCOPE`): a key's districts
must filter every endpoint of every dataset the same way, and a reviewer must be able to see
at a glance how each entity is tied to a district. Entities with their own ``district_code``
are filtered on it; ``project_participant`` and ``project_report`` carry none and inherit
their project's district; ``teacher`` has no district at all, so only keys granted every
district may read it (it is left out of other keys' catalogue).

The catalogue entry follows DCAT (``dcat:Dataset`` with ``dct:`` terms) so a platform's data
catalogue can harvest it; its text comes from :mod:`schemas`, never restated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from schemas import ENTITIES, SCHEMA_VERSION, Entity

__all__ = [
    "DATASETS",
    "DISTRICT_SCOPE",
    "FORMATS",
    "LICENCE",
    "PUBLISHER",
    "Dataset",
    "ScopeRule",
    "catalogue_entry",
    "get_dataset",
]


class ScopeRule(str, Enum):
    """How a row of a dataset is tied to a district."""

    COLUMN = "column"  # the row's own district_code
    PROJECT = "project"  # the district_code of core.project on (_source, project_id)
    ALL_DISTRICTS_ONLY = "all_districts_only"  # no district: only keys granted every district


#: The one table of district scope rules; a unit test checks it covers every entity and that
#: each COLUMN entity really has a district_code and each PROJECT entity a project_id.
DISTRICT_SCOPE: dict[str, ScopeRule] = {
    "organization": ScopeRule.COLUMN,
    "project": ScopeRule.COLUMN,
    "project_participant": ScopeRule.PROJECT,
    "project_report": ScopeRule.PROJECT,
    "training_base": ScopeRule.COLUMN,
    "teacher": ScopeRule.ALL_DISTRICTS_ONLY,
    "talent_demand": ScopeRule.COLUMN,
    "talent_supply": ScopeRule.COLUMN,
    "trainee": ScopeRule.COLUMN,
    "cooperation": ScopeRule.COLUMN,
    "rd_project": ScopeRule.COLUMN,
    "tech_service": ScopeRule.COLUMN,
    "notice": ScopeRule.COLUMN,
}

#: Media types by ``format=`` name, in the order the API prefers them.
FORMATS: dict[str, str] = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}

PUBLISHER: dict[str, str] = {
    "name": "上海市产教融合数据交换中心",
    "name_en": "Shanghai Industry-Education Integration Data Exchange Hub (iehub)",
    "identifier": "iehub",
}
#: Shared with the programme's platforms under attribution; personal fields stay masked unless a key is granted them.
LICENCE: dict[str, str] = {
    "identifier": "CC-BY-4.0",
    "url": "https://creativecommons.org/licenses/by/4.0/",
}
#: The warehouse is rebuilt whenever a source lands a batch (Airflow Assets): at least daily.
ACCRUAL_PERIODICITY = "http://purl.org/cld/freq/daily"


@dataclass(frozen=True)
class Dataset:
    """A feed: an entity, and how its rows are scoped to districts."""

    name: str
    entity: Entity
    scope: ScopeRule

    @property
    def table(self) -> str:
        return f'core."{self.name}"'

    def visible_to(self, datasets: frozenset[str] | None, districts: frozenset[str] | None) -> bool:
        """Whether a key with these grants may read this dataset at all (rows are filtered later)."""
        if datasets is not None and self.name not in datasets:
            return False
        return not (self.scope is ScopeRule.ALL_DISTRICTS_ONLY and districts is not None)


#: The datasets the feeds serve: every entity but the 不予共享 ones (schemas' share class), which the
#: feed room does not know at all, so no endpoint, export or subscription can reach them by mistake.
DATASETS: dict[str, Dataset] = {name: Dataset(name, entity, DISTRICT_SCOPE[name]) for name, entity in ENTITIES.items()
                                if entity.share_class != "not_shared"}


def get_dataset(name: str) -> Dataset:
    """The dataset called ``name``; KeyError naming it and the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})") from None


def catalogue_entry(dataset: Dataset, *, base_url: str, coverage: dict[str, Any], snapshot: str) -> dict[str, Any]:
    """A DCAT-style description of one dataset, as ``GET /v1/feeds`` lists it.

    ``coverage`` is what the snapshot holds for the caller: ``start``/``end`` (ISO dates of the
    earliest and latest event), ``oldest_change_version``/``newest_change_version``.
    """
    entity = dataset.entity
    base = base_url.rstrip("/")
    link = f"{base}/v1/feeds/{dataset.name}"
    return {
        "@type": "dcat:Dataset",
        "identifier": dataset.name,
        "title": {"zh": entity.zh, "en": entity.en},
        "description": {
            "zh": f"{entity.zh}（粒度：{entity.grain}；自然键：{', '.join(entity.key)}）",
            "en": f"{entity.en}. Grain: {entity.grain}. Natural key: ({', '.join(entity.key)}).",
        },
        "publisher": PUBLISHER,
        "accrualPeriodicity": ACCRUAL_PERIODICITY,
        "license": LICENCE,
        "temporal": {"startDate": coverage.get("start"), "endDate": coverage.get("end")},
        "conformsTo": f"{link}/schema",
        "schemaVersion": SCHEMA_VERSION,
        "snapshot": snapshot,
        "changeVersions": {
            "oldest": coverage.get("oldest_change_version"),
            "newest": coverage.get("newest_change_version"),
        },
        "districtScope": dataset.scope.value,
        "hasPersonalFields": bool(entity.pii_fields()),
        "distribution": [
            {"@type": "dcat:Distribution", "format": fmt, "mediaType": media, "accessURL": f"{link}?format={fmt}"}
            for fmt, media in FORMATS.items()
        ],
        "links": {
            "changes": link,
            "deletes": f"{link}/deletes",
            "versions": f"{link}/versions",
            "schema": f"{link}/schema",
        },
    }
