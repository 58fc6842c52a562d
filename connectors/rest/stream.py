"""A REST stream: one (source, entity) endpoint read page by page into plain records."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterator

from connectors.errors import FatalError
from connectors.rest.client import RestClient, dig
from connectors.rest.paginators import CursorPaginator, PageNumberPaginator
from connectors.spec import CursorPaging, RestSourceSpec

log = logging.getLogger(__name__)


@dataclass
class ExtractedPage:
    number: int
    label: str
    records: list[dict[str, Any]]


class RestStream:
    """Reads one stream of a REST source; the caller lands what it yields."""

    def __init__(self, spec: RestSourceSpec, name: str, client: RestClient) -> None:
        if name not in spec.streams:
            raise FatalError(f"source {spec.name} has no stream '{name}' (streams: {', '.join(spec.streams)})")
        self.spec, self.name, self.client = spec, name, client
        self.stream = spec.streams[name]
        self.paginator: PageNumberPaginator | CursorPaginator | None = None
        self.first_total: int | None = None  # what the source said the pass holds, for progress

    @property
    def cursor_field(self) -> str | None:
        return self.spec.incremental.cursor_field if self.spec.incremental else None

    def start_anchor(self, cursor: str | None) -> str | None:
        """Where an incremental pass starts: the last landed cursor minus the overlap window.

        The overlap re-reads rows committed late with an older timestamp; rows that come back
        unchanged are dropped by the pipeline, so the overlap costs reads, not duplicates.
        """
        inc = self.spec.incremental
        if inc is None or cursor is None:
            return None
        try:
            moment = datetime.strptime(cursor, inc.format)
        except ValueError:
            raise FatalError(f"stored cursor {cursor!r} does not match format {inc.format!r}; "
                             "run a full resync (iehub sync --full)", source=self.spec.name, stream=self.name) from None
        return (moment - timedelta(seconds=inc.overlap_seconds)).strftime(inc.format)

    def read(self, cursor: str | None) -> Iterator[ExtractedPage]:
        paging = self.spec.paging
        inc = self.spec.incremental
        if isinstance(paging, CursorPaging):
            self.paginator = CursorPaginator(paging.cursor_param, paging.size_param, paging.page_size)
        else:
            self.paginator = PageNumberPaginator(
                paging.page_param, paging.size_param, paging.page_size, paging.first_page,
                anchor_param=inc.param if inc else None, anchor_field=inc.cursor_field if inc else None,
                key_field=self.stream.primary_key, start_anchor=self.start_anchor(cursor))
        number = 0
        while not self.paginator.done:
            request = self.paginator.next_request()
            params = {**self.stream.params, **request.params}
            payload = self.client.get(self.stream.path, params, stream=self.name, page=request.label)
            records = dig(payload, self.spec.envelope.records_path)
            if records is None:
                records = []
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise FatalError(f"'{self.spec.envelope.records_path}' is not a list of objects",
                                 source=self.spec.name, stream=self.name, endpoint=self.stream.path, page=request.label)
            number += 1
            if isinstance(self.paginator, CursorPaginator):
                fresh = self.paginator.accept(records, dig(payload, paging.next_cursor_path))  # type: ignore[union-attr]
            else:
                total = dig(payload, self.spec.envelope.total_path)
                if self.first_total is None and total is not None:
                    self.first_total = int(total)
                try:
                    fresh = self.paginator.accept(records, int(total) if total is not None else None)
                except FatalError as exc:
                    raise FatalError(str(exc), source=self.spec.name, stream=self.name, endpoint=self.stream.path,
                                     page=request.label) from None
            if fresh:
                yield ExtractedPage(number, request.label, fresh)
