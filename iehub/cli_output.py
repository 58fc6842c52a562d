"""What the `iehub` CLI prints: data verbatim, and every failure as one line.

Two guarantees. (1) Text that comes from sources, the warehouse or an error message is never
read as rich markup or emoji codes: a cell holding ``[/]`` used to crash the table
(``MarkupError``), ``[bold red]`` vanished, and the ``[source …; to act: …]`` tail of every
connector error was taken for a style tag. The consoles here have markup and emoji off, so
nothing can be interpreted; styled words are built with ``Text``. (2) An expected failure
(a connector or pipeline error, a held build lock, a full disk, an unreachable or read-only
database, a malformed URL) prints ``error: <what> — <where>; <what to do>`` and exits 1;
the traceback is shown only with ``iehub -v``. The mapping lives in one function,
:func:`describe_error`, called by the CLI group's single exception handler, rather than in
try blocks scattered over the commands. Messages are cut to their first line and stripped of
URL credentials, so a database driver's echo of a statement or a DSN cannot leak secrets or
personal data.
"""
from __future__ import annotations

import errno
import re
import sys
import traceback
from pathlib import Path

from rich.console import Console
from rich.text import Text

#: packages whose exceptions carry messages written for the user (what, where, what to do)
OUR_PACKAGES = ("connectors", "schemas", "quality", "warehouse", "feeds", "iehub", "sandbox")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@", re.I)
_REPO = Path(__file__).resolve().parent.parent


def data_console(*, stderr: bool = False) -> Console:
    """A console that prints strings as they are: no markup, no emoji codes, no highlighting.

    Tables stay readable when piped or captured (rich would fall back to 80 columns).
    """
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False,
                   width=None if stream.isatty() else 160)


def styled(label: str, style: str, message: str = "") -> Text:
    """``label`` in ``style`` followed by ``message`` taken literally (never parsed as markup)."""
    return Text.assemble((label, style), " " if message else "", message)


def print_error(console: Console, message: str) -> None:
    console.print(styled("error:", "red", message), soft_wrap=True)


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0].strip()


def scrub(text: str) -> str:
    """First line only, with any ``scheme://user:password@`` credentials replaced by ***."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", _first_line(text))


def _where_in_code(exc: BaseException) -> str:
    """The innermost frame of our own code the exception passed through (file:line)."""
    place = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if _REPO in path.parents and ".venv" not in path.parts:
            place = f"{path.relative_to(_REPO)}:{frame.lineno}"
    return place or "iehub"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def describe_error(exc: BaseException) -> str | None:
    """One line ``<what> — <where>; <what to do>`` for an expected failure; None for a bug."""
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            target = f" {cause.filename}" if cause.filename else ""
            return (f"disk full while writing{target} — no space left on the device holding IEHUB_HOME; "
                    "free space there (or set IEHUB_HOME to a larger disk) and run the command again; "
                    "files are written under temporary names, so nothing half-written was put in place")
    module = type(exc).__module__.split(".")[0]
    if module in OUR_PACKAGES:
        message = scrub(str(exc)) or type(exc).__name__
        if "readonly database" in message.replace("-", "").lower():
            message += (" — give the hub's user write access to that database file and its folder, or point "
                        "IEHUB_FEEDS_DB_URL / IEHUB_CATALOG_URL at a writable database")
        return message
    try:
        import sqlalchemy.exc as sa_exc
    except ImportError:  # pragma: no cover - sqlalchemy is a core dependency
        sa_exc = None  # type: ignore[assignment]
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        detail = scrub(str(exc.orig)) if exc.orig is not None else type(exc).__name__
        if "readonly" in detail.replace("-", "").replace(" ", "").lower():
            return (f"database is read-only ({detail}) — the feed database (IEHUB_FEEDS_DB_URL, default "
                    "IEHUB_HOME/feeds/feeds.db) or the catalog (IEHUB_CATALOG_URL, default IEHUB_HOME/catalog.db); "
                    "give the hub's user write access to the file and its folder, or point the URL at a writable "
                    "database")
        return (f"cannot use the database ({detail}) — the catalog (IEHUB_CATALOG_URL) or feed database "
                "(IEHUB_FEEDS_DB_URL); check that the server is up and reachable and the URL is right, "
                "then run the command again")
    if sa_exc is not None and isinstance(exc, sa_exc.ArgumentError):
        return (f"malformed database URL ({scrub(str(exc))}) — IEHUB_CATALOG_URL or IEHUB_FEEDS_DB_URL; "
                "write it as dialect://user:password@host:port/database")
    try:
        import requests
    except ImportError:  # pragma: no cover
        requests = None  # type: ignore[assignment]
    if requests is not None and isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                                                 requests.exceptions.InvalidSchema)):
        return (f"malformed source URL ({scrub(str(exc))}) — a source's base URL (its IEHUB_*_BASE_URL or the "
                "spec's base_url); fix the host or port (ports are 1-65535) and run the command again")
    if isinstance(exc, ValueError) and "port" in "".join(traceback.format_tb(exc.__traceback__)[-1:]).lower():
        return (f"malformed URL: the port is not a number ({scrub(str(exc))}) — a URL in the environment "
                "(IEHUB_CATALOG_URL, IEHUB_FEEDS_DB_URL or a source's IEHUB_*_BASE_URL); fix the port "
                "(1-65535) and run the command again")
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        target = exc.filename or "a file under IEHUB_HOME"
        return (f"cannot write {target} ({exc.strerror}) — the hub's files under IEHUB_HOME; give the hub's "
                "user write access there, or set IEHUB_HOME to a writable folder")
    return None


def report_failure(exc: BaseException, *, verbose: bool, console: Console) -> None:
    """Print the traceback (only when verbose) and then the one error line."""
    if verbose:
        console.print(Text("".join(traceback.format_exception(exc))), soft_wrap=True)
    message = describe_error(exc)
    if message is None:
        message = (f"unexpected {type(exc).__name__} — in {_where_in_code(exc)}; this is a bug in iehub: "
                   f"run the command again with `iehub -v …` to see the traceback and report it")
    print_error(console, message)
