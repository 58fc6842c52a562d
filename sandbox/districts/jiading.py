"""嘉定 (310114) district API: cursor paging (`nextCursor`), nested JSON (a project holds its
members), its own field names, an API key header, `modifiedSince` for incremental reads and
soft deletes (`deleted: true`)."""
from __future__ import annotations

import base64
import json
import threading
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from sandbox.districts.data import Project, base_projects, change_projects

DAY0 = date(2024, 3, 1)


def project_json(p: Project, deleted: bool = False) -> dict[str, Any]:
    return {"projId": p.project_id, "projName": p.title,
            "leader": {"orgName": p.lead_name, "creditCode": p.lead_uscc},
            "period": {"begin": "2024-02-30" if p.dirty else p.start.isoformat(), "end": p.end.isoformat()},
            "fundsWan": f"{p.budget_wan:.2f}", "industryTag": p.industry, "type": p.category, "state": p.status,
            "members": [dict(m) for m in p.members], "modifiedAt": p.updated, "deleted": deleted}


class JiadingApi:
    """Other code drives it through this class only: start, stop, mutate, records."""

    def __init__(self, *, seed: int, scale: float, api_key: str) -> None:
        self.seed, self.api_key, self.round = seed, api_key, 0
        self.projects = base_projects(seed, scale, "JD", DAY0, dirty_ratio=0.01)
        self.deleted: dict[str, Project] = {}
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def records(self) -> list[dict[str, Any]]:
        with self.lock:
            live = [project_json(p) for p in self.projects]
            gone = [project_json(p, deleted=True) for p in self.deleted.values()]
        return sorted(live + gone, key=lambda r: (r["modifiedAt"], r["projId"]))

    def mutate(self, changed: float = 0.01) -> dict[str, int]:
        with self.lock:
            self.round += 1
            day = DAY0 + timedelta(days=self.round)
            before = {p.project_id: p for p in self.projects}
            after = change_projects(self.projects, self.seed, "JD", self.round, changed, day)
            ids = {p.project_id for p in after}
            stamp = f"{day:%Y-%m-%d} 10:{self.round % 60:02d}:00"
            for pid, p in before.items():
                if pid not in ids:  # the API keeps deleted projects, flagged, so consumers can see it
                    p.updated = stamp
                    self.deleted[pid] = p
            self.projects = after
            return {"projects": len(after), "deleted": len(before) - len(ids & set(before))}

    def page(self, cursor: str | None, limit: int, since: str | None) -> dict[str, Any]:
        rows = self.records()
        if since:
            rows = [r for r in rows if r["modifiedAt"] >= since]
        offset = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
        chunk = rows[offset: offset + limit]
        nxt = offset + len(chunk)
        return {"status": "ok", "message": "", "result": {
            "items": chunk, "nextCursor": base64.urlsafe_b64encode(str(nxt).encode()).decode() if nxt < len(rows) else None}}

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                # the sandbox's own control endpoint (not part of the district's API): change the data
                if urlparse(self.path).path != "/sandbox/mutate" or self.headers.get("X-Api-Key") != api.api_key:
                    self._send(404, {"status": "not_found", "message": self.path})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                self._send(200, {"status": "ok", "result": api.mutate(float(body.get("changed", 0.01)))})

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if self.headers.get("X-Api-Key") != api.api_key:
                    self._send(401, {"status": "denied", "message": "API key missing or wrong"})
                    return
                if url.path != "/open/v2/projects":
                    self._send(404, {"status": "not_found", "message": url.path})
                    return
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                try:
                    limit = min(int(q.get("limit", "100")), 200)  # a silent cap, as such APIs have
                    self._send(200, api.page(q.get("cursor"), limit, q.get("modifiedSince")))
                except (ValueError, UnicodeDecodeError):
                    self._send(200, {"status": "bad_request", "message": "bad cursor or limit", "result": None})

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        h, p = self._server.server_address[:2]
        return f"http://{h}:{p}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
