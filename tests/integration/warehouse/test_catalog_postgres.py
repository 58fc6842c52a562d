"""The ops catalog against a real PostgreSQL server (127.0.0.1:5432, database ``test``).

These tests fail, never skip, when the server is missing: a catalog that was never run on
PostgreSQL must not look green. Each test works in its own schema (via ``search_path``) and
drops it afterwards, so runs do not see each other's ledger.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.unit.warehouse.test_warehouse_catalog import run_concurrent_commits
from warehouse.catalog import BatchRecord, Catalog, LedgerError

pytestmark = pytest.mark.integration

SERVER = os.environ.get("IEHUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
UTC = timezone.utc
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the real server; the URL points the catalog at it."""
    try:
        admin = sa.create_engine(SERVER)
        with admin.begin() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure here means "no server", reported as such
        pytest.fail(
            f"PostgreSQL server {SERVER} is not reachable ({type(exc).__name__}: {exc}); "
            "start PostgreSQL on 127.0.0.1:5432 with database 'test' or set IEHUB_TEST_PG_URL",
            pytrace=False,
        )
    schema = f"wh_test_{secrets.token_hex(4)}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def catalog(pg_url: str) -> Iterator[Catalog]:
    cat = Catalog(pg_url)
    cat.create_all()
    yield cat
    cat.dispose()


def record(batch_id: str = "municipal-project-aaaa", **changes: object) -> BatchRecord:
    base = BatchRecord(
        batch_id=batch_id,
        source="municipal",
        entity="project",
        window_start="2025-03-01T00:00:00+08:00",
        window_end="2025-03-02T00:00:00+08:00",
        rows_in=10,
        rows_loaded=9,
        rows_quarantined=1,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=5),
        std_path="lake/std/project/source=municipal/dt=2025-03-01/x.parquet",
    )
    return replace(base, **changes)


def test_create_all_is_idempotent_and_times_round_trip_in_utc(pg_url: str, catalog: Catalog) -> None:
    catalog.create_all()
    shanghai = timezone(timedelta(hours=8))
    catalog.commit_batch(record(started_at=datetime(2025, 3, 1, 16, 0, tzinfo=shanghai)))
    [row] = Catalog(pg_url).landed_batches()
    assert row.started_at == T0 and row.started_at.utcoffset() == timedelta(0)


def test_commit_moves_state_atomically_and_refuses_bad_counts(catalog: Catalog) -> None:
    assert catalog.commit_batch(record(), state={"updated_at": "2025-03-01 00:00:00"}) == 1
    with pytest.raises(LedgerError, match="batch municipal-project-bad .*rows_in 10 != rows_loaded 9 \\+ rows_quarantined 0"):
        catalog.commit_batch(record("municipal-project-bad", rows_quarantined=0), state={"updated_at": "later"})
    assert catalog.get_state("municipal", "project") == {"updated_at": "2025-03-01 00:00:00"}
    assert [b.batch_id for b in catalog.landed_batches()] == ["municipal-project-aaaa"]


def test_rerun_gets_a_new_seq_and_failures_never_hide_landed_rows(catalog: Catalog) -> None:
    first = catalog.commit_batch(record())
    rerun = catalog.commit_batch(record(rows_in=11, rows_loaded=11, rows_quarantined=0))
    assert rerun > first
    assert not catalog.record_failure("municipal-project-aaaa", "municipal", "project", T0, "timeout")
    assert catalog.record_failure("municipal-project-bbbb", "municipal", "project", T0, "timeout")
    [landed] = catalog.landed_batches("project")
    assert (landed.landed_seq, landed.rows_loaded, landed.status) == (rerun, 11, "landed")
    [summary] = catalog.summary()
    assert summary["batches"] == 2 and summary["rows_loaded"] == 11 and summary["last_status"] == "failed"
    assert catalog.batches_table().num_rows == 2
    assert catalog.reset_state("municipal") == 0


def test_concurrent_processes_get_unique_increasing_seqs(pg_url: str, catalog: Catalog, tmp_path: Path) -> None:
    workers, count = 4, 25
    results = run_concurrent_commits(pg_url, tmp_path, workers, count)
    for seqs in results:
        assert seqs == sorted(seqs) and len(set(seqs)) == count
    every = sorted(s for seqs in results for s in seqs)
    assert every == list(range(1, workers * count + 1))
    assert [b.landed_seq for b in catalog.landed_batches()] == every
    for i in range(workers):
        assert catalog.get_state(f"w{i}", "notice") == {"updated_since": f"2025-03-01T00:00:{count - 1:02d}"}
