"""Names shared by the DAGs: which streams exist and which Asset each landing publishes."""
from __future__ import annotations

from functools import lru_cache

WAREHOUSE_ASSET_URI = "iehub://warehouse/core"


def std_asset_uri(source: str, entity: str) -> str:
    return f"iehub://lake/std/{entity}/{source}"


@lru_cache(maxsize=1)
def source_streams() -> dict[str, dict[str, str]]:
    """{source: {stream: entity}} from the shipped specs (local files only: no network, no secrets)."""
    from connectors.spec import available_sources, load_spec

    return {name: {s: st.entity for s, st in load_spec(name).streams.items()} for name in available_sources()}
