"""Issue #15 as found, and the rules that close it, over a home where every dataset has rows.

The rule: nothing served to a key without the personal grant contains, or lets anyone
recompute, a masked value — checked for every dataset × format × masked key × endpoint. Then
each finding exactly as the tester met it: the brute force of a trainee's ID and phone from
``_record_hash`` (1), a source keyed on 身份证号 (2, through a real spec, sync and build),
``organization`` in every format (3), and /versions scoped like the data (5). The fail-closed
half of 5 is in ``test_feeds_fail_closed.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feeds.datasets import DATASETS, ScopeRule
from feeds.masking import keyed_digest
from schemas import get_entity
from schemas.lineage import record_hash
from tests.conftest import REPO
from tests.integration.feeds.conftest import Api, open_api
from tests.unit.feeds.feed_fixtures import DISTRICTS, FORMULAS, PEOPLE, FeedHome, make_every_dataset_home
from warehouse.catalog import Catalog
from warehouse.publish import current_path

pytestmark = pytest.mark.integration

FORMATS = ("json", "ndjson", "csv", "parquet")
#: Every key without the personal grant that make_keys creates.
MASKED_KEYS = ("all", *DISTRICTS, "two", "projects_only")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
YANGPU = "310110"


@pytest.fixture(scope="module")
def every(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("every") / "home"
    catalog = Catalog.for_home(home)
    api = open_api(home, make_every_dataset_home(home, catalog))
    with api.client:
        yield api
    api.store.dispose()
    catalog.dispose()


def snapshot(api: Api, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    con = duckdb.connect(str(current_path(api.config.home)), read_only=True)
    try:
        return con.sql(sql, params=params or []).to_arrow_table().to_pylist()
    finally:
        con.close()


def as_text(response: Any, fmt: str) -> str:
    """All a response says, as text to search: headers and body (a Parquet file decoded, metadata and statistics too)."""
    head = json.dumps(dict(response.headers), ensure_ascii=False)
    if fmt != "parquet" or response.status_code != 200:
        return head + response.content.decode("utf-8")
    table = pq.read_table(io.BytesIO(response.content))
    meta = pq.read_metadata(io.BytesIO(response.content))
    stats = [str(meta.row_group(g).column(c).statistics) for g in range(meta.num_row_groups)
             for c in range(meta.num_columns)]
    return "\n".join([head, json.dumps(table.to_pylist(), default=str, ensure_ascii=False), str(table.schema),
                      str(meta.metadata), *stats])


def records_of(response: Any, fmt: str) -> list[dict[str, Any]]:
    if fmt == "json":
        return response.json()["records"]
    if fmt == "ndjson":
        return [json.loads(line) for line in response.content.splitlines() if line]
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(response.content)).to_pylist()
    import csv

    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))


def whole_pass(api: Api, path: str, key: str, fmt: str, limit: int = 1000) -> list[Any]:
    """Every response of one pass in ``fmt``, following X-Next-Cursor; each must be a 200."""
    responses, url = [], f"{path}?format={fmt}&limit={limit}"
    while url:
        r = api.get(url, key=key)
        assert r.status_code == 200, (path, key, fmt, r.status_code, r.text[:300])
        responses.append(r)
        cursor = r.headers.get("x-next-cursor")
        url = f"{path}?format={fmt}&limit={limit}&cursor={cursor}" if cursor else ""
    return responses


def personal_values(api: Api) -> set[str]:
    """Every personal value the snapshot holds: its PII-graded fields (the trainees' and teachers' source keys are among them)."""
    values: set[str] = set()
    for name, ds in DATASETS.items():
        pii = ds.entity.pii_fields()
        if pii:
            for row in snapshot(api, f"select {', '.join(pii)} from core.{name}"):
                values |= {v for v in row.values() if v}
    values |= {p for person in PEOPLE for p in person}  # the deleted ones too
    return values


def recomputable(api: Api, values: set[str]) -> set[str]:
    """Digests anyone could compute or look up: the warehouse's unkeyed _record_hash of every row, and the
    plain MD5, SHA-1 and SHA-256 of every personal value and of every source key."""
    digests: set[str] = set()
    for name in DATASETS:
        digests |= {r["_record_hash"] for r in snapshot(api, f"select _record_hash from core.{name}")}
    source_keys = {r["_source_key"] for r in snapshot(api, "select _source_key from core._tombstones")}
    for name in DATASETS:
        source_keys |= {r["_source_key"] for r in snapshot(api, f"select _source_key from core.{name}")}
    for value in values | {k for k in source_keys if k}:
        for algorithm in (hashlib.md5, hashlib.sha1, hashlib.sha256):
            digests.add(algorithm(value.encode("utf-8")).hexdigest())
    return {d.lower() for d in digests if d}


def visible(name: str, key: str) -> bool:
    from feeds.sharing import servable

    if not servable(name):  # 不予共享: never leaves the hub
        return False
    if key == "projects_only":
        return name in ("project", "project_participant")
    every_district = key in ("all", "personal")
    return every_district or DATASETS[name].scope is not ScopeRule.ALL_DISTRICTS_ONLY


# -- the rule, everywhere --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", MASKED_KEYS)
def test_nothing_served_to_a_masked_key_contains_or_recomputes_a_masked_value(every: Api, key: str) -> None:
    secrets = personal_values(every)
    digests = recomputable(every, secrets)
    import base64

    hub_secret = every.config.secret()
    forbidden_secret = {hub_secret.hex(), base64.urlsafe_b64encode(hub_secret).decode().rstrip("=")}
    stored = {name: {r["_record_hash"] for r in snapshot(every, f"select _record_hash from core.{name}")}
              for name in DATASETS}
    checked = 0
    for name in DATASETS:
        if not visible(name, key):
            continue
        metadata = [every.get(f"/v1/feeds/{name}/{what}", key=key) for what in ("versions", "schema")]
        for fmt in FORMATS:
            for endpoint in (f"/v1/feeds/{name}", f"/v1/feeds/{name}/deletes"):
                for response in whole_pass(every, endpoint, key, fmt, limit=4 if fmt == "json" else 1000):
                    text = as_text(response, fmt)
                    leaked = sorted(v for v in secrets if v in text)
                    assert not leaked, (key, name, fmt, endpoint, leaked)
                    lowered = text.lower()
                    assert not [d for d in digests if d in lowered], (key, name, fmt, endpoint)
                    assert not any(s in text for s in forbidden_secret)
                    for record in records_of(response, fmt):
                        if record.get("_source_key"):  # never the source's own key, always the pseudonym
                            assert HEX32.match(record["_source_key"]), (name, record["_source_key"])
                        if "_record_hash" in record:
                            assert record["_record_hash"] not in stored[name]
                            assert HEX32.match(record["_record_hash"])
                        checked += 1
        for response in metadata:
            assert response.status_code == 200
            assert not [v for v in secrets if v in response.text]
    catalogue = every.get("/v1/feeds", key=key).text
    assert not [v for v in secrets if v in catalogue]
    assert checked > 0


def test_the_personal_key_receives_what_the_rule_keeps_from_the_others(every: Api) -> None:
    """The control: the same search finds every person's ID, phone and name in what the personal key gets,
    so the rule's test above searches the right things in the right places."""
    for fmt in FORMATS:
        text = "".join(as_text(r, fmt) for r in whole_pass(every, "/v1/feeds/trainee", "personal", fmt))
        text += "".join(as_text(r, fmt) for r in whole_pass(every, "/v1/feeds/trainee/deletes", "personal", fmt))
        live = {r["id_number"] for r in snapshot(every, "select id_number from core.trainee")}
        for name, id_number, phone in PEOPLE:  # a deleted trainee's ID is still there, as its delete's source key
            assert id_number in text, (fmt, name)
            assert (name in text and phone in text) == (id_number in live), (fmt, name)


