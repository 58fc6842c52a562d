"""Three district systems: 杨浦 (daily CSV snapshot), 闵行 (monthly Excel), 嘉定 (cursor-paged API).

`DistrictDrops` writes the file districts' drop folders; its state (which day/month, which change
ratios) lives in a hidden file in the folder, so `mutate` can add the next file from any process.
"""
from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sandbox.districts.data import base_projects, change_projects, trainees
from sandbox.districts.files import write_minhang, write_yangpu
from sandbox.districts.jiading import JiadingApi

__all__ = ["MINHANG_MONTH0", "YANGPU_DAY0", "DistrictDrops", "JiadingApi"]

YANGPU_DAY0 = date(2024, 3, 1)
MINHANG_MONTH0 = date(2024, 1, 1)
STATE = ".sandbox_state.json"


def _month(start: date, k: int) -> date:
    m = start.month - 1 + k
    return date(start.year + m // 12, m % 12 + 1, 1)


class DistrictDrops:
    """The drop folders of 杨浦 (`yangpu/`) and 闵行 (`minhang/`) under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.yangpu, self.minhang = self.root / "yangpu", self.root / "minhang"

    def _state(self) -> dict[str, Any]:
        path = self.root / STATE
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def _save(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / STATE).write_text(json.dumps(state), encoding="utf-8")

    def seed(self, *, seed: int, scale: float) -> dict[str, Any]:
        """Write day 0 of 杨浦 and month 0 of 闵行 (again, identically, if they exist)."""
        state = {"seed": seed, "scale": scale, "rounds": []}
        if self._state().get("seed") == seed and self._state().get("scale") == scale:
            state = self._state()
        self._save(state)
        return self._write(state)

    def mutate(self, *, changed: float) -> dict[str, Any]:
        state = self._state()
        if not state:
            raise RuntimeError(f"no district drop folders under {self.root}: seed them first")
        state["rounds"].append(changed)
        self._save(state)
        return self._write(state)

    def projects(self, prefix: str, state: dict[str, Any] | None = None):  # -> list[Project]
        state = state or self._state()
        day0 = YANGPU_DAY0 if prefix == "YP" else MINHANG_MONTH0
        projects = base_projects(state["seed"], state["scale"], prefix, day0)
        for k, ratio in enumerate(state["rounds"], start=1):
            day = day0 + timedelta(days=k) if prefix == "YP" else _month(day0, k)
            projects = change_projects(projects, state["seed"], prefix, k, ratio, day)
        return projects

    def _write(self, state: dict[str, Any]) -> dict[str, Any]:
        k = len(state["rounds"])
        yp = self.projects("YP", state)
        day = YANGPU_DAY0 + timedelta(days=k)
        ypath = write_yangpu(self.yangpu, yp, day, utf8_bom=(k % 3 == 2))  # now and then a UTF-8 export
        mh = self.projects("MH", state)
        month = _month(MINHANG_MONTH0, k)
        mpath = write_minhang(self.minhang, mh, trainees(mh, state["seed"], "310112", k), month)
        return {"yangpu_file": str(ypath), "yangpu_projects": len(yp), "minhang_file": str(mpath),
                "minhang_projects": len(mh)}
