"""Push delivery as one call for the delivery DAG and `iehub deliver`: every active subscription, once.

Why a function of its own: the DAG task and the CLI must run exactly the same delivery (one
piece of code per piece of logic), and a DAG task passes on a small reference, never data, so
this returns counts only (no URLs, no records). A receiver that fails does not fail the run: it
is the consumer's endpoint, retried at the next run and paused after its window
(:mod:`feeds.delivery`); the run fails only when the hub itself cannot deliver (feed database,
audit log, snapshot).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["run_delivery"]


def run_delivery(home: str | Path | None = None, subscription_ids: list[str] | None = None,
                 workers: int | None = None) -> dict[str, Any]:
    """Deliver the current snapshot to every active subscription (or those named); returns the counts."""
    import os

    from feeds.config import FeedConfig
    from feeds.delivery import deliver

    config = FeedConfig.from_env(home)
    workers = workers or int(os.environ.get("IEHUB_DELIVERY_WORKERS", "8"))
    return deliver(config, subscription_ids=subscription_ids, workers=workers).summary()
