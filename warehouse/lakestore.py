"""The lake's files by key, on the hub home's disk (default) or in object storage (``IEHUB_LAKE_URL``).

A key is what the catalog and the manifests between tasks store: a POSIX path relative to the
hub home (``lake/std/…``, ``lake/raw/…``, ``staging/<source>/<stream>/…``), never a local path,
so a step can run on any worker.

- **Local** (no URL): key K is ``IEHUB_HOME/K``, the embedded layout, unchanged. Placing a file
  links (or copies) it to a temp name, renames it onto the key and fsyncs the directory: a reader
  sees the old file or the new one, never half of one.
- **Object storage** (``s3://bucket/prefix``, or any URL pyarrow.fs or fsspec opens): key
  ``lake/X`` is ``<url>/X`` and any other key K is ``<url>/K``. Workers compute in their own home
  and share files only through the store. Object stores have no rename, so the guarantee relied
  on is the store's own: an object becomes visible only when its single PUT (or its multipart
  upload, completed at close) succeeds, whole, and a later PUT or server-side copy of the same key
  replaces it whole (S3 has been strongly read-after-write consistent since 2020). So every file
  is finished on local disk first and then sent in one upload; nothing is ever written to its
  key piece by piece.
- Readers (DuckDB, pyarrow, GX) keep reading local Parquet: :meth:`LakeStore.local` returns the
  file's copy at the same relative path under the worker's home, downloaded (to a temp name, then
  renamed) when absent or when size or mtime differ from the object. Not DuckDB's httpfs: its
  extension cannot be installed here, and a local copy also serves pyarrow and GX unchanged.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit, urlunsplit

import pyarrow.fs as pafs

__all__ = ["LakeStore", "LakeStoreError", "REMOTE_LAKE_KEY_PREFIX"]

REMOTE_LAKE_KEY_PREFIX = "lake/"  # keys under it map onto the URL's root (the URL *is* the lake)
_COPY_BLOCK = 8 << 20


class LakeStoreError(RuntimeError):
    """The object store could not be opened or a file could not be moved to or from it."""


def _check_key(key: str) -> PurePosixPath:
    rel = PurePosixPath(key)
    if not key or rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"lake key {key!r} must be a path relative to the hub home (no '..')")
    return rel


def fsync_parent(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def place_local(src: Path, dst: Path) -> None:
    """Put a finished local file at ``dst`` atomically (hard link to a temp name, rename, dir fsync).

    A link costs no space and leaves ``src`` in place, so a step can run again from its inputs.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.placing")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another filesystem, or no hard links: copy
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    fsync_parent(dst)


def _open_filesystem(url: str, credentials: dict[str, str] | None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path inside it) for a lake URL; credentials go into the S3 options, never a log."""
    parts = urlsplit(url)
    if credentials and parts.scheme == "s3" and credentials.get("access_key"):
        user = f"{quote(credentials['access_key'], safe='')}:{quote(credentials.get('secret_key', ''), safe='')}"
        query = parts.query
        for option in ("endpoint_override", "region"):
            if credentials.get(option) and f"{option}=" not in query:
                query = "&".join(q for q in (query, f"{option}={quote(credentials[option], safe=':/')}") if q)
        url = urlunsplit((parts.scheme, f"{user}@{parts.hostname}", parts.path, query, ""))
    try:
        return pafs.FileSystem.from_uri(url)
    except Exception as arrow_exc:  # noqa: BLE001 - an fsspec-only scheme is tried next
        try:
            import fsspec

            fs, root = fsspec.core.url_to_fs(url)
        except Exception as exc:  # noqa: BLE001 - both openers failed: one message names the URL
            raise LakeStoreError(
                f"cannot open the lake at {_display(url)}: {type(exc).__name__} (pyarrow: "
                f"{type(arrow_exc).__name__}); check IEHUB_LAKE_URL and the lake credentials") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), root


def _display(url: str) -> str:
    """The URL without credentials or query options, for messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))


