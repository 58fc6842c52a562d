"""Data of the Lingang sandbox: deterministic, shaped like the real platform's, valid codes except dirty rows."""

from __future__ import annotations

import re
import subprocess
import sys

import orjson

from sandbox.lingang import BASE_SIZES, BASE_TIME, MODULES, LingangPlatform, fmt_ts, uscc_valid
from sandbox.lingang.data import make_uscc, uscc_check_char

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]

KW = {"client_id": "a", "client_secret": "b"}


def _digest(p: LingangPlatform) -> bytes:
    return orjson.dumps({m: p.records(m) for m in MODULES})


def test_same_seed_same_records_different_seed_differs() -> None:
    a = LingangPlatform(seed=7, scale=0.05, **KW)
    b = LingangPlatform(seed=7, scale=0.05, **KW)
    c = LingangPlatform(seed=8, scale=0.05, **KW)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_same_seed_same_records_in_another_process() -> None:
    """No hash() of str, no wall clock: a fresh interpreter (new hash seed) generates the same bytes."""
    code = ("import sys, hashlib, orjson; sys.path.insert(0, %r);"
            "from sandbox.lingang import LingangPlatform, MODULES;"
            "p = LingangPlatform(seed=11, scale=0.05, client_id='a', client_secret='b');"
            "print(hashlib.sha256(orjson.dumps({m: p.records(m) for m in MODULES})).hexdigest())") % str(ROOT)
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(h)}).stdout.strip() for h in (1, 2)}
    import hashlib
    here = hashlib.sha256(_digest(LingangPlatform(seed=11, scale=0.05, **KW))).hexdigest()
    assert outs == {here}


def test_sizes_scale() -> None:
    p = LingangPlatform(seed=1, scale=0.1, **KW)
    for m in MODULES:
        assert len(p.records(m)) == round(BASE_SIZES[m] * 0.1)


def test_fields_and_forms() -> None:
    p = LingangPlatform(seed=3, scale=0.05, dirty_ratio=0.0, **KW)
    ts = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
    common = {"id", "createTime", "updateTime", "isDeleted", "areaCode"}
    prefixes = {"notices": "NT", "talent_demands": "TD", "talent_supplies": "TS", "cooperations": "CO",
                "rd_projects": "RD", "tech_services": "SV"}
    for m in MODULES:
        recs = p.records(m)
        ids = [r["id"] for r in recs]
        assert len(set(ids)) == len(ids)
        for r in recs:
            assert common <= r.keys()
            assert r["id"].startswith(prefixes[m])
            assert ts.match(r["createTime"]) and ts.match(r["updateTime"])
            assert r["createTime"] <= r["updateTime"] < fmt_ts(BASE_TIME)
            assert r["updateTime"] >= "2022-12-31"
            assert r["isDeleted"] == 0
            assert re.fullmatch(r"310\d{3}", r["areaCode"])
        assert sum(r["areaCode"] == "310115" for r in recs) > len(recs) / 3
    td = p.records("talent_demands")
    assert {type(r["headcount"]) for r in td} == {int, str}
    assert all(isinstance(r["salaryMin"], str) and r["salaryMin"].isdigit() for r in td)
    assert all(re.fullmatch(r"1[3-9]\d{9}", r["contactPhone"]) for r in td)
    forms = {re.sub(r"\d", "9", r["publishDate"]) for r in td}
    assert {"9999-99-99", "99999999", "9999.99.99"} <= forms
    assert any("年" in f for f in forms) and any("/" in f for f in forms)
    assert all(re.fullmatch(r"\d+\.\d", r["amount"]) for r in p.records("cooperations"))
    names = {r["enterpriseName"] for r in p.records("cooperations")} | {r["orgName"] for r in td}
    assert "上海积塔半导体有限公司" in names or "特斯拉（上海）有限公司" in names


def test_uscc_generator_against_known_codes() -> None:
    # Public, well-known codes (check characters per GB 32100-2015).
    for known in ("91350100M000100Y43", "91110108551385082Q"):
        assert uscc_check_char(known[:17]) == known[17]
        assert uscc_valid(known)
    assert not uscc_valid("91110108551385082A")
    import random
    rng = random.Random(0)
    assert all(uscc_valid(make_uscc(rng, "91", "310115")) for _ in range(200))


