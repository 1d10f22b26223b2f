"""Ports: the few places where more than one implementation exists or is planned.

- ``VendorSource``: one adapter per vendor platform (DummyJSON, Shopify, WooCommerce, ...).
- ``CatalogStore``: SQLite today; the distributed runtime's nodes each apply a changelog to their own.
- ``RequestQueue``: in-process for the embedded runtime, Kafka for the distributed one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from app.domain.models import Offer, Page, Vendor
from app.domain.money import Rates
from app.domain.queries import (
    OfferRef,
    ProductPage,
    ProductQuery,
    StoredProduct,
    SyncProgress,
    UpsertResult,
    VendorSyncStatus,
)
from app.domain.requests import FetchRequest


class VendorSource(Protocol):
    """Reads one vendor's catalog over its platform's own API.

    Sources return canonical ``Offer`` objects; the HTTP details (auth, pagination, retries, rate limits) stay
    inside the adapter. Errors are ``app.errors.VendorError`` subclasses.
    """

    vendor: Vendor

    @property
    def supports_changes_since(self) -> bool:
        """Whether ``fetch_page(since=...)`` filters server-side, enabling incremental syncs."""
        ...

    async def fetch_page(self, cursor: str | None = None, *, since: datetime | None = None) -> Page:
        """One page of the catalog; ``cursor=None`` is the first page, ``Page.next_cursor=None`` the last."""
        ...

    async def fetch_product(self, vendor_product_id: str) -> tuple[Offer, ...]:
        """All offers of one vendor product (several for a product with variants).

        ``vendor_product_id`` may be an offer id (a variant) or the vendor's parent product id.
        Raises ``VendorNotFound`` when the vendor says it does not exist.
        """
        ...

    async def aclose(self) -> None: ...


class CatalogStore(Protocol):
    """The local catalog every API node reads from (SQLite today, one file per node).

    Reads are synchronous on purpose: they are indexed lookups on a local file that finish faster than an
    executor hop. Writes are async: implementations serialise them off the event loop.
    """

    # The exchange rates its comparable prices (sorting, price filters) were computed with; None: unconverted.
    rates: Rates | None

    def ping(self) -> bool: ...
    def get_vendor(self, vendor_id: str) -> Vendor | None: ...
    def list_vendors(self) -> list[Vendor]: ...
    def vendor_status(self, vendor_id: str) -> VendorSyncStatus: ...
    def get_product(self, pid: str) -> StoredProduct | None: ...
    def find_offer(self, vendor_id: str, vendor_product_id: str) -> OfferRef | None: ...
    def list_products(self, query: ProductQuery) -> ProductPage: ...
    async def add_vendor(self, vendor: Vendor) -> None: ...
    async def update_vendor(self, vendor: Vendor) -> None: ...
    async def delete_vendor(self, vendor_id: str) -> None: ...
    async def upsert_offers(self, offers: Iterable[Offer]) -> UpsertResult: ...
    async def mark_unlisted(self, vendor_id: str, before: datetime) -> int: ...
    async def sync_started(self, vendor_id: str) -> None: ...
    async def sync_progress(self, vendor_id: str, progress: SyncProgress) -> None: ...
    async def sync_finished(self, vendor_id: str, *, error: str | None, full: bool) -> None: ...
    async def sync_interrupted(self, vendor_id: str) -> None: ...


class RequestQueue(Protocol):
    """Carries fetch requests to whoever calls the vendors (in-process workers, or Kafka + Flink)."""

    @property
    def healthy(self) -> bool:
        """False when requests cannot currently be delivered (workers stopped, broker unreachable)."""
        ...

    async def publish(self, request: FetchRequest) -> None:
        """Hand over a request; raises ``ServiceUnavailable`` with a retry hint when it cannot be taken now."""
        ...

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
