"""Standard Webhooks signing for push subscriptions, and the sealing of their secrets at rest.

Why the reference library: the ``standardwebhooks`` package (from the standard-webhooks
project, no dependencies of its own) is what receivers verify with, so the hub signs with the
same code: ``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``
under the secret, and carries one such signature per valid secret, space-separated, so a
receiver holding either secret accepts a batch while a rotation overlaps.

Secrets are ``whsec_`` + base64 of 32 random bytes, shown once. HMAC needs the secret itself
(a hash would not sign), so the feed database keeps it, but sealed (Fernet: AES-128-CBC +
HMAC-SHA256) under a sub-key of the hub secret (IEHUB_FEED_SECRET or ``feeds/secret``),
never beside it: a copy of ``feeds.db`` alone cannot sign a batch. A hub secret that changes
makes the sealed secrets unreadable; delivery then says to rotate the subscription's secret.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime, timezone

from cryptography.fernet import Fernet, InvalidToken
from standardwebhooks.webhooks import Webhook

from feeds.masking import derive_key

__all__ = ["SECRET_PREFIX", "SealError", "new_secret", "seal", "sign_headers", "unseal"]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
_PURPOSE = "webhook secrets"


class SealError(ValueError):
    """A sealed webhook secret cannot be opened with this hub secret."""


def new_secret() -> str:
    """A fresh signing secret, ``whsec_`` + base64 of 32 random bytes (shown once to the consumer)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _fernet(hub_secret: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_key(hub_secret, _PURPOSE)))


def seal(secret: str, hub_secret: bytes) -> str:
    """``secret`` encrypted and authenticated under a sub-key of the hub secret."""
    return _fernet(hub_secret).encrypt(secret.encode("ascii")).decode("ascii")


def unseal(sealed: str, hub_secret: bytes) -> str:
    """The secret back; SealError when the hub secret is not the one it was sealed under."""
    try:
        return _fernet(hub_secret).decrypt(sealed.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError):
        raise SealError("the subscription's signing secret was sealed under another hub secret "
                        "(IEHUB_FEED_SECRET changed?); rotate it with `iehub subscriptions rotate-secret`") from None


def sign_headers(msg_id: str, body: bytes, signing_secrets: Sequence[str], at: datetime | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt, signed with every valid secret."""
    if not signing_secrets:
        raise ValueError("a webhook needs at least one signing secret")
    when = (at or datetime.now(timezone.utc)).replace(microsecond=0)
    signatures = " ".join(Webhook(s).sign(msg_id, when, body) for s in signing_secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signatures}
