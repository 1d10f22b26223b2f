"""The canonical catalog: what every vendor's data is turned into.

Plain frozen dataclasses: the domain knows nothing of HTTP, SQLite, Kafka or Flink, so the same objects flow
through the embedded workers, the Flink job and the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


class VendorKind(StrEnum):
    DUMMYJSON = "dummyjson"
    SHOPIFY = "shopify"
    WOOCOMMERCE = "woocommerce"
    BIGCOMMERCE = "bigcommerce"
    MAGENTO = "magento"
    #: Any JSON API, read through the JMESPath mapping the vendor record carries (no code per vendor).
    GENERIC = "generic"


class Availability(StrEnum):
    IN_STOCK = "in_stock"
    OUT_OF_STOCK = "out_of_stock"
    BACKORDER = "backorder"
    PREORDER = "preorder"
    UNKNOWN = "unknown"
    #: No longer listed by the vendor (gone from its last full sync); kept so the offer's history is not lost.
    DISCONTINUED = "discontinued"

    @property
    def buyable(self) -> bool:
        return self in (Availability.IN_STOCK, Availability.BACKORDER, Availability.PREORDER)


@dataclass(frozen=True, slots=True)
class Vendor:
    """A registered vendor. ``credentials`` are only ever read by its source, never shown by the API.

    ``mapping`` is set for ``kind: generic`` only: where things are in the vendor's JSON (not secret).
    """

    id: str
    name: str
    kind: VendorKind
    base_url: str
    currency: str
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)  # never in a log line
    refresh_interval_s: int = 3600
    enabled: bool = True
    mapping: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    """One vendor's listing of one sellable thing (a Shopify variant is its own offer).

    ``gtin`` is always a check-digit-valid GTIN-14 or ``None``; ``price`` is exact. ``parent_id`` is the
    vendor's own product id when the offer is one variant of it, so a miss on the parent id still resolves.
    """

    vendor_id: str
    vendor_product_id: str
    title: str
    price: Decimal
    currency: str
    description: str = ""
    images: tuple[str, ...] = ()
    sku: str | None = None
    gtin: str | None = None
    brand: str | None = None
    category: str | None = None
    availability: Availability = Availability.UNKNOWN
    stock: int | None = None
    url: str | None = None
    vendor_updated_at: datetime | None = None
    fetched_at: datetime = field(default_factory=utcnow)
    parent_id: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.vendor_id, self.vendor_product_id)


@dataclass(frozen=True, slots=True)
class PriceRange:
    currency: str
    min: Decimal
    max: Decimal


@dataclass(frozen=True, slots=True)
class Product:
    """A unified product: one or more offers believed to be the same thing.

    ``currency``/``min_price``/``max_price`` describe the product's main currency (the one most of its offers
    use); ``prices`` has the range in every currency its offers are listed in, so nothing is converted silently.
    """

    id: str
    name: str
    description: str
    brand: str | None
    category: str | None
    images: tuple[str, ...]
    gtin: str | None
    offers: tuple[Offer, ...]
    currency: str
    min_price: Decimal
    max_price: Decimal
    prices: tuple[PriceRange, ...]
    in_stock: bool
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SkippedItem:
    """An item a source could not turn into an offer; counted and logged, never fatal to a sync."""

    vendor_product_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a vendor's catalog. ``next_cursor`` is opaque to everyone but the source that made it.

    ``warnings``: what went wrong around the page without costing it (an auxiliary look-up such as the brand names
    failed, so those fields are empty); shown in the vendor's sync status, the sync still succeeds.
    """

    offers: tuple[Offer, ...]
    skipped: tuple[SkippedItem, ...] = ()
    next_cursor: str | None = None
    total: int | None = None
    warnings: tuple[str, ...] = ()
