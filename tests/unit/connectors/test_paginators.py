from __future__ import annotations

import pytest

from connectors.errors import FatalError
from connectors.rest.paginators import CursorPaginator, PageNumberPaginator


def _rows(n: int, start: int = 0, ts: str | None = None) -> list[dict]:
    return [{"id": f"TD{i:05d}", "updateTime": ts or f"2025-01-01 00:{i // 60:02d}:{i % 60:02d}"} for i in range(start, start + n)]


class FakeSource:
    """Serves sorted rows with updatedSince (inclusive) and offset paging, like the platform."""

    def __init__(self, rows: list[dict], cap: int = 10_000) -> None:
        self.rows = sorted(rows, key=lambda r: (r["updateTime"], r["id"]))
        self.cap = cap

    def query(self, params: dict) -> tuple[list[dict], int]:
        since = params.get("updatedSince")
        matching = [r for r in self.rows if since is None or r["updateTime"] >= since]
        size = min(params["pageSize"], self.cap)
        offset = (params["page"] - 1) * size
        return matching[offset:offset + size], len(matching)


def drain(p: PageNumberPaginator, source: FakeSource, mutate=None) -> list[dict]:
    out: list[dict] = []
    n = 0
    while not p.done:
        rows, total = source.query(p.next_request().params)
        if mutate:
            mutate(n, source)
        out.extend(p.accept(rows, total))
        n += 1
        assert n < 10_000
    return out


def paginator(size: int = 100) -> PageNumberPaginator:
    return PageNumberPaginator("page", "pageSize", size, anchor_param="updatedSince", anchor_field="updateTime")


def test_reads_everything_once() -> None:
    src = FakeSource(_rows(1234))
    got = drain(paginator(), src)
    assert [r["id"] for r in got] == [r["id"] for r in src.rows]


def test_silent_cap_does_not_lose_rows_and_is_detected() -> None:
    src = FakeSource(_rows(2000), cap=50)
    p = paginator(100)
    got = drain(p, src)
    assert len({r["id"] for r in got}) == 2000 and len(got) == 2000
    assert p.cap_detected == 50


def test_ties_larger_than_a_page_use_page_numbers_within_the_anchor() -> None:
    rows = _rows(10) + [{"id": f"T{i:04d}", "updateTime": "2025-06-01 08:00:00"} for i in range(350)] + _rows(5, 900)
    src = FakeSource(rows, cap=100)
    got = drain(paginator(100), src)
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in rows)
    assert len(got) == len(rows)


def test_row_edited_mid_pass_is_not_lost_and_shifted_rows_are_not_skipped() -> None:
    src = FakeSource(_rows(500))

    def edit(n: int, s: FakeSource) -> None:
        if n == 1:  # a user edits an early row while we page: it moves to the end
            row = s.rows.pop(10)
            s.rows.append({**row, "updateTime": "2025-12-31 23:59:59"})

    got = drain(paginator(100), src, edit)
    assert {r["id"] for r in got} == {f"TD{i:05d}" for i in range(500)}


def test_row_delivered_at_the_anchor_and_edited_mid_pass_comes_again_as_its_new_version() -> None:
    src = FakeSource(_rows(150))

    def edit(n: int, s: FakeSource) -> None:
        if n == 0:  # the last row of the first page (the new anchor) is edited before page 2 is asked,
            # which then holds it again, with its new cursor
            row = s.rows.pop(99)
            s.rows.append({**row, "updateTime": "2025-12-31 23:59:59"})

    got = drain(paginator(100), src, edit)
    versions = [(r["id"], r["updateTime"]) for r in got if r["id"] == "TD00099"]
    assert versions == [("TD00099", "2025-01-01 00:01:39"), ("TD00099", "2025-12-31 23:59:59")]
    assert {r["id"] for r in got} == {f"TD{i:05d}" for i in range(150)}


def test_short_page_is_not_taken_for_the_end() -> None:
    src = FakeSource(_rows(300))
    p = paginator(100)
    rows, total = src.query(p.next_request().params)
    fresh = p.accept(rows[:90], total)  # transient short page
    assert not p.done and len(fresh) == 90
    rest = drain(p, src)
    assert len({r["id"] for r in fresh + rest}) == 300


def test_source_ignoring_page_parameter_is_refused() -> None:
    rows = [{"id": f"T{i}", "updateTime": "2025-01-01 00:00:00"} for i in range(100)]
    p = paginator(10)
    with pytest.raises(FatalError, match="refusing to loop"):
        for _ in range(20):
            p.accept(rows[:10], 100)


def test_missing_anchor_field_is_fatal() -> None:
    p = paginator(10)
    with pytest.raises(FatalError, match="updateTime"):
        p.accept([{"id": "x"}], 5)


def test_plain_page_numbers_without_anchor_stop_on_total() -> None:
    src = FakeSource(_rows(250))
    p = PageNumberPaginator("page", "pageSize", 100)
    got = drain(p, src)
    assert len(got) == 250 and p.page == 4


def test_cursor_paginator_stops_on_explicit_end_and_refuses_repeats() -> None:
    p = CursorPaginator("cursor", "limit", 2)
    assert p.accept([{"id": 1}], "c1") and p.next_request().params == {"limit": 2, "cursor": "c1"}
    p.accept([{"id": 2}], None)
    assert p.done
    q = CursorPaginator("cursor", None, 2)
    q.accept([], "c1")
    with pytest.raises(FatalError, match="second time"):
        q.accept([], "c1")


def test_empty_page_while_rows_remain_is_asked_again() -> None:
    src = FakeSource(_rows(30))
    p = paginator(100)
    first = p.next_request().params
    assert p.accept([], 30) == [] and not p.done
    assert p.next_request().params == first
    got = drain(p, src)
    assert len(got) == 30


def test_empty_page_that_stays_empty_ends_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    p = paginator(100)
    for _ in range(4):
        p.accept([], 30)
    assert p.done and "stays empty" in caplog.text
