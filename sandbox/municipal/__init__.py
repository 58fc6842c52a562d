"""Simulator of the municipal collaborative-education project database
(市级产教融合协同育人项目信息库): a relational database on SQLite or PostgreSQL.

It plays a foreign system for iehub's tests, demo and benchmarks and imports nothing of the
hub. Seed it, change it, point the hub at its URL::

    seed("sqlite:////tmp/municipal.sqlite", scale=0.1, seed=7)
    mutate("sqlite:////tmp/municipal.sqlite", changed=0.01, seed=1)
"""
from __future__ import annotations

from .data import BASE_SIZES, COLUMNS
from .database import counts, mutate, read_meta, seed
from .models import PRIMARY_KEYS, TABLES

__all__ = ["BASE_SIZES", "COLUMNS", "PRIMARY_KEYS", "TABLES", "counts", "mutate", "read_meta", "seed"]
