"""HTTP for REST sources: one retry policy, token refresh, envelope checks.

Retries run on tenacity (bounded attempts per request, exponential backoff with jitter,
Retry-After honoured) plus a retry budget per pass, so a sick source ends in one clear error
naming source, endpoint and page instead of an endless crawl.

A data answer comes back with its body as UTF-8 bytes next to the parsed envelope, so the
stream can turn the records into Arrow in bulk (DuckDB over the bodies) instead of
re-serialising every record in Python. Proxy and CA settings from the environment are resolved
once per client, not per request (requests re-reads the environment on every call otherwise,
about a tenth of its per-request cost).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from connectors.errors import Action, Actor, FatalError, RetriableError, classify_status
from connectors.secrets import Secret, mask, resolve_secret
from connectors.spec import ApiKeyAuth, ClientCredentialsAuth, RestSourceSpec

log = logging.getLogger(__name__)


def dig(data: Any, path: str | None) -> Any:
    """Follow a dotted path (`data.list`) into parsed JSON; None when any step is missing."""
    if path is None:
        return None
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


@dataclass
class RetryStats:
    """Counts over one pass, reported in logs and the sync result."""

    requests: int = 0
    retries: int = 0
    token_refreshes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.retries += 1
        key = reason.split(":")[0]
        self.reasons[key] = self.reasons.get(key, 0) + 1


@dataclass(frozen=True)
class Answer:
    """A checked data answer: the parsed envelope and its body as UTF-8 bytes (what was parsed)."""

    payload: dict[str, Any]
    body: bytes


class TokenAuth:
    """Client-credentials token, fetched lazily, refreshed before expiry or when refused."""

    def __init__(self, cfg: ClientCredentialsAuth, where: str) -> None:
        self.cfg = cfg
        self.client_id = resolve_secret(cfg.client_id.as_ref(), f"{where}: auth.client_id")
        self.client_secret = resolve_secret(cfg.client_secret.as_ref(), f"{where}: auth.client_secret")
        self._token: Secret | None = None
        self._expires_at = 0.0

    @property
    def secrets(self) -> list[Secret]:
        return [s for s in (self.client_id, self.client_secret, self._token) if s is not None]

    def valid(self, now: float) -> bool:
        return self._token is not None and now < self._expires_at - self.cfg.refresh_margin_seconds

    def invalidate(self) -> None:
        self._token = None

    def form(self) -> dict[str, str]:
        return {"grant_type": "client_credentials", "client_id": self.client_id.reveal(),
                "client_secret": self.client_secret.reveal()}

    def accept(self, payload: dict[str, Any], now: float) -> None:
        token = dig(payload, self.cfg.token_path)
        if not isinstance(token, str) or not token:
            raise FatalError(f"token response has no token at '{self.cfg.token_path}'")
        expires = dig(payload, self.cfg.expires_in_path)
        self._token = Secret(token)
        self._expires_at = now + (float(expires) if isinstance(expires, (int, float, str)) and str(expires).replace(".", "", 1).isdigit() else 300.0)

    def header(self) -> dict[str, str]:
        assert self._token is not None
        return {"Authorization": f"Bearer {self._token.reveal()}"}


class RestClient:
    """Sends GETs for a source spec and returns checked, parsed envelopes."""

    def __init__(self, spec: RestSourceSpec, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.base_url = spec.resolved_base_url()
        self.session = session or requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": "iehub/0.1"})
        self.sleep = sleep
        self.clock = clock
        self.auth = TokenAuth(spec.auth, f"spec {spec.name}") if isinstance(spec.auth, ClientCredentialsAuth) else None
        self.static_secrets: list[Secret] = []
        if isinstance(spec.auth, ApiKeyAuth):  # a static key: one header on every request, masked in errors
            key = resolve_secret(spec.auth.key.as_ref(), f"spec {spec.name}: auth.key")
            self.static_secrets.append(key)
            self.session.headers[spec.auth.header] = key.reveal()
        self.stats = RetryStats()
        # HTTP(S)_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE as requests would read them, read once:
        # every request of a client goes to the one base URL.
        env = self.session.merge_environment_settings(self.base_url, {}, None, None, None)
        self._proxies, self._verify = env.get("proxies") or {}, env.get("verify", True)
        self.session.trust_env = False

    # -- public -----------------------------------------------------------------------------
    def get(self, path: str, params: dict[str, Any], *, stream: str, page: int | str | None) -> dict[str, Any]:
        """GET with the full policy; returns the parsed JSON envelope."""
        return self.fetch(path, params, stream=stream, page=page).payload

    def fetch(self, path: str, params: dict[str, Any], *, stream: str, page: int | str | None) -> Answer:
        """GET with the full policy; returns the parsed envelope with the body it was parsed from."""
        return self._with_retries(lambda: self._attempt_get(path, params, stream=stream, page=page),
                                  stream=stream, endpoint=path, page=page)

    def close(self) -> None:
        self.session.close()

    # -- internals --------------------------------------------------------------------------
    def _secrets(self) -> list[Secret]:
        return (self.auth.secrets if self.auth else []) + self.static_secrets

    def _with_retries(self, fn: Callable[[], Answer], *, stream: str, endpoint: str,
                      page: int | str | None) -> Answer:
        policy = self.spec.http
        exp_wait = wait_exponential_jitter(initial=policy.backoff_seconds, max=policy.backoff_max_seconds,
                                           jitter=policy.backoff_seconds)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RetriableError) and exc.wait_hint is not None:
                return min(exc.wait_hint, policy.retry_after_max_seconds)
            if isinstance(exc, RetriableError) and exc.refresh_auth:
                return 0.0
            return exp_wait(state)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = exc.reason if isinstance(exc, RetriableError) else str(exc)
            self.stats.count(reason)
            if self.stats.retries > policy.retry_budget:
                raise FatalError(f"retry budget of {policy.retry_budget} retries exhausted (last: {reason})",
                                 source=self.spec.name, stream=stream, endpoint=endpoint, page=page)
            log.warning("retrying %s %s page %s after: %s (attempt %d)", self.spec.name, endpoint, page,
                        reason, state.attempt_number)

        retrying = Retrying(stop=stop_after_attempt(policy.max_attempts), wait=wait,
                            retry=retry_if_exception_type(RetriableError), before_sleep=before_sleep,
                            sleep=self.sleep, reraise=True)
        try:
            return retrying(fn)
        except RetriableError as exc:  # name the request that failed: the token request is not the data endpoint
            raise FatalError(f"gave up after {policy.max_attempts} attempts: {exc.reason}", source=self.spec.name,
                             stream=stream, endpoint=exc.endpoint or endpoint, page=exc.page) from None

    def _ensure_token(self, stream: str) -> None:
        if self.auth is None or self.auth.valid(self.clock()):
            return
        path = self.spec.auth.token_url  # type: ignore[union-attr]
        try:
            answer = self._send("POST", path, data=self.auth.form(), stream=stream, page=None, authorised=False)
            self.auth.accept(answer.payload, self.clock())
        except RetriableError as exc:
            raise self._retriable(f"token request POST {path}: {exc.reason}", stream=stream, endpoint=path,
                                  page=None, wait_hint=exc.wait_hint) from None
        except FatalError as exc:  # the token request failed, not the data endpoint it was fetched for
            raise FatalError(f"the token request (POST {path}) failed: {mask(exc.message, self._secrets())}",
                             source=self.spec.name, stream=stream, endpoint=path,
                             actor=exc.actor if exc.endpoint else Actor.SOURCE) from None
        self.stats.token_refreshes += 1
        log.info("%s: obtained an access token", self.spec.name)

    def _attempt_get(self, path: str, params: dict[str, Any], *, stream: str, page: int | str | None) -> Answer:
        self._ensure_token(stream)
        return self._send("GET", path, params=params, stream=stream, page=page, authorised=True)

    def _retriable(self, reason: str, *, stream: str, endpoint: str, page: int | str | None,
                   wait_hint: float | None = None, refresh: bool = False) -> RetriableError:
        return RetriableError(reason, wait_hint=wait_hint, refresh_auth=refresh, source=self.spec.name,
                              stream=stream, endpoint=endpoint, page=page)

    def _send(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              data: dict[str, str] | None = None, stream: str, page: int | str | None,
              authorised: bool) -> Answer:
        policy = self.spec.http
        where = {"stream": stream, "endpoint": path, "page": page}
        headers = self.auth.header() if (authorised and self.auth) else {}
        self.stats.requests += 1
        try:
            resp = self.session.request(method, self.base_url + path, params=params, data=data, headers=headers,
                                        timeout=(policy.connect_timeout_seconds, policy.timeout_seconds),
                                        proxies=self._proxies, verify=self._verify)
            body = resp.content  # reading the body may itself fail on a reset
        except requests.Timeout:
            raise self._retriable("timeout: no answer in time", **where) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            raise self._retriable(f"connection: {mask(type(exc).__name__, self._secrets())}", **where) from None
        if resp.status_code != 200:
            decision = classify_status(resp.status_code, resp.headers.get("Retry-After"))
            if decision.action is Action.REFRESH_AUTH and authorised and self.auth is not None:
                self.auth.invalidate()
                raise self._retriable(f"auth: {decision.reason}", refresh=True, **where)
            if decision.action is Action.REFRESH_AUTH and not authorised:  # refused at the token endpoint
                raise FatalError(f"HTTP {resp.status_code}: the client credentials were refused",
                                 source=self.spec.name, actor=Actor.CONFIGURATION, **where)
            if decision.action is Action.RETRY:
                raise self._retriable(f"http {resp.status_code}: {decision.reason}", wait_hint=decision.wait_hint, **where)
            raise FatalError(mask(decision.reason, self._secrets()), source=self.spec.name, actor=decision.actor, **where)
        payload, body = self._decode(body, resp.headers.get("Content-Type", ""), where)
        return Answer(self._check_envelope(payload, where, authorised), body)

    def _decode(self, body: bytes, content_type: str, where: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """The parsed JSON object and the body as UTF-8 (re-encoded when it came in GB18030)."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            try:  # Chinese platforms sometimes send GBK while declaring UTF-8
                text = body.decode("gb18030")
                payload = orjson.loads(text)
                body = text.encode("utf-8")
                log.warning("%s: %s answered in GB18030 while declaring %r", self.spec.name, where["endpoint"],
                            content_type)
            except (UnicodeDecodeError, orjson.JSONDecodeError):
                raise self._retriable(f"body: truncated or invalid JSON ({len(body)} bytes)", **where) from None
        if not isinstance(payload, dict):
            raise FatalError(f"expected a JSON object, got {type(payload).__name__}", source=self.spec.name, **where)
        return payload, body

    def _check_envelope(self, payload: dict[str, Any], where: dict[str, Any], authorised: bool) -> dict[str, Any]:
        env = self.spec.envelope
        if env.code_path is None:
            return payload
        code = dig(payload, env.code_path)
        if code in env.success_codes or str(code) in {str(c) for c in env.success_codes}:
            return payload
        message = mask(str(dig(payload, env.message_path) or ""), self._secrets())[:200]
        action = env.business_codes.get(str(code), "fail")
        if action == "refresh" and authorised and self.auth is not None:
            self.auth.invalidate()
            raise self._retriable(f"auth: business code {code} ({message})", refresh=True, **where)
        if action == "retry":
            raise self._retriable(f"business {code}: {message}", **where)
        raise FatalError(f"the source answered business error {code}: {message}", source=self.spec.name, **where)
