"""The Lingang Group industry system through the SQL kind: the real MariaDB server and SQLite.

Its own table and column naming, Shanghai wall-clock times, 万元 amounts and SCBZ delete flags
all end up canonical: UTC instants, exact yuan, tombstones.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from iehub import pipeline
from iehub.config import Settings
from sandbox import lingang_group
from tests.integration.sql_helpers import core_rows, fresh_database, quarantined, spec_with
from warehouse.build import build

pytestmark = pytest.mark.integration

SOURCE = "lingang_group"
STREAMS = {"cooperations": ("T_XQHZ_XM", "cooperation", "cooperation_id"),
           "training_bases": ("T_SXJD", "training_base", "training_base_id")}


@pytest.fixture(params=["sqlite", "mariadb"])
def group_db(request: pytest.FixtureRequest, tmp_path: Path, iehub_home: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        lingang_group.seed(url, scale=0.3, seed=13)
        monkeypatch.setenv("IEHUB_LINGANG_GROUP_DB_URL", url)
        yield url


def sync(home: Path, spec=None) -> dict[str, dict]:
    settings = Settings.from_env(home)
    spec = spec or spec_with(SOURCE)
    out = {name: pipeline.sync_stream(settings, SOURCE, name, spec=spec) for name in spec.streams}
    build(home, settings.catalog())
    return out


def assert_matches(home: Path, url: str) -> None:
    for table, entity, key in STREAMS.values():
        live = {str(k) for k in lingang_group.live_keys(url, table)}
        keys = [k for (k,) in core_rows(home, f"select {key} from core.{entity} where _source = ?", [SOURCE])]
        assert len(keys) == len(set(keys)), entity
        assert set(keys) == live - quarantined(home, entity, SOURCE), entity


def test_full_then_incremental_with_deletes(iehub_home: Path, group_db: str) -> None:
    first = sync(iehub_home)
    assert all(r["rows_in"] > 0 for r in first.values())
    assert_matches(iehub_home, group_db)
    # organisations from the group merge with everyone else's on the USCC (full-width digits folded)
    # (core.organization also holds organisations only named by cooperations: those have no USCC)
    n_orgs, n_uscc = core_rows(iehub_home, "select count(*), count(distinct uscc) from core.organization "
                                           "where match_rule in ('uscc', 'name') and list_contains(sources, ?)",
                               [SOURCE])[0]
    assert n_orgs == n_uscc > 0
    changes = lingang_group.mutate(group_db, changed=0.05, seed=2)
    second = sync(iehub_home, spec=spec_with(SOURCE, stream_updates={"reconcile_every_hours": 0}))
    for stream, (table, _, _) in STREAMS.items():
        c = changes[table]
        assert second[stream]["rows_in"] == c["updated"] + c["inserted"] + c["soft_deleted"] + c["hard_deleted"]
    assert_matches(iehub_home, group_db)
    deleted = core_rows(iehub_home, "select count(*) from core._tombstones where entity = 'cooperation'")[0][0]
    c = changes["T_XQHZ_XM"]
    assert deleted == c["soft_deleted"] + c["hard_deleted"]


def test_local_times_and_wan_amounts_become_utc_and_yuan(iehub_home: Path, group_db: str) -> None:
    from sandbox.lingang_group.models import Base

    table = Base.metadata.tables["T_XQHZ_XM"]
    engine = sa.create_engine(group_db)
    with engine.begin() as conn:  # typed as the system's own application writes it
        conn.execute(table.update().where(table.c.XMID == 1).values(
            TRJE=Decimal("123.4567"), GXSJ=datetime(2026, 2, 1, 8, 30, 15, 250000)))
    engine.dispose()
    sync(iehub_home)
    row = core_rows(iehub_home, "select investment_amount, updated_at from core.cooperation "
                                "where cooperation_id = '1'")
    assert row == [(Decimal("1234567.00"), datetime(2026, 2, 1, 0, 30, 15, 250000, tzinfo=timezone.utc))]
    assert row[0][1].astimezone(timezone(timedelta(hours=8))).hour == 8  # 08:30 in Shanghai
