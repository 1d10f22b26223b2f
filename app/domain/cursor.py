"""Opaque pagination cursors.

A cursor carries the sort, the position (keyset values, or an offset for relevance) and a fingerprint of the
filters it was issued for: reusing it with other filters would silently skip or repeat items, so that is
refused instead. Clients must treat it as an opaque string.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Cursor:
    sort: str
    position: tuple[Any, ...]
    fingerprint: str


def fingerprint(filters: dict[str, Any]) -> str:
    canonical = orjson.dumps({k: v for k, v in filters.items() if v is not None}, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=6).hexdigest()


def encode_cursor(cursor: Cursor) -> str:
    raw = orjson.dumps([1, cursor.sort, list(cursor.position), cursor.fingerprint])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(token: str, *, sort: str, fingerprint: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        version, c_sort, position, c_fp = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursor("cursor is not one this API issued") from exc
    if version != 1 or not isinstance(position, list) or not isinstance(c_sort, str):
        raise InvalidCursor("cursor is not one this API issued")
    if c_sort != sort or c_fp != fingerprint:
        raise InvalidCursor("cursor was issued for another sort or other filters; start again without it")
    return Cursor(c_sort, tuple(position), c_fp)
