"""The SQL stream kind: any SQLAlchemy database, read as Arrow (ADBC, connectorx or fetchmany)."""
from __future__ import annotations

from connectors.sql.spec import SqlSourceSpec, SqlStreamSpec
from connectors.sql.stream import SqlSourceStream

__all__ = ["SqlSourceSpec", "SqlSourceStream", "SqlStreamSpec"]
