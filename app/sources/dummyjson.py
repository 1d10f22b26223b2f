"""DummyJSON (https://dummyjson.com/docs/products): ``GET /products?limit=&skip=`` and ``GET /products/{id}``.

No auth, offset pagination with a ``total`` in the body and no "changed since" filter, so every sync of a
DummyJSON vendor is a full walk.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from app.domain.models import Availability, Offer, Page, SkippedItem, Vendor, utcnow
from app.domain.normalize import clean_text, normalize_gtin, normalize_images, parse_datetime, parse_int
from app.errors import VendorBadResponse
from app.sources.base import (
    ItemMapper,
    MappingError,
    as_list,
    as_mapping,
    check_offer,
    expect_dict,
    expect_list,
    map_page,
    require_id,
    require_price,
    require_title,
    unusable_product,
)
from app.sources.http import VendorHttp

DEFAULT_PAGE_SIZE = 250

_AVAILABILITY = {
    "in stock": Availability.IN_STOCK,
    "low stock": Availability.IN_STOCK,
    "out of stock": Availability.OUT_OF_STOCK,
}


def _availability(status: object, stock: int | None) -> Availability:
    if isinstance(status, str):
        known = _AVAILABILITY.get(status.strip().lower())
        if known is not None:
            return known
    if stock is None:
        return Availability.UNKNOWN
    return Availability.IN_STOCK if stock > 0 else Availability.OUT_OF_STOCK


def map_dummyjson_item(vendor: Vendor, item: Mapping[str, Any], fetched_at: datetime) -> Offer:
    """One DummyJSON product as an offer; prices are numbers in the vendor's currency."""
    vpid = require_id(item)
    title = require_title(item.get("title"), vpid)
    price, currency = require_price(item.get("price"), vendor.currency, vpid)
    meta = as_mapping(item.get("meta"))
    stock = parse_int(item.get("stock"))
    thumbnail = item.get("thumbnail")
    raw_images = [*as_list(item.get("images")), *([thumbnail] if thumbnail else [])]
    offer = Offer(
        vendor_id=vendor.id,
        vendor_product_id=vpid,
        title=title,
        price=price,
        currency=currency,
        description=clean_text(item.get("description")) or "",
        images=normalize_images(dict.fromkeys(i for i in raw_images if isinstance(i, str)), base_url=vendor.base_url),
        sku=clean_text(item.get("sku")),
        gtin=normalize_gtin(meta.get("barcode")),
        brand=clean_text(item.get("brand")),
        category=clean_text(item.get("category")),
        availability=_availability(item.get("availabilityStatus"), stock),
        stock=None if stock is None else max(stock, 0),
        url=None,
        vendor_updated_at=parse_datetime(meta.get("updatedAt")),
        fetched_at=fetched_at,
    )
    return check_offer(offer)


class DummyJsonSource:
    """A DummyJSON-compatible vendor; the cursor is the ``skip`` offset as text."""

    def __init__(self, vendor: Vendor, http: VendorHttp, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self.vendor = vendor
        self.http = http
        self.page_size = page_size

    #: A fact of the platform's API, the same for every vendor on it (``app.sources.supports_changes_since``).
    supports_changes_since: ClassVar[bool] = False

    def _map(self, fetched_at: datetime) -> ItemMapper:
        def mapper(item: Mapping[str, Any], _skipped: list[SkippedItem]) -> list[Offer]:
            return [map_dummyjson_item(self.vendor, item, fetched_at)]

        return mapper

    async def fetch_page(self, cursor: str | None = None, *, since: datetime | None = None) -> Page:
        """``since`` is ignored: DummyJSON cannot filter by change time, hence ``supports_changes_since``."""
        skip = _parse_offset(cursor)
        body, _ = await self.http.get_json("/products", params={"limit": self.page_size, "skip": skip})
        fetched_at = utcnow()
        data = expect_dict(body, "DummyJSON product list")
        items = expect_list(data.get("products"), "DummyJSON product list 'products'")
        total = data.get("total")
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise VendorBadResponse(f"DummyJSON product list: bad total {total!r}")
        offers, skipped = await map_page(self.vendor, self.http.bounded_page(items), self._map(fetched_at))
        end = skip + len(items)
        next_cursor = str(end) if items and end < total else None
        return Page(offers=tuple(offers), skipped=tuple(skipped), next_cursor=next_cursor, total=total)

    async def fetch_product(self, vendor_product_id: str) -> tuple[Offer, ...]:
        body, _ = await self.http.get_json(f"/products/{quote(vendor_product_id, safe='')}")
        item = expect_dict(body, "DummyJSON product")
        try:
            return (map_dummyjson_item(self.vendor, item, utcnow()),)
        except MappingError as exc:
            raise unusable_product("DummyJSON", vendor_product_id, exc) from exc

    async def aclose(self) -> None:
        await self.http.aclose()


def _parse_offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise ValueError(f"invalid DummyJSON cursor {cursor!r}")
    return int(cursor)
