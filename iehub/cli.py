"""The `iehub` command line: every pipeline step by hand, without a scheduler."""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from iehub.cli_output import data_console, print_error, report_failure, styled
from iehub.config import Settings, private_files

# Source data and error text are printed as they are, never read as markup (see cli_output).
console = data_console()
err = data_console(stderr=True)
SANDBOX_ENV_FILE = "sandbox.env"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _load_sandbox_env(settings: Settings) -> None:
    """Pick up the running sandbox's URL and demo credentials, unless the caller set their own."""
    path = settings.home / SANDBOX_ENV_FILE
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            os.environ.setdefault(key.strip(), value.strip())


def _write_sandbox_env(settings: Settings, values: dict[str, str]) -> Path:
    settings.ensure()
    path = settings.home / SANDBOX_ENV_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# written by `iehub sandbox serve`: the simulated Lingang platform's URL and demo credentials\n")
        for key, value in values.items():
            out.write(f"{key}={value}\n")
    os.replace(tmp, path)
    return path


def _fail(message: str) -> None:
    print_error(err, message)
    sys.exit(1)


class _IehubGroup(click.Group):
    """The one exception handler of the CLI: an expected failure is one line, a traceback only with -v."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to one line by describe_error, re-shown with -v
            report_failure(exc, verbose=bool(ctx.params.get("verbose")), console=err)
            ctx.exit(1)


@click.group(cls=_IehubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="IEHUB_HOME", default="./var", show_default=True,
              help="Where iehub keeps the lake, ledger, warehouse and Airflow home (IEHUB_HOME).")
@click.option("-v", "--verbose", is_flag=True, help="Log each step (INFO) and show tracebacks of failures.")
@click.pass_context
def main(ctx: click.Context, home: str, verbose: bool) -> None:
    """iehub: the data-exchange hub of Shanghai's industry-education integration programme (产教融合).

    Sources → connectors → raw/std Parquet → DuckDB warehouse. Every command honours IEHUB_HOME.
    """
    _setup_logging(verbose)
    private_files()  # personal data under IEHUB_HOME: files 0600, folders 0700
    os.environ["IEHUB_HOME"] = str(Path(home).expanduser().resolve())
    ctx.obj = Settings.from_env()


# ------------------------------------------------------------------------------- sandbox
@main.group()
def sandbox() -> None:
    """The simulated source systems (for the demo, tests and benchmarks)."""


@sandbox.command("serve")
@click.argument("systems", nargs=-1)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8766, show_default=True, type=int,
              help="Port of the first HTTP system; the next ones take the following ports.")
@click.option("--seed", default=7, show_default=True, type=int, help="Same seed, same data.")
@click.option("--scale", default=1.0, show_default=True, type=float, help="1.0 ≈ 14,000 Lingang records.")
@click.option("--faults", default="", help='Fault plan, e.g. "5xx=0.05,429=0.02,timeout=0.01" or "all=0.02".')
@click.pass_obj
def sandbox_serve(settings: Settings, systems: tuple[str, ...], host: str, port: int, seed: int, scale: float,
                  faults: str) -> None:
    """Run the simulated source SYSTEMS (default: all) until Ctrl-C.

    Writes IEHUB_HOME/sandbox.env (URLs and fresh demo credentials) that `iehub sync` picks up.
    """
    from iehub.sandboxes import get_system, systems as all_systems

    names = list(systems) or list(all_systems())
    started, env = [], {}
    try:
        for offset, name in enumerate(names):
            try:
                system = get_system(name)
            except KeyError as exc:
                _fail(str(exc.args[0]))
            run = system.start(settings.ensure(), scale=scale, seed=seed, host=host, port=port + offset, faults=faults)
            started.append(run)
            env.update(run.env)
            console.print(f"• {run.description}")
        env_path = _write_sandbox_env(settings, env)
        console.print(f"credentials and URLs for `iehub sync` in {env_path}; Ctrl-C stops")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for run in started:
            run.stop()


@sandbox.command("seed")
@click.argument("system")
@click.option("--url", default=None, help="Database URL for database systems (default: SQLite under IEHUB_HOME).")
@click.option("--scale", default=1.0, show_default=True, type=float, help="Data scale (1.0 = the demo's size).")
@click.option("--seed", default=7, show_default=True, type=int, help="Same seed, same data.")
@click.pass_obj
def sandbox_seed(settings: Settings, system: str, url: str | None, scale: float, seed: int) -> None:
    """Create a sandbox SYSTEM's data afresh (databases, drop folders); `iehub sync` then reads it."""
    from iehub.sandboxes import get_system

    try:
        target = get_system(system)
    except KeyError as exc:
        _fail(str(exc.args[0]))
    if not hasattr(target, "seed"):
        _fail(f"sandbox system '{system}' has nothing to seed; start it with `iehub sandbox serve {system}`")
    import inspect

    kwargs: dict[str, Any] = {}
    if url:
        if "url" not in inspect.signature(target.seed).parameters:
            _fail(f"sandbox system '{system}' does not take --url")
        kwargs["url"] = url
    result = target.seed(settings.ensure(), scale=scale, seed=seed, **kwargs)
    result = result if isinstance(result, dict) else {}
    # Systems report {"env": {...}, "rows": {...}}; a flat {VAR: value} is taken as env.
    env = result.get("env", {}) if "env" in result or "rows" in result else \
        {k: str(v) for k, v in result.items() if isinstance(v, (str, int, float)) and k.isupper()}
    if env:
        _merge_sandbox_env(settings, env)
    table = Table("table", "rows", title=f"sandbox seeded — {system} (seed {seed}, scale {scale})")
    for name, n in result.get("rows", {}).items():
        table.add_row(name, str(n))
    for key in env or {}:
        table.add_row(key, "(written to IEHUB_HOME/sandbox.env)")
    console.print(table)


