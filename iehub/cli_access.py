"""`iehub keys`, `iehub audit verify`, `iehub export`: who may read the feeds, what they read, bulk files.

Keys and the audit log live in the feed database (``IEHUB_FEEDS_DB_URL``, default SQLite at
``IEHUB_HOME/feeds/feeds.db``), the same one the feed API reads, via :class:`FeedConfig`.
A new key is printed once, alone on stdout, so ``KEY=$(iehub keys create …)`` captures just
the key; everything else goes to stderr.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from iehub.cli_output import data_console, print_error, styled
from iehub.config import Settings

console = data_console()  # consumer names, datasets and errors are printed as they are, never as markup
err = data_console(stderr=True)


def _fail(message: str) -> None:
    print_error(err, message)
    sys.exit(1)


def _config(settings: Settings):  # -> feeds.config.FeedConfig (imported lazily: the CLI must start fast)
    from feeds.config import FeedConfig

    return FeedConfig.from_env(settings.home)


def _keystore(settings: Settings):  # -> feeds.keys.KeyStore
    """The key store of the feed database; a database that cannot be opened is one clear error line."""
    import sqlalchemy as sa

    from feeds.keys import KeyStore

    url = _config(settings).db_url
    try:
        return KeyStore(url)
    except sa.exc.SQLAlchemyError as exc:
        shown = sa.make_url(url).render_as_string(hide_password=True)
        _fail(f"cannot open the feed database {shown}: {type(exc).__name__}: {str(getattr(exc, 'orig', exc))[:200]}")


def _split(value: str) -> list[str] | None:
    """``a,b`` → [a, b]; ``all`` → None (every one)."""
    parts = [p.strip() for p in value.split(",")]
    return None if [p.lower() for p in parts] == ["all"] else parts


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def _scope(values: frozenset[str] | None) -> str:
    return "all" if values is None else ",".join(sorted(values))


def register(main: click.Group) -> None:
    @main.group()
    def keys() -> None:
        """Consumer keys for the feed API: scopes (datasets, districts), personal data, expiry."""

    @keys.command("create")
    @click.option("--consumer", required=True, help="Who the key is for, e.g. 杨浦区产教融合平台.")
    @click.option("--datasets", required=True, help="Comma-separated datasets (entities), or 'all'.")
    @click.option("--districts", required=True, help="Comma-separated district codes (GB/T 2260, e.g. 310110), or 'all'.")
    @click.option("--personal", is_flag=True, help="Grant unmasked personal data (names, ID numbers, phones).")
    @click.option("--expires-days", default=365, show_default=True, type=click.IntRange(min=0),
                  help="Days until the key expires; 0 for a key that never expires.")
    @click.pass_obj
    def keys_create(settings: Settings, consumer: str, datasets: str, districts: str, personal: bool,
                    expires_days: int) -> None:
        """Create a key and print it once, alone on stdout (it cannot be shown again).

        Example: iehub keys create --consumer 杨浦区产教融合平台 --datasets trainee,project --districts 310110
        """
        from feeds.keys import KeyStoreError

        store = _keystore(settings)
        try:
            grant, token = store.create(consumer, _split(datasets), _split(districts), personal=personal,
                                        expires_in=timedelta(days=expires_days) if expires_days else None)
        except KeyStoreError as exc:
            _fail(str(exc))
        finally:
            store.dispose()
        click.echo(token)
        err.print(f"key {grant.key_id} for {grant.consumer}: datasets {_scope(grant.datasets)}, districts "
                  f"{_scope(grant.districts)}, personal data {'granted' if grant.personal else 'masked'}, "
                  f"expires {_when(grant.expires_at)} UTC. Store it now: it is not shown again.", highlight=False)

    @keys.command("list")
    @click.pass_obj
    def keys_list(settings: Settings) -> None:
        """List keys (never their secrets): scopes, status, created, expiry, last use."""
        store = _keystore(settings)
        try:
            infos = store.list()
        finally:
            store.dispose()
        table = Table(title=f"feed keys — {len(infos)} (times UTC)")
        table.add_column("key id", no_wrap=True)  # copied into `iehub keys revoke`: never wrapped
        table.add_column("consumer", overflow="fold")
        for header in ("datasets", "districts", "personal", "created", "expires", "last used", "status"):
            table.add_column(header, overflow="fold")
        for k in infos:
            status = k.status()
            if k.revoked_at is not None:
                status = f"revoked {_when(k.revoked_at)}"
            table.add_row(k.key_id, k.consumer, _scope(k.datasets), _scope(k.districts), "yes" if k.personal else "no",
                          _when(k.created_at), _when(k.expires_at), _when(k.last_used_at), status)
        console.print(table)

    @keys.command("revoke")
    @click.argument("key_id")
    @click.pass_obj
    def keys_revoke(settings: Settings, key_id: str) -> None:
        """Revoke KEY_ID (as `iehub keys list` shows it); API workers refuse it within seconds."""
        from feeds.keys import KeyStoreError

        store = _keystore(settings)
        try:
            info = store.revoke(key_id)
        except KeyStoreError as exc:
            _fail(str(exc))
        finally:
            store.dispose()
        console.print(f"revoked key {info.key_id} ({info.consumer}) at {_when(info.revoked_at)} UTC")

    @main.group()
    def audit() -> None:
        """The feed audit log (one row per data response, sealed with the audit key, anchored outside)."""

    @audit.command("verify")
    @click.option("--anchor", is_flag=True,
                  help="When the chain verifies, also record its head in the anchor log (for cron).")
    @click.pass_obj
    def audit_verify(settings: Settings, anchor: bool) -> None:
        """Check the audit chain read-only; exit 1 naming the first row edited, deleted, reordered, forged or cut.

        Opens the feed database read-only and never creates or repairs anything; the audit key and
        anchors are read from IEHUB_AUDIT_DIR (default IEHUB_HOME/feeds) or IEHUB_AUDIT_KEY.
        """
        from feeds.audit import AuditError, AuditLog

        try:
            log = AuditLog.from_config(_config(settings), read_only=True)
            try:
                report = log.verify()
                if anchor:
                    log.anchor_head(report)
            finally:
                log.dispose()
        except AuditError as exc:
            _fail(str(exc))
        if report.ok:
            console.print(f"audit log ok: {report.rows} rows verified, head row {report.head_seq} hash "
                          f"{report.head_hash}, {report.anchors} anchor(s) matched"
                          f"{'; head anchored' if anchor and report.rows else ''}")
            return
        where = f"at row {report.first_bad_seq}" if report.first_bad_seq is not None else "(no single row)"
        _fail(f"audit log tampered with {where}: {report.reason} ({report.rows} rows verified before it)")

    @audit.command("rotate-key")
    @click.pass_obj
    def audit_rotate_key(settings: Settings) -> None:
        """Add a new audit key; new rows are sealed with it, older keys stay to verify older rows.

        Stop every `iehub serve` first and start them again after: a row sealed with the old key
        after one sealed with the new key is reported as forged.
        """
        import os

        from feeds.audit_keys import AUDIT_DIR_ENV, AuditKeyError, Keyring

        directory = Path(os.environ.get(AUDIT_DIR_ENV) or _config(settings).feeds_dir)
        try:
            old, new = Keyring.rotate(directory)
        except AuditKeyError as exc:
            _fail(str(exc))
        console.print(f"audit key rotated: new rows are sealed with key id {new} (was {old}); keep the old key in "
                      f"the key file, start the feed API again, then run `iehub audit verify --anchor`")

    @main.command("export")
    @click.argument("datasets", nargs=-1)
    @click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Where packages go (default IEHUB_HOME/exports): <out>/<dataset>/<snapshot>/.")
    @click.option("--personal", is_flag=True, help="Leave personal fields unmasked (the export is audited).")
    @click.pass_obj
    def export_cmd(settings: Settings, datasets: tuple[str, ...], out_dir: Path | None, personal: bool) -> None:
        """Write a Frictionless data package (CSV, Parquet, datapackage.json) per DATASET (default: all).

        Reads the current published snapshot; personal fields are masked unless --personal.
        Check one with: frictionless validate <out>/<dataset>/<snapshot>/datapackage.json
        """
        from feeds.audit import AuditError, AuditLog
        from feeds.export import ExportError, export
        from warehouse.publish import PublishError

        config = _config(settings)
        out = out_dir or settings.home / "exports"
        if personal:
            err.print(styled("warning:", "yellow", "--personal: the files hold unmasked personal data; they are "
                             "written readable by your user only (0600); keep them where only authorised staff "
                             "can read them"))
        try:
            log = AuditLog.from_config(config)
        except AuditError as exc:
            _fail(str(exc))
        try:
            with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=err) as progress:
                tasks: dict[str, int] = {}

                def on_progress(dataset: str, done: int, total: int) -> None:
                    if dataset not in tasks:
                        tasks[dataset] = progress.add_task(dataset, total=total)
                    progress.update(tasks[dataset], completed=done, total=total)

                results = export(settings.home, list(datasets) or None, out, personal=personal,
                                 secret=config.secret(), progress=on_progress, audit=log)
        except (ExportError, PublishError, AuditError, ValueError) as exc:
            _fail(str(exc))
        finally:
            log.dispose()
        table = Table("dataset", "snapshot", "rows", "csv bytes", "parquet bytes", "datapackage.json",
                      title=f"exported {len(results)} dataset(s), personal fields "
                            f"{'included' if personal else 'masked'}")
        for r in results:
            table.add_row(r.dataset, r.version, str(r.rows), str(r.files[f"{r.dataset}.csv"]["bytes"]),
                          str(r.files[f"{r.dataset}.parquet"]["bytes"]), str(r.directory / "datapackage.json"))
        console.print(table)