@pytest.mark.parametrize("key", [*MASKED_KEYS, "personal"])
def test_every_dataset_answers_in_every_format(every: Api, key: str) -> None:
    for name in DATASETS:
        urls = [f"/v1/feeds/{name}/versions", f"/v1/feeds/{name}/schema"]
        urls += [f"/v1/feeds/{name}{kind}?format={fmt}" for kind in ("", "/deletes") for fmt in FORMATS]
        for url in urls:
            r = every.get(url, key=key)
            assert r.status_code < 500, (key, url, r.status_code, r.text[:300])
            if visible(name, key):
                assert r.status_code == 200, (key, url, r.status_code, r.text[:300])
            else:
                assert r.status_code in (403, 404), (key, url, r.status_code)


def test_every_key_receives_the_same_keyed_record_hash(every: Api) -> None:
    """Keyed, not per key: one value per record for masked and personal keys, the warehouse's MD5 under HMAC."""
    secret = every.config.secret()
    stored = {r["trainee_id"]: r["_record_hash"] for r in snapshot(every, "select * from core.trainee")}
    masked = {r["trainee_id"]: r["_record_hash"] for r in whole_pass(every, "/v1/feeds/trainee", "all", "json",
                                                                         limit=100)[0].json()["records"]}
    personal = {r["trainee_id"]: r["_record_hash"] for r in whole_pass(every, "/v1/feeds/trainee", "personal",
                                                                           "json", limit=100)[0].json()["records"]}
    assert masked == personal == {k: keyed_digest(v, secret, "_record_hash") for k, v in stored.items()}


