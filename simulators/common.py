"""Small helpers every simulator shares: deterministic dice, barcodes, money and JSON responses.

Every "sometimes" in the simulators (does this store carry the item, is its SKU re-spelled, is its barcode
valid) is a pure function of (seed, item id, purpose), never of ``random``: the same store must look the same
on every run and on every page, or tests and benchmarks could not rely on it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
from starlette.responses import Response

_MASK = (1 << 64) - 1
_CENT = Decimal("0.01")


def _mix(x: int) -> int:
    # splitmix64 finaliser: cheap, well spread, and identical on every platform and Python version.
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def unit(seed: int, key: int, salt: int) -> float:
    """A uniform number in [0, 1) that depends only on its arguments (one mix: it runs ~15 times per item)."""
    return _mix(seed * 0xD1B54A32D192ED03 + key * 0x9E3779B97F4A7C15 + salt * 0xF1357AEA2E62A9C5) / 2.0**64


def pick(seed: int, key: int, salt: int, n: int) -> int:
    return int(unit(seed, key, salt) * n)


def gtin_check_digit(body: str) -> int:
    """GS1 mod-10 check digit: weights 3,1,3,... from the rightmost digit of the body."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def valid_gtin13(barcode: str) -> str:
    """The barcode's first 12 digits with the correct check digit, as a careful merchant would enter it."""
    body = barcode[:12]
    return f"{body}{gtin_check_digit(body)}"


_SLUG_STRIP = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=4096)
def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _SLUG_STRIP.sub("-", ascii_text.lower()).strip("-")


def humanize(slug: str) -> str:
    return " ".join(word.capitalize() for word in slug.split("-"))


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def money(amount: Decimal) -> str:
    return str(cents(amount))


@functools.cache
def shop_tz(offset_min: int) -> tzinfo:
    return timezone(timedelta(minutes=offset_min))


@functools.lru_cache(maxsize=8192)
def iso_offset(moment: datetime, tz: tzinfo) -> str:
    """Shopify style: local wall time with its offset, seconds precision (2024-05-01T11:41:02+02:00)."""
    return moment.astimezone(tz).replace(microsecond=0).isoformat()


@functools.lru_cache(maxsize=8192)
def iso_naive(moment: datetime, tz: tzinfo) -> str:
    """WordPress style: wall time in ``tz`` with no offset at all (2024-05-01T11:41:02)."""
    return moment.astimezone(tz).replace(microsecond=0, tzinfo=None).isoformat()


def parse_iso8601(value: str, naive_tz: tzinfo) -> datetime | None:
    """Parse a query-string timestamp; naive ones are read in ``naive_tz``, as the platform itself does."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=naive_tz)
    return moment


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def json_response(
    obj: Any,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    return Response(dumps(obj), status_code=status_code, headers=headers, media_type=media_type)


def raw_json_response(
    body: bytes,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    return Response(body, status_code=status_code, headers=headers, media_type=media_type)


def join_json_array(chunks: list[bytes]) -> bytes:
    """A JSON array from already-serialised items: pages are assembled, never re-encoded."""
    return b"[" + b",".join(chunks) + b"]"