def _merge_sandbox_env(settings: Settings, values: dict[str, str]) -> None:
    """Add or replace entries of IEHUB_HOME/sandbox.env, keeping what other systems wrote there."""
    path = settings.home / SANDBOX_ENV_FILE
    current: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                current[key.strip()] = value.strip()
    _write_sandbox_env(settings, {**current, **values})


@sandbox.command("mutate")
@click.argument("system", default="lingang")
@click.option("--changed", default="1%", show_default=True, help="Share of rows to update/insert/delete.")
@click.option("--seed", default=None, type=int)
@click.pass_obj
def sandbox_mutate(settings: Settings, system: str, changed: str, seed: int | None) -> None:
    """Change, insert and delete rows in a sandbox SYSTEM (for incremental syncs)."""
    from iehub.sandboxes import get_system

    _load_sandbox_env(settings)
    share = float(changed.rstrip("%")) / (100 if changed.endswith("%") else 1)
    try:
        counts = get_system(system).mutate(settings, changed=share, seed=seed, env=dict(os.environ))
    except (KeyError, RuntimeError) as exc:
        _fail(str(exc.args[0]) if exc.args else str(exc))
    table = Table("table", "updated", "inserted", "deleted", title=f"sandbox mutations — {system}")
    for name, c in counts.items():
        table.add_row(name, str(c.get("updated", 0)), str(c.get("inserted", 0)),
                      str(c.get("soft_deleted", 0) + c.get("deleted", 0) + c.get("hard_deleted", 0)))
    console.print(table)


# ---------------------------------------------------------------------------------- sync
def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False)


def _results_table(results: list[dict[str, Any]]) -> Table:
    sources = ", ".join(dict.fromkeys(r["source"] for r in results))
    table = Table("stream", "entity", "rows in", "loaded", "quarantined", "unchanged", "retries",
                  title=f"sync results — {sources}")
    for r in results:
        table.add_row(r["stream"], r["entity"], str(r["rows_in"]), str(r["rows_loaded"]),
                      str(r["rows_quarantined"]), str(r["skipped_unchanged"]), str(r["http"].get("retries", 0)))
    return table


