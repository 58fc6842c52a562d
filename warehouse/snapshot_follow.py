"""Readers on other machines: follow the snapshots a builder uploads to ``IEHUB_PUBLISH_URL``.

A builder publishes locally (:mod:`warehouse.publish`) and, with ``IEHUB_PUBLISH_URL``, uploads
each snapshot's files and then the ``CURRENT`` object. A feed server or an analyst's machine
that shares only object storage with the builder calls :func:`pull`: when the remote ``CURRENT``
names a version newer than the local one, it downloads that version's ``warehouse.duckdb`` and
``manifest.json`` into a hidden cache folder and hands the file to :func:`warehouse.publish.publish`
under the *same* version name. Readers then open it exactly as on the builder (``current_path``),
cursors minted on one machine name versions another machine knows, and retention (and the
never-remove-an-open-snapshot rule) stays the local one.

Guarantees: a snapshot appears locally only whole (download to a temporary name, then the
atomic publish steps); ``CURRENT`` only moves forward (versions are UTC timestamps that sort, so
an older remote pointer, such as on the builder itself right after a local build, changes
nothing); a failed download leaves the local snapshots as they were and says which object and
why. Why download rather than let DuckDB read the object directly: DuckDB's httpfs would need an
extension (none may be fetched offline), and a local file gives readers the same open-once,
read-many behaviour and the same retention as on the builder.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from warehouse.publish import CURRENT, DATABASE, MANIFEST, current_version, publish, published_dir

if TYPE_CHECKING:
    from warehouse.lakestore import LakeStore

__all__ = ["FollowError", "cache_dir", "follow", "pull", "remote_version"]

#: Local folder (under ``published/``) where downloads wait until they are published whole.
CACHE = ".remote"


class FollowError(RuntimeError):
    """A remote snapshot could not be read or adopted; the local snapshots are unchanged."""


def cache_dir(home: Path) -> Path:
    return published_dir(home) / CACHE


def remote_version(store: LakeStore) -> str | None:
    """The version the remote ``CURRENT`` object names, or None when nothing was uploaded yet."""
    if not store.exists(CURRENT):
        return None
    # Always fetched afresh: every pointer has the same size, and object stores keep mtimes to the
    # second, so the store's size-and-mtime cache check could keep a stale pointer.
    store.path(CURRENT).unlink(missing_ok=True)
    try:
        text = store.local(CURRENT).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise FollowError(f"cannot read {store.where(CURRENT)}: {exc}") from None
    if not text or "/" in text or text.startswith("."):
        raise FollowError(f"{store.where(CURRENT)} does not name a snapshot version ({text[:40]!r})")
    return text


def pull(home: Path, store: LakeStore, *, keep: int | None = None) -> str | None:
    """Adopt the remote current snapshot when it is newer than the local one; returns it, or None."""
    version = remote_version(store)
    local = current_version(home)
    if version is None or (local is not None and version <= local):
        return None
    if (published_dir(home) / version).exists():
        return None  # adopted before, and a newer local one was published since
    try:
        database = store.local(f"{version}/{DATABASE}")
        manifest = json.loads(store.local(f"{version}/{MANIFEST}").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FollowError(f"{store.where(CURRENT)} names {version}, but {exc}; the upload may be incomplete "
                          "or pruned: the next pull retries") from None
    except (OSError, ValueError) as exc:
        raise FollowError(f"cannot download snapshot {version} from {store.where(version)}: {exc}") from None
    try:
        manifest.pop("version", None)
        publish(home, database, manifest, keep=keep, version=version)
    finally:
        shutil.rmtree(cache_dir(home) / version, ignore_errors=True)  # the published hard link keeps the bytes
    return version


def follow(home: Path, store: LakeStore, every: float, stop: threading.Event,
           on_error: Callable[[Exception], None] | None = None) -> None:
    """Pull every ``every`` seconds until ``stop`` is set; errors go to ``on_error`` and the loop goes on."""
    while not stop.is_set():
        try:
            pull(home, store)
        except (FollowError, OSError) as exc:
            if on_error is not None:
                on_error(exc)
        stop.wait(every)
