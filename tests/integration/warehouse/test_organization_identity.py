"""One organisation across real sources: the municipal database and 临港集团 (embedded SQLite), synced
through their specs, then built: the same USCC is one row, nothing is lost, unmatched names are reported."""
from __future__ import annotations

from pathlib import Path

import pytest

from iehub import pipeline
from iehub.config import Settings
from sandbox import lingang_group, municipal
from tests.integration.sql_helpers import core_rows
from warehouse.build import build

pytestmark = pytest.mark.integration


def test_municipal_and_group_organisations_are_one_row_per_uscc(iehub_home: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    municipal_url, group_url = f"sqlite:///{tmp_path / 'municipal.sqlite'}", f"sqlite:///{tmp_path / 'group.sqlite'}"
    municipal.seed(municipal_url, scale=0.05, seed=11, tables=("organizations", "projects"))
    lingang_group.seed(group_url, scale=0.3, seed=11)
    monkeypatch.setenv("IEHUB_MUNICIPAL_DB_URL", municipal_url)
    monkeypatch.setenv("IEHUB_LINGANG_GROUP_DB_URL", group_url)
    settings = Settings.from_env(iehub_home)
    for source, stream in (("municipal_projects", "organizations"), ("municipal_projects", "projects"),
                           ("lingang_group", "enterprises"), ("lingang_group", "cooperations")):
        assert pipeline.sync_stream(settings, source, stream)["rows_loaded"] > 0, (source, stream)
    result = build(iehub_home, settings.catalog())

    rows, ids = core_rows(iehub_home, "select count(*), count(distinct org_id) from core.organization")[0]
    assert rows == ids == result.entities["organization"].rows > 0
    # every per-source organisation row and every mention resolves to exactly one golden row
    lost = core_rows(iehub_home, """
        select count(*) from core.organization_match m anti join core.organization o using (org_id)
        where m.org_id is not null""")[0][0]
    assert lost == 0
    assert core_rows(iehub_home, """
        select count(*) from core.organization_source s
        anti join core.organization_match m on m.entity = 'organization' and m._source = s._source
                                           and m.source_org_id = s.org_id""")[0][0] == 0
    # the sandbox's two systems share enterprises: a shared USCC is one row fed by both
    shared = core_rows(iehub_home, """
        select count(*) from core.organization
        where match_rule in ('uscc', 'name') and list_contains(sources, 'municipal_projects')
          and list_contains(sources, 'lingang_group')""")[0][0]
    assert shared > 0
    # a USCC the golden table keys on is always check-digit valid; the rules are the four documented
    assert core_rows(iehub_home, "select count(*) from core.organization o join core._uscc_checked u "
                                 "on u.uscc = o.uscc where u.reason is not null")[0][0] == 0
    rules = {r for (r,) in core_rows(iehub_home, "select distinct match_rule from core.organization_match")}
    assert "uscc" in rules and rules <= {"uscc", "name", "unmatched", "ambiguous"}
    reported = core_rows(iehub_home, "select count(*), count(*) filter (where match_rule not in "
                                     "('unmatched', 'ambiguous')) from ops.organization_unmatched")[0]
    expected = core_rows(iehub_home, "select count(distinct (match_rule, normalised_name)) from "
                                     "core.organization_match where match_rule in ('unmatched', 'ambiguous')")[0][0]
    assert reported == (expected, 0)
    # a rebuild with nothing new gives no organisation a new version
    again = build(iehub_home, settings.catalog())
    assert again.changes == 0
