"""WooCommerce REST v3 (``/wp-json/wc/v3/products``).

Prices are strings in the shop's currency, which the payload does not repeat, so the vendor's configured
currency is used. Pagination is by page number with the page count in ``X-WP-TotalPages``; listing is sorted
by id so items changing during a walk do not shift between pages.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from app.domain.models import Availability, Offer, Page, SkippedItem, Vendor, utcnow
from app.domain.normalize import (
    clean_text,
    html_to_text,
    normalize_gtin,
    normalize_images,
    normalize_url,
    parse_datetime,
    parse_int,
)
from app.errors import VendorNotFound
from app.sources.base import (
    ItemMapper,
    MappingError,
    as_list,
    as_mapping,
    checked,
    expect_dict,
    expect_list,
    map_page,
    raw_id,
    require_credentials,
    require_id,
    require_price,
    require_title,
    unusable_product,
    utc_since,
)
from app.sources.http import VendorHttp

logger = logging.getLogger(__name__)

API_PREFIX = "/wp-json/wc/v3"
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 100
_PUBLISHED = "publish"

_AVAILABILITY = {
    "instock": Availability.IN_STOCK,
    "outofstock": Availability.OUT_OF_STOCK,
    "onbackorder": Availability.BACKORDER,
}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def map_woocommerce_product(vendor: Vendor, product: Mapping[str, Any], fetched_at: datetime) -> list[Offer]:
    """One offer per product (a list for symmetry with Shopify, whose products have several).

    A variable product's own ``price`` is empty until its variations are priced, and its variations are a
    separate endpoint; such a product is refused rather than listed at a made-up price.
    """
    pid = require_id(product)
    title = require_title(product.get("name"), pid)
    status = product.get("status")
    if status is not None and str(status).lower() != _PUBLISHED:
        raise MappingError(f"product not published (status {status!r})", pid)
    raw_price = product.get("price")
    if raw_price is None or (isinstance(raw_price, str) and not raw_price.strip()):
        raw_price = product.get("regular_price")
    if raw_price is None or (isinstance(raw_price, str) and not raw_price.strip()):
        if str(product.get("type") or "").lower() == "variable":
            raise MappingError("no price (variable product)", pid)
        raise MappingError("missing price", pid)
    price, currency = require_price(raw_price, vendor.currency, pid)
    brands = [as_mapping(b) for b in as_list(product.get("brands"))]
    categories = [as_mapping(c) for c in as_list(product.get("categories"))]
    images = [as_mapping(i).get("src") for i in as_list(product.get("images"))]
    parent = raw_id(product.get("parent_id"))
    description = html_to_text(_text(product.get("description"))) or html_to_text(
        _text(product.get("short_description"))
    )
    stock_status = str(product.get("stock_status") or "").strip().lower()
    stock = parse_int(product.get("stock_quantity"))
    return checked(
        [
            Offer(
                vendor_id=vendor.id,
                vendor_product_id=pid,
                title=title,
                price=price,
                currency=currency,
                description=description,
                images=normalize_images(images, base_url=vendor.base_url),
                sku=clean_text(product.get("sku")),
                gtin=normalize_gtin(product.get("global_unique_id")),
                brand=clean_text(brands[0].get("name")) if brands else None,
                category=clean_text(categories[0].get("name")) if categories else None,
                availability=_AVAILABILITY.get(stock_status, Availability.UNKNOWN),
                stock=None if stock is None else max(stock, 0),  # oversold backorders go negative
                url=normalize_url(product.get("permalink")),
                vendor_updated_at=parse_datetime(product.get("date_modified_gmt")),
                fetched_at=fetched_at,
                parent_id=parent if parent not in (None, "0") else None,
            )
        ]
    )


def _header_int(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


class WooCommerceSource:
    """A WooCommerce shop; the cursor is the next page number as text."""

    def __init__(self, vendor: Vendor, http: VendorHttp, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self.vendor = vendor
        self.http = http
        self.page_size = min(page_size, MAX_PAGE_SIZE)

    #: A fact of the platform's API, the same for every vendor on it (``app.sources.supports_changes_since``).
    supports_changes_since: ClassVar[bool] = True

    def _headers(self) -> dict[str, str]:
        creds = require_credentials(self.vendor, "consumer_key", "consumer_secret")
        pair = f"{creds['consumer_key']}:{creds['consumer_secret']}"
        token = base64.b64encode(pair.encode()).decode("ascii")
        return {"Authorization": f"Basic {token}", "Accept": "application/json"}

    def _map(self, fetched_at: datetime) -> ItemMapper:
        def mapper(item: Mapping[str, Any], _skipped: list[SkippedItem]) -> list[Offer]:
            return map_woocommerce_product(self.vendor, item, fetched_at)

        return mapper

    async def fetch_page(self, cursor: str | None = None, *, since: datetime | None = None) -> Page:
        headers = self._headers()
        page = _parse_page(cursor)
        params: dict[str, str | int] = {"per_page": self.page_size, "page": page, "orderby": "id", "order": "asc"}
        if since is not None:
            # modified_after is exclusive and second-granular: a second earlier keeps changes stamped `since`.
            params["modified_after"] = (utc_since(since) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
            params["dates_are_gmt"] = "true"
        body, response = await self.http.get_json(f"{API_PREFIX}/products", params=params, headers=headers)
        fetched_at = utcnow()
        items = expect_list(body, "WooCommerce product list")
        offers, skipped = await map_page(self.vendor, self.http.bounded_page(items), self._map(fetched_at))
        total_pages = _header_int(response, "X-WP-TotalPages")
        # Without the header (stripped by a proxy) a full page may have a successor.
        has_next = (page < total_pages and bool(items)) if total_pages is not None else len(items) >= self.page_size
        return Page(
            offers=tuple(offers),
            skipped=tuple(skipped),
            next_cursor=str(page + 1) if has_next else None,
            total=_header_int(response, "X-WP-Total"),
        )

    async def fetch_product(self, vendor_product_id: str) -> tuple[Offer, ...]:
        headers = self._headers()
        vpid = vendor_product_id.strip()
        if not vpid.isdigit():
            raise VendorNotFound(f"no WooCommerce product {vendor_product_id!r}")
        body, _ = await self.http.get_json(f"{API_PREFIX}/products/{quote(vpid, safe='')}", headers=headers)
        product = expect_dict(body, "WooCommerce product")
        status = product.get("status")
        if status is not None and str(status).lower() != _PUBLISHED:
            raise VendorNotFound(f"WooCommerce product {vendor_product_id} is {status}")
        try:
            return tuple(map_woocommerce_product(self.vendor, product, utcnow()))
        except MappingError as exc:
            raise unusable_product("WooCommerce", vendor_product_id, exc) from exc

    async def aclose(self) -> None:
        await self.http.aclose()


def _parse_page(cursor: str | None) -> int:
    if cursor is None:
        return 1
    if not cursor.isdigit() or int(cursor) < 1:
        raise ValueError(f"invalid WooCommerce cursor {cursor!r}")
    return int(cursor)
