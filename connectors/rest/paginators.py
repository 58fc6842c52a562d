"""Paginators, named by mechanism, that stop on an explicit end and refuse to loop.

`PageNumberPaginator` re-anchors every request on the incremental cursor (updatedSince = the
last cursor value seen) when the source offers one. Plain offset paging loses rows when a row
is edited mid-pass (everything behind it shifts) or a page comes back short; re-anchoring makes
each request a fresh query from what was already received, so neither can lose a row, and a
silent page-size cap cannot either. Rows sharing the anchor value are de-duplicated by key; a
row delivered at the anchor that comes back with a newer cursor (edited mid-pass) is kept.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from connectors.errors import FatalError

log = logging.getLogger(__name__)

# After this many responses in a row that bring nothing new, the source is looping.
MAX_STALLED_PAGES = 3
# An empty page while the total says more remain is asked again this many times.
MAX_EMPTY_RETRIES = 3


@dataclass
class PageRequest:
    params: dict[str, Any]
    label: str  # how errors and logs name the page


@dataclass
class PageNumberPaginator:
    page_param: str
    size_param: str
    page_size: int
    first_page: int = 1
    anchor_param: str | None = None   # e.g. updatedSince
    anchor_field: str | None = None   # e.g. updateTime (the record field the anchor is read from)
    key_field: str = "id"
    start_anchor: str | None = None
    anchor: str | None = field(init=False, default=None)
    page: int = field(init=False)
    effective_size: int = field(init=False)
    cap_detected: int | None = field(init=False, default=None)
    done: bool = field(init=False, default=False)
    _seen_at_anchor: set[str] = field(init=False, default_factory=set)
    _stalled: int = field(init=False, default=0)
    _short_len: int | None = field(init=False, default=None)
    _empty_retries: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.anchor = self.start_anchor
        self.page = self.first_page
        self.effective_size = self.page_size

    def next_request(self) -> PageRequest:
        params: dict[str, Any] = {self.page_param: self.page, self.size_param: self.page_size}
        if self.anchor_param and self.anchor is not None:
            params[self.anchor_param] = self.anchor
        label = f"{self.page}" + (f" from {self.anchor}" if self.anchor is not None else "")
        return PageRequest(params, label)

    def accept(self, records: list[dict[str, Any]], total: int | None) -> list[dict[str, Any]]:
        """Take one response; return the records not delivered before and move to the next page."""
        self._note_cap(records, total)
        covered = (self.page - self.first_page) * self.effective_size + len(records)
        fresh = self._fresh(records) if self._seen_at_anchor else records
        if not records:
            if total is not None and covered < total and self._empty_retries < MAX_EMPTY_RETRIES:
                # A transient short page can come back empty; ask again before believing the end.
                self._empty_retries += 1
                return fresh
            if total is not None and covered < total:
                log.warning("page %s stays empty while the source reports %d rows: treating as the end", self.page, total)
            self.done = True
            return fresh
        self._empty_retries = 0
        if total is None:
            end = len(records) < self.page_size
        else:
            end = covered >= total
        if self.anchor_field is not None:
            last = records[-1].get(self.anchor_field)
            if not isinstance(last, str) or not last:
                raise FatalError(f"record {self._key(records[-1])!r} has no usable {self.anchor_field}; cannot page on it")
            if self.anchor is None or last > self.anchor:
                self.anchor, self.page = last, self.first_page
                self._seen_at_anchor = {self._key(r) for r in records if r.get(self.anchor_field) == last}
            else:
                self.page += 1
                self._seen_at_anchor.update(self._key(r) for r in records)
        else:
            self.page += 1
        self._stalled = 0 if fresh else self._stalled + 1
        if self._stalled >= MAX_STALLED_PAGES and not end:
            raise FatalError(f"the source returned {MAX_STALLED_PAGES} pages in a row with nothing new; "
                             "refusing to loop (does it ignore the page parameter?)")
        self.done = end
        return fresh

    def _key(self, record: dict[str, Any]) -> str:
        return str(record.get(self.key_field))

    def _fresh(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records not delivered before: keys not seen at the anchor, or newer versions.

        A row delivered at the anchor and edited mid-pass comes back later with a newer cursor;
        that is a change to keep, not a repeat. Only rows at or before the anchor (and rows
        without a usable cursor) are looked up, so the check is mostly a comparison per row.
        """
        seen, field, anchor = self._seen_at_anchor, self.anchor_field, self.anchor
        if field is None or anchor is None:
            return [r for r in records if self._key(r) not in seen]
        return [r for r in records if (isinstance(v := r.get(field), str) and v > anchor) or self._key(r) not in seen]

    def _note_cap(self, records: list[dict[str, Any]], total: int | None) -> None:
        """Detect a silent cap: two short pages of the same length while more rows remain."""
        covered = (self.page - self.first_page) * self.effective_size + len(records)
        more = total is not None and covered < total
        if len(records) < self.page_size and more:
            if self._short_len == len(records) and self.cap_detected is None:
                self.cap_detected = self.effective_size = len(records)
                log.warning("the source silently caps pageSize at %d (asked for %d); paging at %d",
                            len(records), self.page_size, len(records))
            self._short_len = len(records)
        else:
            self._short_len = None


@dataclass
class CursorPaginator:
    cursor_param: str
    size_param: str | None
    page_size: int
    cursor: str | None = field(init=False, default=None)
    done: bool = field(init=False, default=False)
    _seen_tokens: set[str] = field(init=False, default_factory=set)
    page: int = field(init=False, default=1)

    def next_request(self) -> PageRequest:
        params: dict[str, Any] = {}
        if self.size_param:
            params[self.size_param] = self.page_size
        if self.cursor is not None:
            params[self.cursor_param] = self.cursor
        return PageRequest(params, f"{self.page}" + (f" cursor {self.cursor}" if self.cursor else ""))

    def accept(self, records: list[dict[str, Any]], next_cursor: str | None) -> list[dict[str, Any]]:
        """Stop on an explicit end (no cursor); a cursor seen before means the source loops."""
        self.page += 1
        if not next_cursor:
            self.done = True
            return records
        if next_cursor in self._seen_tokens:
            raise FatalError(f"the source returned cursor {next_cursor!r} a second time; refusing to loop")
        self._seen_tokens.add(next_cursor)
        self.cursor = next_cursor
        return records
