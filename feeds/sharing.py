"""Share classes and access requests: which datasets may leave the hub, to whom, and on whose decision.

Every dataset carries a share class in its schema (:data:`schemas.SHARE_CLASSES`):

* 无条件共享 ``unconditional``: any key whose scope names it (or ``all``);
* 有条件共享 ``conditional``: only under an approved access request stating purpose and scope,
  with an expiry. A platform files a request (``iehub access request`` or
  ``POST /v1/access-requests`` with its key); an approver decides with a reason
  (``iehub access approve|reject``). An approval for a key widens that key to the request's
  datasets, within the request's districts, until the approval expires; an approval without a
  key is what ``iehub keys create --approved-request ID`` issues a key against (the key's expiry
  is capped at the approval's). The CLI never issues conditional data without an approved request;
  :meth:`feeds.keys.KeyStore.create` is the mechanism below that policy, for code and tests;
* 不予共享 ``not_shared``: never leaves the hub. :func:`servable` is the one gate every way out
  asks — the feed API (unknown dataset, 404), push subscriptions and bulk exports (refused).

Why approvals live in their own table rather than rewriting the key's ``datasets``: an
approval expires on its own date, independent of the key's, and the request is the record of
who asked, for what purpose, and who decided why — rewriting the key would lose all three.
Every step (request, approve, reject, issue) is appended to the keyed audit chain
(:mod:`feeds.audit`); purposes and reasons are stored, never logged.

Fail closed: an access store that cannot be read raises :class:`AccessStoreUnavailable`, which
the API answers with 503 like the key store; nothing conditional is served on a guess.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from feeds.datasets import DATASETS, Dataset
from feeds.keys import Grant, KeyStoreError, _scope, driver_reason, feed_engine
from schemas import CODE_LISTS, ENTITIES, SHARE_CLASSES
from warehouse.sqlstore import UtcDateTime

if TYPE_CHECKING:
    from feeds.audit import AuditLog

__all__ = [
    "AccessError",
    "AccessRequest",
    "AccessStore",
    "AccessStoreUnavailable",
    "ACCESS_AUDIT_DATASET",
    "check_issue",
    "DEFAULT_DECISION_DAYS",
    "conditional_in",
    "effective_grant",
    "servable",
    "served_datasets",
    "share_class",
    "share_label",
    "withheld_fields",
]

#: Requests not decided within this many days are flagged overdue (``IEHUB_ACCESS_DECISION_DAYS``).
DEFAULT_DECISION_DAYS = 10
#: The audit rows of access decisions carry this in their ``dataset`` column (the datasets are in params).
ACCESS_AUDIT_DATASET = "access"
_PURPOSE_MAX = 2000
_STATUSES = ("pending", "approved", "rejected")


# -- share classes ---------------------------------------------------------------------------


def _name(dataset: str | Dataset) -> str:
    return dataset.name if isinstance(dataset, Dataset) else dataset


def share_class(dataset: str | Dataset) -> str:
    """``unconditional``, ``conditional`` or ``not_shared``; KeyError for an unknown dataset."""
    name = _name(dataset)
    if name not in ENTITIES:
        raise KeyError(f"unknown dataset {name!r} (known: {', '.join(ENTITIES)})")
    return ENTITIES[name].share_class


def servable(dataset: str | Dataset) -> bool:
    """Whether the dataset may leave the hub at all (pull, push, export): False for 不予共享 and unknown names."""
    name = _name(dataset)
    return name in ENTITIES and ENTITIES[name].share_class != "not_shared"


def served_datasets() -> dict[str, Dataset]:
    """The datasets the feed API knows of: every one but the 不予共享 (``feeds.datasets.DATASETS`` leaves them out)."""
    return {name: ds for name, ds in DATASETS.items() if servable(name)}


def withheld_fields(dataset: str | Dataset) -> list[str]:
    """Fields declared 不予共享 on their own (a field may only withhold itself): never read, listed or exported."""
    return [f.name for f in ENTITIES[_name(dataset)].fields if f.share_class == "not_shared"]


def conditional_in(datasets: Iterable[str] | None) -> list[str]:
    """The 有条件共享 datasets among ``datasets`` (None: every dataset), in catalogue order."""
    wanted = set(ENTITIES) if datasets is None else set(datasets)
    return [n for n, e in ENTITIES.items() if n in wanted and e.share_class == "conditional"]


# -- access requests -------------------------------------------------------------------------

metadata = sa.MetaData()

access_requests = sa.Table(
    "access_requests",
    metadata,
    sa.Column("request_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("consumer", sa.String(200), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=True),  # the key the approval widens; NULL: for a new key
    sa.Column("datasets", sa.Text, nullable=False),  # JSON list
    sa.Column("districts", sa.Text, nullable=True),  # JSON list; NULL = every district
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.String(200), nullable=True),
    sa.Column("decided_at", UtcDateTime, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("expires_at", UtcDateTime, nullable=True),  # of the approval
)


class AccessError(ValueError):
    """A request cannot be filed or decided as asked; the message says what to do."""


class AccessStoreUnavailable(RuntimeError):
    """The access-request table cannot be read or written right now."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _load(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(json.loads(text))


