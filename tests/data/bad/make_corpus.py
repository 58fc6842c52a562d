"""Writes cases.csv: the bad-input corpus, each case labelled with the rule it must trip.

    .venv/bin/python tests/data/bad/make_corpus.py     # deterministic; commit the CSV

Every case has a valid twin of the same kind that must pass. Identifiers are synthetic.
"""
from __future__ import annotations

import csv
import random
import sys
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from schemas.validators import resident_id_check_char, uscc_check_char, org_code_check_char  # noqa: E402

RNG = random.Random(20261122)
OUT = Path(__file__).with_name("cases.csv")
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def valid_id(rng: random.Random) -> str:
    born = date(1990, 1, 1) + timedelta(days=rng.randrange(0, 365 * 15))
    body = f"{rng.choice(['310115', '310110', '310112', '310104', '320502', '110108'])}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + resident_id_check_char(body)


def valid_uscc(rng: random.Random) -> str:
    org = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    org += org_code_check_char(org)
    body = rng.choice(["91", "92", "52", "12"]) + rng.choice(["310115", "310110", "310112"]) + org
    return body + uscc_check_char(body)


def valid_phone(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"


def cases() -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def add(category: str, entity: str, field: str, value: str, rule: str, twin: str, note: str) -> None:
        out.append({"case_id": f"{category}-{len([c for c in out if c['category'] == category]) + 1:03d}",
                    "category": category, "entity": entity, "field": field, "value": value,
                    "expected_rule": rule, "twin": twin, "note": note})

    rid = "quality.id_number.valid_resident_id"
    for _ in range(20):
        good = valid_id(RNG)
        add("id", "trainee", "id_number", good[:-1], rid, valid_id(RNG), "17 characters")
        add("id", "trainee", "id_number", good + str(RNG.randrange(10)), rid, valid_id(RNG), "19 characters")
        pos = RNG.randrange(17)
        add("id", "trainee", "id_number", good[:pos] + RNG.choice("ABCZ*-") + good[pos + 1:], rid, valid_id(RNG),
            "letter or symbol in the digits")
        wrong = RNG.choice([c for c in "0123456789X" if c != good[-1]])
        add("id", "trainee", "id_number", good[:-1] + wrong, rid, valid_id(RNG), "check character wrong")
        body = good[:6] + RNG.choice(["20030230", "19991301", "20010431", "19000000", "20991231"]) + good[14:17]
        add("id", "trainee", "id_number", body + resident_id_check_char(body), rid, valid_id(RNG),
            "impossible or future birth date")
        body = RNG.choice(["990000", "000000", "310199", "840101", "666666"]) + good[6:17]
        add("id", "trainee", "id_number", body + resident_id_check_char(body), rid, valid_id(RNG), "unknown region")
        add("id", "trainee", "id_number", good[:6] + good[8:14] + good[14:17], rid, valid_id(RNG),
            "15-digit old number")
        add("id", "trainee", "id_number", f"{float(good[:17]):.8e}".replace("e+16", "e+17"), rid, valid_id(RNG),
            "mangled by Excel into a float")
    uid = "quality.school_uscc.valid_uscc"
    for _ in range(25):
        good = valid_uscc(RNG)
        pos = RNG.randrange(2, 17)
        add("uscc", "cooperation", "school_uscc", good[:pos] + RNG.choice("IOSVZ") + good[pos + 1:], uid,
            valid_uscc(RNG), "character outside the GB 32100 charset (I/O/S/V/Z)")
        wrong = RNG.choice([c for c in USCC_CHARS if c != good[-1]])
        add("uscc", "cooperation", "school_uscc", good[:-1] + wrong, uid, valid_uscc(RNG), "check character wrong")
    for _ in range(20):
        good = valid_uscc(RNG)
        body = good[:2] + RNG.choice(["AB0115", "3101AB", "31A115", "99999Q"]).ljust(6, "0")[:6] + good[8:17]
        add("uscc", "cooperation", "school_uscc", body + uscc_check_char(body), uid, valid_uscc(RNG),
            "administrative division not a code")
    pid = "quality.phone.valid_mobile"
    for value, note in [("1381234567", "10 digits"), ("138123456789", "12 digits"), ("12812345678", "no 12x prefix"),
                        ("021-68281234", "landline"), ("1381234567a", "letter"), ("00000000000", "zeros"),
                        ("10086", "service number"), ("+1 415 555 0100", "foreign"), ("138 1234 567", "short with spaces"),
                        ("11012345678", "no 11x prefix")] * 3:
        add("phone", "trainee", "phone", value, pid, valid_phone(RNG), note)
    did = "mapping.date"
    for value, note in [("23-4-27", "two-digit year"), ("2023年2月30日", "2月30日"), ("2023-13-01", "month 13"),
                        ("待定", "placeholder text"), ("0000-00-00", "zero date"), ("2023/02/29", "not a leap year"),
                        ("27/04/2023", "day first"), ("2023-4", "no day"), ("二〇二三年四月", "Chinese numerals"),
                        ("2023.4.31", "April 31")] * 3:
        add("date", "cooperation", "start_date", value, did, RNG.choice(["2023-04-27", "2023/4/27", "2023年4月27日",
                                                                          "20230427", "2023.04.27"]), note)
    dist = "quality.district_code.valid_district_code"
    for value, note in [("310103", "卢湾 retired 2011"), ("310108", "闸北 retired 2015"), ("310119", "南汇 retired 2009"),
                        ("310230", "崇明县 retired 2016"), ("999999", "not a code"), ("3101", "too short"),
                        ("浦东", "a name, not a code"), ("320502", "outside Shanghai"), ("310100", "city level"),
                        ("31011５", "full-width digit")] * 2:
        add("district", "cooperation", "district_code", value, dist, RNG.choice(["310115", "310110", "310112"]), note)
    for value, note in [("12万美元", "foreign currency"), ("面议", "negotiable"), ("--", "dash"), ("1.2.3", "two points"),
                        ("abc", "letters"), ("1,2,3,4.5.6", "broken separators")] * 2:
        add("amount", "rd_project", "budget_amount", value, "mapping.wan_to_yuan",
            RNG.choice(["12.5", "1,234.5", "0.01", "１２.５"]), note)
    for value in ("-3", "-0.5", "-1,234.5"):
        add("amount", "rd_project", "budget_amount", value, "quality.budget_amount.sane_amount", "3", "negative")
    enc = "quality.title.readable_text"
    for title in ("关于开展2025年度产教融合型企业申报工作的通知", "临港新片区人才政策解读", "上海电机学院校企合作签约仪式",
                  "集成电路产业人才需求发布", "产教融合实训基地建设公示"):
        add("encoding", "notice", "title", title.encode("utf-8").decode("latin-1"), enc, title, "UTF-8 read as Latin-1")
        add("encoding", "notice", "title", title.encode("gbk").decode("latin-1"), enc, title, "GBK read as Latin-1")
        add("encoding", "notice", "title", title[:4] + "\ufffd\ufffd" + title[6:], enc, title, "replacement characters")
    return out


if __name__ == "__main__":
    rows = cases()
    with OUT.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} cases written to {OUT}")
