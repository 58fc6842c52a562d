"""Consumer keys: who may read which datasets, for which districts, with or without personal data.

A key is ``iehub_<key id>.<secret>``: the key id (16 hex characters) is public and names the
key in listings, logs and the audit; the secret is 256 random bits (``secrets.token_urlsafe``)
and is shown once, at creation. Only the SHA-256 of the secret is stored. A plain hash (no
salt, no slow KDF) is enough because the secret is random, not a password: there is nothing
to guess. Lookups go by key id, and the hash is compared in constant time.

The feed API authenticates every request, so :meth:`KeyStore.authenticate` is cached in
process for ``cache_seconds`` (default 5). The cache is keyed by a hash of the whole token
(a wrong secret never hits a cached grant) and always re-checks expiry. Revocation is
immediate in the process that revokes (it drops the entry) and takes at most
``cache_seconds`` in other processes: a bounded, documented delay that keeps the key table
off the hot path. ``last_used_at`` is written at most once a minute per key, on cache misses.

Fail closed: when the key database cannot be read, or ``last_used_at`` cannot be written (the
disk is full, the file read-only, the server gone), :meth:`KeyStore.authenticate` raises
:class:`KeyStoreUnavailable` and the API answers 503 without serving anything. A grant whose
use cannot be recorded is not honoured, so ``last_used_at`` stays a true record of which keys
are in use, and a broken store is noticed at once, not when a key goes quiet for a minute.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from schemas import CODE_LISTS, ENTITIES
from warehouse.sqlstore import UtcDateTime, configure_sqlite

__all__ = [
    "AuthError", "Grant", "KeyInfo", "KeyStore", "KeyStoreError", "KeyStoreUnavailable", "KEY_PREFIX", "driver_reason",
    "feed_engine",
]

KEY_PREFIX = "iehub_"
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_TOKEN = re.compile(r"^iehub_([0-9a-f]{16})\.([A-Za-z0-9_-]{32,128})$")
_LAST_USED_EVERY = timedelta(minutes=1)
_CONSUMER_MAX = 200

metadata = sa.MetaData()

feed_keys = sa.Table(
    "feed_keys",
    metadata,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("consumer", sa.String(_CONSUMER_MAX), nullable=False),
    sa.Column("datasets", sa.Text, nullable=True),  # JSON list; NULL = every dataset
    sa.Column("districts", sa.Text, nullable=True),  # JSON list; NULL = every district
    sa.Column("personal", sa.Boolean, nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Column("last_used_at", UtcDateTime, nullable=True),
)


class AuthError(Exception):
    """The caller's key is unknown, expired or revoked; the message is safe to send back (no token)."""


class KeyStoreError(ValueError):
    """A key cannot be created or changed as asked (bad dataset, district, consumer or key id)."""


class KeyStoreUnavailable(RuntimeError):
    """The key database cannot be read or written right now; the message names no key and no secret."""


