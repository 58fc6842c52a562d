"""The audit keyring: the HMAC keys that seal the audit chain, kept outside the audit store.

Why keyed: an unkeyed SHA-256 chain only proves the rows agree with each other, so anyone who
can write the audit store can edit a row and recompute every later hash, or append a row of
their own, and the chain still checks out. With HMAC-SHA256 under a key the store never sees,
a forger who can write the database but cannot read the key cannot produce a row, or a hash,
that verifies. The key is therefore never the feed secret (cursors, pseudonyms: a different
purpose, exposed to different code) and never stored in the database.

Where the keys come from, first match wins:

- ``IEHUB_AUDIT_KEY``: one or more keys (each at least 32 characters), comma-separated, oldest
  first, for deployments whose secrets come from a vault; the file is then not read.
- ``<audit dir>/audit.key`` (``IEHUB_AUDIT_DIR``, default ``IEHUB_HOME/feeds``): one hex key per
  line, oldest first, created 0600 with a fresh 256-bit key on the first write-side start and
  refused when other users may read it. Read-only callers (``iehub audit verify``) never create it.

The last key signs new rows; older ones stay to verify the rows they signed. Each row carries
its key's id (a digest of the key, which reveals nothing of it), so rotating is adding a key:
:meth:`Keyring.rotate`, then restarting the API workers. See README "Security".
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AUDIT_DIR_ENV", "AUDIT_KEY_ENV", "KEY_FILE", "AuditKeyError", "Keyring"]

AUDIT_KEY_ENV = "IEHUB_AUDIT_KEY"
AUDIT_DIR_ENV = "IEHUB_AUDIT_DIR"
KEY_FILE = "audit.key"
KEY_BYTES = 32
MIN_ENV_KEY = 32
_lock = threading.Lock()


class AuditKeyError(ValueError):
    """The audit key cannot be found, read or made: the audit cannot be written or verified."""


def key_id(key: bytes) -> str:
    """A short public name for ``key``: 16 hex digits of a domain-separated SHA-256 (not the key)."""
    return hashlib.sha256(b"iehub-audit-key-id\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class Keyring:
    """The audit keys, oldest first; ``source`` names where they came from (never their value)."""

    keys: tuple[bytes, ...]
    source: str

    def __post_init__(self) -> None:
        if not self.keys:
            raise AuditKeyError(f"the audit keyring {self.source} holds no key")

    def __repr__(self) -> str:  # never the keys themselves
        return f"Keyring({self.source!r}, ids={self.ids()})"

    @property
    def current_id(self) -> str:
        return key_id(self.keys[-1])

    def ids(self) -> list[str]:
        return [key_id(k) for k in self.keys]

    def rank(self, kid: str) -> int | None:
        """Position of ``kid`` in the keyring (0 = oldest), None when the keyring does not hold it."""
        ids = self.ids()
        return ids.index(kid) if kid in ids else None

    def sign(self, message: bytes, kid: str | None = None) -> str:
        """HMAC-SHA256 of ``message`` under key ``kid`` (default: the current key), as hex."""
        ids = self.ids()
        key = self.keys[-1] if kid is None else self.keys[ids.index(kid)]
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def check(self, message: bytes, kid: str, mac: str) -> bool:
        """Whether ``mac`` is ``message``'s HMAC under key ``kid``; False for a key id not held."""
        if self.rank(kid) is None or not isinstance(mac, str):
            return False
        return hmac.compare_digest(self.sign(message, kid), mac)

    # -- loading ----------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path, *, create: bool, feed_secret: bytes | None = None) -> Keyring:
        """The keyring from ``IEHUB_AUDIT_KEY`` or ``directory/audit.key`` (made there if ``create``).

        ``feed_secret``, when given, must not be one of the keys: the two secrets are kept apart.
        """
        from_env = os.environ.get(AUDIT_KEY_ENV)
        if from_env:
            keys = tuple(part.strip().encode("utf-8") for part in from_env.split(","))
            if any(len(k) < MIN_ENV_KEY for k in keys):
                raise AuditKeyError(f"{AUDIT_KEY_ENV} must hold keys of at least {MIN_ENV_KEY} characters each, "
                                    "comma-separated; make one with: python -c 'import secrets; "
                                    "print(secrets.token_hex(32))'")
            ring = cls(keys, f"${AUDIT_KEY_ENV}")
        else:
            path = Path(directory) / KEY_FILE
            if not path.exists():
                if not create:
                    raise AuditKeyError(f"no audit key at {path} (nor {AUDIT_KEY_ENV}); restore the key file the "
                                        "audit was written with, or set the audit folder with IEHUB_AUDIT_DIR")
                _create_key_file(path)
            ring = cls._read(path)
        if feed_secret is not None and any(hmac.compare_digest(k, feed_secret) for k in ring.keys):
            raise AuditKeyError(f"the audit key in {ring.source} equals the feed secret; give the audit its own key")
        return ring

    @classmethod
    def _read(cls, path: Path) -> Keyring:
        try:
            info = path.stat()
            if os.name == "posix" and info.st_mode & 0o077:
                raise AuditKeyError(f"the audit key file {path} may be read or written by other users "
                                    f"(mode {stat.filemode(info.st_mode)}); run chmod 600 {path}")
            lines = [line.strip() for line in path.read_text(encoding="ascii").splitlines() if line.strip()]
            keys = tuple(bytes.fromhex(line) for line in lines)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            if isinstance(exc, AuditKeyError):
                raise
            raise AuditKeyError(f"cannot read the audit key file {path}: {type(exc).__name__}; it must hold one "
                                "hex key per line") from None
        if any(len(k) != KEY_BYTES for k in keys):
            raise AuditKeyError(f"the audit key file {path} holds a key that is not {KEY_BYTES} bytes; "
                                "restore it from your backup")
        return cls(keys, str(path))

    @classmethod
    def rotate(cls, directory: Path) -> tuple[str, str]:
        """Add a fresh key to ``directory/audit.key``; return (old key id, new key id).

        The file is rewritten whole under a temporary name and renamed into place, so a crash
        leaves the old keyring or the new one, never half of it. Keys from ``IEHUB_AUDIT_KEY``
        are rotated where they are kept (append a key to the variable), not here.
        """
        if os.environ.get(AUDIT_KEY_ENV):
            raise AuditKeyError(f"the audit keys come from {AUDIT_KEY_ENV}: append a new key to it (comma-separated, "
                                "newest last) where it is kept, then restart the feed API")
        path = Path(directory) / KEY_FILE
        with _lock:
            old = cls._read(path)
            new = secrets.token_bytes(KEY_BYTES)
            _write_keys(path, [*old.keys, new], exclusive=False)
        return old.current_id, key_id(new)


def _create_key_file(path: Path) -> None:
    with _lock:
        if not path.exists():
            _write_keys(path, [secrets.token_bytes(KEY_BYTES)], exclusive=True)


def _write_keys(path: Path, keys: list[bytes], *, exclusive: bool) -> None:
    """Write the key file 0600 under a temporary name, then link (first creation) or rename it into place.

    Linking fails when another process got there first, so two first starts agree on one key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write("".join(k.hex() + "\n" for k in keys))
            out.flush()
            os.fsync(out.fileno())
        if exclusive:
            try:
                os.link(temp, path)
            except FileExistsError:
                pass
        else:
            os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
