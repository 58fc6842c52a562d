"""The harvestable catalogue: DCAT-AP in JSON-LD for data portals (``GET /v1/catalog``).

What it promises: one ``dcat:Catalog`` of the datasets that may leave the hub — 无条件共享 and
有条件共享, never 不予共享 — each with DCAT-AP's mandatory and recommended properties: title and
description in zh and en, publisher, contact point, accrual periodicity (the most frequent
schedule of the sources that feed it), temporal and spatial coverage, licence, access rights
(from the share class, which is also given as ``iehub:shareClass``), and distributions: the
feed API in each format (``dcat:accessService``, described by ``/openapi.json``) and the bulk
package files of the current snapshot with media type, byte size and SHA-256.

Why public (no key): portals harvest without credentials, and dataset *metadata* of shared
datasets is public in a government data exchange; access to the data stays behind keys and
access requests. Coverage is therefore hub-wide, never a key's scope. A 不予共享 dataset is not
in the feed room at all (:data:`feeds.datasets.DATASETS`), so it cannot appear here.

Why source schedules arrive through a file (``IEHUB_HOME/feeds/sources.json``, written by
``iehub serve`` from the source specs): the feed room may not import ``connectors``; the file is
the one fact it needs (which sources feed which entity, on which schedule). Without it the
periodicity is the EU vocabulary's ``UNKNOWN``, which is honest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from feeds.datasets import FORMATS, LICENCE, PUBLISHER, Dataset, ScopeRule
from schemas import CODE_LISTS, ENTITIES, SCHEMA_VERSION, SHARE_CLASSES

__all__ = [
    "CONTEXT",
    "SOURCES_FILE",
    "catalog",
    "dataset_node",
    "package_files",
    "periodicity",
    "read_sources",
    "write_sources",
]

SOURCES_FILE = "sources.json"
FREQ = "http://publications.europa.eu/resource/authority/frequency/"
ACCESS_RIGHTS = "http://publications.europa.eu/resource/authority/access-right/"
FILE_TYPE = "http://publications.europa.eu/resource/authority/file-type/"
#: Spec schedules (connectors.spec) to the EU frequency vocabulary DCAT-AP names.
_SCHEDULE_FREQ = {"@hourly": "HOURLY", "@daily": "DAILY", "@weekly": "WEEKLY", "@monthly": "MONTHLY"}
_FREQ_ORDER = ["HOURLY", "DAILY", "WEEKLY", "MONTHLY"]
_ACCESS = {"unconditional": "PUBLIC", "conditional": "RESTRICTED"}
_FILE_TYPES = {"json": "JSON", "ndjson": "JSON", "csv": "CSV", "parquet": "PARQUET"}
CONTACT = {"fn": "上海市产教融合数据交换中心 数据服务 / iehub data service", "email": "mailto:iehub@example.gov.cn"}

CONTEXT: dict[str, str] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "spdx": "http://spdx.org/rdf/terms#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "iehub": "https://iehub.example.gov.cn/ns#",
}


def write_sources(feeds_dir: Path, sources: Mapping[str, Sequence[tuple[str, str]]]) -> Path:
    """Record which sources feed each entity and on what schedule: ``{entity: [[source, schedule], …]}``."""
    path = Path(feeds_dir) / SOURCES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({e: [list(s) for s in v] for e, v in sources.items()}, ensure_ascii=False, indent=1),
                   encoding="utf-8")
    tmp.replace(path)
    return path


def read_sources(feeds_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """The file :func:`write_sources` wrote, or {} when there is none or it is unreadable."""
    try:
        raw = json.loads((Path(feeds_dir) / SOURCES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {e: [(str(s), str(k)) for s, k in v] for e, v in raw.items() if isinstance(v, list)}


def periodicity(schedules: Sequence[str]) -> str:
    """The EU frequency of an entity fed on these schedules: the most frequent one, else UNKNOWN."""
    known = [_SCHEDULE_FREQ[s] for s in schedules if s in _SCHEDULE_FREQ]
    return FREQ + (min(known, key=_FREQ_ORDER.index) if known else "UNKNOWN")


def package_files(exports_dir: Path, dataset: str, snapshot: str) -> list[dict[str, Any]]:
    """The files of the masked bulk package of ``dataset`` at ``snapshot`` (none when not exported, or personal)."""
    descriptor = Path(exports_dir) / dataset / snapshot / "datapackage.json"
    try:
        package = json.loads(descriptor.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if package.get("iehub", {}).get("personal") is not False:
        return []  # a package with personal data is never offered through the catalogue
    return [{"path": r["path"], "format": r.get("format", ""), "mediatype": r.get("mediatype", ""),
             "bytes": int(r["bytes"]), "hash": str(r["hash"])}
            for r in package.get("resources", []) if r.get("path") and "bytes" in r and "hash" in r]


def _text(zh: str, en: str) -> list[dict[str, str]]:
    return [{"@value": zh, "@language": "zh"}, {"@value": en, "@language": "en"}]


SHANGHAI = "310000"  # a dataset without districts covers the whole city


def _location(code: str) -> dict[str, Any]:
    districts = CODE_LISTS["district"]
    zh, en = ("上海市", "Shanghai") if code == SHANGHAI else (districts.label(code), districts.label(code, "en"))
    return {"@type": "dct:Location", "dct:identifier": code, "skos:prefLabel": _text(zh, en)}


def dataset_node(ds: Dataset, *, base_url: str, snapshot: str, coverage: Mapping[str, Any], districts: Sequence[str],
                 sources: Sequence[tuple[str, str]], packages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One ``dcat:Dataset`` (also the per-dataset page ``/v1/catalog/{dataset}``)."""
    entity = ENTITIES[ds.name]
    base = base_url.rstrip("/")
    feed = f"{base}/v1/feeds/{ds.name}"
    share = entity.share_class
    service = {"@id": f"{base}/v1/feeds"}
    distributions: list[dict[str, Any]] = [
        {
            "@id": f"{feed}?format={fmt}",
            "@type": "dcat:Distribution",
            "dct:title": _text(f"{entity.zh}变更订阅（{fmt.upper()}）", f"{entity.en} change feed ({fmt.upper()})"),
            "dct:description": _text("按变更版本分页的接口，需密钥", "Change feed paged by change version; needs a key"),
            "dcat:accessURL": {"@id": f"{feed}?format={fmt}"},
            "dcat:mediaType": {"@id": f"https://www.iana.org/assignments/media-types/{media}"},
            "dct:format": {"@id": FILE_TYPE + _FILE_TYPES[fmt]},
            "dct:license": {"@id": LICENCE["url"]},
            "dct:conformsTo": {"@id": f"{feed}/schema"},
            "dcat:accessService": service,
        }
        for fmt, media in FORMATS.items()
    ]
    for f in packages:
        url = f"{feed}/package/{f['path']}"
        algorithm, _, value = str(f["hash"]).partition(":")
        distributions.append({
            "@id": url,
            "@type": "dcat:Distribution",
            "dct:title": _text(f"{entity.zh}批量数据包 {f['path']}", f"{entity.en} bulk package file {f['path']}"),
            "dct:description": _text(f"快照 {snapshot} 全量（个人信息已脱敏）",
                                     f"Whole snapshot {snapshot}, personal fields masked"),
            "dcat:accessURL": {"@id": url},
            "dcat:downloadURL": {"@id": url},
            "dcat:mediaType": {"@id": f"https://www.iana.org/assignments/media-types/{f['mediatype']}"},
            "dct:format": {"@id": FILE_TYPE + _FILE_TYPES.get(str(f["format"]), "BIN")},
            "dcat:byteSize": {"@value": str(f["bytes"]), "@type": "xsd:nonNegativeInteger"},
            "spdx:checksum": {"@type": "spdx:Checksum", "spdx:algorithm": {"@id": f"spdx:checksumAlgorithm_{algorithm}"},
                              "spdx:checksumValue": value},
            "dct:license": {"@id": LICENCE["url"]},
            "dct:conformsTo": {"@id": f"{feed}/schema"},
        })
    schedules = [s for _, s in sources]
    return {
        "@id": f"{base}/v1/catalog/{ds.name}",
        "@type": "dcat:Dataset",
        "dct:identifier": ds.name,
        "dct:title": _text(entity.zh, entity.en),
        "dct:description": _text(f"{entity.zh}（粒度：{entity.grain}；自然键：{', '.join(entity.key)}；{SHARE_CLASSES[share]}）",
                                 f"{entity.en}. Grain: {entity.grain}. Natural key: ({', '.join(entity.key)}). "
                                 f"Share class: {share.replace('_', ' ')}."),
        "dcat:keyword": [{"@value": "产教融合", "@language": "zh"},
                         {"@value": "industry-education integration", "@language": "en"},
                         {"@value": ds.name, "@language": "en"}],
        "dct:publisher": {"@id": f"{base}/v1/catalog#publisher"},
        "dcat:contactPoint": {"@type": "vcard:Organization", "vcard:fn": CONTACT["fn"],
                              "vcard:hasEmail": {"@id": CONTACT["email"]}},
        "dct:accrualPeriodicity": {"@id": periodicity(schedules)},
        "dct:temporal": {"@type": "dct:PeriodOfTime",
                         **({"dcat:startDate": {"@value": coverage["start"], "@type": "xsd:date"}}
                            if coverage.get("start") else {}),
                         **({"dcat:endDate": {"@value": coverage["end"], "@type": "xsd:date"}}
                            if coverage.get("end") else {})},
        "dct:spatial": [_location(code) for code in (districts or [SHANGHAI])],
        "dct:license": {"@id": LICENCE["url"]},
        "dct:accessRights": {"@id": ACCESS_RIGHTS + _ACCESS[share]},
        "iehub:shareClass": {"code": share, "zh": SHARE_CLASSES[share]},
        "dct:conformsTo": {"@id": f"{feed}/schema"},
        "dct:source": [{"dct:identifier": name, "iehub:schedule": schedule} for name, schedule in sources],
        "owl:versionInfo": SCHEMA_VERSION,
        "iehub:snapshot": snapshot,
        "iehub:changeVersions": {"oldest": coverage.get("oldest_change_version"),
                                 "newest": coverage.get("newest_change_version")},
        "iehub:districtScope": ds.scope.value,
        "dcat:landingPage": {"@id": f"{base}/v1/catalog/{ds.name}"},
        "dcat:distribution": distributions,
    }