@dataclass(frozen=True)
class Grant:
    """What an authenticated key may read. ``None`` for datasets or districts means all of them."""

    key_id: str
    consumer: str
    datasets: frozenset[str] | None
    districts: frozenset[str] | None
    personal: bool
    expires_at: datetime | None

    def allows_dataset(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets


@dataclass(frozen=True)
class KeyInfo(Grant):
    """A key as listed: its grant and its lifecycle, never the secret."""

    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def status(self, now: datetime | None = None) -> str:
        """``revoked``, ``expired`` or ``active``."""
        now = now or _now()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def feed_engine(url: str) -> Engine:
    """The engine of the feed database: on SQLite the catalog's settings (WAL, busy timeout, BEGIN IMMEDIATE)."""
    sqlite = sa.make_url(url).get_backend_name() == "sqlite"
    engine = sa.create_engine(url, **({"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}))
    if sqlite:
        configure_sqlite(engine)
    return engine


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def driver_reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, without SQLAlchemy's echo of the statement and its parameters."""
    orig = getattr(exc, "orig", None)
    return f"{type(orig or exc).__name__}: {str(orig).strip().splitlines()[0] if orig else type(exc).__name__}"


def _scope(values: Iterable[str] | None, known: Iterable[str], what: str) -> frozenset[str] | None:
    """Validate a dataset or district list; None (or the word ``all``) stands for every one."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    cleaned = [v.strip() for v in values]
    if any(v.lower() == "all" for v in cleaned):
        if len(cleaned) > 1:
            raise KeyStoreError(f"{what}: 'all' cannot be combined with named {what}")
        return None
    if not cleaned or any(not v for v in cleaned):
        raise KeyStoreError(f"{what}: give at least one, without empty entries, or 'all'")
    known_set = set(known)
    unknown = sorted({v for v in cleaned if v not in known_set})
    if unknown:
        raise KeyStoreError(f"unknown {what} {', '.join(map(repr, unknown))} (known: {', '.join(known)})")
    return frozenset(cleaned)


def _dump(values: frozenset[str] | None) -> str | None:
    return None if values is None else json.dumps(sorted(values))


def _load(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(json.loads(text))


def _info(row: Any) -> KeyInfo:
    return KeyInfo(row.key_id, row.consumer, _load(row.datasets), _load(row.districts), bool(row.personal),
                   row.expires_at, created_at=row.created_at, revoked_at=row.revoked_at,
                   last_used_at=row.last_used_at)


class KeyStore:
    """Consumer keys in a SQLAlchemy database (SQLite or PostgreSQL); creates its table."""

    def __init__(self, url: str, *, cache_seconds: float = 5.0) -> None:
        self.url = url
        self.engine = feed_engine(url)
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Grant]] = {}
        self._lock = threading.Lock()
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7315100301)"))  # concurrent first starts
            metadata.create_all(conn, checkfirst=True)

    def __repr__(self) -> str:
        return f"KeyStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def dispose(self) -> None:
        self.engine.dispose()

    # -- administration ---------------------------------------------------------------------

    def create(
        self,
        consumer: str,
        datasets: Iterable[str] | None,
        districts: Iterable[str] | None,
        personal: bool = False,
        expires_in: timedelta | None = timedelta(days=365),
    ) -> tuple[Grant, str]:
        """Create a key; returns its grant and the token, which is never retrievable again."""
        consumer = (consumer or "").strip()
        if not consumer or len(consumer) > _CONSUMER_MAX or any(ord(c) < 32 for c in consumer):
            raise KeyStoreError(f"consumer must be a name of 1 to {_CONSUMER_MAX} printable characters")
        dataset_scope = _scope(datasets, list(ENTITIES), "datasets")
        district_scope = _scope(districts, list(CODE_LISTS["district"].codes), "districts")
        if expires_in is not None and expires_in <= timedelta(0):
            raise KeyStoreError(f"expires_in must be positive (got {expires_in})")
        now = _now()
        expires_at = now + expires_in if expires_in is not None else None
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                feed_keys.insert().values(
                    key_id=key_id,
                    consumer=consumer,
                    datasets=_dump(dataset_scope),
                    districts=_dump(district_scope),
                    personal=bool(personal),
                    secret_sha256=_digest(secret),
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        grant = Grant(key_id, consumer, dataset_scope, district_scope, bool(personal), expires_at)
        return grant, f"{KEY_PREFIX}{key_id}.{secret}"

    def list(self) -> list[KeyInfo]:
        """Every key, oldest first, without secrets."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(feed_keys).order_by(feed_keys.c.created_at, feed_keys.c.key_id)).all()
        return [_info(r) for r in rows]

    def get(self, key_id: str) -> KeyInfo:
        """One key by id; KeyStoreError when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(feed_keys).where(feed_keys.c.key_id == key_id)).first()
        if row is None:
            raise KeyStoreError(f"no key with id {key_id!r}; `iehub keys list` shows the ids")
        return _info(row)

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke a key (idempotent: a revoked key keeps its first revocation time)."""
        key_id = key_id.strip()
        if key_id.startswith(KEY_PREFIX):
            raise KeyStoreError("give the key id (as `iehub keys list` shows it), not the key itself")
        if not _KEY_ID.match(key_id):
            raise KeyStoreError(f"{key_id!r} is not a key id (16 hex characters)")
        with self.engine.begin() as conn:
            conn.execute(
                feed_keys.update()
                .where(feed_keys.c.key_id == key_id, feed_keys.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
        with self._lock:
            for token_hash in [h for h, (_, g) in self._cache.items() if g.key_id == key_id]:
                del self._cache[token_hash]
        return self.get(key_id)

    # -- the hot path -----------------------------------------------------------------------

    def authenticate(self, token: str | None) -> Grant:
        """The grant of a valid key; AuthError (unknown / expired / revoked) otherwise."""
        if not token:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
        match = _TOKEN.match(token.strip())
        if match is None:
            raise AuthError("unknown API key")
        key_id, secret = match.groups()
        cache_key = hashlib.sha256(token.strip().encode("ascii")).hexdigest()
        now = _now()
        clock = time.monotonic()
        with self._lock:
            cached = self._cache.get(cache_key)
        if cached is not None and clock - cached[0] < self.cache_seconds:
            grant = cached[1]
        else:
            grant = self._load_grant(key_id, secret, now)
            if self.cache_seconds > 0:
                with self._lock:
                    self._cache[cache_key] = (clock, grant)
        if grant.expires_at is not None and grant.expires_at <= now:
            raise AuthError(f"API key {key_id} has expired; ask the hub for a new one")
        return grant

    def _load_grant(self, key_id: str, secret: str, now: datetime) -> Grant:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(feed_keys).where(feed_keys.c.key_id == key_id)).first()
        except SQLAlchemyError as exc:
            raise KeyStoreUnavailable(f"the key database cannot be read: {driver_reason(exc)}") from None
        # Compare even when the id is unknown, so timing does not tell ids that exist.
        stored = row.secret_sha256 if row is not None else "0" * 64
        if not hmac.compare_digest(stored, _digest(secret)) or row is None:
            raise AuthError("unknown API key")
        if row.revoked_at is not None:
            raise AuthError(f"API key {key_id} has been revoked")
        if row.last_used_at is None or now - row.last_used_at >= _LAST_USED_EVERY:
            try:
                with self.engine.begin() as conn:
                    conn.execute(feed_keys.update().where(feed_keys.c.key_id == key_id).values(last_used_at=now))
            except SQLAlchemyError as exc:
                raise KeyStoreUnavailable(f"the key database cannot record the key's use: {driver_reason(exc)}") from None
        return Grant(key_id, row.consumer, _load(row.datasets), _load(row.districts), bool(row.personal),
                     row.expires_at)
