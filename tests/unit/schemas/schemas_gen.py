"""Generators of valid identifiers for the validator tests, written independently of the code under test.

The check characters are computed here from the standards' formulas so a bug in
schemas.validators cannot hide itself by being used to build its own test data.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
AUTHORITY_TYPES = {"1": "1239", "5": "1239", "9": "123", "Y": "1", "N": "1239", "3": "1234569"}
PROVINCES = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65",
]  # fmt: skip
SHANGHAI_CURRENT = [
    "310101", "310104", "310105", "310106", "310107", "310109", "310110", "310112",
    "310113", "310114", "310115", "310116", "310117", "310118", "310120", "310151",
]  # fmt: skip
SHANGHAI_RETIRED = ["310102", "310103", "310108", "310111", "310119", "310221", "310225", "310230", "310100"]
AS_OF = date(2025, 6, 30)


def org_code_check(body8: str) -> str:
    weights = [3, 7, 9, 10, 5, 8, 4, 2]
    value = sum((int(c) if c.isdigit() else ord(c) - 55) * w for c, w in zip(body8, weights))
    c9 = 11 - value % 11
    return "X" if c9 == 10 else "0" if c9 == 11 else str(c9)


def uscc_check(first17: str) -> str:
    total = sum(USCC_CHARS.index(c) * (3**i % 31) for i, c in enumerate(first17))
    return USCC_CHARS[(31 - total % 31) % 31]


def make_uscc(rng: random.Random) -> str:
    authority = rng.choice(sorted(AUTHORITY_TYPES))
    kind = rng.choice(AUTHORITY_TYPES[authority])
    region = rng.choice(["310115", "310110", "310112", "110108", "440300", "320500", "100000"])
    if rng.random() < 0.5:
        region = rng.choice(PROVINCES) + f"{rng.randrange(10000):04d}"
    body = "".join(rng.choice(USCC_CHARS) for _ in range(8))
    first17 = authority + kind + region + body + org_code_check(body)
    return first17 + uscc_check(first17)


def id_check(first17: str) -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights)) % 11]


def make_id(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:
        region = rng.choice(SHANGHAI_CURRENT)
    elif roll < 0.5:
        region = rng.choice(SHANGHAI_RETIRED)
    else:
        region = rng.choice([p for p in PROVINCES if p != "31"]) + f"{rng.randrange(10000):04d}"
    born = date(1900, 1, 1) + timedelta(days=rng.randrange((AS_OF - date(1900, 1, 1)).days + 1))
    first17 = region + born.strftime("%Y%m%d") + f"{rng.randrange(1000):03d}"
    return first17 + id_check(first17)
