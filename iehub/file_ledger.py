"""Operator decisions on the file ledger: accepting a snapshot the guard held as suspect.

The file ledger lives in each file stream's sync state in the catalog (committed with the batch
that read the file, so it never says a file was applied when its rows did not land). The snapshot
guard never decides that a shrink is real; an operator does, here, by name: the entry is marked
accepted and the file forgotten as handled, so the next sync applies it (the guard is skipped for
that exact content only — a different file with the same name is judged again). The change is
made holding the source's lease (iehub.leases), so it cannot race a sync committing that state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.files.stream import accept_suspect
from connectors.spec import available_sources, load_spec
from iehub.config import Settings
from iehub.leases import SourceBusy, held


class AcceptError(LookupError):
    """No suspect file of that name in any file stream's ledger."""


@dataclass(frozen=True)
class Accepted:
    source: str
    stream: str
    name: str
    reason: str


def accept_file(settings: Settings, name: str, *, source: str | None = None) -> list[Accepted]:
    """Accept the suspect snapshot `name` in every file stream (of `source`, or of any source) holding it."""
    catalog = settings.catalog()
    done: list[Accepted] = []
    for src in [source] if source else available_sources():
        spec = load_spec(src)
        if spec.kind != "file":
            continue
        for stream, stream_spec in spec.streams.items():
            try:
                with held(catalog, src):  # a sync of this source would overwrite the state it read
                    state: dict[str, Any] | None = catalog.get_state(src, stream_spec.entity)
                    entry = accept_suspect(state, name) if state else None
                    if entry is not None:
                        catalog.set_state(src, stream_spec.entity, state)
            except SourceBusy as exc:
                raise AcceptError(f"{exc}; accept {name} once it has finished") from None
            if entry is not None:
                done.append(Accepted(src, stream, entry["name"], entry.get("reason", "")))
    if not done:
        raise AcceptError(f"no snapshot named {name!r} is held as suspect"
                          + (f" in source {source}" if source else " in any file source")
                          + "; `iehub quarantine list` shows what is quarantined, and a file's name is as in its drop folder")
    return done


__all__ = ["AcceptError", "Accepted", "accept_file"]
