"""Secrets for source specs: resolved late, never printed.

A spec names where a secret lives (`{env: NAME}` or `{airflow_conn: ID, field: password}`);
the value is resolved only when a connector opens, wrapped in `Secret` so that repr, str and
logs show `***`, and every error message is passed through `mask` before it is raised.
"""
from __future__ import annotations

import json
import os
from typing import Callable
from urllib.parse import unquote, urlsplit

from connectors.errors import SpecError


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# A hook for the Airflow layer: given a connection id, return its fields. The default reads
# Airflow's own environment form (AIRFLOW_CONN_<ID>, URI or JSON), so no Airflow import is needed.
ConnectionLookup = Callable[[str], dict[str, str]]


def env_connection_lookup(conn_id: str) -> dict[str, str]:
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if raw is None:
        raise SpecError(f"Airflow connection '{conn_id}' is not defined (set AIRFLOW_CONN_{conn_id.upper()} "
                        "or create the connection in Airflow)")
    if raw.lstrip().startswith("{"):
        data = json.loads(raw)
        return {k: str(v) for k, v in data.items() if v is not None}
    parts = urlsplit(raw)
    return {"login": unquote(parts.username or ""), "password": unquote(parts.password or ""),
            "host": parts.hostname or "", "schema": parts.path.lstrip("/")}


_lookup: ConnectionLookup = env_connection_lookup


def set_connection_lookup(lookup: ConnectionLookup) -> None:
    """Let the Airflow layer plug in `airflow.sdk.Connection.get` inside running tasks."""
    global _lookup
    _lookup = lookup


def resolve_secret(ref: dict[str, str], where: str) -> Secret:
    """Resolve `{env: NAME}` or `{airflow_conn: ID, field: F}`; the error names `where`, not the value."""
    if "env" in ref:
        value = os.environ.get(ref["env"])
        if not value:
            raise SpecError(f"{where}: environment variable {ref['env']} is not set")
        return Secret(value)
    if "airflow_conn" in ref:
        fields = _lookup(ref["airflow_conn"])
        field = ref.get("field", "password")
        if not fields.get(field):
            raise SpecError(f"{where}: Airflow connection '{ref['airflow_conn']}' has no '{field}'")
        return Secret(fields[field])
    raise SpecError(f"{where}: a secret must be {{env: NAME}} or {{airflow_conn: ID, field: F}}, never a literal")


def mask(text: str, secrets: list[Secret]) -> str:
    """Replace every secret value in `text` with ***; used on every error message we raise."""
    for secret in secrets:
        value = secret.reveal()
        if value:
            text = text.replace(value, "***")
    return text