def catalog(nodes: list[dict[str, Any]], *, base_url: str, snapshot: str) -> dict[str, Any]:
    """The ``dcat:Catalog`` around dataset nodes, with the feed API as its ``dcat:DataService``."""
    base = base_url.rstrip("/")
    return {
        "@context": {**CONTEXT, "owl": "http://www.w3.org/2002/07/owl#"},
        "@id": f"{base}/v1/catalog",
        "@type": "dcat:Catalog",
        "dct:title": _text("上海市产教融合数据目录", "Shanghai industry-education integration data catalogue"),
        "dct:description": _text("上海市产教融合数据交换中心可共享的数据集（无条件共享、有条件共享）",
                                 "Datasets the iehub shares (unconditionally or on approved request)"),
        "dct:publisher": {"@id": f"{base}/v1/catalog#publisher", "@type": "foaf:Agent",
                          "foaf:name": [{"@value": PUBLISHER["name"], "@language": "zh"},
                                        {"@value": PUBLISHER["name_en"], "@language": "en"}]},
        "dct:license": {"@id": LICENCE["url"]},
        "dct:language": [{"@id": "http://publications.europa.eu/resource/authority/language/ZHO"},
                         {"@id": "http://publications.europa.eu/resource/authority/language/ENG"}],
        "foaf:homepage": {"@id": f"{base}/docs"},
        "iehub:snapshot": snapshot,
        "dcat:service": [{
            "@id": f"{base}/v1/feeds",
            "@type": "dcat:DataService",
            "dct:title": _text("产教融合数据变更订阅接口", "iehub feed API"),
            "dcat:endpointURL": {"@id": f"{base}/v1/feeds"},
            "dcat:endpointDescription": {"@id": f"{base}/openapi.json"},
            "dct:license": {"@id": LICENCE["url"]},
            "dct:accessRights": {"@id": ACCESS_RIGHTS + "RESTRICTED"},
            "dcat:servesDataset": [{"@id": n["@id"]} for n in nodes],
        }],
        "dcat:dataset": nodes,
    }


def spatial_sql(ds: Dataset) -> str | None:
    """SQL for the district codes a dataset's rows lie in (None: no district, the whole city)."""
    if ds.scope is ScopeRule.COLUMN:
        return f"SELECT DISTINCT district_code FROM {ds.table} WHERE district_code IS NOT NULL ORDER BY 1"
    if ds.scope is ScopeRule.PROJECT:
        return (f"SELECT DISTINCT p.district_code FROM {ds.table} AS t JOIN core.project AS p "
                "ON p._source = t._source AND p.project_id = t.project_id WHERE p.district_code IS NOT NULL ORDER BY 1")
    return None