def test_credit_codes_valid_except_dirty() -> None:
    p = LingangPlatform(seed=5, scale=0.5, dirty_ratio=0.05, **KW)
    code_fields = {"notices": ["publisherCreditCode"], "talent_demands": ["creditCode"],
                   "talent_supplies": ["schoolCreditCode"], "cooperations": ["schoolCreditCode", "enterpriseCreditCode"],
                   "rd_projects": ["leadCreditCode"], "tech_services": ["providerCreditCode"]}
    kinds_seen: set[str] = set()
    for m in MODULES:
        dirty = p.dirty_rows(m)
        assert 0 < len(dirty) < len(p.records(m)) * 0.1
        kinds_seen |= {d["kind"] for d in dirty.values()}
        for r in p.records(m):
            for f in code_fields[m]:
                bad = dirty.get(r["id"], {}).get("kind") == "bad_uscc" and dirty[r["id"]]["field"] == f
                assert uscc_valid(r[f]) is not bad, (m, r["id"], f, r[f])
    assert kinds_seen == {"bad_date", "amount_text", "bad_uscc", "fullwidth", "spaces"}


def test_dirty_values_look_real() -> None:
    p = LingangPlatform(seed=5, scale=0.5, dirty_ratio=0.05, **KW)
    by_id = {r["id"]: r for r in p.records("cooperations")}
    for rid, d in p.dirty_rows("cooperations").items():
        v = by_id[rid][d["field"]]
        if d["kind"] == "fullwidth":
            assert any("０" <= ch <= "９" for ch in v)
        elif d["kind"] == "spaces":
            assert v != v.strip(" \u3000") and v.strip(" \u3000")
        elif d["kind"] == "amount_text":
            assert v in ("面议", "待定", "--")
        elif d["kind"] == "bad_date":
            assert v in ("2023-02-30", "待定", "2023-13-01", "0000-00-00")


def test_dirty_ratio_does_not_change_clean_rows() -> None:
    clean = LingangPlatform(seed=9, scale=0.05, dirty_ratio=0.0, **KW)
    dirty = LingangPlatform(seed=9, scale=0.05, dirty_ratio=0.2, **KW)
    for m in MODULES:
        spoiled = dirty.dirty_rows(m)
        a = {r["id"]: r for r in clean.records(m)}
        for r in dirty.records(m):
            if r["id"] not in spoiled:
                assert a[r["id"]] == r


def test_mutate_updates_inserts_soft_deletes() -> None:
    p = LingangPlatform(seed=2, scale=0.2, **KW)
    before = {m: {r["id"]: r for r in p.records(m)} for m in MODULES}
    newest = max(r["updateTime"] for m in MODULES for r in before[m].values())
    counts = p.mutate(changed=0.05, seed=1)
    for m in MODULES:
        c = counts[m]
        assert c["updated"] > 0 and c["inserted"] > 0 and c["soft_deleted"] > 0, (m, c)
        after = p.records(m)
        assert len(after) == len(before[m]) + c["inserted"]
        keys = [(r["updateTime"], r["id"]) for r in after]
        assert keys == sorted(keys)
        touched = [r for r in after if r["id"] not in before[m] or r != before[m][r["id"]]]
        assert len(touched) == c["updated"] + c["inserted"] + c["soft_deleted"]
        assert all(r["updateTime"] > newest for r in touched)
        assert sum(r["isDeleted"] for r in after) == c["soft_deleted"]
        assert len(p.records(m, include_deleted=False)) == len(after) - c["soft_deleted"]
    # the clock only moves forward
    newest2 = max(r["updateTime"] for m in MODULES for r in p.records(m))
    p.mutate(changed=0.01)
    assert min(r["updateTime"] for m in MODULES for r in p.records(m) if r["updateTime"] > newest2) > newest2
    # deterministic: same history -> same state
    q = LingangPlatform(seed=2, scale=0.2, **KW)
    q.mutate(changed=0.05, seed=1)
    q.mutate(changed=0.01)
    assert _digest(p) == _digest(q)
