"""Contract tests: every endpoint in every format, ETags, paging headers, masking, the catalogue."""

from __future__ import annotations

import csv
import io
import json

import duckdb
import pyarrow.parquet as pq
import pytest

from feeds.audit import AuditLog
from feeds.datasets import DATASETS
from feeds.sharing import servable
from tests.integration.feeds.conftest import Api
from tests.unit.feeds.feed_fixtures import DISTRICTS
from warehouse.publish import current_path, current_version

pytestmark = pytest.mark.integration


def warehouse(api: Api, query: str) -> list[tuple]:
    con = duckdb.connect(str(current_path(api.config.home)), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def records(response, fmt: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The records of a page in any format, as dicts of text/JSON values."""
    if fmt == "json":
        return response.json()["records"]
    if fmt == "ndjson":
        return [json.loads(line) for line in response.text.splitlines()]
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(response.text)))
    return pq.read_table(io.BytesIO(response.content)).to_pylist()


MEDIA = {"json": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv",
         "parquet": "application/vnd.apache.parquet"}


@pytest.mark.parametrize("fmt", list(MEDIA))
@pytest.mark.parametrize("by", ["param", "accept"])
def test_changes_in_every_format_page_through_all_rows(api: Api, fmt: str, by: str) -> None:
    expected = [v for (v,) in warehouse(api, "select change_version from core.project order by 1")]
    seen: list[int] = []
    url = f"/v1/feeds/project?limit=7&format={fmt}" if by == "param" else "/v1/feeds/project?limit=7"
    headers = {} if by == "param" else {"Accept": MEDIA[fmt]}
    snapshots = set()
    while url:
        r = api.get(url, headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(MEDIA[fmt])
        assert r.headers["etag"].startswith('"') and int(r.headers["x-record-count"]) <= 7
        snapshots.add(r.headers["x-snapshot"])
        page = records(r, fmt)
        seen += [int(rec["change_version"]) for rec in page]
        nxt = r.headers.get("x-next-cursor")
        if fmt == "json":
            assert r.json()["next_cursor"] == nxt and r.json()["count"] == len(page)
        if nxt:
            assert r.headers["link"].endswith('>; rel="next"') and f"cursor={nxt}" in r.headers["link"]
            url = r.headers["link"][1:].split(">;")[0].replace("http://testserver", "")
        else:
            assert "link" not in r.headers
            url = ""
    assert seen == expected
    assert snapshots == {current_version(api.config.home)}


def test_json_values_are_exact(api: Api) -> None:
    r = api.get("/v1/feeds/project?limit=1&fields=budget_amount,approved_on,updated_at")
    rec = r.json()["records"][0]
    row = warehouse(api, "select budget_amount, approved_on from core.project "
                         f"where project_id = '{rec['project_id']}'")
    assert rec["budget_amount"] == str(row[0][0]) and rec["approved_on"] == row[0][1].isoformat()
    assert rec["updated_at"].endswith("Z") and "T" in rec["updated_at"]
    assert set(rec) == {"project_id", "_source", "budget_amount", "approved_on", "updated_at", "change_version"}


@pytest.mark.parametrize("fmt", list(MEDIA))
def test_deletes_in_every_format_carry_the_natural_key(api: Api, fmt: str) -> None:
    r = api.get(f"/v1/feeds/project/deletes?format={fmt}")
    assert r.status_code == 200, r.text
    page = records(r, fmt)
    expected = warehouse(api, "select change_version, natural_key from core._tombstones where entity = 'project' "
                              "order by 1")
    assert [int(p["change_version"]) for p in page] == [v for v, _ in expected]
    for rec, (_, natural_key) in zip(page, expected):
        key = rec["key"] if fmt != "csv" else {"_source": rec["key._source"], "project_id": rec["key.project_id"]}
        assert key == json.loads(natural_key)


def test_versions_and_schema(api: Api) -> None:
    r = api.get("/v1/feeds/trainee/versions")
    body = r.json()
    assert r.status_code == 200 and body["dataset"] == "trainee" and body["snapshot"] == r.headers["x-snapshot"]
    newest = warehouse(api, "select max(last_change_version) from ops.change_sequence")[0][0]
    assert body["newest_change_version"] == newest
    assert 0 < body["oldest_change_version"] <= body["newest_change_version"]
    masked = api.get("/v1/feeds/trainee/schema").json()
    plain = api.get("/v1/feeds/trainee/schema", key="personal").json()
    names = [f["name"] for f in masked["fields"]]
    assert "change_version" in names and "id_pseudonym" in names and "_is_deleted" not in names
    assert masked != plain and masked["primaryKey"] == ["_source", "trainee_id"]


def test_masking_unless_granted_and_pseudonym_for_everyone(api: Api) -> None:
    masked = api.get("/v1/feeds/trainee?limit=1").json()["records"][0]
    plain = api.get("/v1/feeds/trainee?limit=1", key="personal").json()["records"][0]
    assert plain["name"] == "张三丰" and plain["id_number"] == "31011519900101002X" and plain["phone"] == "13812345678"
    assert masked["name"] == "张**" and masked["id_number"] == "310115********002X" and masked["phone"] == "138****5678"
    assert masked["id_pseudonym"] == plain["id_pseudonym"] and len(masked["id_pseudonym"]) == 32
    only = api.get("/v1/feeds/trainee?limit=1&fields=id_pseudonym").json()["records"][0]
    assert set(only) == {"trainee_id", "_source", "id_pseudonym", "change_version"}


def test_etag_gives_304_and_changes_with_the_request(api: Api) -> None:
    first = api.get("/v1/feeds/project?limit=5")
    tag = first.headers["etag"]
    again = api.get("/v1/feeds/project?limit=5", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    assert api.get("/v1/feeds/project?limit=5", headers={"If-None-Match": '"other"'}).status_code == 200
    assert api.get("/v1/feeds/project?limit=6").headers["etag"] != tag
    assert api.get("/v1/feeds/project?limit=5&format=csv").headers["etag"] != tag
    assert api.get("/v1/feeds/project?limit=5", key=DISTRICTS[0]).headers["etag"] != tag
    assert api.get("/v1/feeds/project?limit=5").content == first.content  # same snapshot, same bytes
    cat = api.get("/v1/feeds")
    assert api.get("/v1/feeds", headers={"If-None-Match": cat.headers["etag"]}).status_code == 304


def test_every_data_response_is_audited_with_its_digest(api: Api) -> None:
    import hashlib

    import sqlalchemy as sa

    r = api.get("/v1/feeds/trainee?limit=3&format=csv", key="personal")
    assert r.headers["x-content-sha256"] == hashlib.sha256(r.content).hexdigest()
    engine = sa.create_engine(api.config.db_url)
    with engine.connect() as conn:
        row = conn.execute(sa.text("select consumer, dataset, rows, personal, digest, snapshot from feed_audit "
                                   "order by seq desc limit 1")).one()
    engine.dispose()
    assert row.consumer == "municipal-hr" and row.dataset == "trainee" and row.rows == 3 and row.personal
    assert row.digest == r.headers["x-content-sha256"] and row.snapshot == r.headers["x-snapshot"]
    assert AuditLog(api.config.db_url).verify().ok


def test_catalogue_lists_what_the_key_may_read(api: Api) -> None:
    everything = api.get("/v1/feeds").json()
    assert [d["identifier"] for d in everything["datasets"]] == [n for n in DATASETS if servable(n)]  # no 不予共享
    project = next(d for d in everything["datasets"] if d["identifier"] == "project")
    assert project["title"]["zh"] == "市级产教融合协同育人项目" and project["title"]["en"]
    assert project["publisher"]["name"] == "上海市产教融合数据交换中心"
    assert project["license"]["identifier"] and project["accrualPeriodicity"].startswith("http")
    assert project["temporal"]["startDate"] <= project["temporal"]["endDate"]
    assert project["conformsTo"].endswith("/v1/feeds/project/schema")
    assert {d["format"] for d in project["distribution"]} == set(MEDIA)
    district = [d["identifier"] for d in api.get("/v1/feeds", key=DISTRICTS[0]).json()["datasets"]]
    assert "teacher" not in district and "project" in district
    assert [d["identifier"] for d in api.get("/v1/feeds", key="projects_only").json()["datasets"]] == [
        "project", "project_participant"]


def test_openapi_and_docs(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/feeds", "/v1/feeds/{dataset}", "/v1/feeds/{dataset}/deletes", "/v1/feeds/{dataset}/versions",
                 "/v1/feeds/{dataset}/schema"):
        assert "get" in paths[path], path
    content = paths["/v1/feeds/{dataset}"]["get"]["responses"]["200"]["content"]
    assert set(content) == set(MEDIA.values())
    assert {"400", "401", "403", "410", "429"} <= set(paths["/v1/feeds/{dataset}"]["get"]["responses"])
    assert api.client.get("/docs").status_code == 200


def test_a_pass_with_a_window_and_fields_keeps_them_on_every_page(api: Api) -> None:
    all_versions = [v for (v,) in warehouse(api, "select change_version from core.project order by 1")]
    low, high = all_versions[3], all_versions[12]
    r = api.get(f"/v1/feeds/project?min_change_version={low}&max_change_version={high}&limit=4&fields=title")
    seen = []
    while True:
        body = r.json()
        assert all(set(rec) == {"project_id", "_source", "title", "change_version"} for rec in body["records"])
        assert body["change_versions"]["min"] == low and body["change_versions"]["max"] == high
        seen += [rec["change_version"] for rec in body["records"]]
        if not body["next_cursor"]:
            break
        r = api.get(f"/v1/feeds/project?cursor={body['next_cursor']}&limit=4")
    assert seen == all_versions[3:13]