#: what a file stream's counters mean, for the lines under the results table
_FILE_NOTES = {
    "files_waiting": "not complete yet (changed less than complete.settle_seconds ago, or a CSV whose last line "
                     "has no newline): loaded by a later sync",
    "files_quarantined": "quarantined whole (unreadable in every encoding, or never complete): "
                         "`iehub quarantine list`",
    "files_duplicate": "same content as a file already loaded: not loaded again",
    "files_superseded": "older snapshots behind a newer one on a first sync: recorded, not loaded",
    "files_late": "older than the current snapshot (by the period in the name): refused, not applied",
    "files_refused": "symbolic links or paths outside the drop folder: refused, not read",
    "files_suspect": "held as suspect (would delete too much): nothing applied; `iehub quarantine accept FILE`",
}


def _file_notes(results: list[dict[str, Any]]) -> list[str]:
    """One line per file-stream counter worth a user's attention (why a sync read fewer rows than expected)."""
    lines = []
    for r in results:
        stats = r.get("http") or {}
        for key, text in _FILE_NOTES.items():
            value = stats.get(key)
            if not value:
                continue
            names = f": {', '.join(value[:5])}{' …' if len(value) > 5 else ''}" if isinstance(value, list) else ""
            count = len(value) if isinstance(value, list) else int(value)
            lines.append(f"{r['source']}.{r['stream']}: {count} file(s) {text}{names}")
    return lines


@main.command()
@click.argument("sources", nargs=-1)
@click.option("--stream", "streams", multiple=True, help="Only these streams (repeatable).")
@click.option("--full", is_flag=True, help="Ignore the stored cursor and read everything again.")
@click.pass_obj
def sync(settings: Settings, sources: tuple[str, ...], streams: tuple[str, ...], full: bool) -> None:
    """Extract, standardise and land SOURCES (default: every spec) without a scheduler."""
    from connectors.errors import ConnectorError
    from connectors.spec import available_sources
    from iehub import pipeline

    _load_sandbox_env(settings)
    names = list(sources) or available_sources()
    with _progress() as progress:
        def on_stream(source: str, stream: str):
            task_id = progress.add_task(f"{source}.{stream}", total=None)
            return lambda done, total: progress.update(task_id, completed=done, total=total)

        try:
            results = pipeline.sync(settings.ensure(), names, streams=streams, full=full, on_stream=on_stream)
        except (ConnectorError, pipeline.PipelineError) as exc:
            _fail(str(exc))
    console.print(_results_table(results))
    for line in _file_notes(results):
        console.print(line, markup=False, highlight=False)
    from iehub.assets import announce_landings

    for line in announce_landings(results):  # the warehouse DAG follows a CLI sync too
        console.print(line, markup=False, highlight=False)


@main.command()
@click.option("--full", is_flag=True, help="Rebuild every entity from the whole lake (change versions continue).")
@click.pass_obj
def build(settings: Settings, full: bool) -> None:
    """Apply newly landed batches to core.* (change versions, history, marts) and publish a snapshot."""
    from warehouse.build import build as run_build

    settings.ensure()
    started = time.monotonic()
    result = run_build(settings.home, settings.catalog(), full=full, lake=settings.lake())
    settings.upload_snapshot(getattr(result.snapshot, "version", None))
    snapshot = getattr(result.snapshot, "version", None)
    table = Table("entity", "rows", "files", "changes", title=f"warehouse built in {time.monotonic() - started:.1f}s — "
                  f"snapshot {snapshot}, last change version {result.last_change_version}")
    for name, e in result.entities.items():
        table.add_row(name, str(e.rows), str(e.files), str(getattr(e, "changes", "")))
    console.print(table)
    from iehub.quality_site import refresh_site

    site = refresh_site(settings.home)  # the report people open follows every build
    if site is not None:
        console.print(f"quality report: {site.as_uri()}", markup=False, highlight=False)


