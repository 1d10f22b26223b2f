"""Values exchanged with the catalog store port: queries in, pages and statuses out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class Sort(StrEnum):
    RELEVANCE = "relevance"
    PRICE = "price"
    PRICE_DESC = "-price"
    UPDATED = "updated"


@dataclass(frozen=True, slots=True)
class ProductQuery:
    q: str | None = None
    vendor: str | None = None
    brand: str | None = None
    category: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    # The currency ``min_price``/``max_price`` are in; ``None``: the rates' base currency.
    price_currency: str | None = None
    in_stock: bool | None = None
    sort: Sort = Sort.RELEVANCE
    limit: int = 20
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class ProductPage:
    """``items`` are ready-made JSON documents (see ``app.domain.documents``).

    ``etag`` derives from the items' own ETags, so it is cheaper than hashing the page body and changes exactly
    when an item, the order or the next cursor does.
    """

    items: list[bytes]
    next_cursor: str | None
    etag: str = '""'


@dataclass(frozen=True, slots=True)
class OfferFreshness:
    """Enough to tell whether an offer is stale and may be refreshed, without loading its vendor."""

    vendor_id: str
    vendor_product_id: str
    fetched_at: datetime
    refresh_interval_s: int
    vendor_enabled: bool


@dataclass(frozen=True, slots=True)
class StoredProduct:
    doc: bytes
    etag: str
    offers: tuple[OfferFreshness, ...]


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image some stored offer lists: ``id`` is ``app.domain.images.image_id(url)``."""

    id: str
    url: str
    vendor_id: str  # a vendor whose offers list it
    placeholder: str | None = None


@dataclass(frozen=True, slots=True)
class OfferRef:
    product_id: str
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class UpsertResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    products_changed: int = 0


#: Skip-reason keys that are a page's warnings (``Page.warnings``), not skipped items: they travel and are stored
#: with the skip reasons, so both runtimes carry them without a schema of their own.
WARNING_PREFIX = "warning: "


@dataclass(slots=True)
class SyncProgress:
    """A running sync's counters, written to the store page by page so every process can watch it."""

    pages: int = 0
    items_seen: int = 0
    items_skipped: int = 0
    items_total: int | None = None
    skip_reasons: dict[str, int] = field(default_factory=dict)

    def add_page(
        self, offers: int, skipped: int = 0, total: int | None = None, skip_reasons: Mapping[str, int] | None = None
    ) -> None:
        """Count one page, the same way whether the embedded sync read it or a node applied it from the changelog."""
        self.pages += 1
        self.items_seen += offers
        self.items_skipped += skipped
        if total is not None:
            self.items_total = total
        for reason, count in (skip_reasons or {}).items():
            self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + count


@dataclass(frozen=True, slots=True)
class AppliedSync:
    """What a node recorded of a sync it applied from the changelog (``CatalogStore.applied_sync``)."""

    sync_id: str
    vendor_id: str
    last_page: int | None
    finished: bool


@dataclass(frozen=True, slots=True)
class VendorSyncStatus:
    state: str
    started_at: datetime | None
    finished_at: datetime | None
    last_success_at: datetime | None
    last_full_sync_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    progress: SyncProgress
    syncs_ok: int
    syncs_failed: int
    offers: int
    products: int
