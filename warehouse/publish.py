"""Published snapshots: what every reader opens, so no reader ever waits for the builder.

Layout under ``IEHUB_HOME``::

    published/<version>/warehouse.duckdb   an immutable build (a hard link to the builder's file)
    published/<version>/manifest.json      version, times, change-version range, row counts
    published/CURRENT -> <version>         a relative symlink, switched with one rename

Why a hard link: the builder never writes a finished warehouse file again (each build copies
it to ``warehouse.duckdb.building``, works on the copy and renames it into place), so the
inode a snapshot links to is frozen. Publishing therefore costs O(1), and a reader holding a
snapshot open keeps reading the same bytes whatever the builder does next. DuckDB only takes
a lock on a file it opens; nobody opens a snapshot read-write, so a read-only open never waits.

Retention keeps the newest ``keep`` snapshots (``IEHUB_SNAPSHOTS_KEEP``, default 5) plus
CURRENT, and removes an older one only when no process has it open: DuckDB holds a shared
``fcntl`` lock on every file it has open, and a removal first takes an exclusive
open-file-description lock, which fails while any reader is there.

With ``IEHUB_PUBLISH_URL`` (object storage), :func:`upload` also copies each new snapshot there
for readers on other machines: ``<url>/<version>/warehouse.duckdb`` and ``manifest.json``, then
``<url>/CURRENT`` (a small object holding the version) last. Each object appears whole with its
one PUT, so a reader that follows CURRENT finds a complete snapshot: readers on other machines
(feed servers, ``iehub snapshots --pull``) adopt it through :mod:`warehouse.snapshot_follow`.
The bucket keeps the same number of snapshots as the home (:func:`prune_remote`, after each upload):
every upload is a whole warehouse (170 MB at 1M projects, 800 MB at 5M), so an hourly build
without retention filled ~4-19 GB a day. A reader holds its own copy once pulled, and only an
older version than the newest ``keep`` is removed, never the one CURRENT names.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from warehouse import retire
from warehouse.landing import fsync_dir
from warehouse.lakestore import LakeStoreError

__all__ = [
    "DEFAULT_KEEP",
    "PublishError",
    "Snapshot",
    "connect_current",
    "current_path",
    "current_version",
    "list_snapshots",
    "prune",
    "prune_remote",
    "new_version",
    "publish",
    "published_dir",
    "upload",
]

log = logging.getLogger(__name__)

DEFAULT_KEEP = 5
_F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)  # Linux value; Python < 3.12 does not name it
_FLOCK = "hhqqi4x"  # struct flock on 64-bit Linux: type, whence, start, len, pid, padding
CURRENT = "CURRENT"
DATABASE = "warehouse.duckdb"
MANIFEST = "manifest.json"


class PublishError(RuntimeError):
    """Nothing is published (yet), or a snapshot cannot be published or opened."""


@dataclass(frozen=True)
class Snapshot:
    """One published build."""

    version: str
    path: Path
    manifest: dict[str, Any]
    is_current: bool = False

    @property
    def database(self) -> Path:
        return self.path / DATABASE


def published_dir(home: Path) -> Path:
    return Path(home) / "published"


def current_version(home: Path) -> str | None:
    """The version CURRENT points at, or None before the first build."""
    link = published_dir(home) / CURRENT
    try:
        return os.readlink(link)
    except FileNotFoundError:
        return None


def current_path(home: Path) -> Path:
    """The current snapshot's DuckDB file, resolved, so a reader stays on one version.

    Readers (``iehub sql``, the feed API, ``iehub status``, tests) call this instead of
    opening ``warehouse.duckdb``, which belongs to the builder.
    """
    version = current_version(home)
    if version is None:
        raise PublishError(
            f"no published snapshot under {published_dir(home)}; run `iehub build` first"
        )
    return published_dir(home) / version / DATABASE


def connect_current(home: Path) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection on the current snapshot, in UTC."""
    con = duckdb.connect(str(current_path(home)), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


def new_version(home: Path) -> str:
    """A sortable, unique version name: UTC time to the microsecond, later than every published one."""
    root = published_dir(home)
    existing = [p.name for p in root.iterdir() if not p.name.startswith(".")] if root.exists() else []
    latest = max((v for v in existing if v != CURRENT), default="")
    version = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    while version <= latest or (root / version).exists():  # a clock that went back
        version = latest + "-1" if version <= latest else version + "-1"
        latest = ""
    return version


def publish(
    home: Path, built: Path, manifest: dict[str, Any], *, keep: int | None = None, version: str | None = None
) -> Snapshot:
    """Link a finished warehouse file in as a new snapshot, switch CURRENT, prune old ones.

    ``built`` must be a closed DuckDB file that will never be written again. Steps are each
    atomic: the snapshot directory appears complete under its final name, then CURRENT
    switches with one ``rename``; a crash between the steps leaves CURRENT on the previous
    snapshot and at worst an unreferenced snapshot directory, which :func:`prune` removes.
    """
    root = published_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    version = version or new_version(home)
    if (root / version).exists():
        raise PublishError(f"snapshot {root / version} already exists; versions are never reused")
    staging = root / f".{version}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        try:
            os.link(built, staging / DATABASE)
        except OSError:  # another filesystem: fall back to a copy
            shutil.copyfile(built, staging / DATABASE)
        umask = os.umask(0o077)  # read it back (the hub runs under 0o077: the snapshot holds personal data)
        os.umask(umask)
        os.chmod(staging / DATABASE, 0o444 & ~umask)  # read-only; group/world bits only where the umask allows
        body = {"version": version, "published_at": now.isoformat(), **manifest}
        (staging / MANIFEST).write_text(json.dumps(body, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        with open(staging / MANIFEST, "rb") as handle:
            os.fsync(handle.fileno())
        fsync_dir(staging)
        os.rename(staging, root / version)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _switch_current(root, version)
    prune(home, keep=keep)
    return Snapshot(version, root / version, body, True)


def upload(home: Path, version: str, store: Any, *, keep: int | None = None) -> list[str]:
    """Copy a local snapshot to a :class:`warehouse.lakestore.LakeStore`: its files first, CURRENT last;
    then remove the remote snapshots beyond the newest ``keep`` (:func:`prune_remote`). Returns the
    versions removed."""
    folder = published_dir(home) / version
    for name in (DATABASE, MANIFEST):
        store.put(f"{version}/{name}", folder / name)
    pointer = published_dir(home) / f".{CURRENT}.{os.getpid()}.upload"
    pointer.write_text(version + "\n", encoding="utf-8")
    try:
        store.put(CURRENT, pointer)
    finally:
        pointer.unlink(missing_ok=True)
    return prune_remote(store, current=version, keep=keep)


#: What new_version names a snapshot: only folders named so are ever removed from a bucket.
_VERSION_NAME = re.compile(r"\d{8}T\d{12}Z(-1)*")


def prune_remote(store: Any, *, current: str, keep: int | None = None) -> list[str]:
    """Remove the uploaded snapshots older than the newest ``keep`` (as :func:`prune`), never ``current``.

    Only folders named like a version are touched, so other objects under the URL stay; an old folder
    goes whole whatever it holds (a database without its manifest, left by an upload cut short, too),
    and one whose removal was cut short is still listed, so the next upload finishes it. A removal that
    fails is logged and left for the next upload: it never fails the build.
    """
    keep = _keep(keep)
    try:
        versions = [name for name in store.folders() if _VERSION_NAME.fullmatch(name)]
    except (OSError, LakeStoreError) as exc:
        log.warning("remote snapshots not pruned: %s", exc)
        return []
    versions.sort()
    removed = []
    for version in versions[:-keep]:  # keep >= 1: nothing when there are no more than keep
        if version >= current:  # newer than the one just uploaded (another builder's): not this one's to remove
            continue
        try:
            store.delete_folder(version)  # its files and the folder itself (S3 keeps an empty one as an object)
        except (OSError, LakeStoreError) as exc:
            log.warning("remote snapshot %s not removed (%s); the next upload retries", store.where(version), exc)
            continue
        removed.append(version)
    if removed:
        log.info("removed %d uploaded snapshot(s) beyond the newest %d: %s", len(removed), keep, ", ".join(removed))
    return removed


def _switch_current(root: Path, version: str) -> None:
    """Point CURRENT at ``version`` with one rename of a fresh symlink (atomic on POSIX)."""
    temp = root / f".{CURRENT}.{os.getpid()}.tmp"
    temp.unlink(missing_ok=True)
    os.symlink(version, temp)
    os.replace(temp, root / CURRENT)
    fsync_dir(root)


def list_snapshots(home: Path) -> list[Snapshot]:
    """Published snapshots, oldest first."""
    root = published_dir(home)
    if not root.exists():
        return []
    current = current_version(home)
    out = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")):
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        out.append(Snapshot(path.name, path, manifest, path.name == current))
    return out


def in_use(database: Path) -> bool:
    """Whether any process has the DuckDB file open (it then holds a shared fcntl lock on it).

    Read from ``/proc/locks`` where there is one: probing with an fd of our own would, on
    closing it, drop every POSIX lock this process holds on the file (POSIX ties those locks
    to the process, not the fd), so a process that both reads snapshots and prunes would
    unlock its own readers. The fcntl probe remains for systems without ``/proc/locks``.
    """
    try:
        st = os.stat(database)
    except FileNotFoundError:
        return False
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            return any(ident in line.split() for line in locks)
    except OSError:
        pass
    try:
        fd = os.open(database, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        # struct flock: l_type, l_whence, l_start, l_len, l_pid (OFD locks need l_pid = 0).
        request = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        try:
            answer = fcntl.fcntl(fd, _F_OFD_GETLK, request)
        except OSError:
            return True  # cannot tell: keep the snapshot
        return struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


def _keep(keep: int | None) -> int:
    """How many snapshots to keep: ``keep``, else ``IEHUB_SNAPSHOTS_KEEP``, else DEFAULT_KEEP; at least 1."""
    if keep is None:
        text = os.environ.get("IEHUB_SNAPSHOTS_KEEP") or str(DEFAULT_KEEP)
        try:
            keep = int(text)
        except ValueError:
            raise PublishError(f"IEHUB_SNAPSHOTS_KEEP={text!r}: expected how many snapshots to keep, e.g. 5") from None
    return max(1, keep)


def prune(home: Path, *, keep: int | None = None) -> list[str]:
    """Remove snapshots beyond the newest ``keep`` that nobody reads; returns the removed versions."""
    keep = _keep(keep)
    root = published_dir(home)
    if not root.exists():
        return []
    for leftover in root.glob(".*.tmp"):  # a crashed publish
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    snapshots = list_snapshots(home)
    removed = []
    for snap in snapshots[:-keep]:
        if snap.is_current or in_use(snap.database):
            continue
        retire.retire(snap.path, home)  # out of published/ now, its files deleted in the background
        removed.append(snap.version)
    if removed:
        fsync_dir(root)
    return removed
