"""Read a page iterator one step ahead, on a thread of its own, so HTTP waits overlap Arrow work.

A REST pass is a chain: each request waits for the answer to the last one (re-anchored pages
and cursors cannot be asked for before it arrives). While the source prepares the next page,
the caller can turn the last one into Arrow and write it; this moves the chain (request, parse,
page decision) onto a producer thread that runs at most `depth` pages ahead, and leaves the rest
to the caller. Guarantees: pages come out in the order the iterator yields them; an error on the
producer is raised on the caller's thread at the point the failing page would have come; closing
the consumer early stops the producer after the request in flight (it is never left running
into the source). Why not a pool of requests: the chain cannot be split, and a page-number
source without an anchor is the only kind that could; at `depth` 1 the source still sees one
request at a time, the way the paginators and the retry budget were built.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")

_END = object()
_POLL_SECONDS = 0.1  # how often a blocked producer looks whether the consumer has gone
_JOIN_SECONDS = 5.0  # how long closing waits for a producer inside a request before leaving it (daemon)


def read_ahead(pages: Iterator[T], *, depth: int = 1, name: str = "rest-pages") -> Iterator[T]:
    """Yield what `pages` yields, produced on a thread up to `depth` items ahead of the caller."""
    handoff: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: object, error: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                handoff.put((item, error), timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not put(page):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(_END, exc)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item, error = handoff.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=_JOIN_SECONDS)
