"""Simulator of the Lingang New Area industry-education information service platform 1.0
(临港新片区产教融合信息服务平台).

It plays a foreign system for iehub's tests, demo and benchmarks, so it imports nothing
of the hub: stdlib and orjson only. Start one with::

    p = LingangPlatform(seed=7, scale=0.05, client_id="demo", client_secret="s3cret")
    base = p.start()           # http://127.0.0.1:PORT
    ...
    p.stop()
"""

from __future__ import annotations

from .data import BASE_SIZES, BASE_TIME, DIRTY_KINDS, ID_PREFIX, MODULES, fmt_ts, parse_ts, uscc_valid
from .faults import ALL_KINDS, FAILING_KINDS, FAULT_KINDS, FaultPlan
from .server import MODULE_PATHS, LingangPlatform

__all__ = [
    "ALL_KINDS", "BASE_SIZES", "BASE_TIME", "DIRTY_KINDS", "FAILING_KINDS", "FAULT_KINDS", "ID_PREFIX",
    "MODULES", "MODULE_PATHS", "FaultPlan", "LingangPlatform", "fmt_ts", "parse_ts", "uscc_valid",
]
