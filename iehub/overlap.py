"""Parquet written on a thread of its own, one chunk behind the step that produces the rows.

A pipeline step alternates producing a chunk (fetching it from a source, mapping and checking
it) and encoding plus compressing it into Parquet. Both run in native code that releases the
GIL, so with the writing on a second thread they overlap on a two-core machine instead of adding
up. At most one chunk is in flight, so memory grows by one chunk, never with the batch. Not a
change to ``warehouse.landing.ParquetSink`` itself: its atomic commit stays as it is, and callers
that write once gain nothing from a thread. Reading ahead the same way was measured too: the
standardise step saved no time with it and held one more chunk, so nothing reads ahead.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from warehouse.landing import LandedFile, ParquetSink


class PipelinedSink:
    """A ParquetSink whose writes run on a worker thread; a failed write surfaces at the next
    write or at commit, and the file is then dropped like any aborted sink's."""

    def __init__(self, sink: ParquetSink) -> None:
        self.sink = sink
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iehub-sink")
        self._pending: Future[None] | None = None
        self._done = False

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def write(self, table: pa.Table) -> None:
        self._wait()
        self._pending = self._pool.submit(self.sink.write, table)

    def commit(self) -> LandedFile:
        self._done = True
        try:
            self._wait()
            return self.sink.commit()
        except BaseException:
            self.sink.abort()
            raise
        finally:
            self._pool.shutdown()

    def abort(self) -> None:
        """Drop the file (idempotent); a write still running is waited for, its own error dropped
        with it, since the caller is already handling the error that made it abort."""
        self._done = True
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.exception()  # waits; the write's error is moot once the file is dropped
        self.sink.abort()
        self._pool.shutdown()

    def __enter__(self) -> PipelinedSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: Any) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.commit()
