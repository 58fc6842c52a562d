"""The simulated source systems as the CLI and the demo drive them.

Each system lives in its own module `iehub.sandbox_<name>` exposing `SYSTEM`, an object with
`name`, `description`, `start(...)` and optionally `mutate(...)`. The demo and
`iehub sandbox serve` start every system found; a new system is a new module added here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from iehub.config import Settings

SYSTEM_MODULES: dict[str, str] = {
    "lingang": "iehub.sandbox_lingang",
    "municipal": "iehub.sandbox_municipal",
    "lingang_group": "iehub.sandbox_lingang_group",
    "districts": "iehub.sandbox_districts",
}


@dataclass
class StartedSandbox:
    """A running (or seeded) system: the environment `iehub sync` needs, and how to stop it."""

    env: dict[str, str]
    description: str
    stop: Callable[[], None] = field(default=lambda: None)


class SandboxSystem(Protocol):
    name: str
    description: str

    def start(self, settings: Settings, *, scale: float, seed: int, host: str = "127.0.0.1", port: int = 0,
              faults: str = "") -> StartedSandbox: ...

    def mutate(self, settings: Settings, *, changed: float, seed: int | None, env: dict[str, str]) -> dict[str, Any]: ...


def systems() -> dict[str, SandboxSystem]:
    found: dict[str, SandboxSystem] = {}
    for name, module in SYSTEM_MODULES.items():
        try:
            found[name] = importlib.import_module(module).SYSTEM
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return found


def get_system(name: str) -> SandboxSystem:
    found = systems()
    if name not in found:
        raise KeyError(f"no sandbox system '{name}' (systems: {', '.join(found)})")
    return found[name]
