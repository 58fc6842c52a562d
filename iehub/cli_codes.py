"""`iehub codes [LIST]`: the code lists a spec's `map:` targets and `code.<list>` normalisers must use.

The lists live in schemas/codes.py (one place, shipped with the hub, nothing fetched); this
prints them so a data engineer connecting a district can pick codes without reading Python.
"""
from __future__ import annotations

import click
from rich.table import Table

from iehub.cli_output import data_console

console = data_console()


@click.command("codes")
@click.argument("name", required=False)
def codes(name: str | None) -> None:
    """Print the code lists (or one LIST: its codes, Chinese and English labels, accepted aliases)."""
    from schemas.codes import CODE_LISTS

    if name is None:
        table = Table("list", "名称", "name", "codes", title="code lists (schemas/codes.py)")
        for lst in CODE_LISTS.values():
            table.add_row(lst.name, lst.zh, lst.en, str(len(lst.codes)))
        console.print(table)
        console.print("`iehub codes LIST` prints one list's codes.")
        return
    if name not in CODE_LISTS:
        raise click.ClickException(f"no code list {name!r}; `iehub codes` lists them ({', '.join(CODE_LISTS)})")
    lst = CODE_LISTS[name]
    aliases: dict[str, list[str]] = {}
    for alias, code in lst.aliases.items():
        aliases.setdefault(code, []).append(alias)
    table = Table("code", "中文", "English", "also accepted", title=f"{lst.name} — {lst.zh} / {lst.en}")
    for code in lst.codes:
        table.add_row(code, lst.label(code, "zh"), lst.label(code, "en"), "、".join(aliases.get(code, [])))
    console.print(table)


def register(main: click.Group) -> None:
    main.add_command(codes)
