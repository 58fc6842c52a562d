"""The ops catalog on its embedded SQLite default (PostgreSQL: tests/integration/warehouse)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import warehouse
import warehouse.catalog as catalog_module
from warehouse.catalog import BatchRecord, Catalog, LedgerError

UTC = timezone.utc
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
WORKER = Path(__file__).with_name("concurrent_commits.py")


def record(batch_id: str = "lingang-notice-aaaa", **changes: object) -> BatchRecord:
    base = BatchRecord(
        batch_id=batch_id,
        source="lingang",
        entity="notice",
        window_start="2025-03-01T00:00:00+08:00",
        window_end="2025-03-02T00:00:00+08:00",
        rows_in=10,
        rows_loaded=8,
        rows_quarantined=2,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=5),
        raw_path="lake/raw/lingang/notice/dt=2025-03-01/x.parquet",
        std_path="lake/std/notice/source=lingang/dt=2025-03-01/x.parquet",
        quarantine_path="lake/quarantine/notice/source=lingang/dt=2025-03-01/x.parquet",
    )
    return replace(base, **changes)


def test_create_all_is_idempotent(home: Path, catalog: Catalog) -> None:
    catalog.commit_batch(record())
    again = Catalog.for_home(home)
    again.create_all()
    assert [b.batch_id for b in again.landed_batches()] == ["lingang-notice-aaaa"]
    again.dispose()


def test_unreconciled_batch_is_refused_naming_it_and_moves_nothing(catalog: Catalog) -> None:
    with pytest.raises(LedgerError, match=r"batch lingang-notice-bad .*rows_in 10 != rows_loaded 8 \+ rows_quarantined 1"):
        catalog.commit_batch(record("lingang-notice-bad", rows_quarantined=1), state={"since": "x"})
    assert catalog.landed_batches() == []
    assert catalog.get_state("lingang", "notice") is None


def test_state_moves_with_the_commit_and_only_with_it(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog.commit_batch(record(), state={"updated_since": "2025-03-01 00:00:00"})
    assert catalog.get_state("lingang", "notice") == {"updated_since": "2025-03-01 00:00:00"}

    # The state write fails inside the transaction: the batch row and the counter roll back too.
    real_upsert = catalog_module._upsert

    def failing_upsert(conn, table, values, keys):  # type: ignore[no-untyped-def]
        if table is catalog_module.sync_state:
            raise RuntimeError("disk full")
        real_upsert(conn, table, values, keys)

    monkeypatch.setattr(catalog_module, "_upsert", failing_upsert)
    with pytest.raises(RuntimeError, match="disk full"):
        catalog.commit_batch(record("lingang-notice-bbbb"), state={"updated_since": "2025-03-02 00:00:00"})
    monkeypatch.undo()

    assert [b.batch_id for b in catalog.landed_batches()] == ["lingang-notice-aaaa"]
    assert catalog.get_state("lingang", "notice") == {"updated_since": "2025-03-01 00:00:00"}
    assert catalog.commit_batch(record("lingang-notice-cccc")) == 2  # no seq was burnt


def test_rerun_replaces_the_row_and_gets_a_new_landed_seq(catalog: Catalog) -> None:
    first = catalog.commit_batch(record())
    other = catalog.commit_batch(record("lingang-notice-other"))
    rerun = catalog.commit_batch(record(rows_in=12, rows_loaded=12, rows_quarantined=0))
    assert first < other < rerun
    rows = catalog.landed_batches("notice")
    assert [(b.batch_id, b.landed_seq) for b in rows] == [("lingang-notice-other", other), ("lingang-notice-aaaa", rerun)]
    assert rows[1].rows_loaded == 12 and rows[1].started_at == T0


def test_failure_never_hides_a_landed_batch(catalog: Catalog) -> None:
    assert catalog.record_failure("lingang-notice-zzzz", "lingang", "notice", T0, "HTTP 500 after 5 retries")
    failed = catalog.get_batch("lingang-notice-zzzz")
    assert failed is not None and failed.status == "failed" and failed.landed_seq is None
    assert failed.message == "HTTP 500 after 5 retries"
    assert catalog.landed_batches() == []

    catalog.commit_batch(record())
    assert not catalog.record_failure("lingang-notice-aaaa", "lingang", "notice", T0, "rerun failed")
    kept = catalog.get_batch("lingang-notice-aaaa")
    assert kept is not None and kept.status == "landed" and kept.message is None

    catalog.commit_batch(record("lingang-notice-zzzz"))  # a later success replaces the failure
    assert catalog.get_batch("lingang-notice-zzzz").status == "landed"  # type: ignore[union-attr]


def test_summary_per_source_and_entity(catalog: Catalog) -> None:
    catalog.commit_batch(record("a1"))
    catalog.commit_batch(record("a2", finished_at=T0 + timedelta(hours=1)))
    catalog.commit_batch(record("m1", source="municipal", entity="project", rows_in=5, rows_loaded=5, rows_quarantined=0))
    catalog.record_failure("m2", "municipal", "project", T0, "connection refused")
    summary = {(s["source"], s["entity"]): s for s in catalog.summary()}
    assert summary[("lingang", "notice")] == {
        "source": "lingang",
        "entity": "notice",
        "batches": 2,
        "last_finished_at": T0 + timedelta(hours=1),
        "rows_loaded": 16,
        "rows_quarantined": 4,
        "last_status": "landed",
    }
    assert summary[("municipal", "project")]["batches"] == 2
    assert summary[("municipal", "project")]["last_status"] == "failed"


def test_state_set_get_reset(catalog: Catalog) -> None:
    catalog.set_state("district_310114", "trainee", {"cursor": "eyJpZCI6IDQyfQ==", "note": "嘉定"})
    catalog.set_state("district_310114", "talent_demand", {"cursor": "b"})
    catalog.set_state("lingang", "notice", {"updated_since": "2025-03-01 00:00:00"})
    assert catalog.get_state("district_310114", "trainee") == {"cursor": "eyJpZCI6IDQyfQ==", "note": "嘉定"}
    assert catalog.reset_state("district_310114", "trainee") == 1
    assert catalog.get_state("district_310114", "trainee") is None
    assert catalog.reset_state("district_310114") == 1
    assert catalog.get_state("lingang", "notice") is not None
    with pytest.raises(LedgerError, match="not JSON-serialisable"):
        catalog.set_state("lingang", "notice", {"since": T0})


def test_ledger_refuses_naive_times_and_absolute_paths(catalog: Catalog) -> None:
    with pytest.raises(LedgerError, match="naive datetime"):
        catalog.commit_batch(record(started_at=datetime(2025, 3, 1, 8, 0)))
    with pytest.raises(LedgerError, match="must be relative to the hub home"):
        catalog.commit_batch(record(std_path="/var/lake/x.parquet"))
    assert catalog.landed_batches() == []


def test_batches_table_is_typed_arrow(catalog: Catalog) -> None:
    catalog.commit_batch(record())
    table = catalog.batches_table()
    assert table.num_rows == 1
    assert str(table.schema.field("started_at").type) == "timestamp[us, tz=UTC]"
    assert table.column("landed_seq").to_pylist() == [1]


def run_concurrent_commits(url: str, tmp_path: Path, workers: int = 4, count: int = 25) -> list[list[int]]:
    """Start worker processes that commit at the same moment; return each one's seqs."""
    repo = Path(warehouse.__file__).resolve().parents[1]
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, f"w{i}", str(count), str(go)],
            env={**os.environ, "PYTHONPATH": str(repo)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def assert_unique_increasing(catalog: Catalog, results: list[list[int]], workers: int, count: int) -> None:
    for seqs in results:
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    every = sorted(s for seqs in results for s in seqs)
    assert every == list(range(1, workers * count + 1))  # unique, no gaps
    ledger = catalog.landed_batches()
    assert [b.landed_seq for b in ledger] == every
    for i in range(workers):
        assert catalog.get_state(f"w{i}", "notice") == {"updated_since": f"2025-03-01T00:00:{count - 1:02d}"}


def test_concurrent_processes_get_unique_increasing_seqs(home: Path, catalog: Catalog, tmp_path: Path) -> None:
    results = run_concurrent_commits(catalog.url, tmp_path)
    assert_unique_increasing(catalog, results, workers=4, count=25)
