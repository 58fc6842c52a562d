"""The Lingang Group industry system sandbox (SQLite under IEHUB_HOME, or MariaDB/MySQL by URL)."""
from __future__ import annotations

from iehub.sandbox_databases import DatabaseSandbox

SYSTEM = DatabaseSandbox("lingang_group", "临港集团产业信息系统 (MariaDB/MySQL tables in the group's own naming)",
                         "sandbox.lingang_group", "IEHUB_LINGANG_GROUP_DB_URL", "lingang_group.sqlite")
