"""A real webhook receiver on loopback for the delivery tests, the DAG test and bench/delivery.py.

It verifies every request with the Standard Webhooks reference library (``standardwebhooks``),
once per secret it is told to expect (a rotation overlap sends both signatures), answers the
next planned fault if any (``500``, ``429:<seconds>`` with Retry-After, ``timeout:<seconds>``
which answers only after sleeping that long), and otherwise 204. Every request it read is kept,
in arrival order, even those it answered with a fault (as a real receiver may have applied them).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    msg_id: str
    payload: dict[str, Any]
    answered: int | str


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    requests: int = 0
    rejected: int = 0  # signature checks that failed (answered 401)
    acked_at: float | None = None  # monotonic time of the last 2xx answer

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0  # requests being handled (a "timeout" fault sleeps before it records)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.handle(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/iehub"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def plan(self, faults: Iterable[str]) -> None:
        with self._lock:
            self.faults = list(faults)

    def _settled(self, wait_seconds: float = 10.0) -> None:
        """Wait (holding the lock) until every request in flight has been handled: a request the hub
        gave up on (a "timeout" fault) is recorded only when its sleep ends."""
        if not self._idle.wait_for(lambda: self._in_flight == 0, timeout=wait_seconds):
            raise AssertionError(f"receiver still handling {self._in_flight} request(s) after {wait_seconds} s")

    def clear(self) -> None:
        """Forget what was received, after the requests in flight (so none lands after the clear)."""
        with self._idle:
            self._settled()
            self.received.clear()
            self.requests = self.rejected = 0

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._lock:
            self._in_flight += 1
        try:
            self._handle(request, body)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = dict(request.headers.items())
        with self._lock:
            self.requests += 1
            fault = self.faults.pop(0) if self.faults else "ok"
        try:
            for secret in self.secrets:  # each expected secret must verify on its own
                payload = Webhook(secret).verify(body, headers)
        except WebhookVerificationError:
            with self._lock:
                self.rejected += 1
            self._answer(request, 401)
            return
        kind, _, arg = fault.partition(":")
        answered: int | str = 204
        extra: dict[str, str] = {}
        if kind == "500":
            answered = 500
        elif kind == "429":
            answered, extra = 429, {"Retry-After": arg or "1"}
        elif kind == "timeout":
            time.sleep(float(arg or 2))
            answered = "timeout"
        with self._lock:
            self.received.append(Received(headers["webhook-id"], payload, answered))
        try:
            self._answer(request, 200 if answered == "timeout" else int(answered), extra)
        except OSError:  # the hub gave up waiting and closed the connection
            pass

    def _answer(self, request: BaseHTTPRequestHandler, status: int, headers: dict[str, str] | None = None) -> None:
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Length", "0")
        request.end_headers()
        if 200 <= status < 300:
            with self._lock:
                self.acked_at = time.monotonic()

    def messages(self) -> list[Received]:
        """Every message received so far, in arrival order, once the requests in flight are handled."""
        with self._idle:
            self._settled()
            return list(self.received)

    def unique(self) -> list[Received]:
        """Messages de-duplicated by webhook-id (first arrival kept), in arrival order."""
        seen: dict[str, Received] = {}
        for r in self.messages():
            if r.msg_id in seen:
                assert json.dumps(seen[r.msg_id].payload["data"], sort_keys=True) == \
                    json.dumps(r.payload["data"], sort_keys=True), f"{r.msg_id} re-sent with other content"
            else:
                seen[r.msg_id] = r
        return list(seen.values())

    def records(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """{(dataset, 'changes'|'deletes'): records} from the de-duplicated messages, in arrival order."""
        out: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in self.unique():
            data = r.payload["data"]
            for kind in ("changes", "deletes"):
                out.setdefault((data["dataset"], kind), []).extend(data[kind])
        return {k: v for k, v in out.items() if v}
