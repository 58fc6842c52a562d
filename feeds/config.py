"""Feed API settings: where keys and audit live, paging bounds, the per-key rate and the secret.

Why one object: the app, the CLI, the tests and the benchmark must agree on the same secret
(cursors are signed with it, pseudonyms keyed with it) and the same database (keys and audit
share it), so they all build a :class:`FeedConfig` instead of reading the environment apiece.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path

__all__ = ["FeedConfig", "SECRET_ENV", "SECRET_BYTES"]

DEFAULT_MAX_WORKERS = 4
MAX_WORKERS = 64

SECRET_ENV = "IEHUB_FEED_SECRET"
SECRET_BYTES = 32
_secret_lock = threading.Lock()


@dataclass(frozen=True)
class FeedConfig:
    """Everything the feed API needs to run; ``db_url`` defaults to SQLite under ``home/feeds``.

    ``rate`` is requests per second per key (sustained), ``burst`` how many may come at once.
    ``snapshot_lease`` is how long (seconds) a snapshot a pass read stays open here, and so safe
    from pruning, after its last page (see :mod:`feeds.query`).
    """

    home: Path
    db_url: str | None = None
    rate: float = 20.0
    burst: int = 40
    max_limit: int = 10_000
    default_limit: int = 1_000
    snapshot_cache: int = 4
    snapshot_lease: float = 300.0
    workers: int = 1
    _secret: list[bytes] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())
        if self.db_url is None:  # the embedded default: its folder must exist before SQLite opens it
            self.feeds_dir.mkdir(parents=True, exist_ok=True)
            object.__setattr__(self, "db_url", f"sqlite:///{self.feeds_dir / 'feeds.db'}")
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1 (got rate={self.rate}, burst={self.burst})")
        if not 1 <= self.default_limit <= self.max_limit:
            raise ValueError(f"default_limit must be within 1..max_limit={self.max_limit} (got {self.default_limit})")
        if self.snapshot_cache < 1:
            raise ValueError(f"snapshot_cache must be >= 1 (got {self.snapshot_cache})")
        if self.snapshot_lease < 0:
            raise ValueError(f"snapshot_lease must be >= 0 seconds (got {self.snapshot_lease})")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be within 1..{MAX_WORKERS} (got {self.workers})")

    @classmethod
    def from_env(cls, home: str | Path | None = None, **overrides: object) -> FeedConfig:
        """Settings from IEHUB_HOME, IEHUB_FEEDS_DB_URL, IEHUB_FEED_RATE, IEHUB_FEED_BURST, IEHUB_FEED_WORKERS.

        Workers default to one per CPU, at most four: a worker is one process with its own GIL,
        and pages are CPU work (see :mod:`feeds.server`).
        """
        env = os.environ
        values: dict[str, object] = {
            "home": Path(home or env.get("IEHUB_HOME") or "./var"),
            "db_url": env.get("IEHUB_FEEDS_DB_URL") or None,
            "workers": min(DEFAULT_MAX_WORKERS, os.cpu_count() or 1),
        }
        try:
            if env.get("IEHUB_FEED_RATE"):
                values["rate"] = float(env["IEHUB_FEED_RATE"])
            if env.get("IEHUB_FEED_BURST"):
                values["burst"] = int(env["IEHUB_FEED_BURST"])
            if env.get("IEHUB_FEED_WORKERS"):
                values["workers"] = int(env["IEHUB_FEED_WORKERS"])
        except ValueError as exc:
            raise ValueError(f"IEHUB_FEED_RATE / IEHUB_FEED_BURST / IEHUB_FEED_WORKERS must be numbers: {exc}") \
                from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def to_json(self) -> str:
        """The settings (not the secret) as JSON, for worker processes: see :meth:`from_json`."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        return json.dumps({**values, "home": str(self.home)})

    @classmethod
    def from_json(cls, text: str) -> FeedConfig:
        return cls(**json.loads(text))

    @property
    def feeds_dir(self) -> Path:
        return self.home / "feeds"

    def secret(self) -> bytes:
        """The server secret (cursor MACs, pseudonyms): IEHUB_FEED_SECRET, else a 0600 file made once.

        The file is created with O_EXCL so two processes starting together agree on one secret.
        """
        if self._secret:
            return self._secret[0]
        with _secret_lock:
            if self._secret:
                return self._secret[0]
            value = self._load_secret()
            self._secret.append(value)
            return value

    def _load_secret(self) -> bytes:
        from_env = os.environ.get(SECRET_ENV)
        if from_env:
            value = from_env.encode("utf-8")
            if len(value) < 16:
                raise ValueError(f"{SECRET_ENV} must be at least 16 bytes long")
            return value
        path = self.feeds_dir / "secret"
        self.feeds_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Written whole under a temporary name, then hard-linked into place: link fails if
            # another process got there first, and nobody ever reads a half-written secret.
            temp = path.with_name(f".secret.{os.getpid()}.{threading.get_ident()}.tmp")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(SECRET_BYTES))
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temp, path)
            except FileExistsError:
                pass
            finally:
                temp.unlink(missing_ok=True)
        value = path.read_bytes()
        if len(value) != SECRET_BYTES:
            raise ValueError(f"{path} holds {len(value)} bytes, expected {SECRET_BYTES}; "
                             "remove it to make a new one (issued cursors then become invalid)")
        return value
