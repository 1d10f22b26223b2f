"""The wire form of products, computed once when a product changes.

Reads vastly outnumber writes, so the store keeps each product's JSON ready to send: a list page is a byte
concatenation and a detail read is one indexed lookup, with no per-request serialisation. Prices are strings
so exact decimals survive every JSON parser (Dart's included).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from app.domain.images import image_id, thumbnail_path
from app.domain.models import Offer, Product
from app.domain.unify import key_for, match_key

#: Bumped when a document gains or loses a field: the store then rebuilds every stored document once at start-up.
VERSION = 3  # 3: offers[].match (issue 10)


@functools.lru_cache(maxsize=8192)
def iso(ts: datetime | None) -> str | None:
    """A fixed-width UTC form, so stored timestamps also sort correctly as text.

    Cached: one ingest formats the same few timestamps (a page's fetch time, a product's update time) many
    times, and formatting cost more than all the rest of building a product document.
    """
    if ts is None:
        return None
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def offer_dict(offer: Offer, product_id: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "vendor_id": offer.vendor_id,
        "vendor_product_id": offer.vendor_product_id,
        "title": offer.title,
        "price": str(offer.price),
        "currency": offer.currency,
        "availability": offer.availability.value,
        "stock": offer.stock,
        "sku": offer.sku,
        "gtin": offer.gtin,
        "brand": offer.brand,
        "category": offer.category,
        "images": list(offer.images),
        "url": offer.url,
        "parent_id": offer.parent_id,
        "vendor_updated_at": iso(offer.vendor_updated_at),
    }
    if product_id is not None:
        data["product_id"] = product_id
    return data


def lead_image_id(product: Product) -> str | None:
    """The id of the image a list item shows (its thumbnail and placeholder are that image's)."""
    return image_id(product.images[0]) if product.images else None


def _summary_dict(product: Product, placeholder: str | None) -> dict[str, Any]:
    return {
        "id": product.id,
        "name": product.name,
        "brand": product.brand,
        "category": product.category,
        "gtin": product.gtin,
        "image": product.images[0] if product.images else None,
        "thumbnail": thumbnail_path(product.images[0]) if product.images else None,
        "placeholder": placeholder,
        "currency": product.currency,
        "min_price": str(product.min_price),
        "max_price": str(product.max_price),
        "prices": [{"currency": p.currency, "min": str(p.min), "max": str(p.max)} for p in product.prices],
        "in_stock": product.in_stock,
        "offer_count": len(product.offers),
        "vendors": sorted({o.vendor_id for o in product.offers}),
        "updated_at": iso(product.updated_at),
    }


def default_match(offer: Offer) -> dict[str, Any]:
    """Why an offer is in its product when nothing else is known: its own identifier names it."""
    return {"by": "key", "key": key_for(offer, match_key(offer))}


def render(
    product: Product,
    wires: Mapping[tuple[str, str], dict[str, Any]] | None = None,
    placeholder: str | None = None,
    matches: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
) -> tuple[bytes, bytes]:
    """The product's list-item form (what a catalog grid needs: no description, no offers) and detail form.

    ``wires`` may hold offers' ``offer_dict`` forms already built by the caller; ``placeholder`` is the lead
    image's BlurHash once known (computed when that image is first thumbnailed); ``matches`` says why each offer
    is in the product (``offers[].match``; ``default_match`` for the offers it leaves out).
    """
    data = _summary_dict(product, placeholder)
    summary = orjson.dumps(data)
    data["description"] = product.description
    data["images"] = list(product.images)
    data["thumbnails"] = [thumbnail_path(url) for url in product.images]
    wires = wires or {}
    matches = matches or {}
    data["offers"] = [
        {**(wires.get(o.key) or offer_dict(o)), "match": matches.get(o.key) or default_match(o)} for o in product.offers
    ]
    return summary, orjson.dumps(data)


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
