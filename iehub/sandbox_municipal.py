"""The municipal project database sandbox (SQLite under IEHUB_HOME, or PostgreSQL by URL)."""
from __future__ import annotations

from iehub.sandbox_databases import DatabaseSandbox

SYSTEM = DatabaseSandbox("municipal", "市级产教融合协同育人项目信息库 (relational database)", "sandbox.municipal",
                         "IEHUB_MUNICIPAL_DB_URL", "municipal.sqlite")
