"""One writer per source: a lease row in the ops catalog, taken by a CLI sync or a DAG run.

A row lease rather than a PostgreSQL advisory lock, so the embedded SQLite catalog and
PostgreSQL behave the same, and so a DAG run can hold the lease across its tasks (separate
processes, possibly separate workers) and release it in its teardown. A holder that crashed
stops renewing: its lease lapses at `expires_at`, and a CLI holder on this host whose process is
gone is taken over at once. The holder key says who it is (`dag_run <dag>/<run>` or
`cli <host>:<pid>`), so the refusal names it in one line.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from iehub.pipeline import PipelineError
from warehouse.catalog import Catalog
from warehouse.sqlstore import UtcDateTime

DEFAULT_TTL = timedelta(hours=2)  # a CLI sync renews it per stream; a DAG run per task

_metadata = sa.MetaData()
source_leases = sa.Table(
    "source_leases", _metadata,
    sa.Column("source", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(500), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)


class SourceBusy(PipelineError):
    """Another writer holds the source's lease."""


@dataclass(frozen=True)
class Holder:
    key: str
    host: str
    pid: int

    @classmethod
    def cli(cls) -> Holder:
        host = socket.gethostname()
        return cls(f"cli {host}:{os.getpid()}", host, os.getpid())

    @classmethod
    def dag_run(cls, dag_id: str, run_id: str) -> Holder:
        return cls(f"dag_run {dag_id}/{run_id}", socket.gethostname(), os.getpid())


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _gone(row: sa.Row) -> bool:
    """A CLI holder on this host whose process no longer exists (a DAG run holder is never judged by pid)."""
    if not row.holder.startswith("cli ") or row.host != socket.gethostname():
        return False
    try:
        os.kill(row.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def acquire(catalog: Catalog, source: str, holder: Holder, ttl: timedelta = DEFAULT_TTL) -> bool:
    """Take or renew the lease; raise SourceBusy naming the holder if someone else has it.

    Returns True when this holder had held it and given it back already (a task of a finished
    DAG run cleared and run again): the caller then holds it only for that task.
    """
    with catalog.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7315100202)"))
        _metadata.create_all(conn, checkfirst=True)
        row = conn.execute(sa.select(source_leases).where(source_leases.c.source == source)).first()
        now = _now()
        if row is not None and row.holder != holder.key and row.expires_at > now and not _gone(row):
            raise SourceBusy(
                f"source {source} is being synced by {row.holder} (host {row.host}, pid {row.pid}) since "
                f"{row.acquired_at:%Y-%m-%d %H:%M:%S} UTC; wait for it to finish (its lease lapses at "
                f"{row.expires_at:%H:%M:%S} UTC if it crashed)")
        reopened = row is not None and row.holder == holder.key and row.expires_at <= now
        acquired_at = row.acquired_at if row is not None and row.holder == holder.key and not reopened else now
        conn.execute(sa.delete(source_leases).where(source_leases.c.source == source))
        conn.execute(sa.insert(source_leases).values(source=source, holder=holder.key, host=holder.host,
                                                     pid=holder.pid, acquired_at=acquired_at,
                                                     expires_at=now + ttl))
    return reopened


def release(catalog: Catalog, source: str, holder: Holder) -> None:
    """Give the lease back (only if it is still ours): it lapses now, and the row remembers who had it."""
    with catalog.engine.begin() as conn:
        _metadata.create_all(conn, checkfirst=True)
        conn.execute(sa.update(source_leases).where(source_leases.c.source == source,
                                                    source_leases.c.holder == holder.key)
                     .values(expires_at=_now()))


@contextmanager
def held(catalog: Catalog, source: str, holder: Holder | None = None) -> Iterator[Holder]:
    holder = holder or Holder.cli()
    acquire(catalog, source, holder)
    try:
        yield holder
    finally:
        release(catalog, source, holder)