class LakeStore:
    """Where the lake's keys live for one worker: its home, plus an object store when a URL is set."""

    def __init__(self, home: Path, url: str | None = None, *, credentials: dict[str, str] | None = None) -> None:
        self.home = Path(home)
        self.url = url or None
        self._fs: pafs.FileSystem | None = None
        self._root = ""
        if self.url:
            self._fs, root = _open_filesystem(self.url, credentials)
            self._root = root.rstrip("/")

    @property
    def remote(self) -> bool:
        return self._fs is not None

    def __repr__(self) -> str:
        return f"LakeStore({str(self.home)!r}, {_display(self.url) if self.url else None!r})"

    # -- naming ----------------------------------------------------------------------------

    def _remote_path(self, key: str) -> str:
        rel = _check_key(key).as_posix()
        if rel.startswith(REMOTE_LAKE_KEY_PREFIX):
            rel = rel[len(REMOTE_LAKE_KEY_PREFIX):]
        return f"{self._root}/{rel}" if self._root else rel

    def where(self, key: str) -> str:
        """Where a key lives, for messages (no credentials)."""
        if not self.remote:
            return str(self.home.joinpath(*_check_key(key).parts))
        assert self.url is not None
        return f"{_display(self.url).rstrip('/')}/{self._remote_path(key)[len(self._root):].lstrip('/')}"

    def key_of(self, path: Path | str) -> str:
        """The key of a file under the home (manifests written before keys held absolute paths)."""
        p = Path(path)
        if not p.is_absolute():
            return _check_key(PurePosixPath(p).as_posix()).as_posix()
        try:
            return PurePosixPath(p.relative_to(self.home)).as_posix()
        except ValueError:
            raise ValueError(f"{p} is not under the hub home {self.home}") from None

    def path(self, key: str) -> Path:
        """The key's path under this worker's home (the file itself when local; the cached copy when remote)."""
        return self.home.joinpath(*_check_key(key).parts)

    # -- moving files ----------------------------------------------------------------------

    def local(self, key: str) -> Path:
        """A readable local file for ``key``: itself when local, else a fresh copy of the object.

        Raises FileNotFoundError naming where the key lives when there is no such file or object.
        """
        target = self.path(key)
        if not self.remote:
            return target
        assert self._fs is not None
        info = self._fs.get_file_info(self._remote_path(key))
        if info.type != pafs.FileType.File:
            target.unlink(missing_ok=True)  # a copy of an object that is gone must not be read as current
            raise FileNotFoundError(f"{self.where(key)} does not exist in the lake")
        mtime = info.mtime.timestamp() if info.mtime else None
        if target.exists():
            st = target.stat()
            if st.st_size == info.size and (mtime is None or abs(st.st_mtime - mtime) < 1e-3):
                return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.download")
        try:
            with self._fs.open_input_stream(self._remote_path(key)) as src, open(tmp, "wb") as dst:
                while chunk := src.read(_COPY_BLOCK):
                    dst.write(chunk)
            if mtime is not None:
                os.utime(tmp, (mtime, mtime))
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise LakeStoreError(f"cannot download {self.where(key)} to {target}: {exc}; check the lake "
                                 "credentials and free disk space, then rerun the step") from None
        return target

    def put(self, key: str, local_file: Path | None = None) -> None:
        """Publish a finished local file under ``key`` in one atomic step (default: the key's own home path).

        Local: a no-op when the file already is the key's path, else an atomic place. Remote: one
        upload; the object appears whole when it completes, or not at all.
        """
        src = Path(local_file) if local_file is not None else self.path(key)
        if not self.remote:
            if src.resolve() != self.path(key).resolve():
                place_local(src, self.path(key))
            return
        assert self._fs is not None
        dest = self._remote_path(key)
        try:
            with open(src, "rb") as handle, self._fs.open_output_stream(dest) as out:
                while chunk := handle.read(_COPY_BLOCK):
                    out.write(chunk)
            info = self._fs.get_file_info(dest)
        except OSError as exc:
            raise LakeStoreError(f"cannot upload {src.name} to {self.where(key)}: {exc}; check the lake "
                                 "credentials and that the bucket exists, then rerun the step") from None
        if info.mtime is not None and src.resolve() == self.path(key).resolve():
            os.utime(src, (info.mtime.timestamp(), info.mtime.timestamp()))  # the local copy is current

    def place(self, src_key: str, dst_key: str) -> None:
        """Copy one key onto another atomically (local: link and rename; remote: a server-side copy)."""
        if not self.remote:
            place_local(self.path(src_key), self.path(dst_key))
            return
        assert self._fs is not None
        try:
            self._fs.copy_file(self._remote_path(src_key), self._remote_path(dst_key))
        except OSError as exc:
            raise LakeStoreError(f"cannot copy {self.where(src_key)} to {self.where(dst_key)}: {exc}; "
                                 "rerun the step") from None

    def exists(self, key: str) -> bool:
        if not self.remote:
            return self.path(key).exists()
        assert self._fs is not None
        return self._fs.get_file_info(self._remote_path(key)).type == pafs.FileType.File

    def delete(self, key: str) -> None:
        """Remove a key (and this worker's copy of it); a missing one is fine."""
        self.path(key).unlink(missing_ok=True)
        if self.remote:
            assert self._fs is not None
            path = self._remote_path(key)
            if self._fs.get_file_info(path).type == pafs.FileType.File:
                self._fs.delete_file(path)

    def delete_folder(self, prefix: str) -> None:
        """Remove a folder key and everything under it, in the store (and this worker's copy); a missing
        one is fine. In object storage the folder itself goes too (S3 keeps an empty folder as an object)."""
        folder = self.path(prefix)
        if folder.is_dir():
            shutil.rmtree(folder)
        if self.remote:
            assert self._fs is not None
            path = self._remote_path(prefix)
            if self._fs.get_file_info(path).type == pafs.FileType.Directory:
                self._fs.delete_dir(path)

    def folders(self, prefix: str | None = None) -> list[str]:
        """Names of the folders directly under the key ``prefix`` (the store's root when None), in the store."""
        if not self.remote:
            folder = self.path(prefix) if prefix else self.home
            return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        assert self._fs is not None
        where = self._remote_path(prefix) if prefix else self._root
        try:
            infos = self._fs.get_file_info(pafs.FileSelector(where, allow_not_found=True))
        except OSError as exc:
            raise LakeStoreError(f"cannot list {self.where(prefix) if prefix else _display(self.url or '')}: "
                                 f"{exc}; check the credentials and that the bucket exists") from None
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def names(self, prefix: str) -> list[str]:
        """Names of the files directly under the key ``prefix`` (a folder), in the store."""
        if not self.remote:
            folder = self.path(prefix)
            return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        assert self._fs is not None
        infos = self._fs.get_file_info(pafs.FileSelector(self._remote_path(prefix), allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
