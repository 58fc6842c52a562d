"""The key holder's side of push subscriptions over the feed API: ``/v1/subscriptions…``.

A key manages only its own subscriptions: one made with another key is 404, as if absent, so
the API tells nobody what others subscribe to. The scope asked for can never exceed the key's
(:meth:`feeds.subscriptions.SubscriptionStore.create` refuses it: 403). The signing secret is
in the answer to the POST that makes it, and to a rotation, and never again.

Kept out of :mod:`feeds.app` (which registers these routes with one call) so the app module
stays about serving data; the store is opened on first use, since most deployments never
touch it.
"""

# No ``from __future__ import annotations``: FastAPI reads these endpoints' annotations at runtime.
import threading
from datetime import timedelta
from typing import Annotated, Any, Callable

from fastapi import Depends, FastAPI, Path
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from feeds.config import FeedConfig
from feeds.keys import Grant, KeyStore
from feeds.subscriptions import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PAUSE_AFTER,
    DEFAULT_TIMEOUT,
    MAX_BATCH_SIZE,
    Subscription,
    SubscriptionError,
    SubscriptionStore,
)

__all__ = ["add_subscription_routes"]


class SubscriptionIn(BaseModel):
    url: str = Field(max_length=2000, description="HTTPS endpoint the batches are POSTed to (http only to loopback).")
    datasets: list[str] | None = Field(default=None, max_length=20, description="Datasets within the key's; "
                                       "null for all the key may read.")
    districts: list[str] | None = Field(default=None, max_length=20, description="District codes within the "
                                        "key's; null for all of the key's.")
    from_change_version: int | None = Field(default=None, ge=0, description="First change version to deliver; "
                                            "default: what comes after the current snapshot.")
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE, description="Records per POST.")
    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT, gt=0, le=300, description="Seconds the hub waits "
                                   "for the 2xx of a batch.")
    pause_after_hours: float = Field(default=DEFAULT_PAUSE_AFTER / 3600, ge=0, description="Paused after "
                                     "failing this long without one acknowledgement.")


class ReplayIn(BaseModel):
    from_change_version: int = Field(ge=0, description="Deliver everything in scope from this version on again.")


class RotateIn(BaseModel):
    overlap_hours: float = Field(default=24.0, ge=0, le=24 * 30, description="How long the old secret signs too.")


def add_subscription_routes(app: FastAPI, config: FeedConfig, keystore: KeyStore,
                            authorised: Callable[..., Grant], api_error: type[Exception]) -> None:
    """Register the subscription endpoints on ``app``, authenticated by its ``authorised`` dependency."""
    from feeds.app import _responses  # the app's error documentation (loaded by now: the app calls us)

    lock = threading.Lock()
    holder: list[SubscriptionStore] = []

    def store() -> SubscriptionStore:
        with lock:
            if not holder:
                try:
                    holder.append(SubscriptionStore(str(config.db_url), config.secret(), keystore))
                except SubscriptionError as exc:
                    raise api_error(503, "key_store_unavailable", f"{exc}; retry later") from None
            return holder[0]

    def own(subscription_id: str, grant: Grant) -> Subscription:
        try:
            sub = store().get(subscription_id)
        except SubscriptionError:
            sub = None
        if sub is None or sub.key_id != grant.key_id:
            raise api_error(404, "not_found", f"no subscription {subscription_id!r} of this key; "
                                              "GET /v1/subscriptions lists yours")
        return sub

    def refused(exc: SubscriptionError) -> Exception:
        status, code = (403, "forbidden") if "outside the key" in str(exc) or "cannot be read" in str(exc) \
            else (400, "bad_parameter")
        return api_error(status, code, str(exc))

    SubscriptionId = Annotated[str, Path(pattern=r"^sub_[0-9a-f]{16}$", description="As POST returned it.")]
    Caller = Annotated[Grant, Depends(authorised)]
    tags = ["subscriptions"]

    @app.post("/v1/subscriptions", tags=tags, status_code=201, responses=_responses(400, 401, 403, 429, 503),
              summary="Subscribe an HTTPS endpoint to this key's changes and deletes (Standard Webhooks)")
    def create(body: SubscriptionIn, grant: Caller) -> JSONResponse:
        s = store()
        try:
            sub, secret = s.create(keystore.get(grant.key_id), body.url, body.datasets, body.districts,
                                   from_version=body.from_change_version, snapshots=config.home,
                                   batch_size=body.batch_size,
                                   timeout_seconds=body.timeout_seconds,
                                   pause_after_seconds=body.pause_after_hours * 3600)
        except SubscriptionError as exc:
            raise refused(exc) from None
        return JSONResponse({**sub.public(), "secret": secret}, status_code=201)

    @app.get("/v1/subscriptions", tags=tags, responses=_responses(401, 429, 503), summary="This key's subscriptions (never their secrets)")
    def list_(grant: Caller) -> dict[str, Any]:
        return {"subscriptions": [s.public() for s in store().list(key_id=grant.key_id)]}

    @app.get("/v1/subscriptions/{subscription_id}", tags=tags, responses=_responses(400, 401, 404, 429, 503),
             summary="One subscription: status, acknowledged versions")
    def get(subscription_id: SubscriptionId, grant: Caller) -> dict[str, Any]:
        return own(subscription_id, grant).public()

    @app.delete("/v1/subscriptions/{subscription_id}", tags=tags, status_code=204,
                responses=_responses(400, 401, 404, 429, 503), summary="Delete a subscription")
    def delete(subscription_id: SubscriptionId, grant: Caller) -> Response:
        store().delete(own(subscription_id, grant).subscription_id)
        return Response(status_code=204)

    @app.post("/v1/subscriptions/{subscription_id}/pause", tags=tags, responses=_responses(400, 401, 404, 429, 503),
              summary="Stop deliveries for now")
    def pause(subscription_id: SubscriptionId, grant: Caller) -> dict[str, Any]:
        return store().pause(own(subscription_id, grant).subscription_id, "paused by the consumer").public()

    @app.post("/v1/subscriptions/{subscription_id}/resume", tags=tags, responses=_responses(400, 401, 404, 429, 503),
              summary="Deliver again from the last acknowledged change version")
    def resume(subscription_id: SubscriptionId, grant: Caller) -> dict[str, Any]:
        return store().resume(own(subscription_id, grant).subscription_id).public()

    @app.post("/v1/subscriptions/{subscription_id}/replay", tags=tags, responses=_responses(400, 401, 404, 429, 503),
              summary="Deliver everything in scope again from a change version")
    def replay(subscription_id: SubscriptionId, body: ReplayIn, grant: Caller) -> dict[str, Any]:
        return store().replay(own(subscription_id, grant).subscription_id, body.from_change_version).public()

    @app.post("/v1/subscriptions/{subscription_id}/rotate-secret", tags=tags,
              responses=_responses(400, 401, 404, 429, 503),
              summary="A new signing secret (in this answer only); the old one signs too during the overlap")
    def rotate(subscription_id: SubscriptionId, body: RotateIn, grant: Caller) -> dict[str, Any]:
        sub, secret = store().rotate_secret(own(subscription_id, grant).subscription_id,
                                            timedelta(hours=body.overlap_hours))
        return {**sub.public(), "secret": secret}
