"""杨浦 CSV snapshots and 闵行 workbooks end to end: drop folder → lake → core.*, with quarantine."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sandbox.districts import DistrictDrops
from tests.integration.districts.conftest import age, build_core, core, quarantine, sync

pytestmark = pytest.mark.integration


def live_core_ids(home: Path, source: str, entity: str = "project", key: str = "project_id") -> set[str]:
    return {k for (k,) in core(home, f"select {key} from core.{entity} where _source = '{source}'")}


def test_yangpu_snapshots_become_inserts_updates_and_deletes(iehub_home: Path, drops: DistrictDrops) -> None:
    first = sync(iehub_home, "district_yangpu")["projects"]
    assert first["rows_in"] == len(drops.projects("YP")) == first["rows_loaded"] + first["rows_quarantined"]
    assert first["rows_quarantined"] >= 1  # the district's rows with 2023年13月5日
    assert first["http"]["rows_skipped"] == {"note lines": 1, "blank lines": 1}  # every line accounted for

    before = {p.project_id for p in drops.projects("YP")}
    drops.mutate(changed=0.05)
    age(drops.yangpu)
    second = sync(iehub_home, "district_yangpu")["projects"]
    after = drops.projects("YP")
    after_ids = {p.project_id for p in after}
    deleted = before - after_ids
    # only the changes travel: unchanged rows are dropped by digest, deletes come as tombstones
    assert second["http"]["rows_deleted"] == len(deleted) > 0
    assert second["rows_in"] < len(after) / 2
    build_core(iehub_home)
    dirty = {p.project_id for p in after if p.dirty}
    assert live_core_ids(iehub_home, "district_yangpu") == after_ids - dirty
    assert {r["_key"] for r in quarantine(iehub_home, "project", "district_yangpu")} >= dirty & after_ids

    # nothing new: nothing loaded; the same bytes dropped under another name: not loaded twice
    newest = sorted(drops.yangpu.glob("*.csv"))[-1]
    shutil.copy(newest, drops.yangpu / "yangpu_projects_29991231.csv")
    age(drops.yangpu)
    third = sync(iehub_home, "district_yangpu")["projects"]
    assert third["rows_in"] == 0 and third["http"]["files_duplicate"] == 1


@pytest.mark.parametrize("made_by", ["md5 Parquet", "another DuckDB release"])
def test_digests_of_another_recipe_are_not_compared(iehub_home: Path, drops: DistrictDrops, made_by: str) -> None:
    """Snapshot digests name their recipe; digests an earlier version (md5, Parquet) or another DuckDB
    release made are not compared: every row counts as changed once, and the outcome is the same."""
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    sync(iehub_home, "district_yangpu")
    build_core(iehub_home)
    before = {p.project_id: p for p in drops.projects("YP")}
    versions = dict(core(iehub_home, "select project_id, change_version from core.project "
                                     "where _source = 'district_yangpu'"))
    folder = iehub_home / "staging" / "district_yangpu" / "projects" / "snapshot_digests"
    (saved,) = folder.glob("*.arrow")
    kept = feather.read_table(saved)
    assert (kept.schema.metadata or {}).get(b"iehub.digest_recipe", b"").startswith(b"duckdb-hash-v1/")
    if made_by == "md5 Parquet":
        pq.write_table(kept.replace_schema_metadata(None), saved.with_suffix(".parquet"))
        saved.unlink()
    else:
        other = kept.replace_schema_metadata({"iehub.digest_recipe": "duckdb-hash-v1/duckdb-0.0.1"})
        with pa.OSFile(str(saved), "wb") as sink, pa.ipc.new_file(sink, other.schema) as writer:
            writer.write_table(other)
    drops.mutate(changed=0.05)
    age(drops.yangpu)
    second = sync(iehub_home, "district_yangpu")["projects"]
    after = drops.projects("YP")
    assert second["rows_in"] >= len(after)  # every row emitted again (and the deletes as tombstones)
    build_core(iehub_home)
    dirty = {p.project_id for p in after if p.dirty}
    assert live_core_ids(iehub_home, "district_yangpu") == {p.project_id for p in after} - dirty
    # rows sent again unchanged keep their version: the build compares record hashes
    same = {p.project_id for p in after if before.get(p.project_id) == p and p.project_id in versions}
    assert len(same) > len(after) / 2
    now = dict(core(iehub_home, "select project_id, change_version from core.project "
                                "where _source = 'district_yangpu'"))
    assert {k: now[k] for k in same} == {k: versions[k] for k in same}
    (newest,) = [p for p in folder.glob("*.arrow") if p.stem != saved.stem]
    sync(iehub_home, "district_yangpu")  # the next pass keeps only the last snapshot's digests
    assert list(folder.iterdir()) == [newest]


def test_half_written_and_undecodable_files(iehub_home: Path, drops: DistrictDrops) -> None:
    sync(iehub_home, "district_yangpu")
    drops.mutate(changed=0.02)
    newest = sorted(drops.yangpu.glob("*.csv"))[-1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2 - 7])  # cut mid-line, as a copy still in progress
    age(drops.yangpu)
    waiting = sync(iehub_home, "district_yangpu")["projects"]
    assert waiting["rows_in"] == 0 and waiting["http"]["files_waiting"] == [newest.name]
    from iehub.cli import _file_notes

    (note,) = _file_notes([waiting])  # what `iehub sync` prints under its table: the user learns why 0 rows
    assert note.startswith("district_yangpu.projects: 1 file(s) not complete yet") and newest.name in note
    newest.write_bytes(data)
    age(drops.yangpu)
    done = sync(iehub_home, "district_yangpu")["projects"]
    assert done["http"]["files_read"] == 1 and done["rows_in"] > 0

    bad = drops.yangpu / "yangpu_projects_29990101.csv"
    bad.write_bytes("项目编号,项目名称\n".encode() + b"\xff\xfe\x81\x30 broken\n")
    age(drops.yangpu)
    result = sync(iehub_home, "district_yangpu")["projects"]
    assert result["rows_in"] == 1 and result["rows_quarantined"] == 1 and result["http"]["files_quarantined"] == 1
    rows = [r for r in quarantine(iehub_home, "project", "district_yangpu") if r["rule"] == "source.unreadable"]
    assert len(rows) == 1 and "cannot be decoded as utf-8-sig or gb18030" in rows[0]["reason"]
    assert bad.name in rows[0]["reason"]
    # the broken file is not a snapshot: nothing was deleted because of it
    build_core(iehub_home)
    assert len(live_core_ids(iehub_home, "district_yangpu")) > 0.9 * len(drops.projects("YP"))


def test_minhang_workbooks_projects_and_trainees(iehub_home: Path, drops: DistrictDrops) -> None:
    results = sync(iehub_home, "district_minhang")
    projects, trainees = results["projects"], results["trainees"]
    assert projects["http"]["rows_skipped"] == {"项目编号~^\\s*(合计|总计)": 1}  # the 合计 row
    assert trainees["rows_quarantined"] == 3  # IDs typed as numbers in Excel
    build_core(iehub_home)
    mh = drops.projects("MH")
    assert live_core_ids(iehub_home, "district_minhang") == {p.project_id for p in mh if not p.dirty}
    budget = core(iehub_home, "select budget_amount, start_date from core.project where project_id = ?"
                  .replace("?", f"'{mh[0].project_id}'"))
    assert float(budget[0][0]) == pytest.approx(mh[0].budget_wan * 10000, abs=0.01)
    assert budget[0][1] == mh[0].start
    ids = core(iehub_home, "select id_number from core.trainee where _source = 'district_minhang'")
    assert ids and all(len(i) == 18 for (i,) in ids)  # read as text, never as 3.1011e17
    bad = [r for r in quarantine(iehub_home, "trainee", "district_minhang") if r["rule"] == "source.unreadable"]
    assert len(bad) == 3 and all("身份证号" in r["reason"] for r in bad)
    assert not any(ch.isdigit() for r in bad for ch in r["reason"])  # no ID digits echoed in reasons
