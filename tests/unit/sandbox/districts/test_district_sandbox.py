"""The district sandbox: deterministic drops, changes between days, the 嘉定 API's paging."""
from __future__ import annotations

from pathlib import Path

import requests

from sandbox.districts import DistrictDrops, JiadingApi


def test_drops_are_deterministic_and_mutate_adds_a_changed_day(tmp_path: Path) -> None:
    a, b = DistrictDrops(tmp_path / "a"), DistrictDrops(tmp_path / "b")
    a.seed(seed=3, scale=0.05)
    b.seed(seed=3, scale=0.05)
    files_a = sorted(p.name for p in a.yangpu.iterdir())
    assert files_a == ["yangpu_projects_20240301.csv"]
    assert (a.yangpu / files_a[0]).read_bytes() == (b.yangpu / files_a[0]).read_bytes()
    raw = (a.yangpu / files_a[0]).read_bytes()
    assert raw.decode("gbk").splitlines()[0].startswith("项目编号,项目名称")
    assert raw.decode("gbk").rstrip().splitlines()[-1].startswith("注：")
    before = {p.project_id: p for p in a.projects("YP")}
    a.mutate(changed=0.1)
    after = {p.project_id: p for p in a.projects("YP")}
    assert set(before) - set(after) and set(after) - set(before)
    assert any(after[k] != before[k] for k in set(before) & set(after))
    assert len(list(a.yangpu.iterdir())) == 2 and len(list(a.minhang.iterdir())) == 2


def test_jiading_api_pages_by_cursor_and_wants_its_key() -> None:
    api = JiadingApi(seed=1, scale=0.1, api_key="k")
    url = api.start()
    try:
        assert requests.get(f"{url}/open/v2/projects", timeout=5).status_code == 401
        seen, cursor = [], None
        while True:
            body = requests.get(f"{url}/open/v2/projects", params={"limit": 50, **({"cursor": cursor} if cursor else {})},
                                headers={"X-Api-Key": "k"}, timeout=5).json()
            seen += body["result"]["items"]
            cursor = body["result"]["nextCursor"]
            if not cursor:
                break
        assert len(seen) == len(api.records()) and all(isinstance(r["members"], list) for r in seen)
        assert seen[0]["leader"]["orgName"]
    finally:
        api.stop()


def test_the_registered_system_seeds_starts_and_mutates(tmp_path: Path) -> None:
    from iehub.config import Settings
    from iehub.sandboxes import get_system

    system = get_system("districts")
    settings = Settings.from_env(tmp_path)
    run = system.start(settings, scale=0.05, seed=2)
    try:
        env = run.env
        assert Path(env["IEHUB_YANGPU_DROP"]).is_dir() and Path(env["IEHUB_MINHANG_DROP"]).is_dir()
        before = len(requests.get(f"{env['IEHUB_JIADING_BASE_URL']}/open/v2/projects", params={"limit": 200},
                                  headers={"X-Api-Key": env["IEHUB_JIADING_API_KEY"]}, timeout=5).json()["result"]["items"])
        system._api = None  # as from another process: over HTTP
        out = system.mutate(settings, changed=0.1, seed=None, env=env)
        assert out["jiading"]["deleted"] > 0 and before > 0
        assert len(list(Path(env["IEHUB_YANGPU_DROP"]).glob("*.csv"))) == 2
    finally:
        run.stop()
