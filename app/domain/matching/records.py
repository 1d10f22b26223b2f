"""What the matcher compares: a listing reduced to the fields that say which product it is.

A ``MatchRecord`` is deliberately smaller than an ``Offer``: no stock, images or timestamps, so the same record
comes from a stored offer, from a benchmark file or from a JSON line of ``catalog match --pairs``, and the score
of two listings never depends on anything but what identifies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from app.domain.models import Offer
from app.domain.normalize import clean_text, normalize_gtin

FIELDS = ("title", "description", "brand", "category", "price", "currency", "sku", "mpn", "gtin")


@dataclass(frozen=True, slots=True)
class MatchRecord:
    """One listing as the matcher sees it. ``gtin`` is a valid GTIN-14 or ``None`` (see ``normalize_gtin``).

    ``mpn`` is the manufacturer's part number when a source sends one; offers carry none, so for them the
    matcher reads part numbers out of the title, SKU and description instead.
    """

    title: str = ""
    description: str = ""
    brand: str | None = None
    category: str | None = None
    price: Decimal | None = None
    currency: str | None = None
    sku: str | None = None
    mpn: str | None = None
    gtin: str | None = None


def from_offer(offer: Offer) -> MatchRecord:
    """The record of a stored offer; its GTIN is already normalised by the source."""
    return MatchRecord(
        title=offer.title,
        description=offer.description,
        brand=offer.brand,
        category=offer.category,
        price=offer.price,
        currency=offer.currency,
        sku=offer.sku,
        mpn=None,
        gtin=offer.gtin,
    )


def from_mapping(data: Mapping[str, Any]) -> MatchRecord:
    """A record from loosely typed JSON: unknown keys are ignored, unparsable values become missing.

    Lenient on purpose: an evaluation file with one odd price must still be scored, as the store never drops
    an offer for a bad barcode.
    """
    return MatchRecord(
        title=_text(data.get("title")) or "",
        description=_text(data.get("description")) or "",
        brand=_text(data.get("brand")),
        category=_text(data.get("category")),
        price=_price(data.get("price")),
        currency=(_text(data.get("currency")) or "").upper() or None,
        sku=_text(data.get("sku")),
        mpn=_text(data.get("mpn")),
        gtin=normalize_gtin(data.get("gtin")),
    )


def _text(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return clean_text(value)


def _price(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None
