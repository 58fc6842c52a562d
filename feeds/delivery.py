"""Delivering push subscriptions: every change and delete in scope, masked, signed, at least once.

After a snapshot is published (the delivery DAG, scheduled on the warehouse Asset, or
``iehub deliver``), each active subscription receives, per dataset, the changes and deletes
after its acknowledged change versions, up to the snapshot's newest, in change-version order:
the two pages come from :func:`feeds.query.masked_page` (the pull API's own path, so push and
pull mask identically) and are merged by change version into batches of ``batch_size``. A
batch never splits records that share a change version.

Guarantees, and why:

- At least once, nothing skipped: a cursor moves only after the receiver answered 2xx for the
  batch that ends there (:meth:`SubscriptionStore.acknowledge`). A batch is a Standard Webhooks
  message whose ``webhook-id`` is derived from what it holds (subscription, replay generation,
  dataset, the versions it spans and a digest of its records), so every retry of it, in this
  run or a later one, carries the same id and a receiver de-duplicates by it.
- Retries back off exponentially with full jitter (``base * 2**n``, capped), and wait at least
  what a ``Retry-After`` (seconds or an HTTP date) asks; a wait above ``max_retry_after`` ends
  the run's attempts for that subscription. A subscription failing without one acknowledgement
  for longer than its ``pause_after_seconds`` is paused with the reason recorded.
- Audited: before every attempt an audit row (endpoint ``push``: consumer, key, subscription,
  batch id, versions, record count, body digest) is appended, and nothing is sent if it cannot
  be; after it, a ``push.result`` row with the status. Audit before send, as the pull API does.
- Redirects are not followed (a batch goes only where the subscription says); http:// only to
  loopback (:func:`feeds.subscriptions.check_url`, checked again here).

Subscriptions are delivered in parallel threads (the batches are DuckDB and HTTP waits, which
release the GIL); one deliverer per subscription at a time by a lease in the store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import requests

from feeds.audit import AuditError, AuditLog
from feeds.config import FeedConfig
from feeds.datasets import DATASETS, Dataset, ScopeRule
from feeds.formats import encode
from feeds.query import NoSnapshot, SnapshotPool, Window, masked_page, newest_change_version, versions
from feeds.subscriptions import ACTIVE, KINDS, Subscription, SubscriptionError, SubscriptionStore, check_url
from feeds.webhooks import SealError, sign_headers
from warehouse.versions import CHANGE_VERSION

__all__ = ["Batch", "DeliveryReport", "RetryPolicy", "Slice", "build_slice", "deliver", "make_batch", "retry_wait"]

log = logging.getLogger(__name__)

EVENT_TYPE = "iehub.feed.batch"
USER_AGENT = "iehub-webhooks/1 (+Standard Webhooks)"
LEASE_SECONDS = 600.0
SLICE_CACHE = 64  # slices kept per run for subscriptions that share a scope


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one batch is retried within a run."""

    attempts: int = 6
    base_seconds: float = 1.0
    cap_seconds: float = 120.0
    max_retry_after: float = 600.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """IEHUB_DELIVERY_ATTEMPTS, IEHUB_DELIVERY_BACKOFF (base seconds), IEHUB_DELIVERY_BACKOFF_CAP."""
        env = os.environ
        try:
            return cls(attempts=int(env.get("IEHUB_DELIVERY_ATTEMPTS", cls.attempts)),
                       base_seconds=float(env.get("IEHUB_DELIVERY_BACKOFF", cls.base_seconds)),
                       cap_seconds=float(env.get("IEHUB_DELIVERY_BACKOFF_CAP", cls.cap_seconds)))
        except ValueError as exc:
            raise ValueError(f"IEHUB_DELIVERY_ATTEMPTS / _BACKOFF / _BACKOFF_CAP must be numbers: {exc}") from None


