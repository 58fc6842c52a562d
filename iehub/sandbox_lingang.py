"""The Lingang platform sandbox (HTTP) for the CLI and the demo."""
from __future__ import annotations

import secrets
from typing import Any

import requests

from iehub.config import Settings
from iehub.sandboxes import StartedSandbox


class LingangSandbox:
    name = "lingang"
    description = "临港新片区产教融合信息服务平台 (HTTP JSON API)"

    def start(self, settings: Settings, *, scale: float, seed: int, host: str = "127.0.0.1", port: int = 0,
              faults: str = "") -> StartedSandbox:
        from sandbox.lingang import FaultPlan, LingangPlatform

        client_id, secret = "iehub-demo", secrets.token_urlsafe(24)  # fresh per start, never printed
        platform = LingangPlatform(seed=seed, scale=scale, client_id=client_id, client_secret=secret,
                                   faults=FaultPlan.parse(faults) if faults else None)
        url = platform.start(host, port)
        return StartedSandbox(
            env={"IEHUB_LINGANG_BASE_URL": url, "IEHUB_LINGANG_CLIENT_ID": client_id,
                 "IEHUB_LINGANG_CLIENT_SECRET": secret},
            description=f"Lingang platform API on {url}", stop=platform.stop)

    def mutate(self, settings: Settings, *, changed: float, seed: int | None, env: dict[str, str]) -> dict[str, Any]:
        url = env.get("IEHUB_LINGANG_BASE_URL")
        if not url:
            raise RuntimeError("the Lingang sandbox is not running: start `iehub sandbox serve`")
        resp = requests.post(f"{url}/sandbox/mutate", json={"changed": changed, "seed": seed}, timeout=60)
        resp.raise_for_status()
        payload = resp.json()
        return payload.get("data", payload) if isinstance(payload, dict) else {}


SYSTEM = LingangSandbox()
