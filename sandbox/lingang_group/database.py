"""Rows of the Lingang Group system, and seeding and changing it on SQLite or MariaDB/MySQL.

The enterprises are the Lingang platform's (same names and USCCs for the same seed) plus the
park's own; times are Shanghai wall-clock text, amounts 万元 with four decimals. A little
dirt as the system really has: full-width digits in some USCCs, industry aliases, a few
cooperations ending before they start.
"""
from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone
from random import Random
from typing import Iterator

from sqlalchemy import Engine, bindparam, create_engine, delete, func, insert, select, update

from sandbox import sqlload
from sandbox.lingang.data import COOP_STATUS, COOP_TYPES, DISTRICTS, INDUSTRIES, build_orgs, make_uscc
from sandbox.lingang_group.models import PRIMARY_KEYS, TABLES, Base, Meta

SHANGHAI = timezone(timedelta(hours=8))
_START = calendar.timegm((2022, 1, 1, 0, 0, 0))
_END = calendar.timegm((2026, 1, 1, 0, 0, 0))  # local wall-clock seconds
BASE_SIZES = {"T_QY_JBXX": 600, "T_XQHZ_XM": 1500, "T_SXJD": 400}
PARKS = ["临港科技城", "国际创新协同区", "洋山特殊综合保税区", "临港装备产业区", "临港生命蓝湾", "临港智能网联汽车创新港"]
INDUSTRY_ALIASES = {"集成电路": "芯片", "民用航空": "大飞机", "智能新能源汽车": "新能源汽车", "高端装备制造": "高端装备"}
_FW = str.maketrans("0123456789", "０１２３４５６７８９")
COLUMNS = {
    "T_QY_JBXX": ("QYID", "QYMC", "TYSHXYDM", "QYLX", "SSYQ", "CYLB", "CJRHZT", "RDRQ", "ZCDZ", "GXSJ", "SCBZ"),
    "T_XQHZ_XM": ("XMID", "XMBH", "HZYX", "YXDM", "HZQY", "QYDM", "HZLX", "CYLB", "KSRQ", "JSRQ", "TRJE", "HZZT",
                  "GXSJ", "SCBZ"),
    "T_SXJD": ("JDID", "JDMC", "JDLX", "YTDW", "YTDWDM", "HZYX", "YXDM", "SZQ", "CYLB", "DZ", "RNRS", "JLRQ", "SFYX",
               "GXSJ", "SCBZ"),
}
_DISTRICT_NAMES = {"310115": "浦东新区", "310120": "奉贤区", "310116": "金山区", "310112": "闵行区"}


def _ts(seconds: int, micro: int) -> str:
    return datetime.utcfromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S") + f".{micro:06d}"


def _day(seconds: int) -> str:
    return datetime.utcfromtimestamp(seconds).strftime("%Y-%m-%d")


class _Gen:
    def __init__(self, seed: int) -> None:
        self.schools, ents = build_orgs(seed)
        rng = Random(f"lingang_group:{seed}:parks")
        extra = [(f"上海临港{p}{k}有限公司", make_uscc(rng, "91", "310115"), INDUSTRIES[int(rng.random() * 8)])
                 for p in ("智联", "海创", "芯港", "蓝湾", "远洋", "申能") for k in ("科技", "装备", "材料", "服务")]
        self.enterprises = [(o.name, o.code, o.industry) for o in ents] + extra

    def enterprise(self, i: int, r: Random, when: int | None = None) -> tuple:
        name, code, industry = self.enterprises[(i - 1) % len(self.enterprises)]
        if i > len(self.enterprises):
            name = name.replace("有限公司", f"{i:04d}有限公司")
            code = make_uscc(r, "91", "310115")
        if r.random() < 0.01:
            code = code.translate(_FW)  # typed with a full-width IME
        status = (["培育", "试点", "认定"][int(r.random() * 3)]) if r.random() < 0.4 else None
        t = when or (_START + int(r.random() * (_END - _START)))
        return (i, name, code, "企业", PARKS[int(r.random() * len(PARKS))],
                INDUSTRY_ALIASES.get(industry, industry) if r.random() < 0.2 else industry, status,
                _day(t - 86400 * int(r.random() * 400)) if status == "认定" else None,
                f"上海市浦东新区{['环湖西一路', '云鹃路', '新四平公路', '江山路'][int(r.random() * 4)]}{int(r.random() * 3000)}号",
                _ts(t, int(r.random() * 1e6)), "0")

    def cooperation(self, i: int, r: Random, when: int | None = None) -> tuple:
        school = self.schools[int(r.random() * len(self.schools))]
        name, code, industry = self.enterprises[int(r.random() * len(self.enterprises))]
        t = when or (_START + int(r.random() * (_END - _START)))
        start = t - 86400 * int(r.random() * 300)
        end = start + 86400 * (365 * (1 + int(r.random() * 3)))
        if r.random() < 0.005:
            end = start - 86400 * 30
        amount = int(r.random() * 5_000_000)  # 万元 × 10⁴: up to 500 万元 with 4 decimals
        return (i, f"LGHZ{_day(start)[:4]}{i:06d}", school.name, school.code, name, code,
                COOP_TYPES[int(r.random() * len(COOP_TYPES))], industry, _day(start), _day(end),
                f"{amount // 10000}.{amount % 10000:04d}", COOP_STATUS[int(r.random() * 3)],
                _ts(t, int(r.random() * 1e6)), "0")

    def base(self, i: int, r: Random, when: int | None = None) -> tuple:
        school = self.schools[int(r.random() * len(self.schools))]
        name, code, industry = self.enterprises[int(r.random() * len(self.enterprises))]
        kind = ["就业型", "教学型", "践习型", "公共实训基地"][int(r.random() * 4)]
        t = when or (_START + int(r.random() * (_END - _START)))
        district = "310115" if r.random() < 0.8 else DISTRICTS[int(r.random() * len(DISTRICTS))]
        return (i, f"{name.removesuffix('有限公司')}{kind}实训基地", kind, name, code, school.name, school.code,
                _DISTRICT_NAMES.get(district, district), industry, "上海市浦东新区南汇新城镇", 20 + int(r.random() * 20) * 10,
                _day(t - 86400 * int(r.random() * 700)), "是" if r.random() < 0.9 else "否", _ts(t, int(r.random() * 1e6)),
                "0")

    def rows(self, table: str, first: int, n: int, r: Random, when: int | None = None) -> Iterator[tuple]:
        make = {"T_QY_JBXX": self.enterprise, "T_XQHZ_XM": self.cooperation, "T_SXJD": self.base}[table]
        for i in range(first, first + n):
            yield make(i, r, when)