def retry_wait(policy: RetryPolicy, attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before attempt ``attempt + 1``: full-jitter exponential backoff, never under Retry-After."""
    backoff = rng.uniform(0, min(policy.cap_seconds, policy.base_seconds * 2 ** (attempt - 1)))
    return max(backoff, retry_after or 0.0)


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Batch:
    """One message: a dataset's changes and deletes in (after, upto], masked, as JSON bytes."""

    msg_id: str
    dataset: str
    body: bytes
    digest: str
    changes: int
    deletes: int
    after: dict[str, int]
    upto: int
    first_version: int
    last_version: int
    fields: list[str]
    personal: bool

    @property
    def rows(self) -> int:
        return self.changes + self.deletes


def _json_array(table: pa.Table) -> bytes:
    """The records as a JSON array, by the feed's own value rules (NDJSON lines joined)."""
    if table.num_rows == 0:
        return b"[]"
    # A JSON text never holds a raw newline (strings escape it), so each newline ends a record.
    return b"[" + b"".join(encode("ndjson", table, {})).rstrip(b"\n").replace(b"\n", b",") + b"]"


def _versions(table: pa.Table) -> list[int]:
    return table.column(CHANGE_VERSION).to_pylist() if table.num_rows else []


@dataclass(frozen=True)
class Slice:
    """The records of one batch as every subscription with the same scope, grant and cursors gets them."""

    changes: bytes
    deletes: bytes
    changes_count: int
    deletes_count: int
    upto: int
    first_version: int
    last_version: int
    fields: list[str]
    personal: bool
    digest: str


def build_slice(pool: SnapshotPool, snapshot: str, high: int, ds: Dataset, after: dict[str, int], size: int,
                districts: frozenset[str] | None, personal: bool, secret: bytes) -> Slice | None:
    """The next ``size`` changes and deletes of ``ds`` after ``after`` (kind → version), or None if none."""
    pages = {kind: masked_page(pool, snapshot, ds, kind, Window(after[kind], 0, high, size), districts=districts,
                               personal=personal, secret=secret) for kind in KINDS}
    merged = sorted(v for kind in KINDS for v in _versions(pages[kind][1]))
    if not merged:
        return None
    # Where the batch ends: the size-th version of the two pages merged, and never past a page that has more.
    bounds = [merged[min(size, len(merged)) - 1]]
    bounds += [page.last_change_version for page, _, _ in pages.values()
               if page.has_more and page.last_change_version is not None]
    upto = min(bounds)
    tables = {kind: table.filter(pc.less_equal(table.column(CHANGE_VERSION), upto)) if table.num_rows else table
              for kind, (_, table, _) in pages.items()}
    changes, deletes = _json_array(tables["changes"]), _json_array(tables["deletes"])
    versions = [v for kind in KINDS for v in _versions(tables[kind])]
    fields = list(tables["changes"].column_names) + [f"deletes.{c}" for c in tables["deletes"].column_names]
    pii = set(ds.entity.pii_fields())
    return Slice(changes, deletes, tables["changes"].num_rows, tables["deletes"].num_rows, upto, min(versions),
                 max(versions), fields, personal and bool(pii & set(tables["changes"].column_names)),
                 hashlib.sha256(changes + b"\x00" + deletes).hexdigest())


def make_batch(part: Slice, sub: Subscription, ds: Dataset, after: dict[str, int], snapshot: str) -> Batch:
    """``part`` as ``sub``'s message: its webhook-id (stable for the same records) and JSON body."""
    ident = f"{sub.subscription_id}|{sub.generation}|{ds.name}|{after['changes']}|{after['deletes']}|{part.upto}|" \
            f"{part.digest}"
    msg_id = "msg_" + hashlib.sha256(ident.encode()).hexdigest()[:32]
    head = {"type": EVENT_TYPE, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    data = {"subscription": sub.subscription_id, "batch": msg_id, "dataset": ds.name, "snapshot": snapshot,
            "change_versions": {"changes_after": after["changes"], "deletes_after": after["deletes"],
                                "upto": part.upto},
            "count": {"changes": part.changes_count, "deletes": part.deletes_count}}
    # {"type", "timestamp", "data": {... "changes": [...], "deletes": [...]}}: records spliced in as encoded.
    body = (orjson.dumps(head)[:-1] + b',"data":' + orjson.dumps(data)[:-1] + b',"changes":' + part.changes
            + b',"deletes":' + part.deletes + b"}}")
    return Batch(msg_id, ds.name, body, hashlib.sha256(body).hexdigest(), part.changes_count, part.deletes_count,
                 dict(after), part.upto, part.first_version, part.last_version, part.fields, part.personal)


@dataclass
class SubscriptionOutcome:
    """What one run did for one subscription (small: it goes into the DAG's XCom and the CLI table)."""

    subscription_id: str
    consumer: str
    status: str = "up to date"
    batches: int = 0
    changes: int = 0
    deletes: int = 0
    attempts: int = 0
    error: str | None = None
    acked: dict[str, int] = field(default_factory=dict)


@dataclass
class DeliveryReport:
    snapshot: str | None
    outcomes: list[SubscriptionOutcome]
    seconds: float

    def summary(self) -> dict[str, Any]:
        """Counts for logs and XCom: no URLs, no records."""
        return {"snapshot": self.snapshot, "subscriptions": len(self.outcomes),
                "batches": sum(o.batches for o in self.outcomes), "changes": sum(o.changes for o in self.outcomes),
                "deletes": sum(o.deletes for o in self.outcomes),
                "failed": sorted(o.subscription_id for o in self.outcomes if o.status in ("failing", "paused")),
                "seconds": round(self.seconds, 3)}


class _Run:
    """One delivery run over one snapshot: shared pool, store, audit, policy; one thread per subscription."""

    def __init__(self, config: FeedConfig, store: SubscriptionStore, audit: AuditLog, pool: SnapshotPool,
                 snapshot: str, policy: RetryPolicy, sleep: Callable[[float], None]) -> None:
        self.config, self.store, self.audit, self.pool, self.snapshot = config, store, audit, pool, snapshot
        self.policy, self.sleep = policy, sleep
        self.secret = config.secret()
        self.high = newest_change_version(pool, snapshot)
        self.owner = f"{os.uname().nodename[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.local = threading.local()
        self._lock = threading.Lock()
        self._newest: dict[str, int] = {}
        # Subscriptions of the same scope, grant and cursors (many platforms on one change) share a
        # slice: read, masked and encoded once per run, not once per receiver. LRU-bounded.
        self._slices: OrderedDict[tuple[Any, ...], Future[Slice | None]] = OrderedDict()

    def newest(self, ds: Dataset) -> int:
        """The newest change version of ``ds``'s rows and deletes in the snapshot (0 if none)."""
        with self._lock:
            if ds.name not in self._newest:
                self._newest[ds.name] = int(versions(self.pool, self.snapshot, ds, None)["newest_change_version"])
        if ds.scope is ScopeRule.PROJECT:  # a district key sees a participant again when its project moves
            return max(self._newest[ds.name], self.newest(DATASETS["project"]))
        return self._newest[ds.name]

    def slice(self, ds: Dataset, after: dict[str, int], size: int, districts: frozenset[str] | None,
              personal: bool) -> Slice | None:
        key = (ds.name, after["changes"], after["deletes"], size, districts, personal)
        with self._lock:
            future = self._slices.get(key)
            mine = future is None
            if mine:
                future = self._slices[key] = Future()
                while len(self._slices) > SLICE_CACHE:
                    self._slices.popitem(last=False)
            else:
                self._slices.move_to_end(key)
        assert future is not None
        if mine:
            try:
                future.set_result(build_slice(self.pool, self.snapshot, self.high, ds, after, size, districts,
                                              personal, self.secret))
            except BaseException as exc:
                future.set_exception(exc)
                with self._lock:
                    self._slices.pop(key, None)
        return future.result()

    def session(self) -> requests.Session:
        s = getattr(self.local, "session", None)
        if s is None:
            s = self.local.session = requests.Session()
            s.headers.update({"User-Agent": USER_AGENT, "Content-Type": "application/json"})
        return s

    def run(self, subscription_id: str) -> SubscriptionOutcome:
        sub = self.store.claim(subscription_id, self.owner, LEASE_SECONDS)
        if sub is None:
            return SubscriptionOutcome(subscription_id, "-", status="skipped (paused or being delivered elsewhere)")
        out = SubscriptionOutcome(subscription_id, sub.consumer)
        try:
            self._deliver(sub, out)
        finally:
            self.store.release(subscription_id, self.owner)
        return out

    def _deliver(self, sub: Subscription, out: SubscriptionOutcome) -> None:
        key = self.store.keys.get(sub.key_id)
        if key.status() != "active":
            self.store.pause(sub.subscription_id, f"paused by the hub: its key {key.key_id} is {key.status()}; "
                             "create a subscription on an active key")
            out.status, out.error = "paused", f"key {key.status()}"
            return
        try:
            check_url(sub.url)
            signing = self.store.signing_secrets(sub.subscription_id)
        except (SubscriptionError, SealError) as exc:
            self.store.pause(sub.subscription_id, f"paused by the hub: {exc}")
            out.status, out.error = "paused", str(exc)
            return
        leased = time.monotonic()
        # Asked again at every run: a subscription never exceeds what its key may read now.
        readable = self.store.readable(key, sub.districts)
        for name, districts in readable.items():
            if sub.datasets is not None and name not in sub.datasets:
                continue
            ds = DATASETS[name]
            while True:
                after = {kind: sub.acked(ds.name, kind) for kind in KINDS}
                if self.newest(ds) <= min(after.values()):
                    break  # nothing of this dataset past the cursors: no query at all
                part = self.slice(ds, after, sub.batch_size, districts, key.personal)
                if part is None:
                    break
                batch = make_batch(part, sub, ds, after, self.snapshot)
                error = self._send(sub, key.key_id, batch, signing, out)
                if error is not None:
                    sub = self.store.record_failure(sub, error)
                    out.status, out.error = ("paused" if sub.status != ACTIVE else "failing"), error
                    return
                acked = self.store.acknowledge(sub, ds.name, {kind: batch.upto for kind in KINDS})
                out.batches += 1
                out.changes += batch.changes
                out.deletes += batch.deletes
                out.acked[ds.name] = batch.upto
                if acked is None:
                    out.status = "stopped (replayed, paused or deleted meanwhile)"
                    return
                sub = acked
                if time.monotonic() - leased > LEASE_SECONDS / 2:  # renew the lease well before it runs out
                    self.store.claim(sub.subscription_id, self.owner, LEASE_SECONDS)
                    leased = time.monotonic()
        if out.batches:
            out.status = "delivered"

    def _audit(self, sub: Subscription, key_id: str, batch: Batch, endpoint: str, **params: Any) -> None:
        self.audit.append(
            key_id=key_id, consumer=sub.consumer, dataset=batch.dataset, endpoint=endpoint,
            params={"subscription": sub.subscription_id, "batch": batch.msg_id, "host": urlsplit(sub.url).hostname,
                    "changes_after": batch.after["changes"], "deletes_after": batch.after["deletes"],
                    "upto": batch.upto, "first": batch.first_version, "last": batch.last_version,
                    "changes": batch.changes, "deletes": batch.deletes, **params},
            rows=batch.rows, fields=batch.fields, personal=batch.personal, digest=batch.digest,
            snapshot=self.snapshot)

    def _send(self, sub: Subscription, key_id: str, batch: Batch, signing: list[str],
              out: SubscriptionOutcome) -> str | None:
        """Post ``batch`` until acknowledged; None on success, else why it was given up in this run."""
        rng = random.Random()
        error = "not sent"
        for attempt in range(1, self.policy.attempts + 1):
            try:
                self._audit(sub, key_id, batch, "push", attempt=attempt)
            except AuditError as exc:
                log.error("delivery: audit row not written for subscription %s: %s", sub.subscription_id,
                          type(exc).__name__)
                return "the audit log cannot be written, so nothing was sent"
            out.attempts += 1
            retry_after: float | None = None
            started = time.monotonic()
            try:
                response = self.session().post(sub.url, data=batch.body, allow_redirects=False,
                                               headers=sign_headers(batch.msg_id, batch.body, signing),
                                               timeout=(min(10.0, sub.timeout_seconds), sub.timeout_seconds))
                status: int | str = response.status_code
                retry_after = _retry_after(response.headers.get("Retry-After"))
                response.close()
            except requests.Timeout:
                status = "timeout"
            except requests.RequestException as exc:
                status = f"connection error ({type(exc).__name__})"
            ok = isinstance(status, int) and 200 <= status < 300
            try:
                self._audit(sub, key_id, batch, "push.result", attempt=attempt, status=status,
                            ms=round((time.monotonic() - started) * 1000), retry_after=retry_after)
            except AuditError as exc:
                log.error("delivery: audit result row not written for subscription %s: %s", sub.subscription_id,
                          type(exc).__name__)
                return "the audit log cannot be written; delivery stops until it can"
            if ok:
                return None
            error = (f"batch {batch.msg_id} of {batch.dataset} (versions {batch.first_version}..{batch.last_version})"
                     f" answered {status} on attempt {attempt} of {self.policy.attempts}")
            if attempt == self.policy.attempts:
                break
            wait = retry_wait(self.policy, attempt, retry_after, rng)
            if wait > self.policy.max_retry_after:
                return f"{error}; Retry-After {wait:.0f} s is beyond {self.policy.max_retry_after:.0f} s: next run"
            self.sleep(wait)
        log.warning("delivery: subscription %s: %s", sub.subscription_id, error)
        return error


def deliver(
    config: FeedConfig,
    *,
    subscription_ids: list[str] | None = None,
    policy: RetryPolicy | None = None,
    workers: int = 8,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Deliver every active subscription (or those named) up to the current snapshot; see the module doc."""
    started = time.perf_counter()
    pool = SnapshotPool(config.home, config.snapshot_cache, lease=config.snapshot_lease)
    store = SubscriptionStore(str(config.db_url), config.secret())
    audit = AuditLog.from_config(config)
    try:
        try:
            snapshot = pool.current()
        except NoSnapshot:
            return DeliveryReport(None, [], time.perf_counter() - started)
        wanted = set(subscription_ids) if subscription_ids else None
        subs = [s for s in store.list() if (wanted is None and s.status == ACTIVE)
                or (wanted is not None and s.subscription_id in wanted)]
        if wanted:
            missing = wanted - {s.subscription_id for s in subs}
            if missing:
                raise SubscriptionError(f"no subscription {', '.join(sorted(missing))}; `iehub subscriptions list`")
        run = _Run(config, store, audit, pool, snapshot, policy or RetryPolicy.from_env(), sleep)
        if not subs:
            return DeliveryReport(snapshot, [], time.perf_counter() - started)
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(subs))), thread_name_prefix="deliver") as ex:
            outcomes = list(ex.map(run.run, [s.subscription_id for s in subs]))
        return DeliveryReport(snapshot, outcomes, time.perf_counter() - started)
    finally:
        pool.close()
        store.dispose()
        audit.dispose()
