"""Duplicate keys and bad text in a district snapshot: quarantined whole, counted, never in core.

Issue #19, findings 5 and 6, on the 杨浦 CSV drop folder end to end (drop → gate → lake → core):
a key twice in one file used to resolve silently to the later row, 100,000 copies "loaded" as
one row; a NUL inside a name and a 5 MB cell reached core.
"""
from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest

from iehub.config import Settings
from sandbox.districts import DistrictDrops
from sandbox.districts.files import write_yangpu
from tests.integration.districts.conftest import age, build_core, core, quarantine, sync

pytestmark = pytest.mark.integration

SOURCE = "district_yangpu"


def _drop(drops: DistrictDrops, projects: list, day: date) -> Path:
    path = write_yangpu(drops.yangpu, projects, day, utf8_bom=True)
    age(drops.yangpu)
    return path


def _clean(drops: DistrictDrops) -> list:
    return [p for p in drops.projects("YP") if not p.dirty]


def _ledger_row(home: Path, batch_id: str):
    return Settings.from_env(home).catalog().get_batch(batch_id)


def test_a_key_twice_in_one_snapshot_quarantines_both_copies_and_core_keeps_the_old_row(
        iehub_home: Path, drops: DistrictDrops) -> None:
    sync(iehub_home, SOURCE)
    build_core(iehub_home)
    projects = drops.projects("YP")
    target = _clean(drops)[3]
    before = core(iehub_home, f"select lead_org_name, budget_amount from core.project "
                              f"where project_id = '{target.project_id}'")
    assert len(before) == 1
    # the same key twice: one copy exactly as before (unchanged), one with another lead and budget
    other = dataclasses.replace(target, lead_name="上海临港电力电子研究有限公司", fiscal_wan=target.fiscal_wan + 88)
    position = projects.index(target)
    _drop(drops, projects[:position + 1] + [other] + projects[position + 1:], date(2031, 1, 2))

    r = sync(iehub_home, SOURCE)["projects"]
    build_core(iehub_home)
    rows = [q for q in quarantine(iehub_home, "project", SOURCE) if q["_key"] == target.project_id]
    assert len(rows) == 2, "both copies of the repeated key are quarantined"
    assert {q["rule"] for q in rows} == {"quality._key.unique"}
    assert all(f"key {target.project_id} appears 2 times in this batch" in q["reason"] for q in rows)
    assert all("lines" in q["reason"] for q in rows)
    after = core(iehub_home, f"select lead_org_name, budget_amount from core.project "
                             f"where project_id = '{target.project_id}'")
    assert after == before, "nothing of the repeated key changes in core"
    ledger = _ledger_row(iehub_home, r["batch_id"])
    assert ledger.rows_in == ledger.rows_loaded + ledger.rows_quarantined
    assert ledger.rows_quarantined >= 2


def test_a_hundred_thousand_copies_of_one_key_are_a_hundred_thousand_quarantined_rows(
        iehub_home: Path, drops: DistrictDrops) -> None:
    projects = _clean(drops)
    copies = [projects[0]] * 100_000
    _drop(drops, projects[1:] + copies, date(2031, 1, 3))
    for old in sorted(drops.yangpu.glob("*.csv"))[:-1]:
        old.unlink()  # the first pass reads only this file
    r = sync(iehub_home, SOURCE)["projects"]
    build_core(iehub_home)
    ledger = _ledger_row(iehub_home, r["batch_id"])
    assert ledger.rows_in == len(projects) - 1 + 100_000
    assert ledger.rows_quarantined == 100_000
    assert ledger.rows_loaded == len(projects) - 1
    assert core(iehub_home, f"select count(*) from core.project where project_id = '{projects[0].project_id}'") \
        == [(0,)]
    reasons = {q["reason"] for q in quarantine(iehub_home, "project", SOURCE)}
    assert any(f"key {projects[0].project_id} appears 100,000 times in this batch" in x for x in reasons)


def test_a_control_character_in_a_name_and_a_five_megabyte_cell_are_quarantined_with_field_and_reason(
        iehub_home: Path, drops: DistrictDrops) -> None:
    """(A NUL makes the whole CSV file binary, refused by the reader; the SQL test covers NUL per field.)"""
    projects = _clean(drops)
    nul, huge = projects[5], projects[6]
    bad = [dataclasses.replace(nul, title=nul.title[:4] + "\x1b" + nul.title[4:]),
           dataclasses.replace(huge, lead_name="上海" * 2_500_000)]  # 5,000,000 characters
    _drop(drops, projects[:5] + bad + projects[7:], date(2031, 1, 4))
    for old in sorted(drops.yangpu.glob("*.csv"))[:-1]:
        old.unlink()
    r = sync(iehub_home, SOURCE)["projects"]
    build_core(iehub_home)
    by_key = {q["_key"]: q for q in quarantine(iehub_home, "project", SOURCE)}
    assert by_key[nul.project_id]["field"] == "title"
    assert by_key[nul.project_id]["rule"] == "quality.title.no_control_characters"
    assert "title contains control character U+001B at character 5" in by_key[nul.project_id]["reason"]
    assert by_key[huge.project_id]["field"] == "lead_org_name"
    assert by_key[huge.project_id]["rule"] == "quality.lead_org_name.max_length"
    assert "lead_org_name is 5,000,000 characters long, above its limit of 200" in by_key[huge.project_id]["reason"]
    assert len(by_key[huge.project_id]["reason"]) < 300  # the reason is one line, not the cell
    keys = {k for (k,) in core(iehub_home, "select project_id from core.project")}
    assert not keys & {nul.project_id, huge.project_id}
    assert core(iehub_home, "select count(*) from core.project where contains(title, chr(27)) "
                            "or length(lead_org_name) > 200") == [(0,)]
    ledger = _ledger_row(iehub_home, r["batch_id"])
    assert ledger.rows_in == ledger.rows_loaded + ledger.rows_quarantined
