"""Push subscriptions: who receives which changes where, and how far each has acknowledged.

A subscription belongs to one consumer key and never reaches past it: its datasets and
districts are a subset of the key's, checked when it is made and again at every delivery
(a revoked or expired key pauses it), and records are masked as the key's grant says.

Nothing is skipped: per dataset, the changes and the deletes each have an acknowledged change
version (``feed_subscription_cursors``), moved forward only after the receiver answered 2xx
for a batch that ends there. Pausing, resuming and failing leave the cursors where they are,
so delivery continues from the last acknowledged batch; a replay puts them all back to a
version. Acknowledgements are compare-and-set against the subscription's ``generation``
(bumped by replay and delete) inside one transaction that locks the subscription row, so a
deliverer that was mid-batch when someone replayed cannot move the cursors forward again.
One deliverer works on a subscription at a time: it takes a lease (``lease_until``) by a
conditional UPDATE; a crashed deliverer's lease simply runs out.

Lives in the feed database beside the keys and the audit (SQLite ``feeds.db``, or PostgreSQL
by IEHUB_FEEDS_DB_URL). The signing secret is stored sealed (:mod:`feeds.webhooks`).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from feeds.datasets import DATASETS
from feeds.keys import KeyInfo, KeyStore, driver_reason, feed_engine
from feeds.webhooks import new_secret, seal, unseal
from warehouse.sqlstore import UtcDateTime

__all__ = [
    "ACTIVE", "DEFAULT_BATCH_SIZE", "DEFAULT_PAUSE_AFTER", "DEFAULT_TIMEOUT", "KINDS", "PAUSED", "Subscription",
    "SubscriptionError", "SubscriptionStore", "check_url",
]

ACTIVE, PAUSED = "active", "paused"
KINDS = ("changes", "deletes")
DEFAULT_BATCH_SIZE = 500
MAX_BATCH_SIZE = 10_000
DEFAULT_TIMEOUT = 10.0  # seconds a batch waits for the receiver's answer
DEFAULT_PAUSE_AFTER = 24 * 3600.0  # seconds of failing without one acknowledgement before pausing
_LOOPBACK_NAMES = {"localhost"}

metadata = sa.MetaData()

feed_subscriptions = sa.Table(
    "feed_subscriptions",
    metadata,
    sa.Column("subscription_id", sa.String(20), primary_key=True),
    sa.Column("key_id", sa.String(16), nullable=False, index=True),
    sa.Column("consumer", sa.String(200), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("datasets", sa.Text, nullable=True),  # JSON list; NULL = every dataset of the key
    sa.Column("districts", sa.Text, nullable=True),  # JSON list; NULL = every district of the key
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("paused_reason", sa.Text, nullable=True),
    sa.Column("secret_sealed", sa.Text, nullable=False),
    sa.Column("previous_sealed", sa.Text, nullable=True),  # valid too until previous_until (rotation overlap)
    sa.Column("previous_until", UtcDateTime, nullable=True),
    sa.Column("batch_size", sa.Integer, nullable=False),
    sa.Column("timeout_seconds", sa.Float, nullable=False),
    sa.Column("pause_after_seconds", sa.Float, nullable=False),
    sa.Column("start_after", sa.BigInteger, nullable=False),  # cursors not yet written start after this
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("failing_since", UtcDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_attempt_at", UtcDateTime, nullable=True),
    sa.Column("last_success_at", UtcDateTime, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

feed_subscription_cursors = sa.Table(
    "feed_subscription_cursors",
    metadata,
    sa.Column("subscription_id", sa.String(20), primary_key=True),
    sa.Column("dataset", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("acked_version", sa.BigInteger, nullable=False),
)


class SubscriptionError(ValueError):
    """A subscription cannot be made or changed as asked; the message says which value and why."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def check_url(url: str) -> str:
    """``url`` if the hub may post to it: https, or http to a loopback address (tests, a local relay)."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise SubscriptionError(f"url {url[:200]!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not host:
        raise SubscriptionError(f"url {url[:200]!r} must be an https:// URL with a host")
    if parts.username or parts.password:
        raise SubscriptionError("url must not carry a user or password; the hub signs every batch instead")
    if parts.scheme == "http" and not _is_loopback(host):
        raise SubscriptionError(f"url {url[:200]!r} is plain http to a non-loopback host; use https "
                                "(http is allowed only for 127.0.0.1, ::1 or localhost)")
    if len(url) > 2000:
        raise SubscriptionError("url is longer than 2000 characters")
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _within(asked: Iterable[str] | None, granted: frozenset[str] | None, known: Iterable[str],
            what: str) -> frozenset[str] | None:
    """The asked scope, checked to be known and within the key's; None (``all``) = the key's own."""
    if asked is None:
        return granted
    values = [asked] if isinstance(asked, str) else [v.strip() for v in asked]
    if [v.lower() for v in values] == ["all"]:
        return granted
    if not values or any(not v for v in values):
        raise SubscriptionError(f"{what}: give at least one, without empty entries, or 'all'")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SubscriptionError(f"unknown {what} {', '.join(map(repr, unknown))}")
    if granted is not None:
        outside = sorted(set(values) - granted)
        if outside:
            raise SubscriptionError(f"{what} {', '.join(map(repr, outside))} are outside the key's scope "
                                    f"({', '.join(sorted(granted))}); a subscription never exceeds its key")
    return frozenset(values)


def _dump(values: frozenset[str] | None) -> str | None:
    return None if values is None else json.dumps(sorted(values))


def _load(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(json.loads(text))


@dataclass(frozen=True)
class Subscription:
    """A subscription as stored (never with its secret in clear)."""

    subscription_id: str
    key_id: str
    consumer: str
    url: str
    datasets: frozenset[str] | None
    districts: frozenset[str] | None
    status: str
    paused_reason: str | None
    batch_size: int
    timeout_seconds: float
    pause_after_seconds: float
    start_after: int
    generation: int
    failing_since: datetime | None
    last_error: str | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    created_at: datetime
    previous_until: datetime | None
    cursors: dict[tuple[str, str], int]

    def acked(self, dataset: str, kind: str) -> int:
        """The change version up to which ``kind`` of ``dataset`` is acknowledged."""
        return self.cursors.get((dataset, kind), self.start_after)

    def public(self) -> dict[str, Any]:
        """The subscription as the CLI and API show it (no secret)."""
        def when(v: datetime | None) -> str | None:
            return v.isoformat() if v else None
        return {
            "id": self.subscription_id, "key_id": self.key_id, "consumer": self.consumer, "url": self.url,
            "datasets": sorted(self.datasets) if self.datasets is not None else "all",
            "districts": sorted(self.districts) if self.districts is not None else "all",
            "status": self.status, "paused_reason": self.paused_reason, "batch_size": self.batch_size,
            "timeout_seconds": self.timeout_seconds, "pause_after_seconds": self.pause_after_seconds,
            "acknowledged": {f"{d}.{k}": v for (d, k), v in sorted(self.cursors.items())},
            "start_after": self.start_after, "failing_since": when(self.failing_since),
            "last_error": self.last_error, "last_attempt_at": when(self.last_attempt_at),
            "last_success_at": when(self.last_success_at), "created_at": when(self.created_at),
            "previous_secret_valid_until": when(self.previous_until),
        }


def _newest_in_scope(home: Path | None, readable: dict[str, frozenset[str] | None]) -> int:
    """The newest change version of what ``readable`` ({dataset: districts}) may see now (0 if nothing is published)."""
    from feeds.query import NoSnapshot, SnapshotPool, versions

    if home is None:
        return 0
    pool = SnapshotPool(home)
    try:
        snapshot = pool.current()
        return max((int(versions(pool, snapshot, DATASETS[name], districts)["newest_change_version"] or 0)
                    for name, districts in readable.items()), default=0)
    except NoSnapshot:
        return 0
    finally:
        pool.close()


class SubscriptionStore:
    """Subscriptions and their cursors in the feed database; creates its tables."""

    def __init__(self, url: str, hub_secret: bytes, keys: KeyStore | None = None) -> None:
        self.url = url
        self.hub_secret = hub_secret
        self.engine = feed_engine(url)
        self.keys = keys or KeyStore(url)
        self._own_keys = keys is None
        self._access: Any = None  # feeds.sharing.AccessStore, opened on first use
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7315100303)"))  # concurrent first starts
                metadata.create_all(conn, checkfirst=True)
        except SQLAlchemyError as exc:
            raise SubscriptionError(f"cannot open the subscriptions in the feed database: {driver_reason(exc)}") \
                from None

    def dispose(self) -> None:
        self.engine.dispose()
        if self._access is not None:
            self._access.dispose()
        if self._own_keys:
            self.keys.dispose()

    # -- reading ----------------------------------------------------------------------------

    def _row(self, conn: sa.Connection, subscription_id: str) -> Any:
        row = conn.execute(sa.select(feed_subscriptions)
                           .where(feed_subscriptions.c.subscription_id == subscription_id)).first()
        if row is None:
            raise SubscriptionError(f"no subscription {subscription_id!r}; `iehub subscriptions list` shows them")
        return row

    def _build(self, row: Any, cursors: dict[tuple[str, str], int]) -> Subscription:
        return Subscription(
            row.subscription_id, row.key_id, row.consumer, row.url, _load(row.datasets), _load(row.districts),
            row.status, row.paused_reason, row.batch_size, row.timeout_seconds, row.pause_after_seconds,
            int(row.start_after), row.generation, row.failing_since, row.last_error, row.last_attempt_at,
            row.last_success_at, row.created_at, row.previous_until, cursors)

    def get(self, subscription_id: str) -> Subscription:
        with self.engine.connect() as conn:
            row = self._row(conn, subscription_id)
            cursors = {(c.dataset, c.kind): int(c.acked_version) for c in conn.execute(
                sa.select(feed_subscription_cursors)
                .where(feed_subscription_cursors.c.subscription_id == subscription_id))}
        return self._build(row, cursors)

    def list(self, *, key_id: str | None = None, consumer: str | None = None) -> list[Subscription]:
        """Every subscription (of one key or consumer), oldest first."""
        query = sa.select(feed_subscriptions).order_by(feed_subscriptions.c.created_at)
        if key_id is not None:
            query = query.where(feed_subscriptions.c.key_id == key_id)
        if consumer is not None:
            query = query.where(feed_subscriptions.c.consumer == consumer)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            cursors: dict[str, dict[tuple[str, str], int]] = {}
            for c in conn.execute(sa.select(feed_subscription_cursors)):
                cursors.setdefault(c.subscription_id, {})[(c.dataset, c.kind)] = int(c.acked_version)
        return [self._build(r, cursors.get(r.subscription_id, {})) for r in rows]

    def signing_secrets(self, subscription_id: str, now: datetime | None = None) -> list[str]:
        """The secrets a batch is signed with now: the current one, and the previous during an overlap."""
        now = now or _now()
        with self.engine.connect() as conn:
            row = self._row(conn, subscription_id)
        out = [unseal(row.secret_sealed, self.hub_secret)]
        if row.previous_sealed and row.previous_until and row.previous_until > now:
            out.append(unseal(row.previous_sealed, self.hub_secret))
        return out

    # -- administration ---------------------------------------------------------------------

    def key_for(self, consumer: str | None = None, key_id: str | None = None) -> KeyInfo:
        """The active key a new subscription hangs on: by id, or the consumer's only active key."""
        if key_id:
            try:
                key = self.keys.get(key_id)
            except ValueError as exc:
                raise SubscriptionError(str(exc)) from None
            if consumer and key.consumer != consumer:
                raise SubscriptionError(f"key {key_id} belongs to {key.consumer!r}, not {consumer!r}")
        else:
            active = [k for k in self.keys.list() if k.consumer == consumer and k.status() == "active"]
            if len(active) != 1:
                raise SubscriptionError(f"consumer {consumer!r} has {len(active)} active keys; "
                                        + ("create one with `iehub keys create`" if not active else
                                           "name the one to use with --key (ids: "
                                           + ", ".join(k.key_id for k in active) + ")"))
            key = active[0]
        if key.status() != "active":
            raise SubscriptionError(f"key {key.key_id} is {key.status()}; a subscription needs an active key")
        return key

    def create(
        self,
        key: KeyInfo,
        url: str,
        datasets: Iterable[str] | None = None,
        districts: Iterable[str] | None = None,
        *,
        from_version: int | None = None,
        snapshots: Path | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout_seconds: float = DEFAULT_TIMEOUT,
        pause_after_seconds: float = DEFAULT_PAUSE_AFTER,
    ) -> tuple[Subscription, str]:
        """A new active subscription on ``key``; returns it and its signing secret (shown once).

        It delivers change versions from ``from_version``; without one, what comes after the
        newest version the subscription may see in the current snapshot under ``snapshots`` (the
        hub home). Scoped, not the hub-wide newest: the position is shown to the subscriber, and a
        hub-wide figure would tell a 杨浦 key how busy the other districts are (as `/versions` would).
        """
        from schemas import CODE_LISTS

        url = check_url(url)
        dataset_scope = _within(datasets, key.datasets, list(DATASETS), "datasets")
        district_scope = _within(districts, key.districts, list(CODE_LISTS["district"].codes), "districts")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise SubscriptionError(f"batch size must be within 1..{MAX_BATCH_SIZE} (got {batch_size})")
        if not 0 < timeout_seconds <= 300 or pause_after_seconds < 0 or (from_version or 0) < 0:
            raise SubscriptionError("timeout must be within (0, 300] seconds, pause-after and from-version >= 0")
        readable = self.readable(key, district_scope)
        refused = sorted(set(dataset_scope or ()) - set(readable))
        if refused:
            raise SubscriptionError(f"datasets {', '.join(map(repr, refused))} cannot be read with this key and "
                                    "districts (不予共享, 有条件共享 without an approval, or without a district)")
        if not readable or (dataset_scope is not None and not dataset_scope & set(readable)):
            raise SubscriptionError("no dataset of this subscription can be read with its key and districts")
        if from_version is not None:
            start_after = max(from_version - 1, 0)
        else:
            start_after = _newest_in_scope(snapshots, {n: d for n, d in readable.items()
                                                       if dataset_scope is None or n in dataset_scope})
        secret = new_secret()
        subscription_id = "sub_" + secrets.token_hex(8)
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(feed_subscriptions.insert().values(
                subscription_id=subscription_id, key_id=key.key_id, consumer=key.consumer, url=url,
                datasets=_dump(dataset_scope), districts=_dump(district_scope), status=ACTIVE,
                secret_sealed=seal(secret, self.hub_secret), batch_size=batch_size, timeout_seconds=timeout_seconds,
                pause_after_seconds=pause_after_seconds, start_after=start_after, generation=0, created_at=now))
        return self.get(subscription_id), secret

    def readable(self, key: KeyInfo, districts: frozenset[str] | None) -> dict[str, frozenset[str] | None]:
        """{dataset: districts} the key may receive now, narrowed to ``districts`` (None = the key's).

        The one gate every way out asks (:func:`feeds.sharing.effective_grant`): 不予共享 never,
        有条件共享 only under the key's scope or an active approval, as the pull API decides.
        """
        from feeds.sharing import AccessStore, effective_grant, served_datasets

        if self._access is None:
            self._access = AccessStore(self.url, cache_seconds=0)  # approvals read afresh at every call
        approvals = self._access.approvals(key.key_id)
        out: dict[str, frozenset[str] | None] = {}
        for name, ds in served_datasets().items():
            grant = effective_grant(key, ds, approvals)
            if grant is None:
                continue
            scope = grant.districts if districts is None else (
                districts if grant.districts is None else districts & grant.districts)
            if ds.visible_to(None, scope) and (scope is None or scope):
                out[name] = scope
        return out

    def _update(self, subscription_id: str, **values: Any) -> Subscription:
        with self.engine.begin() as conn:
            self._row(conn, subscription_id)
            conn.execute(feed_subscriptions.update()
                         .where(feed_subscriptions.c.subscription_id == subscription_id).values(**values))
        return self.get(subscription_id)

    def pause(self, subscription_id: str, reason: str = "paused by hand") -> Subscription:
        return self._update(subscription_id, status=PAUSED, paused_reason=reason[:2000])

    def resume(self, subscription_id: str) -> Subscription:
        """Active again, from the last acknowledged versions; the failure window starts afresh."""
        return self._update(subscription_id, status=ACTIVE, paused_reason=None, failing_since=None)

    def replay(self, subscription_id: str, from_version: int) -> Subscription:
        """Deliver again everything from ``from_version`` (inclusive), every dataset and kind."""
        if from_version < 0:
            raise SubscriptionError(f"--from-version must be >= 0 (got {from_version})")
        with self.engine.begin() as conn:
            row = self._row(conn, subscription_id)
            conn.execute(feed_subscription_cursors.delete()
                         .where(feed_subscription_cursors.c.subscription_id == subscription_id))
            conn.execute(feed_subscriptions.update()
                         .where(feed_subscriptions.c.subscription_id == subscription_id)
                         .values(start_after=max(from_version - 1, 0),
                                 generation=row.generation + 1))
        return self.get(subscription_id)

    def rotate_secret(self, subscription_id: str, overlap: timedelta = timedelta(hours=24)) -> tuple[Subscription, str]:
        """A new signing secret (shown once); the old one stays valid for ``overlap``."""
        secret = new_secret()
        with self.engine.begin() as conn:
            row = self._row(conn, subscription_id)
            conn.execute(feed_subscriptions.update()
                         .where(feed_subscriptions.c.subscription_id == subscription_id)
                         .values(secret_sealed=seal(secret, self.hub_secret), previous_sealed=row.secret_sealed,
                                 previous_until=_now() + overlap if overlap > timedelta(0) else None))
        return self.get(subscription_id), secret

    def delete(self, subscription_id: str) -> None:
        with self.engine.begin() as conn:
            self._row(conn, subscription_id)
            conn.execute(feed_subscription_cursors.delete()
                         .where(feed_subscription_cursors.c.subscription_id == subscription_id))
            conn.execute(feed_subscriptions.delete().where(feed_subscriptions.c.subscription_id == subscription_id))

    # -- the deliverer's side ---------------------------------------------------------------

    def claim(self, subscription_id: str, owner: str, seconds: float) -> Subscription | None:
        """Take the delivery lease of an active subscription; None if paused, gone or leased elsewhere."""
        now = _now()
        table = feed_subscriptions.c
        with self.engine.begin() as conn:
            taken = conn.execute(feed_subscriptions.update().where(
                table.subscription_id == subscription_id, table.status == ACTIVE,
                sa.or_(table.lease_until.is_(None), table.lease_until < now, table.lease_owner == owner),
            ).values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))).rowcount
        return self.get(subscription_id) if taken else None

    def release(self, subscription_id: str, owner: str) -> None:
        table = feed_subscriptions.c
        with self.engine.begin() as conn:
            conn.execute(feed_subscriptions.update().where(table.subscription_id == subscription_id,
                                                           table.lease_owner == owner)
                         .values(lease_owner=None, lease_until=None))

    def acknowledge(self, sub: Subscription, dataset: str, acked: dict[str, int]) -> Subscription | None:
        """Move ``dataset``'s cursors to ``acked`` (kind → version) and clear the failure window.

        None when the subscription was replayed, deleted or paused meanwhile (its generation or
        status moved): the caller stops, and the cursors stay as the other party left them.
        """
        now = _now()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(feed_subscriptions.c.generation, feed_subscriptions.c.status)
                               .where(feed_subscriptions.c.subscription_id == sub.subscription_id)
                               .with_for_update()).first()
            if row is None or row.generation != sub.generation or row.status != ACTIVE:
                return None
            cursors = dict(sub.cursors)
            for kind, version in acked.items():
                key = {"subscription_id": sub.subscription_id, "dataset": dataset, "kind": kind}
                done = conn.execute(feed_subscription_cursors.update().where(
                    *(feed_subscription_cursors.c[k] == v for k, v in key.items())
                ).values(acked_version=version)).rowcount
                if not done:
                    conn.execute(feed_subscription_cursors.insert().values(**key, acked_version=version))
                cursors[(dataset, kind)] = version
            conn.execute(feed_subscriptions.update()
                         .where(feed_subscriptions.c.subscription_id == sub.subscription_id)
                         .values(failing_since=None, last_error=None, last_attempt_at=now, last_success_at=now))
        return replace(sub, cursors=cursors, failing_since=None, last_error=None)

    def record_failure(self, sub: Subscription, error: str) -> Subscription:
        """Note a batch that could not be delivered; pause once failing for longer than the window."""
        now = _now()
        since = sub.failing_since or now
        values: dict[str, Any] = {"failing_since": since, "last_error": error[:2000], "last_attempt_at": now}
        if (now - since).total_seconds() >= sub.pause_after_seconds:
            values.update(status=PAUSED, paused_reason=(
                f"paused by the hub at {now:%Y-%m-%d %H:%M:%S} UTC after failing since {since:%Y-%m-%d %H:%M:%S} UTC "
                f"(window {sub.pause_after_seconds:g} s): {error}")[:2000])
        with self.engine.begin() as conn:
            conn.execute(feed_subscriptions.update()
                         .where(feed_subscriptions.c.subscription_id == sub.subscription_id,
                                feed_subscriptions.c.generation == sub.generation).values(**values))
        return self.get(sub.subscription_id)
