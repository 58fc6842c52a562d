"""The audit log: append-only, hash-chained, tamper-evident, safe under concurrent appends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from feeds.audit import GENESIS, AuditError, AuditLog


def append(log: AuditLog, n: int = 1, **changes: Any) -> list[int]:
    seqs = []
    for i in range(n):
        row: dict[str, Any] = {
            "key_id": "0123456789abcdef", "consumer": "杨浦区产教融合平台", "dataset": "trainee",
            "endpoint": "/v1/feeds/trainee", "params": {"limit": 100 + i, "min_change_version": 1, "cursor": None},
            "rows": i, "fields": ["trainee_id", "name", "id_pseudonym"], "personal": False,
            "digest": "sha256:" + f"{i:064x}", "snapshot": "20250301T080000000000Z",
        }  # fmt: skip
        row.update(changes)
        seqs.append(log.append(**row))
    return seqs


def tamper(url: str, *statements: str) -> None:
    """What someone with write access to the database would do: drop the guards, then edit."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'feeds.db'}"


@pytest.fixture
def log(url: str) -> Iterator[AuditLog]:
    audit = AuditLog(url)
    yield audit
    audit.dispose()


def test_appends_chain_and_verify(log: AuditLog) -> None:
    assert log.verify().ok and log.verify().rows == 0 and log.verify().head_hash == GENESIS
    assert append(log, 5) == [1, 2, 3, 4, 5]
    report = log.verify()
    assert report.ok and report.rows == 5 and report.first_bad_seq is None and report.head_hash != GENESIS