def status_table(settings: Settings) -> Table:
    """Sources, last batch, row counts and quarantine counts, joined with the warehouse."""
    import duckdb

    catalog = settings.catalog()
    core_rows: dict[str, int] = {}
    from warehouse.publish import current_path, current_version

    if current_version(settings.home):
        wh = current_path(settings.home)
        con = duckdb.connect(str(wh), read_only=True)
        try:
            for (name,) in con.execute("select table_name from duckdb_tables() where schema_name='core' "
                                       "and not starts_with(table_name, '_')").fetchall():
                core_rows[name] = con.execute(f'select count(*) from core."{name}"').fetchone()[0]
        finally:
            con.close()
    table = Table("source", "entity", "batches", "last batch (UTC)", "status", "loaded", "quarantined",
                  "core rows (entity)", title=f"iehub status — {settings.home}")
    for row in catalog.summary():
        last = row.get("last_finished_at")
        table.add_row(row["source"], row["entity"], str(row["batches"]),
                      last.strftime("%Y-%m-%d %H:%M") if hasattr(last, "strftime") else str(last or "-"),
                      str(row.get("last_status", "-")), str(row["rows_loaded"]), str(row["rows_quarantined"]),
                      str(core_rows.get(row["entity"], "-")))
    return table


@main.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Show each source's batches, last run, loaded/quarantined counts and core row counts."""
    if not settings.home.exists() and not settings.catalog_url:  # a look must not create ./var where there is none
        _fail(f"no hub home at {settings.home}: set IEHUB_HOME (or --home) to the hub's folder, "
              "or run `iehub sync` or `iehub demo` to start one there")
    console.print(status_table(settings))


# ---------------------------------------------------------------------------------- specs
@main.group()
def spec() -> None:
    """Source specs (connectors/specs/*.yaml)."""


@spec.command("list")
def spec_list() -> None:
    """List the shipped source specs and their streams."""
    from iehub.assets import source_streams

    table = Table("source", "stream", "entity")
    for source, streams in source_streams().items():
        for stream, entity in streams.items():
            table.add_row(source, stream, entity)
    console.print(table)


@spec.command("validate")
@click.argument("paths", nargs=-1, required=True)
def spec_validate(paths: tuple[str, ...]) -> None:
    """Validate spec files (or source names) before anything runs."""
    from connectors.errors import SpecError
    from connectors.spec import load_spec, personal_key_warnings

    failed = False
    for path in paths:
        try:
            loaded = load_spec(path)
            console.print(styled("ok", "green", f"{path}: {len(loaded.streams)} streams"))
            for warning in personal_key_warnings(loaded):  # valid, so exit 0: said, not refused
                err.print(styled("warning", "yellow", f"{path}: {warning}"), soft_wrap=True)
        except SpecError as exc:
            failed = True
            err.print(styled("invalid", "red", str(exc)), soft_wrap=True)
    sys.exit(1 if failed else 0)


# ----------------------------------------------------------------------------------- demo
@main.command()
@click.option("--no-serve", is_flag=True, help="Stop after the build (the feed API is not served).")
@click.option("--scale", default=1.0, show_default=True, type=float, help="Sandbox data scale.")
@click.option("--seed", default=7, show_default=True, type=int, help="Sandbox data seed.")
@click.pass_obj
def demo(settings: Settings, no_serve: bool, scale: float, seed: int) -> None:
    """Everything on embedded defaults: sandbox up, each source through its Airflow DAG, build, summary.

    Running it again on the same IEHUB_HOME syncs incrementally and changes nothing that did not change.
    """
    from iehub.demo import run_demo

    try:
        run_demo(settings.ensure(), scale=scale, seed=seed, console=console, serve=not no_serve)
    except RuntimeError as exc:
        _fail(str(exc))


# Command groups that live in their own modules (one per area) register themselves here.
_COMMAND_MODULES = ("iehub.cli_warehouse", "iehub.cli_quality", "iehub.cli_feeds", "iehub.cli_access", "iehub.cli_codes",
                    "iehub.cli_subscriptions", "iehub.cli_deploy")


def _register_command_modules() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(main)


_register_command_modules()

if __name__ == "__main__":
    main()