def engine_for(url: str) -> Engine:
    return create_engine(url)


def read_meta(engine: Engine) -> dict[str, str]:
    try:
        with engine.connect() as conn:
            return {k: v for k, v in conn.execute(select(Meta.K, Meta.V))}
    except Exception:  # noqa: BLE001 - no database or no meta table yet: not seeded
        return {}


def seed(url: str, *, scale: float = 1.0, seed: int = 7) -> dict[str, int]:
    """Drop and create the tables, then fill them for (seed, scale); rows per table."""
    engine = engine_for(url)
    try:
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        gen = _Gen(seed)
        out = {}
        for table in TABLES:
            r = Random(f"lingang_group:{seed}:{table}")
            out[table] = sqlload.load_rows(engine, table, COLUMNS[table],
                                           gen.rows(table, 1, max(1, int(BASE_SIZES[table] * scale)), r))
        with engine.begin() as conn:
            conn.execute(insert(Meta), [{"K": "seed", "V": str(seed)}, {"K": "scale", "V": str(scale)}])
        return out
    finally:
        engine.dispose()


def mutate(url: str, *, changed: float = 0.01, seed: int | None = None) -> dict[str, dict[str, int]]:
    """Change about `changed` of each table: 80% updated, 10% inserted, 5% flagged deleted, 5% removed."""
    rng = Random(f"lingang_group:mutate:{seed}" if seed is not None else None)
    engine = engine_for(url)
    out: dict[str, dict[str, int]] = {}
    try:
        meta = read_meta(engine)
        if not meta:
            raise RuntimeError("the Lingang Group sandbox database is not seeded: run `iehub sandbox seed lingang_group`")
        gen = _Gen(int(meta.get("seed", "7")))
        now = datetime.now(SHANGHAI).replace(tzinfo=None)
        when = calendar.timegm(now.timetuple())
        with engine.begin() as conn:
            for name in TABLES:
                table = Base.metadata.tables[name]
                pk = table.c[PRIMARY_KEYS[name]]
                live = sorted(k for (k,) in conn.execute(select(pk).where(table.c.SCBZ == "0")))
                n = max(1, round(len(live) * changed))
                chosen = rng.sample(live, min(n, len(live)))
                n_hard = 0 if name == "T_QY_JBXX" else int(n * 0.05)
                n_soft = int(n * 0.05)
                hard, soft, upd = chosen[:n_hard], chosen[n_hard:n_hard + n_soft], chosen[n_hard + n_soft:]
                column = {"T_QY_JBXX": "CJRHZT", "T_XQHZ_XM": "HZZT", "T_SXJD": "SFYX"}[name]
                values = {"T_QY_JBXX": ["培育", "试点", "认定"], "T_XQHZ_XM": COOP_STATUS, "T_SXJD": ["是", "否"]}[name]
                if upd:
                    conn.execute(update(table).where(pk == bindparam("b_id")),
                                 [{"b_id": k, column: values[int(rng.random() * len(values))], "GXSJ": now}
                                  for k in upd])
                if soft:
                    conn.execute(update(table).where(pk.in_(soft)).values(SCBZ="1", GXSJ=now))
                if hard:
                    conn.execute(delete(table).where(pk.in_(hard)))
                n_ins = int(n * 0.1)
                if n_ins:
                    first = (conn.execute(select(func.max(pk))).scalar() or 0) + 1
                    rows = [sqlload.python_values(table, dict(zip(COLUMNS[name], row)))
                            for row in gen.rows(name, first, n_ins, rng, when)]
                    for row in rows:
                        row["GXSJ"] = now
                    conn.execute(insert(table), rows)
                out[name] = {"updated": len(upd), "inserted": n_ins, "soft_deleted": len(soft), "hard_deleted": len(hard)}
        return out
    finally:
        engine.dispose()


def live_keys(url: str, table: str) -> set[int]:
    engine = engine_for(url)
    try:
        t = Base.metadata.tables[table]
        with engine.connect() as conn:
            return {k for (k,) in conn.execute(select(t.c[PRIMARY_KEYS[table]]).where(t.c.SCBZ == "0"))}
    finally:
        engine.dispose()


__all__ = ["BASE_SIZES", "COLUMNS", "PRIMARY_KEYS", "TABLES", "live_keys", "mutate", "read_meta", "seed"]
