"""Running the feed API on uvicorn, in one process or several.

A page is CPU work: the query (DuckDB), masking (Arrow), encoding (DuckDB), the digest and the
audit row. DuckDB and Arrow release the GIL, but everything around them (routing, validation,
the audit's SQL, the event loop's sends) holds it, and with eight clients a single process spent
its time handing the GIL round rather than serving: each request that dropped it for a C call
waited behind the others to get it back. ``workers`` > 1 runs that many processes (uvicorn's
supervisor, each worker with its own GIL, snapshot connections and caches); measured by
``bench/feed_latency.py`` on 2 CPUs with a build running, two workers gave an 8-client p95 of
154–210 ms against one worker's 206–232 ms; where in that range a run falls depends on how the
kernel spreads the clients' keep-alive connections over the workers (see README, Benchmarks). What the workers share goes through the database or
the feeds folder: keys and the audit chain (the head row orders their appends), the rate-limit
table (a mapped file), and the secret (a file made once, before they start).

Put a TLS-terminating proxy in front for anything beyond loopback: keys travel in the
Authorization header.
"""

from __future__ import annotations

import json
import logging
import os

import uvicorn
from fastapi import FastAPI

from feeds.app import create_app
from feeds.config import FeedConfig

__all__ = ["CONFIG_ENV", "app_from_environment", "serve"]

#: How ``serve`` hands its settings to worker processes (uvicorn starts them afresh: spawn).
CONFIG_ENV = "IEHUB_FEED_SERVE_CONFIG"

log = logging.getLogger(__name__)


def serve(config: FeedConfig, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info") -> None:
    """Serve the feed API with ``config.workers`` processes until interrupted (Ctrl-C / SIGTERM)."""
    config.secret()  # made here once, so workers read one file rather than race to create it
    # access_log on: it records method, path and query (cursors, fields: never personal data), not headers.
    options = {"host": host, "port": port, "log_level": log_level, "access_log": True, "server_header": False,
               "proxy_headers": False}
    log.info("feed API on http://%s:%d (home %s, %d worker(s))", host, port, config.home, config.workers)
    if config.workers == 1:
        uvicorn.run(create_app(config), **options)
        return
    os.environ[CONFIG_ENV] = json.dumps({"config": config.to_json(), "log_level": logging.getLogger().level})
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=config.workers, **options)


def app_from_environment() -> FastAPI:
    """One worker's app (uvicorn calls this in each worker process ``serve`` starts)."""
    payload = os.environ.get(CONFIG_ENV)
    if not payload:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start workers with `iehub serve --workers N`, "
                           "not by pointing uvicorn at this factory")
    settings = json.loads(payload)
    logging.basicConfig(level=settings["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(FeedConfig.from_json(settings["config"]))