def test_the_database_refuses_updates_and_deletes(log: AuditLog, url: str) -> None:
    append(log, 2)
    engine = sa.create_engine(url)
    for statement in ("UPDATE feed_audit SET rows = 0", "DELETE FROM feed_audit WHERE seq = 2"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with engine.begin() as conn:
                conn.exec_driver_sql(statement)
    engine.dispose()
    assert log.verify().ok


def test_the_database_refuses_moving_the_head_back_deleting_it_and_inserting_below_it(log: AuditLog,
                                                                                     url: str) -> None:
    append(log, 3)
    engine = sa.create_engine(url)
    for statement in ("DELETE FROM feed_audit_head", "UPDATE feed_audit_head SET seq = 1",
                      "INSERT INTO feed_audit SELECT * FROM feed_audit WHERE seq = 2"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with engine.begin() as conn:
                conn.exec_driver_sql(statement)
    engine.dispose()
    assert log.verify().ok


@pytest.mark.parametrize(
    ("statements", "bad_seq", "reason"),
    [
        (["UPDATE feed_audit SET rows = 9999 WHERE seq = 3"], 3, "edited"),
        (["UPDATE feed_audit SET personal = 1 WHERE seq = 2"], 2, "edited"),
        (["UPDATE feed_audit SET params = '{\"limit\":1}' WHERE seq = 4"], 4, "edited"),
        (["DELETE FROM feed_audit WHERE seq = 2"], 2, "missing"),
        (["DELETE FROM feed_audit WHERE seq = 5"], 5, "deleted from the end"),
        # swap the contents of rows 2 and 3 (and renumber them to keep seq contiguous)
        (["UPDATE feed_audit SET seq = -2 WHERE seq = 2", "UPDATE feed_audit SET seq = 2 WHERE seq = 3",
          "UPDATE feed_audit SET seq = 3 WHERE seq = -2"], 2, "edited|reordered"),
    ],
)
def test_tampering_is_found_at_the_first_bad_row(log: AuditLog, url: str, statements: list[str], bad_seq: int,
                                                 reason: str) -> None:
    append(log, 5)
    tamper(url, *statements)
    report = log.verify()
    assert not report.ok
    assert report.first_bad_seq == bad_seq
    assert report.reason is not None and any(word in report.reason for word in reason.split("|"))


def test_rewriting_the_whole_tail_with_recomputed_hashes_still_leaves_the_head_mismatched(log: AuditLog,
                                                                                        url: str) -> None:
    """Deleting the last row and rewinding nothing else is caught by the head row."""
    append(log, 3)
    tamper(url, "DELETE FROM feed_audit WHERE seq = 3")
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 3


def append_concurrently(logs: list[AuditLog], threads: int, per_thread: int) -> list[BaseException]:
    """``threads`` threads spread over ``logs`` (one per worker process), each appending ``per_thread`` rows."""
    errors: list[BaseException] = []

    def worker(audit: AuditLog) -> None:
        try:
            append(audit, per_thread)
        except BaseException as exc:  # noqa: BLE001 - returned to the test, which asserts there are none
            errors.append(exc)

    running = [threading.Thread(target=worker, args=(logs[i % len(logs)],)) for i in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    return errors


def test_concurrent_appends_from_threads_keep_one_valid_chain(url: str) -> None:
    logs = [AuditLog(url) for _ in range(2)]  # two "workers" on one database, four threads each
    assert append_concurrently(logs, 8, 25) == []
    report = logs[0].verify()
    assert report.ok and report.rows == 200
    for audit in logs:
        audit.dispose()


def test_unwritable_database_raises_audit_error(tmp_path: Path, url: str, log: AuditLog) -> None:
    append(log, 1)
    with pytest.raises(AuditError, match="readonly database"):  # refused on opening or on the first append
        append(AuditLog(f"sqlite:///file:{tmp_path / 'feeds.db'}?mode=ro&uri=true"), 1)
    tamper(url, "DROP TABLE feed_audit")
    with pytest.raises(AuditError, match="cannot write the audit row for 'trainee'") as info:
        append(log, 1)
    assert "杨浦区" not in str(info.value)  # no parameters echoed
    with pytest.raises(AuditError, match="cannot read"):
        log.verify()


def test_bad_rows_are_refused_before_writing(log: AuditLog) -> None:
    with pytest.raises(AuditError, match="not JSON"):
        append(log, 1, params={"since": object()})
    with pytest.raises(AuditError, match="rows must be"):
        append(log, 1, rows=-1)
    assert log.verify().rows == 0


def test_concurrent_appends_are_group_committed_each_returning_after_its_own_row(log: AuditLog) -> None:
    """While one append writes, the others queue; the next writer commits all of them at once."""
    inserts: list[int] = []
    first = threading.Event()

    @sa.event.listens_for(log.engine, "before_cursor_execute")
    def hold_the_first_insert(_conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if statement.startswith("INSERT INTO feed_audit "):
            inserts.append(len(params) if many else 1)
            if not first.is_set():
                first.set()
                deadline = time.monotonic() + 10
                while len(log._queue) < 7 and time.monotonic() < deadline:  # the 7 others are waiting
                    time.sleep(0.005)

    seqs: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        seq = append(log, 1)[0]
        with lock:
            seqs.append(seq)

    leader = threading.Thread(target=one)
    leader.start()
    first.wait(10)
    others = [threading.Thread(target=one) for _ in range(7)]
    for t in others:
        t.start()
    for t in [leader, *others]:
        t.join(30)
    assert sorted(seqs) == list(range(1, 9))  # every append returned its own, distinct row
    assert inserts == [1, 7]  # two transactions for eight rows
    report = log.verify()
    assert report.ok and report.rows == 8


def test_a_failed_group_commit_fails_every_row_in_it_and_the_next_append_works(
        log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    import feeds.audit as audit_module

    real = audit_module._row_hash
    calls = {"n": 0}

    def broken_once(*args: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("disk on fire")
        return real(*args)

    monkeypatch.setattr(audit_module, "_row_hash", broken_once)
    with pytest.raises(AuditError, match="cannot write the audit row: RuntimeError"):
        append(log, 1)
    assert append(log, 2) == [1, 2]  # nothing of the failed batch was written, and no writer is stuck
    assert log.verify().ok and log.verify().rows == 2


def test_a_row_the_database_could_not_take_is_refused_alone(log: AuditLog) -> None:
    with pytest.raises(AuditError, match="consumer must be text of at most 200"):
        append(log, 1, consumer="平台" * 101)
    assert append(log, 1) == [1]
