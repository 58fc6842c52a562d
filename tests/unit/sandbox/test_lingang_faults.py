"""Fault injection of the Lingang sandbox: every kind observable, deterministic per seed, capped."""

from __future__ import annotations

import orjson
import pytest
import requests
from .conftest import get_token

from sandbox.lingang import ALL_KINDS, FAULT_KINDS, FaultPlan

URL = "/api/v1/talent/demand/list?page=1&pageSize=50"


def outcome(p, s: requests.Session, base: str, tok: str, path: str = URL, timeout: float = 2.0) -> str:
    """Classify one list call into the fault it met ("ok" when none)."""
    before = p.records("talent_demands")
    try:
        r = s.get(base + path, headers={"Authorization": f"Bearer {tok}"}, timeout=timeout)
    except requests.exceptions.ReadTimeout:
        return "timeout"
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError):
        return "reset"
    if r.status_code >= 500:
        return "5xx"
    if r.status_code == 429:
        assert r.headers["Retry-After"] in ("0", "1")
        return "429"
    try:
        body = orjson.loads(r.content)
    except orjson.JSONDecodeError:
        assert int(r.headers["Content-Length"]) == len(r.content)
        try:
            orjson.loads(r.content.decode("gbk"))  # GBK while the header says utf-8
        except (UnicodeDecodeError, orjson.JSONDecodeError):
            return "truncate"
        assert "utf-8" in r.headers["Content-Type"].lower()
        return "encoding"
    if body["code"] == 40102:
        return "expire"
    assert body["code"] == 0, body
    lst = body["data"]["list"]
    if lst and "regionCode" in lst[0]:
        assert "areaCode" not in lst[0]
        return "drift"
    after = p.records("talent_demands")
    if after != before:  # a record was edited as the request ran, and moved to the end
        assert after[-1]["updateTime"] > before[-1]["updateTime"]
        assert lst == after[:50]
        return "shift"
    if body["data"]["total"] == len(before) and len(lst) < 50:
        assert lst == before[: len(lst)]
        return "short"
    assert lst == before[:50]
    return "ok"


def test_parse() -> None:
    plan = FaultPlan.parse("5xx=0.05,429=0.03,timeout=0.01,reset=0.01,truncate=0.01,short=0.05,expire=0.02,"
                           "shift=0.01,drift=0,encoding=0")
    assert plan.rates["5xx"] == 0.05 and plan.rates["short"] == 0.05 and plan.rates["drift"] == 0
    assert plan.seed == 0 and plan.max_consecutive == 2 and plan.timeout_seconds == 3.0
    a = FaultPlan.parse("all")
    assert set(a.rates) == set(ALL_KINDS) and "drift" not in a.rates and "encoding" not in a.rates
    assert all(v == 0.02 for v in a.rates.values())
    b = FaultPlan.parse("all=0.1,short=0,seed=4,max_consecutive=1,timeout_seconds=0.5,retry_after=0")
    assert b.rates["5xx"] == 0.1 and b.rates["short"] == 0 and b.seed == 4 and b.max_consecutive == 1
    assert b.timeout_seconds == 0.5 and b.retry_after == 0
    assert FaultPlan.parse(b.to_text()) == FaultPlan(rates={k: v for k, v in b.rates.items() if v}, seed=4,
                                                     max_consecutive=1, timeout_seconds=0.5, retry_after=0)
    for bad in ("oops=0.1", "5xx=2", "5xx=-0.1"):
        with pytest.raises(ValueError):
            FaultPlan.parse(bad)


@pytest.mark.parametrize("kind", [k for k in FAULT_KINDS])
def test_each_kind_observable_and_capped(make_platform, kind) -> None:
    plan = FaultPlan(rates={kind: 1.0}, seed=1, max_consecutive=2, timeout_seconds=0.4, retry_after=0)
    p, base = make_platform(scale=0.1, faults=plan)
    s = requests.Session()
    tok = get_token(s, base)
    seen = []
    for _ in range(6):
        seen.append(outcome(p, s, base, tok, timeout=0.2))
    if kind in ("shift", "drift"):  # not failures: they happen every time
        assert all(o == kind for o in seen), seen
    else:  # at rate 1 the cap lets every third request through
        assert seen == [kind, kind, "ok", kind, kind, "ok"], seen
    assert p.stats["faults"][kind] >= 4
    s.close()


def test_token_endpoint_gets_5xx_and_429_only(make_platform) -> None:
    p, base = make_platform(faults=FaultPlan(rates={"5xx": 1.0}, max_consecutive=2))
    s = requests.Session()
    codes = [s.post(f"{base}/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": "x",
                                                      "client_secret": "y"}, timeout=5).status_code for _ in range(3)]
    assert codes[0] >= 500 and codes[1] >= 500 and codes[2] == 200
    p2, base2 = make_platform(faults=FaultPlan(rates={"truncate": 1.0, "expire": 1.0}))
    assert get_token(s, base2)  # list-only kinds never touch the token endpoint


def _pattern(make_platform, seed: int) -> list[str]:
    plan = FaultPlan(rates={"5xx": 0.15, "429": 0.1, "truncate": 0.1, "short": 0.1, "expire": 0.1,
                            "encoding": 0.1, "reset": 0.05}, seed=seed, retry_after=0)
    p, base = make_platform(scale=0.1, faults=plan)
    s = requests.Session()
    tok = get_token(s, base)
    out = []
    for page in range(1, 5):
        for _ in range(6):
            out.append(outcome(p, s, base, tok, path=URL.replace("page=1", f"page={page}"), timeout=2)
                       if page == 1 else _kind_only(p, s, base, tok, page))
    s.close()
    return out


def _kind_only(p, s, base, tok, page: int) -> str:
    try:
        r = s.get(f"{base}/api/v1/talent/demand/list?page={page}&pageSize=50",
                  headers={"Authorization": f"Bearer {tok}"}, timeout=2)
    except requests.exceptions.RequestException:
        return "reset"
    return f"{r.status_code}:{len(r.content)}"


def test_faults_deterministic_for_a_seed(make_platform) -> None:
    a = _pattern(make_platform, seed=5)
    b = _pattern(make_platform, seed=5)
    c = _pattern(make_platform, seed=6)
    assert a == b
    assert a != c
    assert len({x for x in a[:6]}) > 1


def test_max_consecutive_guarantees_retries_succeed(make_platform) -> None:
    plan = FaultPlan.parse("all=0.5,timeout=0,shift=0,seed=9,max_consecutive=2,retry_after=0")
    p, base = make_platform(scale=0.1, faults=plan)
    s = requests.Session()
    tok = get_token(s, base)
    worst = 0
    for page in range(1, 31):
        path = f"/api/v1/notice/list?page={page % 5 + 1}&pageSize={page}"
        for attempt in range(3):
            try:
                r = s.get(base + path, headers={"Authorization": f"Bearer {tok}"}, timeout=2)
                if r.status_code == 200 and r.content.decode("utf-8") and r.json()["code"] == 0:
                    n_expected = min(page, max(0, len(p.records("notices")) - page % 5 * page))
                    if len(r.json()["data"]["list"]) == n_expected:
                        break
            except (requests.exceptions.RequestException, UnicodeDecodeError, ValueError):
                pass
        else:
            pytest.fail(f"{path} failed 3 times in a row")
        worst = max(worst, attempt)
    assert worst == 2  # at rate 0.5 some path needed all three attempts
    assert sum(p.stats["faults"].values()) > 10
