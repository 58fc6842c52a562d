"""`iehub serve`: the feed API (FastAPI on uvicorn) over the published warehouse snapshots."""
from __future__ import annotations

import sys

import click

from iehub.config import Settings


def register(main: click.Group) -> None:
    @main.command("serve")
    @click.option("--host", default="127.0.0.1", show_default=True,
                  help="Address to listen on (loopback by default; put a TLS proxy in front for anything else).")
    @click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
    @click.option("--rate", type=float, default=None,
                  help="Requests per second per key (default 20, or IEHUB_FEED_RATE).")
    @click.option("--burst", type=int, default=None, help="Burst per key (default 40, or IEHUB_FEED_BURST).")
    @click.option("--workers", type=click.IntRange(1, 64), default=None,
                  help="Worker processes (default one per CPU, at most 4, or IEHUB_FEED_WORKERS).")
    @click.pass_obj
    def serve(settings: Settings, host: str, port: int, rate: float | None, burst: int | None,
              workers: int | None) -> None:
        """Serve the feed API: GET /v1/feeds, /v1/feeds/{dataset}[/deletes|/versions|/schema], /docs.

        Reads IEHUB_HOME's published snapshots (never the builder's file), so builds may run meanwhile.
        Consumers authenticate with keys from `iehub keys create`. Ctrl-C stops.
        """
        from feeds.config import FeedConfig
        from feeds.server import serve as run

        try:
            config = FeedConfig.from_env(settings.home, rate=rate, burst=burst, workers=workers)
        except ValueError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        from feeds.audit import AuditLog

        # Open the feed database here, once: a read-only or unreachable one is then one error line
        # (the CLI's handler), instead of a traceback from every worker process uvicorn respawns.
        AuditLog.from_config(config).dispose()
        _record_sources(config.feeds_dir)
        _follow_published(settings)
        click.echo(f"iehub feed API on http://{host}:{port}/v1/feeds (docs: http://{host}:{port}/docs), "
                   f"{config.workers} worker process(es); Ctrl-C stops")
        run(config, host, port)


def _follow_published(settings: Settings) -> None:
    """With IEHUB_PUBLISH_URL, pull the builder's newest snapshot now and every IEHUB_FOLLOW_SECONDS (default 30).

    This is how a feed server on a machine of its own serves what a builder elsewhere published:
    the first pull happens before the server listens, so it never answers 503 for want of a
    snapshot that exists; later pulls run in a daemon thread of this (the parent) process, and the
    worker processes see each new snapshot through CURRENT, as after a local build.
    """
    import os
    import threading

    if not settings.publish_url:
        return
    from warehouse.snapshot_follow import follow

    where = settings.publish_url.split("?")[0]
    version = settings.pull_snapshot()
    click.echo(f"following snapshots published to {where}: " + (f"pulled {version}" if version else "already current"))
    try:
        every = float(os.environ.get("IEHUB_FOLLOW_SECONDS", "30"))
    except ValueError:
        raise click.UsageError("IEHUB_FOLLOW_SECONDS must be a number of seconds (0 turns following off)") from None
    if every <= 0:
        return
    threading.Thread(target=follow, name="iehub-follow-snapshots", daemon=True,
                     args=(settings.home, settings.published_source(), every, threading.Event()),
                     kwargs={"on_error": lambda exc: click.echo(f"warning: {exc}", err=True)}).start()


def _record_sources(feeds_dir) -> None:  # feeds_dir: Path
    """Which sources feed each entity, on which schedule, for the DCAT catalogue (feeds may not read specs)."""
    from connectors.spec import SpecError, available_sources, load_spec
    from feeds.dcat import write_sources

    sources: dict[str, list[tuple[str, str]]] = {}
    for name in available_sources():
        try:
            spec = load_spec(name)
        except SpecError:
            continue  # `iehub spec validate` reports it; the catalogue just leaves the source out
        for stream in spec.streams.values():
            pair = (spec.name, spec.schedule)
            if pair not in sources.setdefault(stream.entity, []):
                sources[stream.entity].append(pair)
    write_sources(feeds_dir, sources)
