"""GET /v1/catalog: a public DCAT-AP catalogue (JSON-LD) that portals can harvest.

Validated against tests/data/dcat_ap_catalog.schema.json (DCAT-AP's mandatory and recommended
properties for Catalogue, Dataset, Distribution and DataService, written from the spec: no
SHACL shapes are available offline). Also: every prefix used is declared in the @context, no
不予共享 dataset is listed, periodicity follows the source schedules, the bulk package is a
distribution with its true byte size and hash, and the change versions agree with /versions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from feeds.dcat import write_sources
from feeds.export import export
from tests.integration.feeds.conftest import Api, open_api
from tests.unit.feeds.feed_fixtures import DISTRICTS, FeedHome

pytestmark = pytest.mark.integration

SCHEMA = json.loads((Path(__file__).parents[2] / "data" / "dcat_ap_catalog.schema.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def catalogued(built: FeedHome) -> Iterator[Api]:
    write_sources(built.home / "feeds", {"project": [("municipal_projects", "@hourly"), ("district_minhang", "@monthly")],
                                         "trainee": [("district_minhang", "@monthly")]})
    a = open_api(built.home, built)
    export(built.home, ["project"], built.home / "exports", secret=a.config.secret())
    with a.client:
        yield a
    a.store.dispose()


def _prefixes(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {k.split(":")[0] for k in node if ":" in k and not k.startswith("@")}
        for key in ("@type",):
            if isinstance(node.get(key), str) and ":" in node[key]:
                found.add(node[key].split(":")[0])
        return found.union(*(_prefixes(v) for k, v in node.items() if k != "@context"))
    if isinstance(node, list):
        return set().union(*(_prefixes(v) for v in node)) if node else set()
    return set()


def test_the_catalogue_is_public_valid_dcat_ap_and_lists_only_shared_datasets(catalogued: Api) -> None:
    r = catalogued.client.get("/v1/catalog")  # no key: portals harvest it
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/ld+json")
    body = r.json()
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(body)
    assert _prefixes(body) <= set(body["@context"]), _prefixes(body) - set(body["@context"])
    names = [d["dct:identifier"] for d in body["dcat:dataset"]]
    assert "project_report" not in names and {"project", "trainee", "teacher", "notice"} <= set(names)
    by_name = {d["dct:identifier"]: d for d in body["dcat:dataset"]}
    trainee, project = by_name["trainee"], by_name["project"]
    assert trainee["dct:accessRights"]["@id"].endswith("/RESTRICTED") and trainee["iehub:shareClass"]["zh"] == "有条件共享"
    assert project["dct:accessRights"]["@id"].endswith("/PUBLIC")
    assert trainee["dct:accrualPeriodicity"]["@id"].endswith("/MONTHLY")
    assert project["dct:accrualPeriodicity"]["@id"].endswith("/HOURLY")  # the most frequent of its sources
    assert by_name["notice"]["dct:accrualPeriodicity"]["@id"].endswith("/UNKNOWN")  # no schedule recorded
    assert {s["dct:identifier"] for s in project["dct:spatial"]} == set(DISTRICTS)
    assert [s["dct:identifier"] for s in by_name["teacher"]["dct:spatial"]] == ["310000"]
    zh = {t["@language"]: t["@value"] for t in project["dct:title"]}
    assert zh["zh"] == "市级产教融合协同育人项目" and zh["en"]
    assert project["dct:temporal"]["dcat:startDate"]["@value"] <= project["dct:temporal"]["dcat:endDate"]["@value"]
    assert catalogued.client.get("/v1/catalog?x=1").status_code == 400
    assert catalogued.client.get("/v1/catalog/project_report").status_code == 404


def test_the_bulk_package_is_a_distribution_with_its_true_size_and_hash(catalogued: Api) -> None:
    page = catalogued.client.get("/v1/catalog/project").json()
    assert page["dct:conformsTo"]["@id"].endswith("/v1/feeds/project/schema")
    assert page["iehub:openapi"]["@id"].endswith("/openapi.json")
    files = [d for d in page["dcat:distribution"] if "dcat:downloadURL" in d]
    assert sorted(d["dcat:downloadURL"]["@id"].rsplit("/", 1)[1] for d in files) == ["project.csv", "project.parquet"]
    for dist in files:
        url = dist["dcat:downloadURL"]["@id"]
        got = catalogued.get(url.split("testserver", 1)[1])
        assert got.status_code == 200, got.text
        assert int(dist["dcat:byteSize"]["@value"]) == len(got.content)
        assert dist["spdx:checksum"]["spdx:checksumValue"] == hashlib.sha256(got.content).hexdigest()
    district = catalogued.get("/v1/feeds/project/package/project.csv", key=DISTRICTS[0])
    assert district.status_code == 403 and "every district" in district.json()["message"]
    assert catalogued.get("/v1/feeds/project/package/..%2Ffeeds.db").status_code == 404
    assert catalogued.get("/v1/feeds/notice/package/notice.csv").status_code == 404  # never exported
    assert not [d for d in catalogued.client.get("/v1/catalog/trainee").json()["dcat:distribution"]
                if "dcat:downloadURL" in d]


@pytest.mark.parametrize("key", ["all", DISTRICTS[0]])
def test_newest_change_version_agrees_with_versions_for_the_same_snapshot(catalogued: Api, key: str) -> None:
    feeds = catalogued.get("/v1/feeds", key=key).json()
    for entry in feeds["datasets"]:
        versions = catalogued.get(f"/v1/feeds/{entry['identifier']}/versions", key=key).json()
        assert versions["snapshot"] == feeds["snapshot"]
        assert entry["changeVersions"]["newest"] == versions["newest_change_version"], entry["identifier"]
        assert entry["changeVersions"]["oldest"] == versions["oldest_change_version"], entry["identifier"]
    if key == "all":  # the public catalogue is hub-wide: the same as a key of every district
        public = {d["dct:identifier"]: d["iehub:changeVersions"]["newest"]
                  for d in catalogued.client.get("/v1/catalog").json()["dcat:dataset"]}
        assert public == {e["identifier"]: e["changeVersions"]["newest"] for e in feeds["datasets"]}
