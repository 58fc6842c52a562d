"""Names shared by the DAGs, and the compiled spec summary they are parsed from.

The DAG files run at every parse (the DAG processor's loop and every task start), so they read
a small JSON summary of the specs instead of the specs: which sources and streams exist, their
titles and pool sizes. The summary is compiled once per change of the spec files (their paths,
sizes and mtimes form the cache key) by a child process that validates the specs fully; the
parsing process itself then imports only this module and `json` — never pyarrow, duckdb,
pandas or Great Expectations, which the full spec validation pulls in through the mappings.
A spec that fails validation fails the compile, and the DAG file's import error says why.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

WAREHOUSE_ASSET_URI = "iehub://warehouse/core"
SUMMARY_VERSION = 1
DEFAULT_POOL_SLOTS = 2  # concurrent extract tasks per source when the spec does not say
_SHIPPED_SPECS = Path(__file__).resolve().parents[1] / "connectors" / "specs"


def std_asset_uri(source: str, entity: str) -> str:
    return f"iehub://lake/std/{entity}/{source}"


def pool_name(source: str) -> str:
    return f"iehub_source_{source}"


def _spec_files() -> list[Path]:
    """The spec files in search order (mirrors connectors.spec.spec_dirs without importing it)."""
    dirs = [Path(p).expanduser() for p in os.environ.get("IEHUB_SPEC_DIR", "").split(os.pathsep) if p]
    seen: dict[str, Path] = {}
    for folder in [*dirs, _SHIPPED_SPECS]:
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                seen.setdefault(path.stem, path)
    return [seen[k] for k in sorted(seen)]


def spec_digest() -> str:
    """Cache key of the summary: every spec file's path, size and mtime, and this format's version."""
    h = hashlib.sha256(f"v{SUMMARY_VERSION}".encode())
    for path in _spec_files():
        st = path.stat()
        h.update(f"|{path}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _cache_dir() -> Path:
    home = os.environ.get("IEHUB_HOME")
    base = Path(home).expanduser() / "airflow" if home else Path.home() / ".cache" / "iehub"
    return base / "spec-summary"


def compile_summary() -> dict[str, Any]:
    """The summary from the specs, each fully validated (heavy: call it in a child process)."""
    from connectors.spec import available_sources, load_spec
    from schemas import get_entity

    sources: dict[str, Any] = {}
    for name in available_sources():
        spec = load_spec(name)
        http = getattr(spec, "http", None)
        slots = getattr(spec, "max_parallel_requests", None) or getattr(http, "max_parallel_requests", None)
        streams = {}
        for stream, st in spec.streams.items():
            entity = get_entity(st.entity)
            streams[stream] = {"entity": st.entity, "doc": f"{entity.zh} / {entity.en}. Grain: {entity.grain}",
                               "primary_key": st.primary_key}
        sources[name] = {"title": spec.title or name, "kind": spec.kind,
                         "pool_slots": int(slots or DEFAULT_POOL_SLOTS), "streams": streams}
    return {"version": SUMMARY_VERSION, "sources": sources}


@lru_cache(maxsize=4)
def _summary(digest: str) -> dict[str, Any]:
    cache = _cache_dir() / f"{digest}.json"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "iehub.assets", str(cache)], capture_output=True, text=True,
                              cwd=str(Path(__file__).resolve().parents[1]))
        if done.returncode != 0 or not cache.exists():
            raise RuntimeError(f"compiling the source specs failed: {done.stderr.strip()[-2000:]}")
    return json.loads(cache.read_text(encoding="utf-8"))


def spec_summary() -> dict[str, Any]:
    """{source: {title, kind, pool_slots, streams: {stream: {entity, doc, primary_key}}}} (cached)."""
    return _summary(spec_digest())["sources"]


def source_streams() -> dict[str, dict[str, str]]:
    """{source: {stream: entity}} from the specs (local files only: no network, no secrets)."""
    return {src: {s: v["entity"] for s, v in info["streams"].items()} for src, info in spec_summary().items()}


def announce_landings(landed: list[dict[str, Any]]) -> list[str]:
    """Tell a running Airflow that a CLI sync landed batches: one Asset event per landed stream.

    The same events the DAGs' `land` tasks emit, so the warehouse DAG (scheduled on these Assets)
    follows a CLI sync too. Through Airflow's REST API (`POST /api/v2/assets/events`), the way
    Airflow 3 lets an outside process emit Asset events; configured by IEHUB_AIRFLOW_API_URL and
    either IEHUB_AIRFLOW_API_TOKEN (a bearer token) or IEHUB_AIRFLOW_API_USER/_PASSWORD (exchanged
    at `/auth/token`). Without IEHUB_AIRFLOW_API_URL nothing is sent. Returns one line per outcome.
    """
    base = os.environ.get("IEHUB_AIRFLOW_API_URL", "").rstrip("/")
    landed = [r for r in landed if r.get("rows_loaded") or r.get("rows_quarantined")]
    if not base or not landed:
        return []
    import requests

    with requests.Session() as http:
        token = os.environ.get("IEHUB_AIRFLOW_API_TOKEN")
        user = os.environ.get("IEHUB_AIRFLOW_API_USER")
        try:
            if not token and user:
                got = http.post(f"{base}/auth/token", json={"username": user,
                                                            "password": os.environ.get("IEHUB_AIRFLOW_API_PASSWORD", "")},
                                timeout=10)
                got.raise_for_status()
                token = got.json()["access_token"]
            if token:
                http.headers["Authorization"] = f"Bearer {token}"
            lines = []
            for r in landed:
                uri = std_asset_uri(r["source"], r["entity"])
                found = http.get(f"{base}/api/v2/assets", params={"uri_pattern": uri, "limit": 100}, timeout=10)
                found.raise_for_status()
                ids = [a["id"] for a in found.json().get("assets", []) if a.get("uri") == uri]
                if not ids:
                    lines.append(f"Airflow at {base} has no Asset {uri} (are the iehub DAGs deployed there?)")
                    continue
                sent = http.post(f"{base}/api/v2/assets/events", timeout=10, json={
                    "asset_id": ids[0], "extra": {"batch_id": r["batch_id"], "rows_loaded": r.get("rows_loaded"),
                                                  "emitted_by": "iehub sync (CLI)"}})
                sent.raise_for_status()
                lines.append(f"Asset event {uri} (batch {r['batch_id']}) recorded in Airflow at {base}")
            return lines
        except (requests.RequestException, KeyError, ValueError) as exc:
            return [f"Airflow at {base} was not told about this sync ({exc}); the warehouse DAG will not "
                    "follow it: run `iehub build`, or check IEHUB_AIRFLOW_API_URL and its credentials"]


def _write(target: Path) -> None:
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(compile_summary(), ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, target)


if __name__ == "__main__":
    _write(Path(sys.argv[1]))