@dataclass(frozen=True)
class AccessRequest:
    """One request and its decision, as listed and audited."""

    request_id: int
    consumer: str
    key_id: str | None
    datasets: frozenset[str]
    districts: frozenset[str] | None
    purpose: str
    requested_by: str
    requested_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    expires_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """``pending``, ``approved``, ``expired`` (an approval past its date) or ``rejected``."""
        now = now or _now()
        if self.status == "approved" and self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return self.status

    def active(self, now: datetime | None = None) -> bool:
        return self.state(now) == "approved"

    def overdue(self, days: int, now: datetime | None = None) -> bool:
        """Still pending ``days`` after it was filed."""
        return self.status == "pending" and (now or _now()) - self.requested_at >= timedelta(days=days)

    def covers(self, datasets: Iterable[str], districts: frozenset[str] | None) -> bool:
        """Whether this request's scope includes these datasets in these districts (None: every district)."""
        if not set(datasets) <= self.datasets:
            return False
        if self.districts is None:
            return True
        return districts is not None and districts <= self.districts

    def public(self) -> dict[str, Any]:
        """The request as the API returns it to the key that filed it."""
        return {
            "request_id": self.request_id, "consumer": self.consumer, "key_id": self.key_id,
            "datasets": sorted(self.datasets), "districts": None if self.districts is None else sorted(self.districts),
            "purpose": self.purpose, "status": self.state(), "requested_at": self.requested_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None, "reason": self.reason,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


def _request(row: Any) -> AccessRequest:
    return AccessRequest(row.request_id, row.consumer, row.key_id, frozenset(json.loads(row.datasets)),
                         _load(row.districts), row.purpose, row.requested_by, row.requested_at, row.status,
                         row.decided_by, row.decided_at, row.reason, row.expires_at)


class AccessStore:
    """Access requests in the feed database (SQLite or PostgreSQL), next to the keys; creates its table.

    ``audit`` (optional) receives one row per step; a step whose audit row cannot be written is
    not taken (the request stays as it was), so the chain holds every decision that counts.
    """

    def __init__(self, url: str, *, audit: AuditLog | None = None, cache_seconds: float = 5.0) -> None:
        self.url = url
        self.engine = feed_engine(url)
        self.audit = audit
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, list[AccessRequest]]] = {}
        self._lock = threading.Lock()
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7315100302)"))
            metadata.create_all(conn, checkfirst=True)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- filing and deciding ------------------------------------------------------------------

    def request(self, *, consumer: str, datasets: Iterable[str], districts: Iterable[str] | None, purpose: str,
                requested_by: str, key_id: str | None = None) -> AccessRequest:
        """File a pending request; AccessError when the scope or purpose is not acceptable."""
        consumer = (consumer or "").strip()
        if not consumer or len(consumer) > 200:
            raise AccessError("consumer must be a name of 1 to 200 characters")
        try:
            wanted = _scope(list(datasets), list(ENTITIES), "datasets")
            where = _scope(None if districts is None else list(districts), list(CODE_LISTS["district"].codes),
                           "districts")
        except KeyStoreError as exc:
            raise AccessError(str(exc)) from None
        if wanted is None:
            raise AccessError("name the datasets a request is for, not 'all'")
        never = sorted(d for d in wanted if not servable(d))
        if never:
            raise AccessError(f"dataset(s) {', '.join(never)} are 不予共享 (not shared) and cannot be requested")
        purpose = (purpose or "").strip()
        if len(purpose) < 4 or len(purpose) > _PURPOSE_MAX:
            raise AccessError(f"state the purpose in 4 to {_PURPOSE_MAX} characters (what the data is used for)")
        now = _now()
        values = dict(consumer=consumer, key_id=key_id, datasets=json.dumps(sorted(wanted)),
                      districts=None if where is None else json.dumps(sorted(where)), purpose=purpose,
                      requested_by=requested_by, requested_at=now, status="pending")
        with self.engine.begin() as conn:
            request_id = int(conn.execute(access_requests.insert().values(**values)).inserted_primary_key[0])
            req = self._get(conn, request_id)
        try:  # after the commit: the audit chain may live in this very SQLite file, which one writer holds
            self._audit("access.request", req, requested_by)
        except Exception:
            with self.engine.begin() as conn:
                conn.execute(access_requests.delete().where(access_requests.c.request_id == request_id))
            raise
        return req

    def approve(self, request_id: int, *, reason: str, approver: str, expires_in: timedelta) -> AccessRequest:
        """Approve a pending request until now + ``expires_in``; the scope takes effect at once."""
        if expires_in <= timedelta(0):
            raise AccessError(f"an approval needs a positive expiry (got {expires_in})")
        return self._decide(request_id, "approved", reason, approver, _now() + expires_in)

    def reject(self, request_id: int, *, reason: str, approver: str) -> AccessRequest:
        """Reject a pending request; nothing is granted."""
        return self._decide(request_id, "rejected", reason, approver, None)

    def _decide(self, request_id: int, status: str, reason: str, approver: str,
                expires_at: datetime | None) -> AccessRequest:
        reason = (reason or "").strip()
        if len(reason) < 2:
            raise AccessError("give the reason for the decision (--reason)")
        row = access_requests.c
        with self.engine.begin() as conn:
            req = self._get(conn, request_id)
            done = conn.execute(access_requests.update().where(row.request_id == request_id, row.status == "pending")
                                .values(status=status, reason=reason, decided_by=approver, decided_at=_now(),
                                        expires_at=expires_at)).rowcount
            if not done:
                raise AccessError(f"access request {request_id} was already {req.status} on "
                                  f"{req.decided_at:%Y-%m-%d %H:%M} UTC; file a new request to change it")
            req = self._get(conn, request_id)
        try:  # after the commit (see request); an unaudited decision is undone
            self._audit(f"access.{'approve' if status == 'approved' else 'reject'}", req, approver)
        except Exception:
            with self.engine.begin() as conn:
                conn.execute(access_requests.update().where(row.request_id == request_id).values(
                    status="pending", reason=None, decided_by=None, decided_at=None, expires_at=None))
            raise
        self._forget(req.key_id)
        return req

    def record_issue(self, request_id: int, *, key_id: str, operator: str) -> None:
        """Audit that a key was issued against an approved request (``iehub keys create --approved-request``)."""
        req = self.get(request_id)
        self._audit("access.issue_key", dataclasses.replace(req, key_id=key_id), operator)

    # -- reading ------------------------------------------------------------------------------

    def get(self, request_id: int) -> AccessRequest:
        with self.engine.connect() as conn:
            return self._get(conn, request_id)

    @staticmethod
    def _get(conn: sa.Connection, request_id: int) -> AccessRequest:
        row = conn.execute(sa.select(access_requests).where(access_requests.c.request_id == request_id)).first()
        if row is None:
            raise AccessError(f"no access request {request_id}; `iehub access list` shows them")
        return _request(row)

    def list(self, *, consumer: str | None = None, key_id: str | None = None) -> list[AccessRequest]:
        """Requests, oldest first, optionally of one consumer or one key."""
        query = sa.select(access_requests).order_by(access_requests.c.request_id)
        if consumer is not None:
            query = query.where(access_requests.c.consumer == consumer)
        if key_id is not None:
            query = query.where(access_requests.c.key_id == key_id)
        with self.engine.connect() as conn:
            return [_request(r) for r in conn.execute(query).all()]

    def approvals(self, key_id: str) -> list[AccessRequest]:
        """The key's active approvals (cached ``cache_seconds``; decisions here drop the cache at once)."""
        clock = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is None or clock - cached[0] >= self.cache_seconds:
            try:
                rows = self.list(key_id=key_id)
            except SQLAlchemyError as exc:
                raise AccessStoreUnavailable(f"the access requests cannot be read: {driver_reason(exc)}") from None
            cached = (clock, [r for r in rows if r.status == "approved"])
            with self._lock:
                self._cache[key_id] = cached
        now = _now()
        return [r for r in cached[1] if r.active(now)]

    def _forget(self, key_id: str | None) -> None:
        with self._lock:
            if key_id is None:
                self._cache.clear()
            else:
                self._cache.pop(key_id, None)

    def _audit(self, step: str, req: AccessRequest, actor: str) -> None:
        """One audit row per step; raises (so the transaction rolls back) when it cannot be written."""
        if self.audit is None:
            return
        params = {"request_id": req.request_id, "datasets": sorted(req.datasets),
                  "districts": None if req.districts is None else sorted(req.districts), "status": req.status,
                  "actor": actor[:200], "expires_at": req.expires_at.isoformat() if req.expires_at else None,
                  # purpose and reason are kept in the request table; the chain seals their digest
                  "purpose_sha256": hashlib.sha256(req.purpose.encode()).hexdigest(),
                  "reason_sha256": hashlib.sha256(req.reason.encode()).hexdigest() if req.reason else None}
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        self.audit.append(key_id=req.key_id or "-", consumer=req.consumer, dataset=ACCESS_AUDIT_DATASET,
                          endpoint=step, params=params, rows=0, fields=[], personal=False, digest=digest,
                          snapshot="-")


