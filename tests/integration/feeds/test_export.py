"""Bulk exports on a real built warehouse, checked by the real `frictionless validate`."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from feeds.audit import AuditError, AuditLog
from feeds.export import ExportError, export
from schemas import get_entity
from tests.unit.feeds.access_fixtures import SECRET, TEACHERS, TRAINEES, build_people_home, entity_rows, land
from warehouse.build import build
from warehouse.catalog import Catalog
from warehouse.publish import PublishError, current_path, current_version

pytestmark = pytest.mark.integration

FRICTIONLESS = Path(sys.executable).with_name("frictionless")
PERSONAL_VALUES = [v for row in TEACHERS + TRAINEES for k, v in row.items() if k in ("name", "id_number", "phone") and v]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_people_home(tmp_path_factory.mktemp("export") / "home")


def validate(datapackage: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FRICTIONLESS), "validate", str(datapackage)], capture_output=True, text=True,
                          timeout=300, env={"PATH": str(FRICTIONLESS.parent), "COLUMNS": "200"})


def core_count(home: Path, dataset: str) -> int:
    con = duckdb.connect(str(current_path(home)), read_only=True)
    try:
        return con.execute(f"SELECT count(*) FROM core.{dataset}").fetchall()[0][0]
    finally:
        con.close()


def test_masked_packages_pass_frictionless_and_describe_their_files(home: Path, tmp_path: Path) -> None:
    results = export(home, ["teacher", "trainee", "organization"], tmp_path / "out", secret=SECRET)
    version = current_version(home)
    assert [r.dataset for r in results] == ["teacher", "trainee", "organization"]
    for result in results:
        directory = tmp_path / "out" / result.dataset / version
        assert result.directory == directory and result.version == version and not result.personal
        assert sorted(p.name for p in directory.iterdir()) == sorted(
            ["datapackage.json", f"{result.dataset}.csv", f"{result.dataset}.parquet"])
        package = json.loads((directory / "datapackage.json").read_text(encoding="utf-8"))
        assert package["version"] == version and package["licenses"]
        rows = core_count(home, result.dataset)
        assert result.rows == rows > 0
        csv_res, parquet_res = package["resources"]
        assert (csv_res["format"], parquet_res["format"]) == ("csv", "parquet")
        csv_bytes = (directory / csv_res["path"]).read_bytes()
        parquet_bytes = (directory / parquet_res["path"]).read_bytes()
        assert csv_res["bytes"] == len(csv_bytes)
        assert csv_res["hash"] == "sha256:" + hashlib.sha256(csv_bytes).hexdigest()
        assert parquet_res["bytes"] == len(parquet_bytes)
        assert parquet_res["hash"] == "sha256:" + hashlib.sha256(parquet_bytes).hexdigest()
        assert csv_res["rowCount"] == parquet_res["rowCount"] == rows
        with open(directory / csv_res["path"], encoding="utf-8", newline="") as handle:
            body = list(csv.reader(handle))
        assert len(body) == rows + 1
        assert body[0] == [f["name"] for f in csv_res["schema"]["fields"]]
        assert pq.read_metadata(directory / parquet_res["path"]).num_rows == rows
        checked = validate(directory / "datapackage.json")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "INVALID" not in checked.stdout and checked.stdout.count("VALID") == 2


def test_personal_fields_are_masked_unless_asked_and_pseudonyms_match(home: Path, tmp_path: Path) -> None:
    masked = export(home, ["teacher"], tmp_path / "masked", secret=SECRET)[0]
    plain = export(home, ["teacher"], tmp_path / "plain", secret=SECRET, personal=True)[0]
    masked_text = (masked.directory / "teacher.csv").read_text(encoding="utf-8")
    plain_text = (plain.directory / "teacher.csv").read_text(encoding="utf-8")
    masked_cells = {cell for row in csv.reader(io.StringIO(masked_text)) for cell in row}
    plain_cells = {cell for row in csv.reader(io.StringIO(plain_text)) for cell in row}
    teacher_values = {v for row in TEACHERS for k, v in row.items() if k in ("name", "id_number", "phone") and v}
    assert not masked_cells & set(PERSONAL_VALUES)
    assert teacher_values <= plain_cells
    assert '"张*"' in masked_text and '"欧阳**"' in masked_text and '"张伟"' in plain_text
    masked_rows = pq.read_table(masked.directory / "teacher.parquet").to_pylist()
    plain_rows = pq.read_table(plain.directory / "teacher.parquet").to_pylist()
    assert [r["id_pseudonym"] for r in masked_rows] == [r["id_pseudonym"] for r in plain_rows]
    assert masked_rows[0]["id_number"].startswith("310115********")
    assert json.loads((plain.directory / "datapackage.json").read_text())["iehub"]["personal"] is True
    assert validate(plain.directory / "datapackage.json").returncode == 0


def test_a_changed_file_fails_validation(home: Path, tmp_path: Path) -> None:
    result = export(home, ["trainee"], tmp_path / "out", secret=SECRET)[0]
    path = result.directory / "trainee.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("司马*", "司马光"), encoding="utf-8")
    checked = validate(result.directory / "datapackage.json")
    assert checked.returncode != 0 and "hash" in checked.stdout.lower()


def test_one_snapshot_is_pinned_for_the_whole_export(tmp_path: Path) -> None:
    home = build_people_home(tmp_path / "home")
    first = current_version(home)
    seen: list[str] = []

    def rebuild_after_teachers(dataset: str, done: int, total: int) -> None:
        if dataset == "teacher" and done == total and not seen:
            seen.append(dataset)
            catalog = Catalog.for_home(home)
            more = [dict(TRAINEES[0], trainee_id="S003", name="赵六")]
            land(home, catalog, "district_minhang", "w2", entity_rows("trainee", "district_minhang", more),
                 entity=get_entity("trainee"))
            build(home, catalog)
            catalog.dispose()

    results = export(home, ["teacher", "trainee"], tmp_path / "out", secret=SECRET, progress=rebuild_after_teachers)
    assert seen and current_version(home) != first
    assert {r.version for r in results} == {first}
    assert results[1].rows == len(TRAINEES)  # not the row landed mid-export
    assert core_count(home, "trainee") == len(TRAINEES) + 1


def test_reexport_replaces_the_package_and_leaves_no_temporary_files(home: Path, tmp_path: Path) -> None:
    export(home, ["teacher"], tmp_path / "out", secret=SECRET)
    again = export(home, ["teacher"], tmp_path / "out", secret=SECRET, personal=True)[0]
    names = sorted(p.name for p in (tmp_path / "out" / "teacher").iterdir())
    assert names == [again.version]
    assert json.loads((again.directory / "datapackage.json").read_text())["iehub"]["personal"] is True


def test_exports_are_audited_and_an_audit_failure_leaves_nothing(home: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feeds.db'}"
    log = AuditLog(url)
    export(home, ["teacher", "trainee"], tmp_path / "out", secret=SECRET, audit=log)
    report = log.verify()
    assert report.ok and report.rows == 2
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE feed_audit")
    engine.dispose()
    with pytest.raises(AuditError):
        export(home, ["organization"], tmp_path / "out", secret=SECRET, audit=log)
    assert not [p for p in (tmp_path / "out").rglob("*") if "organization" in p.parts and p.is_file()]
    log.dispose()


def test_bad_requests_say_what_is_wrong(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown dataset"):
        export(home, ["teacher", "students"], tmp_path / "out", secret=SECRET)
    with pytest.raises(PublishError, match="iehub build"):
        export(tmp_path / "empty", None, tmp_path / "out", secret=SECRET)
    with pytest.raises(ValueError, match="16 bytes"):
        export(home, ["teacher"], tmp_path / "out", secret=b"short")
