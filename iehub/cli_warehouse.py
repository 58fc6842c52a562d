"""`iehub sql`, `iehub dictionary`, `iehub snapshots`: the analyst's side of the warehouse.

Everything here reads the current published snapshot read-only, never ``warehouse.duckdb``
(the builder's file), so no command here can wait for or disturb a build.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click
from rich.table import Table

from iehub.cli_output import data_console, print_error
from iehub.config import Settings

console = data_console()  # cells are printed as they are: a '[/]' in the data is text, not markup
err = data_console(stderr=True)


def _print(con, sql: str, fmt: str, max_rows: int) -> None:  # type: ignore[no-untyped-def]
    """Run one statement and print its result; Arrow keeps TIMESTAMPTZ and DECIMAL exact."""
    relation = con.sql(sql)
    if relation is None:  # a statement without a result (SET, PRAGMA…)
        return
    table = relation.to_arrow_table()
    if fmt == "csv":  # CSV is opened in spreadsheets: the hub's one formula rule (README, Feed API)
        from feeds.formats import neutralise_formulas

        table = neutralise_formulas(table)
    rows = table.slice(0, max_rows).to_pylist() if fmt == "table" else table.to_pylist()
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(table.column_names)
        writer.writerows([list(r.values()) for r in rows])
    elif fmt == "json":
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    else:
        out = Table(*table.column_names)
        for row in rows:
            out.add_row(*["NULL" if v is None else str(v) for v in row.values()])
        console.print(out)
        if table.num_rows > max_rows:
            console.print(f"({table.num_rows} rows, first {max_rows} shown; --max-rows or --format csv for all)")


def _shell(con, fmt: str, max_rows: int, version: str) -> None:  # type: ignore[no-untyped-def]
    """A small read-only SQL shell: statements end with ';', `.tables`, `.quit`."""
    import duckdb

    console.print(f"iehub sql on snapshot {version} (read-only). End statements with ';'. "
                  ".tables lists tables, .quit leaves.")
    buffer: list[str] = []
    while True:
        try:
            line = input("iehub> " if not buffer else "  ...> ")
        except EOFError:
            break
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit", r"\q"):
            break
        if not buffer and stripped == ".tables":
            stripped = ("SELECT schema_name || '.' || table_name AS table_name, comment FROM duckdb_tables() "
                        "WHERE schema_name IN ('core', 'marts', 'ops', 'ref') UNION ALL "
                        "SELECT schema_name || '.' || view_name, comment FROM duckdb_views() "
                        "WHERE NOT internal AND schema_name IN ('core', 'marts', 'ops', 'ref') ORDER BY 1;")
        buffer.append(stripped)
        if stripped.endswith(";"):
            sql = "\n".join(buffer)
            buffer = []
            try:
                _print(con, sql, fmt, max_rows)
            except duckdb.Error as exc:
                print_error(err, str(exc))


def register(main: click.Group) -> None:
    @main.command("sql")
    @click.argument("query", required=False)
    @click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
    @click.option("--max-rows", default=200, show_default=True, type=int, help="Rows shown in table format.")
    @click.pass_obj
    def sql(settings: Settings, query: str | None, fmt: str, max_rows: int) -> None:
        """Run QUERY on the current published snapshot (read-only), or open a SQL shell without one.

        Example: iehub sql "select * from marts.projects_by_district_industry order by budget_amount desc"
        """
        import duckdb

        from warehouse.publish import PublishError, connect_current, current_version

        try:
            con = connect_current(settings.home)
        except PublishError as exc:
            print_error(err, str(exc))
            sys.exit(1)
        try:
            if query is None:
                _shell(con, fmt, max_rows, current_version(settings.home) or "?")
                return
            try:
                _print(con, query, fmt, max_rows)
            except duckdb.Error as exc:
                print_error(err, str(exc))
                sys.exit(1)
        finally:
            con.close()

    @main.command("dictionary")
    @click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("docs"),
                  show_default=True, help="Directory for data_dictionary.md and data_dictionary.html.")
    def dictionary(out_dir: Path) -> None:
        """Write the data dictionary (Markdown and HTML, with PII grades) generated from the schemas."""
        from warehouse.dictionary import write_dictionary

        for path in write_dictionary(out_dir):
            console.print(f"wrote {path}")

    @main.command("snapshots")
    @click.option("--prune", "keep", type=int, default=None, help="Remove unread snapshots beyond the newest KEEP.")
    @click.option("--pull", is_flag=True,
                  help="First fetch the newest snapshot a builder uploaded to IEHUB_PUBLISH_URL (a reader on another "
                       "machine: feed servers do this on their own).")
    @click.pass_obj
    def snapshots(settings: Settings, keep: int | None, pull: bool) -> None:
        """List published warehouse snapshots (CURRENT marked); optionally pull a newer one or prune old ones."""
        from warehouse.publish import list_snapshots, prune

        if pull:
            if not settings.publish_url:
                raise click.UsageError("--pull needs IEHUB_PUBLISH_URL (where the builder uploads its snapshots)")
            version = settings.pull_snapshot()
            console.print(f"pulled {version} from {settings.publish_url.split('?')[0]}" if version
                          else "already current with the published snapshots")
        if keep is not None:
            for version in prune(settings.home, keep=keep):
                console.print(f"removed {version}")
        table = Table("version", "current", "built (UTC)", "last change version", "core rows")
        for snap in list_snapshots(settings.home):
            rows = snap.manifest.get("rows", {})
            table.add_row(snap.version, "*" if snap.is_current else "", str(snap.manifest.get("built_at", "-")),
                          str(snap.manifest.get("last_change_version", "-")), str(sum(rows.values())))
        console.print(table)