# -- what a key may read ---------------------------------------------------------------------


def effective_grant(grant: Grant, dataset: str | Dataset, approvals: Iterable[AccessRequest] = ()) -> Grant | None:
    """The grant under which ``grant``'s key reads ``dataset``, or None when it may not read it at all.

    不予共享: None, always. 无条件共享: the key's own scope. 有条件共享: the key's own scope when it
    names the dataset (the CLI issues that only against an approved request), else the union of
    the districts of the key's active approvals for it, intersected with the key's districts.
    The returned grant's ``districts`` are the ones every endpoint must filter on.
    """
    name = _name(dataset)
    if not servable(name):
        return None
    ds = DATASETS[name]
    if ds.visible_to(grant.datasets, grant.districts) and (
            ENTITIES[name].share_class == "unconditional" or grant.allows_dataset(name)):
        return grant
    if ENTITIES[name].share_class != "conditional":
        return None
    covering = [a for a in approvals if name in a.datasets and a.active()]
    if not covering:
        return None
    approved: frozenset[str] | None = frozenset()
    for a in covering:
        approved = None if a.districts is None or approved is None else approved | a.districts
    if grant.districts is None:
        districts = approved
    elif approved is None:
        districts = grant.districts
    else:
        districts = grant.districts & approved
    if districts is not None and not districts:
        return None
    narrowed = dataclasses.replace(grant, datasets=frozenset({name}), districts=districts)
    return narrowed if ds.visible_to(narrowed.datasets, narrowed.districts) else None


