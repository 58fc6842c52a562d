"""A secret echoed back by a source is masked in every encoding it can come back in."""
from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus, urlencode

import pytest

from connectors.secrets import Secret, mask

SECRET = "Ab+Sec/ret=Val&ue 42"  # +, /, =, & and a space: every character an encoder treats differently


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


ECHOES = {
    "raw": SECRET,
    "percent-encoded, space as %20": quote(SECRET, safe=""),
    "percent-encoded, lower-case hex": _lower_hex(quote(SECRET, safe="")),
    "percent-encoded, / and = left alone (requests' query strings)": quote(SECRET, safe="/=&+"),
    "form-encoded, space as +": urlencode({"client_secret": SECRET}),
    "form-encoded, lower-case hex": _lower_hex(quote_plus(SECRET)),
    "JSON-escaped": json.dumps({"client_secret": SECRET}),
    "JSON-escaped with escaped slashes": json.dumps({"client_secret": SECRET}).replace("/", "\\/"),
    "base64 of basic auth user:secret": "Basic " + base64.b64encode(f"demo-client:{SECRET}".encode()).decode(),
    "url-safe base64 of the secret": base64.urlsafe_b64encode(SECRET.encode()).decode(),
}


@pytest.mark.parametrize("encoding", list(ECHOES))
def test_a_secret_echoed_back_is_masked(encoding: str) -> None:
    echoed = ECHOES[encoding]
    message = mask(f"the token endpoint answered: invalid_client ({echoed}) at page 3", [Secret(SECRET)])
    assert "***" in message and echoed not in message
    assert "the token endpoint answered: invalid_client" in message and "at page 3" in message


def test_the_reported_form_encoded_echo_is_masked() -> None:
    message = mask("rejected client_secret=Ab%2BSec%2Fret%3DVal%26ue42", [Secret("Ab+Sec/ret=Val&ue42")])
    assert message == "rejected client_secret=***"


def test_non_ascii_secrets_and_their_json_unicode_escapes() -> None:
    secret = "密钥Ab/+="
    upper_hex = re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group(0)[2:].upper(), json.dumps(secret))
    for echoed in (json.dumps(secret), upper_hex, quote(secret, safe="")):
        assert "***" in mask(echoed, [Secret(secret)]), echoed


def test_text_without_the_secret_is_left_alone() -> None:
    text = "HTTP 401 for /api/v1/auth/token; Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ== was refused"
    assert mask(text, [Secret(SECRET)]) == text
    assert mask(text, []) == text
