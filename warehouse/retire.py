"""Deleting replaced warehouse files and pruned snapshots off the build's path.

Removing a file's last link frees its blocks in the unlink itself: on ext4 that took 32 ms for
the 132 MB warehouse of 1M projects (the rename that put a build in place of a warehouse whose
only link it was, or the prune of a snapshot), and it grows with the file. A build therefore
moves what it drops into ``<home>/tmp/retired/`` (a rename in the same filesystem, atomic and
O(1)) and deletes it there on a background thread. The thread is not a daemon: a process that
builds and exits (``iehub build``, an Airflow task) waits for it before it ends. Whatever a
crash left in the folder is deleted by the next build (:func:`sweep`).
"""
from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

#: Under the hub's home: what a build dropped and has not finished deleting.
RETIRED = Path("tmp") / "retired"

_threads: list[threading.Thread] = []
_lock = threading.Lock()
_names = itertools.count()


def retired_dir(home: Path) -> Path:
    return Path(home) / RETIRED


def hold(path: Path, home: Path) -> Path | None:
    """Give ``path`` (a file) a second name under the retired folder, so that replacing or
    unlinking ``path`` no longer frees its blocks; :func:`release` the returned name afterwards.
    None when ``path`` does not exist or cannot be linked there (another filesystem): the caller's
    replace then frees the file itself, as before."""
    target = _new_name(home, path.name)
    try:
        os.link(path, target)
    except FileNotFoundError:
        return None
    except OSError as exc:  # EXDEV, a filesystem without hard links: the old, synchronous way
        log.debug("cannot link %s into %s (%s); it is freed where it is replaced", path, target.parent, exc)
        return None
    return target


def retire(path: Path, home: Path) -> None:
    """Take ``path`` (a file or a folder) out of where it was at once, and delete it in the background.
    Falls back to deleting it here if it cannot be moved into the retired folder."""
    target = _new_name(home, path.name)
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.debug("cannot move %s into %s (%s); deleting it in place", path, target.parent, exc)
        _delete(path)
        return
    release(target)


def release(held: Path | None) -> None:
    """Delete ``held`` (a name :func:`hold` or :func:`retire` gave) on a background thread."""
    if held is not None:
        _start(lambda: _delete(held), held)


def sweep(home: Path) -> None:
    """Delete, in the background, what an earlier process left in the retired folder (it was
    cut short: a crash between the move and the delete, or a kill)."""
    folder = retired_dir(home)
    try:
        leftovers = sorted(folder.iterdir())
    except FileNotFoundError:
        return
    with _lock:  # names this process is still deleting are not leftovers
        busy = {t.name for t in _threads if t.is_alive()}
    leftovers = [p for p in leftovers if f"iehub-retire:{p}" not in busy]
    if leftovers:
        log.info("deleting %d leftover(s) of an earlier build in %s", len(leftovers), folder)
        for path in leftovers:
            _start(lambda p=path: _delete(p), path)


def wait() -> None:
    """Join every deletion this process started (tests; a caller that needs the space back now)."""
    while True:
        with _lock:
            pending = [t for t in _threads if t.is_alive()]
            _threads[:] = pending
        if not pending:
            return
        for thread in pending:
            thread.join()


def _new_name(home: Path, name: str) -> Path:
    folder = retired_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{os.getpid()}-{next(_names)}-{name}"


def _start(work: Callable[[], None], path: Path) -> None:
    thread = threading.Thread(target=work, name=f"iehub-retire:{path}", daemon=False)
    with _lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        _threads.append(thread)
    thread.start()


def _delete(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except FileNotFoundError:  # another process's sweep got there first
        pass
    except OSError as exc:  # left for the next build's sweep; never fails a build
        log.warning("could not delete %s (%s); the next build retries", path, exc)