# -- finding 1: the digest of a masked row -------------------------------------------------------------------


def _typed(record: dict[str, Any], field: Any) -> Any:
    value = record.get(field.name)
    if value is None:
        return None
    if pa.types.is_timestamp(field.type):
        return datetime.fromisoformat(value)
    if pa.types.is_date(field.type):
        return date.fromisoformat(value)
    if pa.types.is_decimal(field.type):
        return Decimal(value)
    return value


def test_issue_15_finding_1_a_masked_trainee_cannot_be_brute_forced_from_its_record_hash(every: Api) -> None:
    """The tester's attack, narrowed so it runs in a second: from 王小明's masked row and his known name, try
    every birth date of 1999 for the ID's 8 hidden characters and 100 values for the phone's 4 hidden digits
    (36,500 candidates, the truth among them; the tester searched the whole space in 181 s).

    Against the warehouse's own unkeyed digest the search finds him (the control: this is the attack that
    worked); against what the feed serves it finds nothing, because the served digest is an HMAC under a
    secret no response carries.
    """
    name, id_number, phone = PEOPLE[0]
    key = DISTRICTS[0]  # the district his row lives in (row 0)
    served = [r for r in whole_pass(every, "/v1/feeds/trainee", key, "json", limit=100)[0].json()["records"]
              if r["name"] == "王**"]
    assert len(served) == 1
    row = served[0]
    assert row["id_number"] == id_number[:6] + "********" + id_number[-4:] and row["phone"] == phone[:3] + "****" + phone[-4:]

    entity = get_entity("trainee")
    base = {f.name: _typed(row, f) for f in entity.business_fields}
    days = [date(1999, 1, 1) + timedelta(days=d) for d in range(365)]
    candidates = [{**base, "name": name, "id_number": row["id_number"][:6] + day.strftime("%Y%m%d") + row["id_number"][-4:],
                   "phone": row["phone"][:3] + f"{1200 + k:04d}" + row["phone"][-4:]} for day in days for k in range(100)]
    table = pa.Table.from_pylist(candidates, schema=entity.arrow_schema(lineage=False))
    hashes = record_hash(table, entity).to_pylist()

    stored = snapshot(every, "select _record_hash from core.trainee where id_number = ?", [id_number])[0]["_record_hash"]
    found = [c for c, h in zip(candidates, hashes) if h == stored]
    assert [(c["id_number"], c["phone"]) for c in found] == [(id_number, phone)]  # the control: the old leak
    assert row["_record_hash"] not in set(hashes)  # the served digest matches no candidate
    assert row["_record_hash"] != stored
    assert row["_record_hash"] == keyed_digest(stored, every.config.secret(), "_record_hash")
    # Nor is it any plain digest of the served row itself (computed over the served form, it would be public).
    assert row["_record_hash"] not in set(record_hash(pa.Table.from_pylist([base], schema=table.schema), entity)
                                          .to_pylist())


# -- finding 2: a source keyed on 身份证号, through a real spec ------------------------------------------------

KEYED_ON_ID = """\
# 闵行 (310112) trainee roster keyed on the ID number: the spec mistake of issue #15
name: district_minhang_by_id
kind: file
location: {location}
streams:
  trainees:
    entity: trainee
    pattern: "mh_*.csv"
    format: csv
    mode: changes                     # each file lists what changed; 状态 注销 is a cancelled enrolment
    header: {{find: 学员编号}}
    text_columns: [学员编号, 身份证号, 手机号]
    complete: {{settle_seconds: 0}}
    primary_key: 身份证号
    mapping:
      fields:
        trainee_id: {{from: 学员编号, normalise: [trim]}}
        name: {{from: 姓名, normalise: [trim]}}
        id_number: {{from: 身份证号, normalise: [trim, halfwidth, upper]}}
        phone: {{from: 手机号, normalise: [trim, halfwidth]}}
        school_name: {{from: 学校, normalise: [trim]}}
        district_code: {{const: "310112"}}
      deleted: {{from: 状态, values: ["注销"]}}
"""


