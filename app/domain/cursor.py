"""Opaque tokens: pagination cursors and change-feed positions, signed so that only this API can issue them.

A cursor carries the sort, the position (keyset values, or an offset for relevance) and a fingerprint of the
filters it was issued for: reusing it with other filters would silently skip or repeat items, so that is
refused instead. Clients must treat it as an opaque string.

The store works with the unsigned form (``encode_cursor``/``decode_cursor``); the API hands clients only signed
tokens (``TokenSigner``): ``<payload>.<HMAC-SHA256 of the payload, 128 bits>``. Anything else, a token edited by
hand included, is refused before it is decoded, so a position of the wrong types never reaches a query (it used
to answer 500). The decoder still checks the position's shape: a signing key that leaked must not turn into a
crash either.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import orjson

from app.domain.normalize import brand_key
from app.domain.queries import ProductQuery

#: The shape of every signed token: what the OpenAPI schema promises and what ``TokenSigner.verify`` accepts.
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,600}\.[A-Za-z0-9_-]{22}$"
TOKEN_MAX_LENGTH = 623
_TOKEN = re.compile(TOKEN_PATTERN)


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Cursor:
    sort: str
    position: tuple[Any, ...]
    fingerprint: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Signs and checks tokens with one key (setting ``CATALOG_CURSOR_KEY``), shared by every node so a cursor
    or a change-feed token from one node is good on all of them and after a restart."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the token signing key needs at least 16 bytes")
        self._key = key

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:16])

    def sign(self, payload: str) -> str:
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str) -> str:
        """The payload of a token this API issued; ``InvalidCursor`` for anything else."""
        if not _TOKEN.match(token):
            raise InvalidCursor("not a token this API issued")
        payload, mac = token.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidCursor("not a token this API issued")
        return payload


def fingerprint(filters: dict[str, Any]) -> str:
    canonical = orjson.dumps({k: v for k, v in filters.items() if v is not None}, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=6).hexdigest()


def filters_fingerprint(query: ProductQuery) -> str:
    """What a list cursor is bound to: the query's filters as the store and the search index both apply them."""
    return fingerprint(
        {
            "q": query.q,
            "vendor": query.vendor,
            "brand": brand_key(query.brand),
            "category": brand_key(query.category),
            "min_price": str(query.min_price) if query.min_price is not None else None,
            "max_price": str(query.max_price) if query.max_price is not None else None,
            "price_currency": query.price_currency,
            "in_stock": query.in_stock,
        }
    )


def encode_cursor(cursor: Cursor) -> str:
    raw = orjson.dumps([1, cursor.sort, list(cursor.position), cursor.fingerprint])
    return _b64(raw)


def _position_ok(sort: str, position: list[Any]) -> bool:
    """Scalars only (a list or an object would reach SQL as a parameter it cannot bind); relevance pages by a
    non-negative offset."""
    if not 1 <= len(position) <= 4 or not all(type(v) in (str, int, float) for v in position):
        return False
    if sort == "relevance":
        return type(position[0]) is int and 0 <= position[0] <= 10**9
    return True


def decode_cursor(token: str, *, sort: str, fingerprint: str) -> Cursor:
    try:
        version, c_sort, position, c_fp = orjson.loads(_unb64(token))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursor("cursor is not one this API issued") from exc
    if version != 1 or not isinstance(position, list) or not isinstance(c_sort, str):
        raise InvalidCursor("cursor is not one this API issued")
    if c_sort != sort or c_fp != fingerprint:
        raise InvalidCursor("cursor was issued for another sort or other filters; start again without it")
    if not _position_ok(c_sort, position):
        raise InvalidCursor("cursor is not one this API issued")
    return Cursor(c_sort, tuple(position), c_fp)
