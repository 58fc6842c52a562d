"""Deterministic fault injection for the simulated Lingang platform.

Why a hash and not a shared RNG: with threads and retries, a shared RNG's sequence
depends on request interleaving, so a failing test could not be replayed. Each decision
here is a pure function of (plan seed, fault kind, request path+query, how many times
that exact path+query was asked before), so the same client behaviour meets the same
faults, a retry gets a fresh draw, and the consecutive cap guarantees that a client
retrying ``max_consecutive + 1`` times gets through.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

#: every kind, in the order a request is checked for them
FAULT_KINDS: tuple[str, ...] = (
    "5xx", "429", "timeout", "reset", "truncate", "short", "expire", "encoding", "shift", "drift",
)
#: kinds that make the request fail (one at most per request, capped by max_consecutive)
FAILING_KINDS: tuple[str, ...] = ("5xx", "429", "timeout", "reset", "truncate", "short", "expire", "encoding")
#: kinds that can also hit the token endpoint
TOKEN_KINDS: tuple[str, ...] = ("5xx", "429")
#: kinds "all" switches on (drift and encoding are scenarios, not background noise)
ALL_KINDS: tuple[str, ...] = tuple(k for k in FAULT_KINDS if k not in ("drift", "encoding"))

_OPTIONS = ("seed", "max_consecutive", "timeout_seconds", "retry_after")


@dataclass
class FaultPlan:
    """Fault rates per kind plus the knobs of the injector.

    ``retry_after`` is the ``Retry-After`` header value sent with 429 (seconds; 0 lets
    fast tests exercise the path without sleeping).
    """

    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    max_consecutive: int = 2
    timeout_seconds: float = 3.0
    retry_after: int = 1

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
            if not 0.0 <= float(rate) <= 1.0:
                raise ValueError(f"fault rate for {kind!r} must be within [0, 1], got {rate}")
        self.rates = {k: float(v) for k, v in self.rates.items()}

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """Parse ``"5xx=0.05,429=0.03,…"``; ``all`` / ``all=R`` sets every kind but drift/encoding.

        Options ride along in the same string: ``seed=3,max_consecutive=2,timeout_seconds=0.5,
        retry_after=0``. Later items override earlier ones, so ``all=0.02,short=0`` works.
        Empty text or ``none`` means no faults.
        """
        plan = cls()
        rates: dict[str, float] = {}
        for raw in (text or "").split(","):
            item = raw.strip()
            if not item or item == "none":
                continue
            name, sep, value = item.partition("=")
            name = name.strip()
            value = value.strip()
            if name == "all":
                rate = float(value) if sep else 0.02
                for k in ALL_KINDS:
                    rates[k] = rate
            elif name in _OPTIONS:
                if not sep:
                    raise ValueError(f"option {name!r} needs a value")
                if name == "timeout_seconds":
                    plan.timeout_seconds = float(value)
                else:
                    setattr(plan, name, int(value))
            elif name in FAULT_KINDS:
                rates[name] = float(value) if sep else 1.0
            else:
                raise ValueError(f"unknown fault kind or option {name!r}")
        plan.rates = rates
        plan.__post_init__()
        return plan

    def to_text(self) -> str:
        """The plan in ``parse`` form (for logs and the CLI)."""
        parts = [f"{k}={v:g}" for k, v in self.rates.items() if v]
        parts += [f"seed={self.seed}", f"max_consecutive={self.max_consecutive}",
                  f"timeout_seconds={self.timeout_seconds:g}", f"retry_after={self.retry_after}"]
        return ",".join(parts)

    @property
    def active(self) -> bool:
        return any(v > 0 for v in self.rates.values())

    def roll(self, kind: str, key: str, n: int) -> float:
        """A float in [0, 1) from (seed, kind, key, n): the fault's dice, stable across processes."""
        h = hashlib.blake2b(f"{self.seed}\x1f{kind}\x1f{key}\x1f{n}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "big") / 18446744073709551616.0


@dataclass
class Decision:
    """What to do to one request. ``aux`` is extra per-request randomness (status code, cut point…)."""

    failing: str | None = None
    shift: bool = False
    drift: bool = False
    aux: float = 0.0
    n: int = 0


class FaultInjector:
    """Keeps per path+query counters and turns a FaultPlan into per-request decisions."""

    def __init__(self, plan: FaultPlan | None) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._consecutive: dict[str, int] = {}

    def decide(self, key: str, *, token_endpoint: bool = False) -> Decision:
        """Decide the faults for a request identified by ``key`` (method-less path+query)."""
        plan = self.plan
        if plan is None or not plan.active:
            return Decision()
        with self._lock:
            n = self._seen.get(key, 0)
            self._seen[key] = n + 1
            run = self._consecutive.get(key, 0)
            d = Decision(n=n, aux=plan.roll("aux", key, n))
            rates = plan.rates
            if run < plan.max_consecutive:
                for kind in (TOKEN_KINDS if token_endpoint else FAILING_KINDS):
                    rate = rates.get(kind, 0.0)
                    if rate > 0.0 and plan.roll(kind, key, n) < rate:
                        d.failing = kind
                        break
            self._consecutive[key] = run + 1 if d.failing else 0
            if not token_endpoint:
                rate = rates.get("shift", 0.0)
                d.shift = rate > 0.0 and plan.roll("shift", key, n) < rate
                rate = rates.get("drift", 0.0)
                d.drift = rate > 0.0 and plan.roll("drift", key, n) < rate
            return d
