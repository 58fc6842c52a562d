"""`iehub quality …` and `iehub quarantine …`: the gate's results and the rows it kept back."""
from __future__ import annotations

import sys

import click
from rich.table import Table

from iehub.cli_output import data_console, print_error
from iehub.config import Settings

console = data_console()  # rules, reasons and records are printed as they are, never read as markup


@click.group()
def quality() -> None:
    """Quality gate results (Great Expectations suites generated from the schemas)."""


@quality.command("report")
@click.option("--last", default=20, show_default=True, help="Recent batches per source and entity.")
@click.pass_obj
def quality_report(settings: Settings, last: int) -> None:
    """Pass rates per source and entity over the recent batches, then the rules that fail most."""
    from quality.store import failing_rules, pass_rates

    engine = settings.catalog().engine
    table = Table("source", "entity", "batches", "checks", "failures", "pass rate", "last checked (UTC)",
                  title=f"quality — last {last} batches per source and entity")
    for r in pass_rates(engine, last_batches=last):
        table.add_row(r["source"], r["entity"], str(r["batches"]), f"{r['checks']:,}", f"{r['failures']:,}",
                      f"{r['pass_rate']:.2%}", str(r["last_checked_at"])[:16].replace("T", " "))
    console.print(table)
    rules = Table("source", "entity", "rule", "action", "rows", title="failing rules")
    for r in failing_rules(engine)[:25]:
        rules.add_row(r["source"], r["entity"], r["rule"], r["action"], f"{r['rows']:,}")
    console.print(rules)


@quality.command("site")
@click.pass_obj
def quality_site(settings: Settings) -> None:
    """Write the hub quality report (offline HTML: sources, districts, freshness, rejecting rules, 定期报送)."""
    from iehub.quality_site import SiteError, write_site

    try:
        index = write_site(settings.home)
    except SiteError as exc:
        print_error(console, str(exc))
        sys.exit(1)
    console.print(f"quality report: {index.as_uri()}")


@click.group()
def quarantine() -> None:
    """Rows kept out of the warehouse, with the rule they broke; list, show and replay them."""


@quarantine.command("list")
@click.option("--source", default=None)
@click.option("--entity", default=None)
@click.option("--rule", default=None, help="e.g. quality.org_uscc.valid_uscc or mapping.date")
@click.pass_obj
def quarantine_list(settings: Settings, source: str | None, entity: str | None, rule: str | None) -> None:
    """Quarantined rows counted by source, entity and rule: open, and closed by a later load or a replay."""
    from iehub.corrections import OPEN, quarantine_rows

    rows = quarantine_rows(settings, source=source, entity=entity, rule=rule)
    table = Table("source", "entity", "rule", "open", "closed", "batches", "example reason", title="quarantine")
    opened = 0
    if rows.num_rows:
        grouped: dict[tuple[str, str, str], list[dict]] = {}
        for r in rows.select(["_source", "entity", "rule", "_batch_id", "reason", "state"]).to_pylist():
            grouped.setdefault((r["_source"], r["entity"], r["rule"]), []).append(r)
        for (src, ent, rl), items in sorted(grouped.items(), key=lambda kv: -len(kv[1])):
            n_open = sum(1 for i in items if i["state"] == OPEN)
            opened += n_open
            table.add_row(src, ent, rl, str(n_open), str(len(items) - n_open),
                          str(len({i["_batch_id"] for i in items})), (items[0]["reason"] or "")[:70])
    console.print(table)
    console.print(f"{opened} open rows, {rows.num_rows - opened} closed. `iehub quarantine show BATCH` for the rows "
                  "of one batch; `iehub quarantine export --source S` writes the open ones for the source to fix.")


@quarantine.command("show")
@click.argument("batch")
@click.option("--raw", is_flag=True, help="Also print each record as received (may contain personal data).")
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def quarantine_show(settings: Settings, batch: str, raw: bool, limit: int) -> None:
    """The quarantined rows of one BATCH: position, key, rule and reason."""
    import pyarrow.parquet as pq

    from datetime import timezone

    from iehub.pipeline import refused_path

    row = settings.catalog().get_batch(batch)
    path = None
    if row is not None and row.quarantine_path:
        path = settings.lake().resolve(row.quarantine_path)
    elif row is not None and row.status == "failed":  # refused at the gate: its rows are kept beside the quarantine
        started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=timezone.utc)
        lake = settings.lake()
        path = lake.resolve(lake.relative(refused_path(settings, row.entity, row.source, started, batch)))
    if row is None or path is None or not path.exists():
        why = f"batch {batch!r} failed before its rows were checked ({row.message})" if row is not None \
            else f"no batch {batch!r} in the ledger"
        print_error(console, f"{why} — `iehub status` lists batches, `iehub quarantine list` those with rows")
        sys.exit(1)
    data = pq.read_table(path)
    if row.status == "failed":
        console.print(f"{batch} was refused at the gate, nothing landed: {row.message}")
    title = f"{batch}: {data.num_rows} quarantined of {row.rows_in} rows in" if row.status != "failed" \
        else f"{batch}: {data.num_rows} rows refused"
    table = Table("row", "page", "key", "rule", "reason", "replayed in", title=title)
    for r in data.slice(0, limit).to_pylist():
        table.add_row(str(r["_row_index"]), str(r["_page"]), str(r["_key"]), r["rule"], r["reason"],
                      str(r.get("replayed_in") or ""))
        if raw:
            table.add_row("", "", "", "", r["_record"], "")
    console.print(table)


