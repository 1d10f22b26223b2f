"""Webhook signatures: a known vector, an independent computation, and the ways a signature must fail."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from app.domain.webhooks import sign, verify
from simulators import webhooks as vendor_side

# The widely published example vector: HMAC-SHA256("key", "The quick brown fox ...").
FOX = b"The quick brown fox jumps over the lazy dog"
FOX_HEX = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
FOX_B64 = "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="


def test_sign_matches_the_fixed_vector() -> None:
    assert base64.b64decode(FOX_B64).hex() == FOX_HEX
    assert sign(FOX, "key") == FOX_B64
    assert verify(FOX, "key", FOX_B64)


def test_sign_matches_a_hand_computed_hmac() -> None:
    body = b'{"id":7000000001234,"title":"Caf\xc3\xa9 mug"}'
    secret = "whsec_\u00e9t\u00e9"
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    assert sign(body, secret) == expected
    assert vendor_side.sign(body, secret) == expected
    assert verify(body, secret, expected)
    assert verify(body, secret, f" {expected}\n")  # header values may carry surrounding whitespace


@pytest.mark.parametrize(
    ("body", "secret", "signature"),
    [
        (FOX, "key", None),
        (FOX, "key", ""),
        (FOX, "", FOX_B64),
        (FOX, "other", FOX_B64),
        (FOX + b" ", "key", FOX_B64),
        (FOX, "key", FOX_B64.lower()),
        (FOX, "key", FOX_HEX),
        (FOX, "key", "\u00e9" * 44),
    ],
)
def test_verify_refuses(body: bytes, secret: str, signature: str | None) -> None:
    assert not verify(body, secret, signature)