def _roster(people: list[tuple[str, str, str]], cancelled: tuple[str, ...] = ()) -> bytes:
    """A roster file; a person is MHT-<their place in PEOPLE>-2, and 状态 注销 marks a cancelled enrolment."""
    lines = ["学员编号,姓名,身份证号,手机号,学校,状态"]
    lines += [f"MHT-{PEOPLE.index((name, id_number, phone)) + 1:06d}-2,{name},{id_number},{phone},"
              f"上海电子信息职业技术学院,{'注销' if id_number in cancelled else '在读'}"
              for name, id_number, phone in people]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _settle(folder: Path) -> None:
    for path in folder.iterdir():
        os.utime(path, (time.time() - 60, time.time() - 60))


@pytest.fixture(scope="module")
def keyed_on_id(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Path]]:
    from connectors.spec import load_spec
    from iehub import pipeline
    from iehub.config import Settings

    root = tmp_path_factory.mktemp("keyed_on_id")
    home, drop = root / "home", root / "drop"
    drop.mkdir()
    spec_path = root / "district_minhang_by_id.yaml"
    spec_path.write_text(KEYED_ON_ID.format(location=drop.as_uri()), encoding="utf-8")
    spec = load_spec(spec_path)
    old = os.environ.get("IEHUB_HOME")
    os.environ["IEHUB_HOME"] = str(home)
    try:
        settings = Settings.from_env(home)
        catalog = settings.catalog()
        fh = FeedHome(home, catalog)
        people = [(n, i, p) for n, i, p in PEOPLE if i.startswith("310112")] + [PEOPLE[1]]
        (drop / "mh_20250101.csv").write_bytes(_roster(people))
        _settle(drop)
        assert pipeline.sync_stream(settings, spec.name, "trainees", spec=spec)["rows_loaded"] == len(people)
        fh.build()
        # 王小明's enrolment is cancelled: a delete whose source key is his ID number.
        (drop / "mh_20250201.csv").write_bytes(_roster(people, cancelled=(PEOPLE[0][1],)))
        _settle(drop)
        pipeline.sync_stream(settings, spec.name, "trainees", spec=spec)
        fh.build()
    finally:
        if old is None:
            os.environ.pop("IEHUB_HOME", None)
        else:
            os.environ["IEHUB_HOME"] = old
    api = open_api(home, fh)
    with api.client:
        yield api, spec_path
    api.store.dispose()
    catalog.dispose()