def share_label(name: str) -> dict[str, str]:
    """The share class as the catalogue shows it: code, zh and en."""
    code = share_class(name)
    return {"code": code, "zh": SHARE_CLASSES[code], "en": code.replace("_", " ")}


def check_issue(datasets: Iterable[str] | None, districts: Iterable[str] | None, consumer: str,
                approved: AccessRequest | None) -> None:
    """The policy of ``iehub keys create``: conditional datasets only against an approved, covering request.

    Scopes are validated first (same messages as the key store), then: 不予共享 datasets cannot be
    named; a key whose scope holds a 有条件共享 dataset (by name or through ``all``) needs
    ``approved``, an active approval for the same consumer covering those datasets and districts.
    AccessError says which and what to do.
    """
    try:
        wanted = _scope(None if datasets is None else list(datasets), list(ENTITIES), "datasets")
        where = _scope(None if districts is None else list(districts), list(CODE_LISTS["district"].codes),
                       "districts")
    except KeyStoreError as exc:
        raise AccessError(str(exc)) from None
    never = sorted(d for d in (wanted or ()) if not servable(d))
    if never:
        raise AccessError(f"dataset(s) {', '.join(never)} are 不予共享 (not shared): a key cannot be granted them")
    conditional = conditional_in(wanted)
    if not conditional:
        return
    if approved is None:
        raise AccessError(f"{', '.join(conditional)} {'is' if len(conditional) == 1 else 'are'} 有条件共享 "
                          "(conditional): file `iehub access request`, have it approved, then create the key with "
                          "--approved-request ID (or leave those datasets out)")
    if not approved.active():
        raise AccessError(f"access request {approved.request_id} is {approved.state()}, not approved; a key can "
                          "only be issued against an approved request that has not expired")
    if approved.consumer != consumer.strip():
        raise AccessError(f"access request {approved.request_id} is for {approved.consumer!r}, not {consumer!r}")
    if not approved.covers(conditional, where):
        raise AccessError(f"access request {approved.request_id} approves {', '.join(sorted(approved.datasets))} "
                          f"in {'every district' if approved.districts is None else ', '.join(sorted(approved.districts))}"
                          "; the key asks for more: narrow --datasets/--districts to what was approved")
