"""Simulator of the Lingang Group's industry system (临港集团产业信息系统): MariaDB/MySQL tables in
the group's own naming, SQLite when embedded. Imports nothing of the hub."""
from __future__ import annotations

from .database import BASE_SIZES, COLUMNS, PRIMARY_KEYS, TABLES, live_keys, mutate, read_meta, seed

__all__ = ["BASE_SIZES", "COLUMNS", "PRIMARY_KEYS", "TABLES", "live_keys", "mutate", "read_meta", "seed"]
