"""`iehub subscriptions …` and `iehub deliver`: push subscriptions (Standard Webhooks) by hand.

Subscriptions live in the feed database beside the keys (IEHUB_FEEDS_DB_URL, default SQLite
at IEHUB_HOME/feeds/feeds.db). A new or rotated signing secret is printed once, alone on
stdout, so ``SECRET=$(iehub subscriptions create …)`` captures just the secret; everything
else goes to stderr. Errors of the store are one line through the CLI's handler.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import click
from rich.table import Table

from iehub.cli_output import data_console
from iehub.config import Settings

console = data_console()  # consumer names and URLs are printed as they are, never as markup
err = data_console(stderr=True)


@contextmanager
def _store(settings: Settings) -> Iterator:  # -> feeds.subscriptions.SubscriptionStore
    from feeds.config import FeedConfig
    from feeds.subscriptions import SubscriptionStore

    config = FeedConfig.from_env(settings.home)
    store = SubscriptionStore(str(config.db_url), config.secret())
    try:
        yield store
    finally:
        store.dispose()


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [p.strip() for p in value.split(",")]


def _scope(values: frozenset[str] | None) -> str:
    return "key's (all)" if values is None else ",".join(sorted(values))


def _shown(sub) -> str:  # noqa: ANN001 - feeds.subscriptions.Subscription
    return (f"subscription {sub.subscription_id} for {sub.consumer} (key {sub.key_id}) → {sub.url}: datasets "
            f"{_scope(sub.datasets)}, districts {_scope(sub.districts)}, {sub.status}")


def register(main: click.Group) -> None:
    @main.group()
    def subscriptions() -> None:
        """Push subscriptions: changes and deletes POSTed to a consumer's HTTPS endpoint, signed."""

    @subscriptions.command("create")
    @click.option("--consumer", help="The consumer (as `iehub keys list` shows it); its one active key is used.")
    @click.option("--key", "key_id", help="The key id to subscribe with, when the consumer has several.")
    @click.option("--url", required=True, help="HTTPS endpoint (http:// only for 127.0.0.1, ::1 or localhost).")
    @click.option("--datasets", default="all", show_default=True, help="Comma-separated datasets within the key's.")
    @click.option("--districts", default="all", show_default=True, help="Comma-separated district codes within the key's.")
    @click.option("--from-version", type=click.IntRange(min=0), default=None,
                  help="First change version to deliver (default: after the current snapshot's newest).")
    @click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True,
                  help="Records (changes and deletes) per POST.")
    @click.option("--wait", "timeout", type=click.FloatRange(0.1, 300), default=10.0, show_default=True,
                  help="Seconds to wait for the receiver's 2xx for a batch.")
    @click.option("--pause-after-hours", type=click.FloatRange(min=0), default=24.0, show_default=True,
                  help="Pause the subscription when it has failed for this long without one acknowledgement.")
    @click.pass_obj
    def create(settings: Settings, consumer: str | None, key_id: str | None, url: str, datasets: str,
               districts: str, from_version: int | None, batch_size: int, timeout: float,
               pause_after_hours: float) -> None:
        """Subscribe an endpoint; prints its signing secret (whsec_…) once, alone on stdout.

        Example: iehub subscriptions create --consumer 杨浦区产教融合平台 --url https://platform.example/hooks/iehub
        --datasets project,trainee --districts 310110
        """
        if not consumer and not key_id:
            raise click.UsageError("give --consumer or --key")
        from feeds.config import FeedConfig

        with _store(settings) as store:
            key = store.key_for(consumer, key_id)
            sub, secret = store.create(key, url, _split(datasets), _split(districts), from_version=from_version,
                                       snapshots=FeedConfig.from_env(settings.home).home,
                                       batch_size=batch_size, timeout_seconds=timeout,
                                       pause_after_seconds=pause_after_hours * 3600)
        click.echo(secret)
        err.print(f"{_shown(sub)}; delivers change versions after {sub.start_after}. The signing secret above is "
                  "not shown again: give it to the receiver (Standard Webhooks verification).", highlight=False)

    @subscriptions.command("list")
    @click.option("--consumer", help="Only this consumer's subscriptions.")
    @click.option("--json", "as_json", is_flag=True, help="As JSON (with the acknowledged versions per dataset).")
    @click.pass_obj
    def list_(settings: Settings, consumer: str | None, as_json: bool) -> None:
        """List subscriptions: scope, status (and why paused), last success, last error."""
        with _store(settings) as store:
            subs = store.list(consumer=consumer)
        if as_json:
            click.echo(json.dumps([s.public() for s in subs], ensure_ascii=False, indent=1))
            return
        table = Table(title=f"subscriptions — {len(subs)} (times UTC)")
        table.add_column("id", no_wrap=True)
        for header in ("consumer", "url", "datasets", "districts", "status", "acknowledged up to", "last success",
                       "last error"):
            table.add_column(header, overflow="fold")
        for s in subs:
            acked = max(s.cursors.values(), default=s.start_after)
            table.add_row(s.subscription_id, s.consumer, s.url, _scope(s.datasets), _scope(s.districts),
                          s.status + (f": {s.paused_reason}" if s.paused_reason else ""), str(acked),
                          f"{s.last_success_at:%Y-%m-%d %H:%M}" if s.last_success_at else "-", s.last_error or "-")
        console.print(table)

    @subscriptions.command("pause")
    @click.argument("subscription_id")
    @click.option("--reason", default="paused by hand", show_default=True)
    @click.pass_obj
    def pause(settings: Settings, subscription_id: str, reason: str) -> None:
        """Stop delivering to SUBSCRIPTION_ID; `resume` continues from its last acknowledged version."""
        with _store(settings) as store:
            console.print(_shown(store.pause(subscription_id, reason)))

    @subscriptions.command("resume")
    @click.argument("subscription_id")
    @click.pass_obj
    def resume(settings: Settings, subscription_id: str) -> None:
        """Deliver to SUBSCRIPTION_ID again, from its last acknowledged change version (nothing skipped)."""
        with _store(settings) as store:
            console.print(_shown(store.resume(subscription_id)))

    @subscriptions.command("replay")
    @click.argument("subscription_id")
    @click.option("--from-version", type=click.IntRange(min=0), required=True,
                  help="Deliver everything in scope from this change version on (inclusive) again.")
    @click.pass_obj
    def replay(settings: Settings, subscription_id: str, from_version: int) -> None:
        """Deliver SUBSCRIPTION_ID's scope again from a change version (new batch ids: a new delivery)."""
        with _store(settings) as store:
            console.print(_shown(store.replay(subscription_id, from_version)))

    @subscriptions.command("rotate-secret")
    @click.argument("subscription_id")
    @click.option("--overlap-hours", type=click.FloatRange(min=0), default=24.0, show_default=True,
                  help="How long the old secret still signs too (both signatures are sent meanwhile).")
    @click.pass_obj
    def rotate(settings: Settings, subscription_id: str, overlap_hours: float) -> None:
        """A new signing secret for SUBSCRIPTION_ID, printed once on stdout; the old one overlaps."""
        with _store(settings) as store:
            sub, secret = store.rotate_secret(subscription_id, timedelta(hours=overlap_hours))
        click.echo(secret)
        err.print(f"{_shown(sub)}; the previous secret stays valid until "
                  f"{sub.previous_until:%Y-%m-%d %H:%M} UTC" if sub.previous_until else
                  f"{_shown(sub)}; the previous secret is no longer used", highlight=False)

    @subscriptions.command("delete")
    @click.argument("subscription_id")
    @click.pass_obj
    def delete(settings: Settings, subscription_id: str) -> None:
        """Delete SUBSCRIPTION_ID and its cursors (its deliveries stay in the audit log)."""
        with _store(settings) as store:
            store.delete(subscription_id)
        console.print(f"deleted subscription {subscription_id}")

    @main.command("deliver")
    @click.argument("subscription_ids", nargs=-1)
    @click.option("--workers", type=click.IntRange(1, 64), default=None,
                  help="Subscriptions delivered at once (default 8, or IEHUB_DELIVERY_WORKERS).")
    @click.pass_obj
    def deliver(settings: Settings, subscription_ids: tuple[str, ...], workers: int | None) -> None:
        """Deliver the current snapshot to every active subscription (or SUBSCRIPTION_IDS), as the DAG does."""
        from iehub.delivery import run_delivery

        summary = run_delivery(settings.home, list(subscription_ids) or None, workers)
        if summary["snapshot"] is None:
            console.print("nothing published yet: run `iehub build` first")
            return
        console.print(f"snapshot {summary['snapshot']}: {summary['subscriptions']} subscription(s), "
                      f"{summary['batches']} batch(es), {summary['changes']} change(s) and {summary['deletes']} "
                      f"delete(s) acknowledged in {summary['seconds']:.1f} s"
                      + (f"; failing or paused: {', '.join(summary['failed'])} (`iehub subscriptions list` says why)"
                         if summary["failed"] else ""))
