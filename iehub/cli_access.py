"""`iehub keys`, `iehub access`, `iehub audit verify`, `iehub export`: who may read the feeds, what they read, bulk files.

`iehub access request|approve|reject|list` is the access-request life cycle for 有条件共享 datasets
(see :mod:`feeds.sharing`); `iehub keys create` issues a key holding such a dataset only with
``--approved-request ID``. Every step is written to the audit chain.

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


def _access(settings: Settings):  # -> (feeds.sharing.AccessStore, feeds.audit.AuditLog)
    """The access-request store, auditing into the feed audit chain; one clear error line if either fails."""
    import sqlalchemy as sa

    from feeds.audit import AuditError, AuditLog
    from feeds.sharing import AccessStore

    config = _config(settings)
    try:
        log = AuditLog.from_config(config)
    except AuditError as exc:
        _fail(str(exc))
    try:
        return AccessStore(config.db_url, audit=log), log
    except sa.exc.SQLAlchemyError as exc:
        log.dispose()
        _fail(f"cannot open the access requests in the feed database: {type(exc).__name__}")


def _actor() -> str:
    """Who ran the command (the OS user), recorded as requester, approver or issuer."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


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
    @click.option("--approved-request", type=int, default=None,
                  help="The approved access request that allows 有条件共享 datasets (trainee, teacher) in this key; "
                       "the key then expires no later than the approval.")
    @click.pass_obj
    def keys_create(settings: Settings, consumer: str, datasets: str, districts: str, personal: bool,
                    expires_days: int, approved_request: int | None) -> None:
        """Create a key and print it once, alone on stdout (it cannot be shown again).

        Example: iehub keys create --consumer 杨浦区产教融合平台 --datasets notice,project --districts 310110
        """
        from datetime import timezone

        from feeds.audit import AuditError
        from feeds.keys import KeyStoreError
        from feeds.sharing import AccessError, check_issue

        access, log = _access(settings) if approved_request is not None else (None, None)
        store = _keystore(settings)
        try:
            approval = access.get(approved_request) if access is not None and approved_request is not None else None
            check_issue(_split(datasets), _split(districts), consumer, approval)
            expires_in = timedelta(days=expires_days) if expires_days else None
            if approval is not None and approval.expires_at is not None:  # never outlives its approval
                left = approval.expires_at - datetime.now(timezone.utc)
                expires_in = left if expires_in is None else min(expires_in, left)
            grant, token = store.create(consumer, _split(datasets), _split(districts), personal=personal,
                                        expires_in=expires_in)
            if access is not None and approval is not None:
                try:
                    access.record_issue(approval.request_id, key_id=grant.key_id, operator=_actor())
                except AuditError as exc:  # a conditional key without its audit row is not issued
                    store.revoke(grant.key_id)
                    raise AccessError(f"key not issued: {exc}") from None
        except (KeyStoreError, AccessError) as exc:
            _fail(str(exc))
        finally:
            store.dispose()
            if access is not None and log is not None:
                access.dispose()
                log.dispose()
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
    def access() -> None:
        """Access requests for 有条件共享 datasets: request, approve or reject with a reason, list (overdue flagged)."""

    @access.command("request")
    @click.option("--consumer", required=True, help="The platform asking, e.g. 杨浦区产教融合平台.")
    @click.option("--datasets", required=True, help="Comma-separated datasets, e.g. trainee.")
    @click.option("--districts", required=True, help="Comma-separated district codes, or 'all'.")
    @click.option("--purpose", required=True, help="What the data will be used for (用途).")
    @click.option("--key", "key_id", default=None,
                  help="The consumer's key the approval widens (default: none; issue a key with --approved-request).")
    @click.pass_obj
    def access_request(settings: Settings, consumer: str, datasets: str, districts: str, purpose: str,
                       key_id: str | None) -> None:
        """File an access request; prints its id on stdout."""
        from feeds.keys import KeyStoreError
        from feeds.sharing import AccessError

        access, log = _access(settings)
        try:
            if key_id is not None:
                store = _keystore(settings)
                try:
                    owner = store.get(key_id).consumer
                finally:
                    store.dispose()
                if owner != consumer.strip():
                    raise AccessError(f"key {key_id} belongs to {owner!r}, not {consumer!r}")
            req = access.request(consumer=consumer, datasets=_split(datasets) or [], districts=_split(districts),
                                 purpose=purpose, requested_by=f"cli:{_actor()}", key_id=key_id)
        except (AccessError, KeyStoreError) as exc:
            _fail(str(exc))
        finally:
            access.dispose()
            log.dispose()
        click.echo(req.request_id)
        err.print(f"access request {req.request_id} filed for {req.consumer}: {_scope(req.datasets)} in "
                  f"{_scope(req.districts)}; an approver runs `iehub access approve {req.request_id} --reason …`",
                  highlight=False)

    @access.command("approve")
    @click.argument("request_id", type=int)
    @click.option("--reason", required=True, help="Why it is approved (kept with the request; sealed in the audit).")
    @click.option("--expires-days", default=180, show_default=True, type=click.IntRange(min=1),
                  help="Days the approval lasts; the scope it grants ends with it.")
    @click.pass_obj
    def access_approve(settings: Settings, request_id: int, reason: str, expires_days: int) -> None:
        """Approve REQUEST_ID: its scope is granted to the request's key (or may be issued with keys create)."""
        from feeds.sharing import AccessError

        access, log = _access(settings)
        try:
            req = access.approve(request_id, reason=reason, approver=_actor(),
                                 expires_in=timedelta(days=expires_days))
        except AccessError as exc:
            _fail(str(exc))
        finally:
            access.dispose()
            log.dispose()
        then = (f"key {req.key_id} reads it now" if req.key_id else
                f"issue a key with `iehub keys create --consumer {req.consumer} … --approved-request {req.request_id}`")
        console.print(f"approved access request {req.request_id} until {_when(req.expires_at)} UTC: {then}",
                      highlight=False)

    @access.command("reject")
    @click.argument("request_id", type=int)
    @click.option("--reason", required=True, help="Why it is rejected (the consumer sees it).")
    @click.pass_obj
    def access_reject(settings: Settings, request_id: int, reason: str) -> None:
        """Reject REQUEST_ID; nothing is granted."""
        from feeds.sharing import AccessError

        access, log = _access(settings)
        try:
            req = access.reject(request_id, reason=reason, approver=_actor())
        except AccessError as exc:
            _fail(str(exc))
        finally:
            access.dispose()
            log.dispose()
        console.print(f"rejected access request {req.request_id} ({req.consumer})", highlight=False)

    @access.command("list")
    @click.option("--decision-days", type=click.IntRange(min=1), default=None,
                  help="Pending longer than this many days is overdue (default IEHUB_ACCESS_DECISION_DAYS or "
                       "10).")
    @click.pass_obj
    def access_list(settings: Settings, decision_days: int | None) -> None:
        """List access requests, oldest first; pending ones past the decision deadline are flagged OVERDUE."""
        import os

        from feeds.sharing import DEFAULT_DECISION_DAYS

        days = decision_days or int(os.environ.get("IEHUB_ACCESS_DECISION_DAYS") or DEFAULT_DECISION_DAYS)
        access, log = _access(settings)
        try:
            requests = access.list()
        finally:
            access.dispose()
            log.dispose()
        overdue = [r for r in requests if r.overdue(days)]
        table = Table(title=f"access requests — {len(requests)}, {len(overdue)} overdue (> {days} days; times UTC)")
        table.add_column("id", no_wrap=True)
        for header in ("consumer", "key id", "datasets", "districts", "purpose", "requested", "status", "decided",
                       "reason", "expires"):
            table.add_column(header, overflow="fold")
        for r in requests:
            status = "OVERDUE" if r.overdue(days) else r.state()
            table.add_row(str(r.request_id), r.consumer, r.key_id or "-", _scope(r.datasets), _scope(r.districts),
                          r.purpose, _when(r.requested_at), status, _when(r.decided_at), r.reason or "-",
                          _when(r.expires_at))
        console.print(table)

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
