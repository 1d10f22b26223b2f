"""The vendor-source port: one adapter per vendor platform (DummyJSON, Shopify, WooCommerce, ...)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from app.domain.models import Offer, Page, Vendor


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
