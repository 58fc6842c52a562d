"""Running the feed API on uvicorn.

One process, uvicorn's default event loop and FastAPI's thread pool for the (synchronous)
endpoints: DuckDB releases the GIL while it scans, so page queries overlap across threads,
and a second process would only split the snapshot cache. Put a TLS-terminating proxy in
front for anything beyond loopback: keys travel in the Authorization header.
"""

from __future__ import annotations

import logging

import uvicorn

from feeds.app import create_app
from feeds.config import FeedConfig

__all__ = ["serve"]


def serve(config: FeedConfig, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info") -> None:
    """Serve the feed API until interrupted (Ctrl-C / SIGTERM)."""
    app = create_app(config)
    logging.getLogger(__name__).info("feed API on http://%s:%d (home %s)", host, port, config.home)
    # access_log on: it records method, path and query (cursors, fields: never personal data), not headers.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=True, server_header=False,
                proxy_headers=False)
