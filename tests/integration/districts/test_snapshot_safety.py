"""Issue #19: malformed 杨浦 snapshots dropped into a fresh and into an already-loaded district.

Each test loads the district's good file first (≈200 projects), drops one bad variant as the next
day's file, syncs, and checks what a user sees: core.project unchanged, the file's fate in the
file ledger, the quarantine reason, and the one-line non-zero exit of `iehub sync`.
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from iehub import pipeline
from iehub.config import Settings
from sandbox.districts import DistrictDrops
from tests.integration.districts.conftest import age, build_core, core, quarantine, sync

pytestmark = pytest.mark.integration

SOURCE = "district_yangpu"
DAY0 = "yangpu_projects_20240301.csv"


def live_ids(home: Path) -> set[str]:
    build_core(home)
    return {k for (k,) in core(home, f"select project_id from core.project where _source = '{SOURCE}'")}


def ledger(home: Path) -> dict[str, dict]:
    """The file ledger as committed: file name → its last recorded outcome."""
    state = Settings.from_env(home).catalog().get_state(SOURCE, "project") or {}
    return {e["name"]: e for e in state.get("files", {}).values()}


def lines_of(drops: DistrictDrops) -> list[bytes]:
    return (drops.yangpu / DAY0).read_bytes().split(b"\r\n")


def drop(drops: DistrictDrops, name: str, data: bytes) -> Path:
    path = drops.yangpu / name
    path.write_bytes(data)
    age(drops.yangpu)
    return path


def loaded(home: Path) -> set[str]:
    first = sync(home, SOURCE)["projects"]
    assert first["rows_loaded"] > 150
    return live_ids(home)


def header_plus(drops: DistrictDrops, body: list[bytes]) -> bytes:
    return b"\r\n".join([lines_of(drops)[0], *body, b""])


VARIANTS = {
    "header and 合计 row only": lambda d: header_plus(d, ["合计,,,,,,,0.00,".encode("gbk")]),
    "header and blank lines": lambda d: header_plus(d, [b"", b"", b""]),
    "header and one row": lambda d: header_plus(d, lines_of(d)[1:2]),
    "cut at a row boundary after 60 rows": lambda d: header_plus(d, lines_of(d)[1:61]),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_near_empty_or_cut_short_snapshot_is_held_and_deletes_nothing(
        iehub_home: Path, drops: DistrictDrops, variant: str) -> None:
    before = loaded(iehub_home)
    bad = drop(drops, "yangpu_projects_20240302.csv", VARIANTS[variant](drops))
    with pytest.raises(pipeline.SnapshotHeld) as held:
        sync(iehub_home, SOURCE)
    message = str(held.value)
    assert "\n" not in message and bad.name in message and "iehub quarantine accept" in message
    assert f"of {len(before)} live rows" in message and "limit of 20%" in message
    assert live_ids(iehub_home) == before  # no tombstones, no rows from it
    entry = ledger(iehub_home)[bad.name]
    assert entry["status"] == "suspect" and entry["figures"]["live"] == len(before)
    reasons = [r["reason"] for r in quarantine(iehub_home, "project", SOURCE) if bad.name in (r["reason"] or "")]
    assert len(reasons) == 1 and "would delete" in reasons[0]


def test_the_same_variant_in_a_fresh_district_loads_what_it_holds(iehub_home: Path, drops: DistrictDrops) -> None:
    (drops.yangpu / DAY0).write_bytes(VARIANTS["header and one row"](drops))
    age(drops.yangpu)
    result = sync(iehub_home, SOURCE)["projects"]  # nothing live to delete: nothing to guard
    assert result["rows_in"] == 1 and len(live_ids(iehub_home)) <= 1


def test_sync_exits_non_zero_with_one_line_and_an_accepted_shrink_applies(iehub_home: Path,
                                                                           drops: DistrictDrops) -> None:
    from iehub.cli import main

    before = loaded(iehub_home)
    bad = drop(drops, "yangpu_projects_20240302.csv", VARIANTS["cut at a row boundary after 60 rows"](drops))
    runner = CliRunner()
    run = runner.invoke(main, ["--home", str(iehub_home), "sync", SOURCE])
    assert run.exit_code != 0
    assert bad.name in run.output and "held as suspect" in run.output
    assert live_ids(iehub_home) == before
    again = runner.invoke(main, ["--home", str(iehub_home), "sync", SOURCE])  # still held: said again
    assert again.exit_code != 0 and f"{bad.name} (still waiting)" in again.output
    assert live_ids(iehub_home) == before

    accept = runner.invoke(main, ["--home", str(iehub_home), "quarantine", "accept", str(bad)])
    assert accept.exit_code == 0 and "accepted" in accept.output, accept.output
    applied = runner.invoke(main, ["--home", str(iehub_home), "sync", SOURCE])
    assert applied.exit_code == 0, applied.output
    after = live_ids(iehub_home)
    assert after < before and len(after) <= 60
    assert ledger(iehub_home)[bad.name]["status"] == "loaded"
    assert runner.invoke(main, ["--home", str(iehub_home), "sync", SOURCE]).exit_code == 0  # decided: quiet
    unknown = runner.invoke(main, ["--home", str(iehub_home), "quarantine", "accept", "nope.csv"])
    assert unknown.exit_code != 0 and "no snapshot named 'nope.csv'" in unknown.output


def test_a_newer_good_snapshot_resolves_a_held_one(iehub_home: Path, drops: DistrictDrops) -> None:
    before = loaded(iehub_home)
    drop(drops, "yangpu_projects_20240302.csv", VARIANTS["header and one row"](drops))
    with pytest.raises(pipeline.SnapshotHeld):
        sync(iehub_home, SOURCE)
    drop(drops, "yangpu_projects_20240303.csv", (drops.yangpu / DAY0).read_bytes().replace(
        lines_of(drops)[1] + b"\r\n", b""))  # the next day's full export: one project gone
    result = sync(iehub_home, SOURCE)["projects"]  # no exception: nothing is waiting any more
    assert result["http"]["rows_deleted"] == 1 and len(live_ids(iehub_home)) == len(before) - 1


def stray_quote(drops: DistrictDrops, *, last_cell: bool) -> tuple[bytes, int]:
    lines = lines_of(drops)
    row = 63
    cells = lines[row - 1].split(b",")
    if last_cell:
        cells[-1] = b'"' + cells[-1]
    else:
        cells[1] = b'"' + cells[1]  # opens a quoted field that never closes on its line
    lines[row - 1] = b",".join(cells)
    return b"\r\n".join(lines), row


@pytest.mark.parametrize("last_cell", [False, True], ids=["name cell", "last cell"])
def test_a_stray_quote_refuses_the_file_whole_naming_its_line(iehub_home: Path, drops: DistrictDrops,
                                                              last_cell: bool) -> None:
    before = loaded(iehub_home)
    data, row = stray_quote(drops, last_cell=last_cell)
    bad = drop(drops, "yangpu_projects_20240302.csv", data)
    result = sync(iehub_home, SOURCE)["projects"]
    assert result["http"]["files_quarantined"] == 1 and result["rows_in"] == 1
    assert live_ids(iehub_home) == before  # nothing deleted, nothing lost silently
    (reason,) = [r["reason"] for r in quarantine(iehub_home, "project", SOURCE) if bad.name in (r["reason"] or "")]
    assert f"opened at line {row}" in reason
    assert ledger(iehub_home)[bad.name]["status"] == "quarantined"


def test_resending_content_loaded_earlier_is_applied_again(iehub_home: Path, drops: DistrictDrops) -> None:
    first = loaded(iehub_home)
    good = (drops.yangpu / DAY0).read_bytes()
    drops.mutate(changed=0.05)  # day 1: some projects gone, some new
    age(drops.yangpu)
    sync(iehub_home, SOURCE)
    assert live_ids(iehub_home) != first
    drop(drops, "yangpu_projects_20240303.csv", good)  # the district re-sends day 0's export as day 2
    result = sync(iehub_home, SOURCE)["projects"]
    assert result["http"].get("files_duplicate", 0) == 0 and result["http"]["files_read"] == 1
    assert live_ids(iehub_home) == first


def test_a_late_older_snapshot_is_refused_not_applied_over_a_newer_one(iehub_home: Path,
                                                                       drops: DistrictDrops) -> None:
    loaded(iehub_home)
    drops.mutate(changed=0.05)
    day1 = drops.yangpu / "yangpu_projects_20240302.csv"
    complete = day1.read_bytes()
    day1.write_bytes(complete[:-2])  # held back: no final newline yet
    drops.mutate(changed=0.05)
    age(drops.yangpu)
    sync(iehub_home, SOURCE)
    day2 = live_ids(iehub_home)
    assert day2 == {p.project_id for p in drops.projects("YP") if not p.dirty}
    day1.write_bytes(complete)  # day 1 completes after day 2 was loaded
    age(drops.yangpu)
    result = sync(iehub_home, SOURCE)["projects"]
    assert result["http"]["files_late"] == [day1.name] and result["rows_in"] == 0
    assert live_ids(iehub_home) == day2  # not rolled back
    entry = ledger(iehub_home)[day1.name]
    assert entry["status"] == "late" and "older than the current snapshot" in entry["reason"]


def test_symlinks_in_the_drop_folder_are_refused_unread(iehub_home: Path, drops: DistrictDrops,
                                                         tmp_path: Path) -> None:
    before = loaded(iehub_home)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(drops.yangpu / DAY0, elsewhere / "copy.csv")
    os.symlink(elsewhere / "copy.csv", drops.yangpu / "yangpu_projects_20240302.csv")
    os.symlink("/etc/passwd", drops.yangpu / "yangpu_projects_20240303.csv")
    result = sync(iehub_home, SOURCE)["projects"]
    assert sorted(result["http"]["files_refused"]) == ["yangpu_projects_20240302.csv", "yangpu_projects_20240303.csv"]
    assert result["rows_in"] == 0 and live_ids(iehub_home) == before
    assert all(ledger(iehub_home)[n]["status"] == "refused" and "symbolic link" in ledger(iehub_home)[n]["reason"]
               for n in result["http"]["files_refused"])
    assert not any("root:" in (r["_record"] or "") for r in quarantine(iehub_home, "project", SOURCE))


NOT_TEXT = {
    "empty file": (b"", "empty file"),
    "gzip": (None, "gzip"),
    "UTF-16 without a BOM": (None, "UTF-16 text without a byte-order mark"),
    "binary": (bytes(range(256)) * 8, "binary data"),
    "xlsx named .csv": (None, "Excel workbook (xlsx) named as a CSV"),
}


@pytest.mark.parametrize("kind", list(NOT_TEXT))
def test_a_complete_non_text_file_is_quarantined_at_once_saying_what_it_is(
        iehub_home: Path, drops: DistrictDrops, kind: str, tmp_path: Path) -> None:
    before = loaded(iehub_home)
    data, expected = NOT_TEXT[kind]
    good = (drops.yangpu / DAY0).read_bytes()
    if kind == "gzip":
        data = gzip.compress(good) + b"x"  # no final newline: used to wait an hour
    elif kind == "UTF-16 without a BOM":
        data = good.decode("gbk").encode("utf-16-le")
    elif kind == "xlsx named .csv":
        from openpyxl import Workbook

        wb = Workbook()
        wb.active.append(["项目编号", "项目名称"])
        wb.save(tmp_path / "w.xlsx")
        data = (tmp_path / "w.xlsx").read_bytes()
    bad = drop(drops, "yangpu_projects_20240302.csv", data)
    result = sync(iehub_home, SOURCE)["projects"]
    assert result["http"].get("files_waiting", []) == [] and result["http"]["files_quarantined"] == 1
    (reason,) = [r["reason"] for r in quarantine(iehub_home, "project", SOURCE) if bad.name in (r["reason"] or "")]
    assert expected in reason and "no header row" not in reason
    assert live_ids(iehub_home) == before


@pytest.mark.parametrize("header, expected", [
    ("项目编号,牵头单位,统一社会信用代码,项目类别,所属产业,开始日期,金额(万元),项目状态", "no column 项目名称"),
    ("项目编号,项目名称,项目名称,统一社会信用代码,项目类别,所属产业,开始日期,金额(万元),项目状态",
     "names 项目名称 more than once"),
])
def test_a_missing_or_duplicated_header_column_names_the_file(iehub_home: Path, drops: DistrictDrops,
                                                              header: str, expected: str) -> None:
    before = loaded(iehub_home)
    bad = drop(drops, "yangpu_projects_20240302.csv", b"\r\n".join([header.encode("gbk"), *lines_of(drops)[1:]]))
    result = sync(iehub_home, SOURCE)["projects"]
    assert result["http"]["files_quarantined"] == 1
    (reason,) = [r["reason"] for r in quarantine(iehub_home, "project", SOURCE) if bad.name in (r["reason"] or "")]
    assert reason.startswith(f"file {bad.name}: ") and expected in reason
    assert live_ids(iehub_home) == before


def test_a_bad_row_reason_names_the_file_and_its_line(iehub_home: Path, drops: DistrictDrops) -> None:
    loaded(iehub_home)
    lines = lines_of(drops)
    lines[9] = lines[9].rsplit(b",", 3)[0]  # line 10 loses its last three fields
    bad = drop(drops, "yangpu_projects_20240302.csv", b"\r\n".join(lines))
    sync(iehub_home, SOURCE)
    reasons = [r["reason"] for r in quarantine(iehub_home, "project", SOURCE) if "fields" in (r["reason"] or "")]
    assert reasons == [f"file {bad.name}, line 10: row has 6 fields, the header has 9"]


def test_accepting_while_a_sync_holds_the_source_is_refused_not_lost(iehub_home: Path, drops: DistrictDrops) -> None:
    from iehub.file_ledger import AcceptError, accept_file
    from iehub.leases import Holder, acquire, release

    loaded(iehub_home)
    bad = drop(drops, "yangpu_projects_20240302.csv", VARIANTS["header and one row"](drops))
    with pytest.raises(pipeline.SnapshotHeld):
        sync(iehub_home, SOURCE)
    settings = Settings.from_env(iehub_home)
    running = Holder.dag_run("iehub_sync_district_yangpu", "scheduled__2024-03-03")
    acquire(settings.catalog(), SOURCE, running)  # a DAG run is syncing the district
    with pytest.raises(AcceptError, match="accept yangpu_projects_20240302.csv once it has finished"):
        accept_file(settings, bad.name, source=SOURCE)
    assert not ledger(iehub_home)[bad.name].get("accepted")
    release(settings.catalog(), SOURCE, running)
    assert [a.name for a in accept_file(settings, bad.name, source=SOURCE)] == [bad.name]
    assert ledger(iehub_home)[bad.name]["accepted"] is True
