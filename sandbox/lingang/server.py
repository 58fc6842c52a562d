"""HTTP face of the simulated Lingang platform (产教融合信息服务平台 1.0).

Why stdlib ``http.server``: the sandbox must not depend on the hub's stack, and
``ThreadingHTTPServer`` with HTTP/1.1 keep-alive is plenty when each response is one
pre-assembled ``bytes`` written with a single ``write`` (TCP_NODELAY on, so no
Nagle/delayed-ACK stalls). Responses mimic how such platforms behave: business errors in
HTTP 200 with a non-zero ``code``, a silent page-size cap, expired tokens answered in
two different ways, and injected faults (see ``faults.py``).
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import socket
import struct
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from .data import MODULES, LingangData, parse_ts
from .faults import FAULT_KINDS, FaultInjector, FaultPlan

log = logging.getLogger("sandbox.lingang")

#: API path segment per module
MODULE_PATHS: dict[str, str] = {
    "notices": "notice",
    "talent_demands": "talent/demand",
    "talent_supplies": "talent/supply",
    "cooperations": "cooperation",
    "rd_projects": "rd/project",
    "tech_services": "tech/service",
}
_LIST_ROUTES: dict[str, str] = {f"/api/v1/{p}/list": m for m, p in MODULE_PATHS.items()}

_JSON = "application/json;charset=UTF-8"
_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def _envelope(code: int, msg: str, data: Any = None) -> bytes:
    return orjson.dumps({"code": code, "msg": msg, "data": data})


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that remembers its open connections so ``stop`` can cut idle keep-alives."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], platform: LingangPlatform) -> None:
        self.platform = platform
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conns_lock:
            self.conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Per-request logging off: paths may carry nothing secret, but the volume drowns the stats line."""
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self.server.platform._dispatch(self, "GET")

    def do_POST(self) -> None:
        self.server.platform._dispatch(self, "POST")

    def do_PUT(self) -> None:
        self.server.platform._dispatch(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.platform._dispatch(self, "DELETE")


class LingangPlatform:
    """The simulated platform: data, tokens, faults, HTTP server and counters.

    Other code (tests, the demo, benchmarks) drives it through this class only.
    """

    def __init__(self, *, seed: int = 7, scale: float = 1.0, client_id: str, client_secret: str,
                 token_ttl: float = 7200.0, page_cap: int = 500, faults: FaultPlan | None = None,
                 dirty_ratio: float = 0.01) -> None:
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required")
        self.seed = seed
        self.scale = scale
        self.token_ttl = float(token_ttl)
        self.page_cap = int(page_cap)
        self.faults = faults
        self._client_id = client_id.encode()
        self._client_secret = client_secret.encode()
        self.data = LingangData(seed=seed, scale=scale, dirty_ratio=dirty_ratio)
        self._injector = FaultInjector(faults)
        self._tokens: dict[str, float] = {}
        self._expired_answers = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.stats: dict[str, Any] = {
            "requests": 0, "records_served": 0, "tokens_issued": 0,
            "faults": {k: 0 for k in FAULT_KINDS}, "status": {},
        }

    # ------------------------------------------------------------------ python API
    def records(self, module: str, *, include_deleted: bool = True) -> list[dict[str, Any]]:
        """Ground truth: the module's current records, as the API serialises them, in API order."""
        self._check_module(module)
        return self.data.records(module, include_deleted=include_deleted)

    def dirty_rows(self, module: str) -> dict[str, dict[str, Any]]:
        """Which generated records were made dirty and how: id -> {kind, field, normalisable}."""
        self._check_module(module)
        return {k: dict(v) for k, v in self.data.dirty[module].items()}

    def mutate(self, *, changed: float = 0.01, seed: int | None = None) -> dict[str, dict[str, int]]:
        """Update/insert/soft-delete ``changed`` of every module; counts per module."""
        return self.data.mutate(changed=changed, seed=seed)

    @property
    def url(self) -> str | None:
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread; returns the base URL (port 0 picks a free one)."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._server = _Server((host, port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="lingang-sandbox", daemon=True)
        self._thread.start()
        url = self.url
        assert url is not None
        return url

    def stop(self) -> None:
        """Stop serving, wake sleeping 'timeout' faults and cut open keep-alive connections."""
        srv = self._server
        if srv is None:
            return
        self._stopping.set()
        srv.shutdown()
        srv.server_close()
        with srv.conns_lock:
            conns = list(srv.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def serve_forever(self, host: str, port: int) -> None:
        """Serve in the foreground (the CLI); Ctrl-C stops."""
        self._stopping.clear()
        self._server = _Server((host, port), self)
        try:
            self._server.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self._stopping.set()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LingangPlatform:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stats_snapshot(self) -> dict[str, Any]:
        """A copy of ``stats`` safe to serialise while the server runs."""
        with self._lock:
            s = dict(self.stats)
            s["faults"] = dict(self.stats["faults"])
            s["status"] = dict(self.stats["status"])
        s["records"] = {m: self.data.size(m) for m in MODULES}
        s["clock"] = self.data.clock
        return s

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _check_module(module: str) -> None:
        if module not in MODULE_PATHS:
            raise KeyError(f"unknown module {module!r}; known: {', '.join(MODULES)}")

    def _count_fault(self, kind: str) -> None:
        with self._lock:
            self.stats["faults"][kind] += 1

    def _send(self, h: _Handler, status: int, body: bytes, *, ctype: str = _JSON,
              headers: tuple[tuple[str, str], ...] = (), records: int = 0) -> None:
        """Write status line, headers and body in one write (keep-alive, Content-Length always set)."""
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", "Server: nginx",
                f"Date: {formatdate(usegmt=True)}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
        for k, v in headers:
            head.append(f"{k}: {v}")
        if h.close_connection:
            head.append("Connection: close")
        else:
            head.append("Connection: keep-alive")
        h.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        with self._lock:
            st = self.stats
            st["records_served"] += records
            st["status"][str(status)] = st["status"].get(str(status), 0) + 1

    def _read_body(self, h: _Handler) -> bytes:
        try:
            n = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            n = 0
        return h.rfile.read(n) if n > 0 else b""

    def _dispatch(self, h: _Handler, method: str) -> None:
        with self._lock:
            self.stats["requests"] += 1
        try:
            body = self._read_body(h) if method in ("POST", "PUT") else b""
            parts = urlsplit(h.path)
            path = parts.path.rstrip("/") or "/"
            module = _LIST_ROUTES.get(path)
            if module is not None:
                if method != "GET":
                    return self._send(h, 405, _envelope(40500, "请求方法不支持 method not allowed"))
                return self._list(h, module, parts.query)
            if path == "/api/v1/auth/token":
                if method != "POST":
                    return self._send(h, 405, _envelope(40500, "请求方法不支持 method not allowed"))
                return self._token(h, body)
            if path == "/api/v1/health" and method == "GET":
                return self._send(h, 200, _envelope(0, "success", {"status": "UP"}))
            if path == "/sandbox/stats" and method == "GET":
                return self._send(h, 200, orjson.dumps(self.stats_snapshot()))
            if path == "/sandbox/mutate" and method == "POST":
                try:
                    args = orjson.loads(body) if body.strip() else {}
                    changed = float(args.get("changed", 0.01))
                    seed = args.get("seed")
                    seed = int(seed) if seed is not None else None
                except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                    return self._send(h, 400, _envelope(40001, "参数错误: body"))
                return self._send(h, 200, orjson.dumps(self.mutate(changed=changed, seed=seed)))
            return self._send(h, 404, _envelope(40400, "资源不存在 not found"))
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            h.close_connection = True
        except Exception:  # pragma: no cover - a bug in the sandbox should show, not hang the client
            log.exception("sandbox handler failed for %s %s", method, urlsplit(h.path).path)
            h.close_connection = True
            try:
                self._send(h, 500, _envelope(50000, "系统内部错误"))
            except OSError:
                pass

    # ------------------------------------------------------------------ token
    def _token(self, h: _Handler, body: bytes) -> None:
        d = self._injector.decide("/api/v1/auth/token", token_endpoint=True)
        if d.failing and self._gateway_fault(h, d):
            return
        ctype = (h.headers.get("Content-Type") or "").lower()
        form: dict[str, Any]
        try:
            if "json" in ctype:
                loaded = orjson.loads(body) if body else {}
                form = loaded if isinstance(loaded, dict) else {}
            else:
                form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        except orjson.JSONDecodeError:
            return self._send(h, 200, _envelope(40001, "参数错误: body"))
        if form.get("grant_type") != "client_credentials":
            return self._send(h, 200, _envelope(40001, "参数错误: grant_type"))
        cid = str(form.get("client_id") or "").encode()
        csec = str(form.get("client_secret") or "").encode()
        ok_id = hmac.compare_digest(cid, self._client_id)
        ok_secret = hmac.compare_digest(csec, self._client_secret)
        if not (ok_id and ok_secret):
            return self._send(h, 200, _envelope(40101, "客户端认证失败 invalid client"))
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            if len(self._tokens) > 100_000:  # a runaway client must not grow memory forever
                for old in sorted(self._tokens, key=self._tokens.__getitem__)[:50_000]:
                    del self._tokens[old]
            self._tokens[token] = now
            self.stats["tokens_issued"] += 1
        self._send(h, 200, _envelope(0, "success", {
            "accessToken": token, "expiresIn": int(math.ceil(self.token_ttl)), "tokenType": "Bearer"}))

    def _auth(self, h: _Handler, force_expired: bool) -> bool:
        """True when the bearer token is good; otherwise the error response has been sent."""
        auth = h.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        with self._lock:
            issued = self._tokens.get(token) if token else None
        if issued is None:
            self._send(h, 401, _envelope(40103, "无效的令牌 invalid token"))
            return False
        expired = time.monotonic() - issued > self.token_ttl
        if force_expired and not expired:
            self._count_fault("expire")
            expired = True
        if expired:
            with self._lock:
                n = self._expired_answers
                self._expired_answers += 1
            # Real platforms answer both ways; alternate so clients must handle each.
            self._send(h, 401 if n % 2 == 0 else 200, _envelope(40102, "令牌已过期 token expired"))
            return False
        return True

    # ------------------------------------------------------------------ faults
    def _gateway_fault(self, h: _Handler, d: Any) -> bool:
        """5xx / 429 as a gateway in front of the platform would send them; True when sent."""
        if d.failing == "5xx":
            self._count_fault("5xx")
            status = (500, 502, 503)[int(d.aux * 3)]
            if status == 502:
                body = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
                        b"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
                self._send(h, 502, body, ctype="text/html")
            elif status == 503:
                self._send(h, 503, _envelope(50300, "服务繁忙，请稍后重试 service unavailable"))
            else:
                self._send(h, 500, _envelope(50000, "系统内部错误 internal error"))
            return True
        if d.failing == "429":
            self._count_fault("429")
            retry = str(self.faults.retry_after if self.faults else 1)
            self._send(h, 429, _envelope(42900, "请求过于频繁 too many requests"), headers=(("Retry-After", retry),))
            return True
        return False

    # ------------------------------------------------------------------ list
    def _list(self, h: _Handler, module: str, query: str) -> None:
        d = self._injector.decide(h.path)
        if d.failing in ("5xx", "429") and self._gateway_fault(h, d):
            return
        if d.failing == "timeout":
            self._count_fault("timeout")
            self._stopping.wait(self.faults.timeout_seconds if self.faults else 3.0)
        if not self._auth(h, force_expired=d.failing == "expire"):
            return
        q = parse_qs(query, keep_blank_values=True)
        try:
            page = self._int_param(q, "page", 1)
            size = self._int_param(q, "pageSize", 20)
        except ValueError as e:
            return self._send(h, 200, _envelope(40001, f"参数错误: {e}"))
        since: int | None = None
        if "updatedSince" in q:
            since = parse_ts(q["updatedSince"][0].strip())
            if since is None:
                return self._send(h, 200, _envelope(40001, "参数错误: updatedSince"))
        size = min(size, self.page_cap)
        if d.shift:
            self.data.shift(module, d.aux)
            self._count_fault("shift")
        total, blobs = self.data.page(module, since, (page - 1) * size, size, drift=d.drift)
        if d.drift and blobs:
            self._count_fault("drift")
        if d.failing == "short" and blobs:
            drop = min(len(blobs), 1 + int(d.aux * 5))
            blobs = blobs[:-drop]
            self._count_fault("short")
        body = b'{"code":0,"msg":"success","data":{"total":%d,"list":[%b]}}' % (total, b",".join(blobs))
        if d.failing == "encoding":
            self._count_fault("encoding")
            body = body.decode("utf-8").encode("gbk", "replace")
        elif d.failing == "truncate":
            self._count_fault("truncate")
            body = body[: max(1, int(len(body) * (0.2 + 0.7 * d.aux)))]
        elif d.failing == "reset":
            self._count_fault("reset")
            return self._reset(h, body, d.aux)
        self._send(h, 200, body, records=len(blobs))

    @staticmethod
    def _int_param(q: dict[str, list[str]], name: str, default: int) -> int:
        if name not in q:
            return default
        raw = q[name][0].strip()
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
            raise ValueError(name)
        return int(raw)

    def _reset(self, h: _Handler, body: bytes, aux: float) -> None:
        """Headers promising the whole body, part of it, then an abortive close (RST)."""
        head = (f"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: {formatdate(usegmt=True)}\r\n"
                f"Content-Type: {_JSON}\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
        cut = max(1, int(len(body) * (0.1 + 0.6 * aux)))
        h.wfile.write(head.encode("latin-1") + body[:cut])
        h.wfile.flush()
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        h.close_connection = True
        with self._lock:
            self.stats["status"]["reset"] = self.stats["status"].get("reset", 0) + 1