def test_issue_15_finding_2_a_spec_keyed_on_the_id_number_is_warned_about(keyed_on_id: tuple[Api, Path]) -> None:
    _, spec_path = keyed_on_id
    done = subprocess.run([sys.executable, "-m", "iehub.cli", "spec", "validate", str(spec_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout
    assert "warning" in done.stderr and "身份证号" in done.stderr and "primary_key" in done.stderr


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("key", ["all", "310112"])
def test_issue_15_finding_2_masked_keys_receive_no_raw_id_in_changes_or_deletes(
        keyed_on_id: tuple[Api, Path], key: str, fmt: str) -> None:
    api, _ = keyed_on_id
    ids = {i for _, i, _ in PEOPLE}
    stored = snapshot(api, "select _source_key from core._tombstones where entity = 'trainee'")
    assert PEOPLE[0][1] in {r["_source_key"] for r in stored}  # the delete really is keyed on his ID
    for endpoint in ("/v1/feeds/trainee", "/v1/feeds/trainee/deletes"):
        responses = whole_pass(api, endpoint, key, fmt)
        for response in responses:
            text = as_text(response, fmt)
            assert not [i for i in ids if i in text], (endpoint, key, fmt)
        if endpoint.endswith("deletes"):
            deletes = [d for r in responses for d in records_of(r, fmt)]
            assert len(deletes) == 1 and HEX32.match(deletes[0]["_source_key"])
    # The control: the personal key does get the raw ID, as the source's key of the delete.
    deletes = whole_pass(api, "/v1/feeds/trainee/deletes", "personal", "json")[0].json()["records"]
    assert [d["_source_key"] for d in deletes] == [PEOPLE[0][1]]


def test_a_delete_and_the_record_it_removes_carry_the_same_pseudonym(keyed_on_id: tuple[Api, Path]) -> None:
    """The pseudonym is per value, so a consumer can still match a delete to what it received before."""
    api, _ = keyed_on_id
    delete = whole_pass(api, "/v1/feeds/trainee/deletes", "310112", "json")[0].json()["records"][0]
    assert delete["_source_key"] == keyed_digest(PEOPLE[0][1], api.config.secret(), "_source_key")


# -- finding 3: organization in every format -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_issue_15_finding_3_organization_answers_in_every_format_with_its_list_column(every: Api, fmt: str) -> None:
    expected = {r["org_id"]: r["sources"] for r in snapshot(every, "select org_id, sources from core.organization")}
    assert expected and all(isinstance(v, list) and v for v in expected.values())
    records = [rec for r in whole_pass(every, "/v1/feeds/organization", "all", fmt) for rec in records_of(r, fmt)]
    if fmt == "csv":  # one cell holding the JSON array
        got = {r["org_id"]: json.loads(r["sources"]) for r in records}
    else:  # a JSON array in JSON/NDJSON, a list column in Parquet
        got = {r["org_id"]: r["sources"] for r in records}
    assert got == expected
    assert all(r["match_rule"] in ("uscc", "name", "unmatched", "ambiguous") for r in records)
    for response in whole_pass(every, "/v1/feeds/organization/deletes", "all", fmt):
        assert response.status_code == 200


def test_the_table_schema_names_every_column_a_key_receives_with_its_type(every: Api) -> None:
    kinds = {"string": str, "integer": int, "boolean": bool, "array": list, "number": str, "date": str,
             "datetime": str}
    for key in ("all", "personal"):
        for name in [n for n in DATASETS if visible(n, key)]:
            schema = every.get(f"/v1/feeds/{name}/schema", key=key).json()
            records = whole_pass(every, f"/v1/feeds/{name}", key, "json", limit=100)[0].json()["records"]
            assert records, name
            assert [f["name"] for f in schema["fields"]] == list(records[0]), (key, name)
            for field in schema["fields"]:
                for record in records:
                    if record[field["name"]] is not None:
                        assert isinstance(record[field["name"]], kinds[field["type"]]), (name, field["name"])
                        if "pattern" in field.get("constraints", {}):
                            assert re.fullmatch(field["constraints"]["pattern"], record[field["name"]])


# -- the CSV formula rule --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["all", "personal"])
def test_feed_csv_neutralises_formulas_and_json_and_parquet_keep_the_value(every: Api, key: str) -> None:
    stored = {r["project_id"]: r for r in snapshot(every, "select project_id, title, budget_amount from core.project")}
    assert any(r["budget_amount"] < 0 for r in stored.values())
    csv_rows = [r for resp in whole_pass(every, "/v1/feeds/project", key, "csv") for r in records_of(resp, "csv")]
    for row in csv_rows:
        title = stored[row["project_id"]]["title"]
        assert row["title"] == ("'" + title if title[0] in "=+-@\t\r" else title)
        assert Decimal(row["budget_amount"]) == stored[row["project_id"]]["budget_amount"]  # numbers stay numbers
    assert {r["title"][0] for r in csv_rows} == {"'"}  # every title of this home is formula-like
    for fmt in ("json", "ndjson", "parquet"):
        rows = [r for resp in whole_pass(every, "/v1/feeds/project", key, fmt) for r in records_of(resp, fmt)]
        assert {r["project_id"]: r["title"] for r in rows} == {k: v["title"] for k, v in stored.items()}


def test_export_csv_neutralises_formulas_and_parquet_keeps_lists_and_values(every: Api, tmp_path: Path) -> None:
    from feeds.export import export

    results = export(every.config.home, ["project", "organization", "trainee"], tmp_path, secret=every.config.secret())
    by_name = {r.dataset: r for r in results}
    import csv

    def read_csv(path: Path) -> list[dict[str, str]]:  # bytes, so a CR inside a value is kept
        return list(csv.DictReader(io.StringIO((path.read_bytes().decode("utf-8")), newline="")))

    project_csv = read_csv(by_name["project"].directory / "project.csv")
    project_pq = pq.read_table(by_name["project"].directory / "project.parquet").to_pylist()
    titles = {r["project_id"]: r["title"] for r in project_pq}
    assert set(titles.values()) <= set(FORMULAS)
    for row in project_csv:
        assert row["title"] == "'" + titles[row["project_id"]]
    assert any(row["budget_amount"] == "-3.50" for row in project_csv)
    org_csv = read_csv(by_name["organization"].directory / "organization.csv")
    org_pq = pq.read_table(by_name["organization"].directory / "organization.parquet")
    assert pa.types.is_list(org_pq.schema.field("sources").type)
    assert {r["org_id"]: json.loads(r["sources"]) for r in org_csv} == {
        r["org_id"]: r["sources"] for r in org_pq.to_pylist()}
    trainee = (by_name["trainee"].directory / "trainee.csv").read_text("utf-8")
    assert not [v for v in personal_values(every) if v in trainee]
    for result in results:
        checked = subprocess.run([str(Path(sys.executable).parent / "frictionless"), "validate",
                                  str(result.directory / "datapackage.json")], capture_output=True, text=True,
                                 timeout=300)
        assert checked.returncode == 0, checked.stdout[-3000:]


def test_iehub_sql_csv_neutralises_formulas_and_keeps_negative_numbers(every: Api) -> None:
    done = subprocess.run([sys.executable, "-m", "iehub.cli", "sql", "--format", "csv",
                           "select project_id, title, budget_amount from core.project order by project_id"],
                          cwd=REPO, capture_output=True, timeout=300,
                          env={**os.environ, "IEHUB_HOME": str(every.config.home)})
    assert done.returncode == 0, done.stderr
    import csv

    rows = list(csv.DictReader(io.StringIO(done.stdout.decode("utf-8"), newline="")))
    stored = {r["project_id"]: r for r in snapshot(every, "select project_id, title, budget_amount from core.project")}
    assert rows and all(r["title"] == "'" + stored[r["project_id"]]["title"] for r in rows)
    assert "-3.50" in {r["budget_amount"] for r in rows}


# -- finding 5 (metadata half): /versions scoped like the data ---------------------------------------------


def test_issue_15_finding_5_versions_of_a_yangpu_key_reflect_only_yangpu_rows(every: Api) -> None:
    def scoped(district: str | None) -> tuple[int, int]:
        where = "true" if district is None else f"district_code = '{district}'"
        row = snapshot(every, f"select min(v) as lo, max(v) as hi from (select change_version as v from core.trainee "
                              f"where {where} union all select change_version from core._tombstones "
                              f"where entity = 'trainee' and {where})")[0]
        return row["lo"], row["hi"]

    yangpu = every.get("/v1/feeds/trainee/versions", key=YANGPU).json()
    everyone = every.get("/v1/feeds/trainee/versions", key="all").json()
    assert (yangpu["oldest_change_version"], yangpu["newest_change_version"]) == scoped(YANGPU)
    assert (everyone["oldest_change_version"], everyone["newest_change_version"]) == scoped(None)
    assert scoped(YANGPU) != scoped(None)
    hub_wide = snapshot(every, "select max(last_change_version) as v from ops.change_sequence")[0]["v"]
    assert everyone["newest_change_version"] < hub_wide  # per dataset, not the hub's whole activity
    catalogue = {d["identifier"]: d for d in every.get("/v1/feeds", key=YANGPU).json()["datasets"]}
    assert (catalogue["trainee"]["changeVersions"]["oldest"],
            catalogue["trainee"]["changeVersions"]["newest"]) == scoped(YANGPU)
    page = every.get("/v1/feeds/trainee", key=YANGPU).json()  # a pass's default max is the key's newest too
    assert page["change_versions"]["max"] == yangpu["newest_change_version"]
    tag = every.get("/v1/feeds/trainee/versions", key=YANGPU).headers["etag"]
    assert every.get("/v1/feeds/trainee/versions", key="all", headers={"If-None-Match": tag}).status_code == 200


def test_a_pass_past_the_newest_is_empty_and_its_window_is_accepted_back(every: Api) -> None:
    newest = every.get("/v1/feeds/trainee/versions", key=YANGPU).json()["newest_change_version"]
    page = every.get(f"/v1/feeds/trainee?min_change_version={newest + 1}", key=YANGPU)
    assert page.status_code == 200 and page.json()["count"] == 0
    assert page.json()["change_versions"]["max"] == newest  # min - 1: nothing new, start there again
    deletes = every.get(f"/v1/feeds/trainee/deletes?min_change_version={newest + 1}&max_change_version={newest}",
                        key=YANGPU)
    assert deletes.status_code == 200 and deletes.json()["count"] == 0
    bad = every.get(f"/v1/feeds/trainee?min_change_version={newest + 2}&max_change_version={newest}", key=YANGPU)
    assert bad.status_code == 400 and "greater than" in bad.json()["message"]
