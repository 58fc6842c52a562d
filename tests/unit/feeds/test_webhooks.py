"""Standard Webhooks signing, secret sealing, URLs allowed, and the retry wait of push delivery."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from feeds.delivery import RetryPolicy, _retry_after, retry_wait
from feeds.subscriptions import SubscriptionError, check_url
from feeds.webhooks import SealError, new_secret, seal, sign_headers, unseal

HUB = b"hub-secret-0123456789abcdef-0123"


def test_signatures_verify_with_the_reference_library_under_each_secret_of_a_rotation() -> None:
    old, new = new_secret(), new_secret()
    assert old.startswith("whsec_") and old != new
    body = '{"type":"iehub.feed.batch","data":{"changes":[{"name":"张**"}]}}'.encode()
    headers = sign_headers("msg_0123", body, [new, old])
    assert headers["webhook-id"] == "msg_0123" and len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers)["data"]["changes"][0]["name"] == "张**"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body + b" ", headers)
    stale = sign_headers("msg_0123", body, [old], at=datetime.now(timezone.utc) - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(old).verify(body, stale)


def test_secrets_are_sealed_under_the_hub_secret() -> None:
    secret = new_secret()
    sealed = seal(secret, HUB)
    assert secret not in sealed and unseal(sealed, HUB) == secret
    with pytest.raises(SealError, match="rotate"):
        unseal(sealed, b"another-hub-secret-0123456789abc")


@pytest.mark.parametrize("url", ["https://platform.example.cn/hooks/iehub", "http://127.0.0.1:8080/h",
                                 "http://localhost/h", "http://[::1]:9000/h"])
def test_https_anywhere_and_http_only_to_loopback(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize("url", ["http://platform.example.cn/hooks", "ftp://127.0.0.1/x", "https://u:p@example.cn/",
                                 "https:///nohost", "http://10.0.0.5/h", "https://example.cn:99999/"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(SubscriptionError):
        check_url(url)


def test_retry_wait_backs_off_with_jitter_and_never_under_retry_after() -> None:
    policy = RetryPolicy(attempts=6, base_seconds=1.0, cap_seconds=8.0)
    rng = random.Random(3)
    waits = [retry_wait(policy, attempt, None, rng) for attempt in range(1, 7) for _ in range(50)]
    assert all(0 <= w <= 8.0 for w in waits) and len(set(waits)) > 100  # jittered, capped
    assert max(retry_wait(policy, 1, None, rng) for _ in range(50)) <= 1.0
    assert all(retry_wait(policy, 1, 30.0, rng) >= 30.0 for _ in range(20))
    assert _retry_after("120") == 120.0 and _retry_after(None) is None and _retry_after("soon") is None
    later = (datetime.now(timezone.utc) + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 80 <= (_retry_after(later) or 0) <= 91
