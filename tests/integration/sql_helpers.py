"""Real databases for the SQL kind's tests: a fresh PostgreSQL or MariaDB database per test, or a
SQLite file, and a loopback TCP proxy that cuts a connection mid-stream.

A missing server fails the test with its name and address, never a skip.
"""
from __future__ import annotations

import os
import secrets
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pytest
import sqlalchemy as sa

from connectors.spec import load_spec

PG_SERVER = os.environ.get("IEHUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARIADB_SERVER = os.environ.get("IEHUB_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4")


def _admin(server: str, name: str) -> sa.Engine:
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure here means "no server", reported as such
        pytest.fail(f"{name} server {engine.url.render_as_string(hide_password=True)} is not reachable "
                    f"({type(exc).__name__}: {exc}); start it or set the IEHUB_TEST_* URL")
    return engine


@contextmanager
def fresh_database(dialect: str, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of `dialect` (sqlite, postgresql, mariadb), dropped afterwards."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'source.sqlite'}"
        return
    server, label, create, drop = {
        "postgresql": (PG_SERVER, "PostgreSQL", "CREATE DATABASE {}", "DROP DATABASE IF EXISTS {} WITH (FORCE)"),
        "mariadb": (MARIADB_SERVER, "MariaDB", "CREATE DATABASE {} CHARACTER SET utf8mb4", "DROP DATABASE IF EXISTS {}"),
    }[dialect]
    name = f"iehub_t_{secrets.token_hex(4)}"
    admin = _admin(server, label)
    with admin.connect() as conn:
        conn.exec_driver_sql(create.format(name))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(drop.format(name))
        admin.dispose()


def spec_with(source: str, *, stream_updates: dict[str, object] | None = None, **connection: object):
    """The shipped spec with some connection settings and stream settings changed (for tests)."""
    spec = load_spec(source)
    conn = spec.connection.model_copy(update=connection)
    streams = {name: s.model_copy(update=stream_updates or {}) for name, s in spec.streams.items()}
    return spec.model_copy(update={"connection": conn, "streams": streams})


def core_rows(home: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def quarantined(home: Path, entity: str, source: str) -> set[str]:
    files = [str(p) for p in (home / "lake" / "quarantine" / entity / f"source={source}").rglob("*.parquet")]
    if not files:
        return set()
    return {k for (k,) in duckdb.sql(f"select distinct _key from read_parquet({files!r})").fetchall()}


class CuttingProxy:
    """A loopback TCP proxy to a server that cuts connections once they carried `cut_after` bytes back.

    `cuts` limits how many connections are cut (then it forwards faithfully): a real dropped
    connection in the middle of a result, as a failing network or a restarted server gives.
    """

    def __init__(self, host: str, port: int, *, cut_after: int, cuts: int = 1) -> None:
        self.target = (host, port)
        self.cut_after, self.cuts_left = cut_after, cuts
        self.cut = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if counted:
                    sent += len(data)
                    if sent > self.cut_after:
                        with self._lock:
                            cut = self.cuts_left > 0
                            if cut:
                                self.cuts_left -= 1
                                self.cut += 1
                        if cut:
                            dst.sendall(data[: max(0, len(data) - (sent - self.cut_after))])
                            break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def url_for(self, url: str) -> str:
        return sa.make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
