"""Secrets for source specs: resolved late, never printed.

A spec names where a secret lives (`{env: NAME}` or `{airflow_conn: ID, field: password}`);
the value is resolved only when a connector opens, wrapped in `Secret` so that repr, str and
logs show `***`, and every error message is passed through `mask` before it is raised.

`mask` finds a secret in every form a source may echo it back: raw, percent-encoded (any
subset of its characters, upper or lower hex, a space as `+` or `%20`, so URL and form
encodings alike), JSON-escaped (a slash written backslash-slash, non-ASCII as u-escapes), and
inside base64 (HTTP Basic's `user:secret`, whatever the user). One pattern per secret that accepts every encoding of each
character, rather than a list of pre-encoded copies, because encoders disagree on which
characters they leave alone (requests keeps `/` and `=` in a query, urlencode does not).
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
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


def connection_fields(conn_id: str) -> dict[str, str]:
    """The fields of an Airflow connection (login, password, host, schema), through the current lookup."""
    return _lookup(conn_id)


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


_JSON_ESCAPES = {"/": r"\/", '"': r'\"', "\\": r"\\", "\b": r"\b", "\f": r"\f", "\n": r"\n",
                 "\r": r"\r", "\t": r"\t"}
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


def _hex(byte: int) -> str:
    """`%2b` / `%2B`: either case of each hex digit."""
    return "%" + "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{byte:02X}")


def _char_pattern(char: str) -> str:
    """Every way one character of a secret may be written: itself, percent-encoded, `+`, JSON-escaped."""
    options = [re.escape(char), "".join(_hex(b) for b in char.encode("utf-8"))]
    if char == " ":
        options.append(r"\+")
    if char in _JSON_ESCAPES:
        options.append(re.escape(_JSON_ESCAPES[char]))
    if ord(char) < 0x20 or ord(char) > 0x7E:
        options.extend(r"\\u" + "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{unit:04X}")
                       for unit in _utf16_units(char))
    return "(?:" + "|".join(options) + ")"


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


@functools.lru_cache(maxsize=64)
def _pattern(value: str) -> re.Pattern[str]:
    return re.compile("".join(_char_pattern(c) for c in value))


def _decoded(run: str) -> str | None:
    """The text a base64 (standard or URL-safe) run decodes to, or None when it is not base64 of text."""
    padded = run + "=" * (-len(run) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(padded.encode("ascii")).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
    return None


def mask(text: str, secrets: list[Secret]) -> str:
    """Replace every secret value in `text` with ***, in any encoding; used on every error message we raise."""
    patterns = [_pattern(value) for value in (s.reveal() for s in secrets) if value]
    if not patterns:
        return text
    for pattern in patterns:
        text = pattern.sub("***", text)

    def hide_base64(match: re.Match[str]) -> str:
        decoded = _decoded(match.group(0))
        return "***" if decoded is not None and any(p.search(decoded) for p in patterns) else match.group(0)

    return _BASE64_RUN.sub(hide_base64, text)
