"""The district systems (杨浦 CSV drops, 闵行 Excel drops, 嘉定 HTTP API) for the CLI and the demo."""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from iehub.config import Settings
from iehub.sandboxes import StartedSandbox


def drop_root(settings: Settings) -> Path:
    return settings.home / "sandbox" / "districts"


class DistrictsSandbox:
    name = "districts"
    description = "杨浦 (CSV snapshots), 闵行 (Excel workbooks), 嘉定 (cursor-paged API)"

    def __init__(self) -> None:
        self._api: Any = None

    def _file_env(self, settings: Settings) -> dict[str, str]:
        root = drop_root(settings)
        return {"IEHUB_YANGPU_DROP": str(root / "yangpu"), "IEHUB_MINHANG_DROP": str(root / "minhang")}

    def seed(self, settings: Settings, *, scale: float, seed: int) -> dict[str, Any]:
        """Write the 杨浦 and 闵行 drop folders (deterministic from seed and scale)."""
        from sandbox.districts import DistrictDrops

        return {**DistrictDrops(drop_root(settings)).seed(seed=seed, scale=scale), **self._file_env(settings)}

    def start(self, settings: Settings, *, scale: float, seed: int, host: str = "127.0.0.1", port: int = 0,
              faults: str = "") -> StartedSandbox:
        from sandbox.districts import JiadingApi

        self.seed(settings, scale=scale, seed=seed)
        key = secrets.token_urlsafe(24)  # fresh per start, never printed
        api = JiadingApi(seed=seed, scale=scale, api_key=key)
        url = api.start(host, port)
        self._api = api

        def stop() -> None:
            api.stop()
            self._api = None

        return StartedSandbox(env={**self._file_env(settings), "IEHUB_JIADING_BASE_URL": url,
                                   "IEHUB_JIADING_API_KEY": key},
                              description=f"district drops under {drop_root(settings)}; 嘉定 API on {url}", stop=stop)

    def mutate(self, settings: Settings, *, changed: float, seed: int | None, env: dict[str, str]) -> dict[str, Any]:
        """Counts per system, {name: {"updated", "inserted", "deleted"}}, the shape every sandbox reports."""
        from sandbox.districts import DistrictDrops

        drops = DistrictDrops(drop_root(settings))
        drops.mutate(changed=changed)  # raises when the drop folders were never seeded
        state = drops._state()
        before = {**state, "rounds": state["rounds"][:-1]}
        out: dict[str, Any] = {name: _changes(drops.projects(prefix, before), drops.projects(prefix, state))
                               for name, prefix in (("yangpu", "YP"), ("minhang", "MH"))}
        if self._api is not None:
            out["jiading"] = self._api.mutate(changed)
        elif env.get("IEHUB_JIADING_BASE_URL") and env.get("IEHUB_JIADING_API_KEY"):
            import requests  # the API runs in `iehub sandbox serve`: ask it over HTTP

            resp = requests.post(f"{env['IEHUB_JIADING_BASE_URL']}/sandbox/mutate", json={"changed": changed},
                                 headers={"X-Api-Key": env["IEHUB_JIADING_API_KEY"]}, timeout=60)
            resp.raise_for_status()
            out["jiading"] = resp.json().get("result", {})
        return out


def _changes(before: list[Any], after: list[Any]) -> dict[str, int]:
    """Updated, inserted and deleted projects between two days of a district's drops."""
    old = {p.project_id: p for p in before}
    new = {p.project_id: p for p in after}
    return {"updated": sum(1 for key, p in new.items() if key in old and old[key] != p),
            "inserted": len(new.keys() - old.keys()), "deleted": len(old.keys() - new.keys())}


SYSTEM = DistrictsSandbox()
