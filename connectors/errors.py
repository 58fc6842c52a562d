"""Connector errors, split once into what to do and who must act.

Why one table: every retry decision in the REST kind goes through `classify`, so a reader can
see the whole error policy (Airbyte-style) in one place instead of in scattered try blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(str, Enum):
    RETRY = "retry"          # transient: back off and try the same request again
    REFRESH_AUTH = "refresh"  # the token is no longer good: get a new one, then retry
    FAIL = "fail"             # retrying cannot help


class Actor(str, Enum):
    CONFIGURATION = "configuration"  # the spec or credentials are wrong: a data engineer acts
    SOURCE = "source"                # the source system misbehaves: its owner acts
    TRANSIENT = "transient"          # nobody: it passes by itself


class ConnectorError(Exception):
    """Base for every connector failure; the message names source, stream, endpoint and page."""

    def __init__(self, message: str, *, source: str = "", stream: str = "", endpoint: str = "",
                 page: int | str | None = None, actor: Actor = Actor.SOURCE) -> None:
        self.source, self.stream, self.endpoint, self.page, self.actor = source, stream, endpoint, page, actor
        self.message = message  # without the [where; to act] tail, for callers that re-word it
        where = ", ".join(
            part for part in (
                f"source {source}" if source else "",
                f"stream {stream}" if stream else "",
                f"endpoint {endpoint}" if endpoint else "",
                f"page {page}" if page is not None else "",
            ) if part
        )
        super().__init__(f"{message} [{where}; to act: {actor.value}]" if where else message)


class SpecError(ConnectorError):
    """A source spec is invalid; raised before anything runs."""

    def __init__(self, message: str) -> None:
        super().__init__(message, actor=Actor.CONFIGURATION)


class RetriableError(ConnectorError):
    """A transient failure the retry policy may try again; `wait_hint` carries Retry-After."""

    def __init__(self, message: str, *, wait_hint: float | None = None, refresh_auth: bool = False,
                 **where: object) -> None:
        self.wait_hint = wait_hint
        self.refresh_auth = refresh_auth
        self.reason = message
        super().__init__(message, actor=Actor.TRANSIENT, **where)  # type: ignore[arg-type]


class FatalError(ConnectorError):
    """A failure that retrying cannot fix (bad credentials, bad parameters, a looping source)."""


@dataclass(frozen=True)
class Decision:
    action: Action
    actor: Actor
    reason: str
    wait_hint: float | None = None


# HTTP status → decision. Business codes inside a 200 envelope are mapped by the spec
# (`http.business_codes`), because every platform numbers them its own way.
_STATUS_TABLE: dict[int, tuple[Action, Actor, str]] = {
    400: (Action.FAIL, Actor.CONFIGURATION, "the source rejected the request parameters"),
    401: (Action.REFRESH_AUTH, Actor.TRANSIENT, "the access token was refused"),
    403: (Action.FAIL, Actor.CONFIGURATION, "the credentials lack permission"),
    404: (Action.FAIL, Actor.CONFIGURATION, "the endpoint does not exist"),
    408: (Action.RETRY, Actor.TRANSIENT, "the source timed out"),
    429: (Action.RETRY, Actor.TRANSIENT, "the source is rate limiting"),
}


def classify_status(status: int, retry_after: str | None = None) -> Decision:
    """Decide what an HTTP status means; 5xx are transient, unknown 4xx are fatal."""
    wait = parse_retry_after(retry_after)
    if status in _STATUS_TABLE:
        action, actor, reason = _STATUS_TABLE[status]
        return Decision(action, actor, f"HTTP {status}: {reason}", wait)
    if 500 <= status < 600:
        return Decision(Action.RETRY, Actor.TRANSIENT, f"HTTP {status}: the source failed", wait)
    if 400 <= status < 500:
        return Decision(Action.FAIL, Actor.CONFIGURATION, f"HTTP {status}: request refused")
    return Decision(Action.FAIL, Actor.SOURCE, f"HTTP {status}: unexpected status")


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; HTTP-dates are rare in these systems and treated as 1 s."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0