@quarantine.command("export")
@click.option("--source", required=True, help="The source whose steward gets the file, e.g. district_yangpu.")
@click.option("--district", default=None, help="Only rows of this district (code or name, e.g. 310110 or 杨浦).")
@click.option("--since", default=None, help="Only batches started on or after this date (YYYY-MM-DD, UTC).")
@click.option("--format", "fmt", type=click.Choice(["xlsx", "csv"]), default="xlsx", show_default=True)
@click.option("--out", default=None, help="File (xlsx) or folder (csv); default quarantine_<source>_<date> here.")
@click.option("--all", "include_closed", is_flag=True, help="Also rows already closed (by a later load or a replay).")
@click.pass_obj
def quarantine_export(settings: Settings, source: str, district: str | None, since: str | None, fmt: str,
                      out: str | None, include_closed: bool) -> None:
    """Write the open quarantined rows of SOURCE for its data steward to correct and send again.

    One sheet (xlsx) or CSV per entity: the row as received, its line in the original file, the
    field, the rule and the reason in Chinese. A corrected resubmission closes the rows it fixes.
    """
    from datetime import date, datetime, timezone
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.compute as pc

    from iehub.corrections import OPEN, CorrectionError, district_of_rows, quarantine_rows, resolve_district, \
        write_corrections

    try:
        start = datetime.combine(date.fromisoformat(since), datetime.min.time(), timezone.utc) if since else None
    except ValueError:
        raise click.ClickException(f"--since {since!r} is not a date (YYYY-MM-DD)") from None
    try:
        code = resolve_district(district) if district else None
        rows = quarantine_rows(settings, source=source, since=start)
        if rows.num_rows and not include_closed:
            rows = rows.filter(pc.equal(rows.column("state"), OPEN))
        if rows.num_rows and code:
            rows = rows.filter(pa.array([d == code for d in district_of_rows(rows)]))
        target = Path(out) if out else Path(f"quarantine_{source}_{date.today():%Y%m%d}" + (".xlsx" if fmt == "xlsx" else ""))
        written = write_corrections(rows, target, fmt)
    except CorrectionError as exc:
        raise click.ClickException(str(exc)) from None
    entities = sorted(set(rows.column("entity").to_pylist())) if rows.num_rows else []
    console.print(f"{rows.num_rows} rows of {source} ({', '.join(entities) or 'none open'}) written to "
                  f"{', '.join(str(p) for p in written)}. Send it to the source's data steward; rows close when a "
                  "corrected file or snapshot loads them (`iehub quarantine list`).")


@quarantine.command("replay")
@click.option("--source", default=None)
@click.option("--entity", default=None)
@click.option("--rule", default=None)
@click.option("--batch", default=None, help="Only the rows of this batch.")
@click.pass_obj
def quarantine_replay(settings: Settings, source: str | None, entity: str | None, rule: str | None,
                      batch: str | None) -> None:
    """Re-run open quarantined rows through the current mapping and suite; rows that pass land."""
    from iehub.pipeline import PipelineError
    from iehub.replay import replay

    try:
        results = replay(settings.ensure(), source=source, entity=entity, rule=rule, batch=batch)
    except PipelineError as exc:
        print_error(console, str(exc))
        sys.exit(1)
    table = Table("source", "entity", "replay batch", "replayed", "now loaded", "still quarantined", "superseded",
                  title="quarantine replay")
    for r in results:
        table.add_row(r["source"], r["entity"], r["batch_id"], str(r["replayed"]), str(r["rows_loaded"]),
                      str(r["rows_quarantined"]), str(r["superseded"]))
    console.print(table)
    if results:
        console.print("Run `iehub build` to bring the replayed rows into the warehouse.")


@quarantine.command("accept")
@click.argument("file")
@click.option("--source", default=None, help="Only this file source (default: any holding FILE as suspect).")
@click.pass_obj
def quarantine_accept(settings: Settings, file: str, source: str | None) -> None:
    """Accept a snapshot FILE held as suspect (it would delete too much) when the shrink is real."""
    from iehub.file_ledger import AcceptError, accept_file

    try:
        done = accept_file(settings.ensure(), file.rsplit("/", 1)[-1], source=source)  # a path or a name
    except AcceptError as exc:
        raise click.ClickException(str(exc)) from None
    for item in done:
        console.print(f"{item.source}.{item.stream}: {item.name} accepted; the next sync applies it "
                      f"(it was held: {item.reason})", markup=False, highlight=False)


def register(main: click.Group) -> None:
    main.add_command(quality)
    main.add_command(quarantine)
