"""Shopify Admin REST (``/admin/api/{version}/products.json``).

Every variant is its own offer (its own price, SKU, barcode and stock), with the product id as ``parent_id``
so a lookup by either id resolves. Pagination is cursor-based through the ``Link: <...page_info=...>;
rel="next"`` header; the version is pinned because Shopify changes payloads between versions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx

from app.domain.models import Availability, Offer, Page, SkippedItem, Vendor, utcnow
from app.domain.normalize import (
    clean_text,
    html_to_text,
    normalize_gtin,
    normalize_images,
    parse_datetime,
    parse_int,
)
from app.errors import VendorBadResponse, VendorNotFound
from app.sources.base import (
    ItemMapper,
    MappingError,
    as_list,
    as_mapping,
    checked,
    expect_dict,
    expect_list,
    later,
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

API_VERSION = "2024-01"
API_PREFIX = f"/admin/api/{API_VERSION}"
MAX_PAGE_SIZE = 250
DEFAULT_PAGE_SIZE = 250
DEFAULT_VARIANT_TITLE = "Default Title"
_ACTIVE = "active"


def _availability(variant: Mapping[str, Any]) -> tuple[Availability, int | None]:
    """Shopify only counts stock when ``inventory_management`` is set; untracked items are always sellable."""
    if not variant.get("inventory_management"):
        return Availability.IN_STOCK, None
    qty = parse_int(variant.get("inventory_quantity"))
    if qty is None:
        return Availability.UNKNOWN, None
    if qty > 0:
        return Availability.IN_STOCK, qty
    if str(variant.get("inventory_policy") or "").lower() == "continue":
        return Availability.BACKORDER, 0
    return Availability.OUT_OF_STOCK, 0


def _images(product: Mapping[str, Any], variant: Mapping[str, Any]) -> list[object]:
    images = [as_mapping(i) for i in as_list(product.get("images"))]
    images.sort(key=lambda i: parse_int(i.get("position")) or 0)  # stable: unpositioned keep their order
    if not images and product.get("image"):
        images = [as_mapping(product.get("image"))]
    srcs = [i.get("src") for i in images]
    image_id = raw_id(variant.get("image_id"))
    if image_id is not None:
        own = [i.get("src") for i in images if raw_id(i.get("id")) == image_id]
        srcs = own + srcs
    return list(dict.fromkeys(s for s in srcs if isinstance(s, str) and s))


def _map_variant(
    vendor: Vendor,
    product: Mapping[str, Any],
    variant: Mapping[str, Any],
    common: dict[str, Any],
) -> Offer:
    vid = require_id(variant)
    price, currency = require_price(variant.get("price"), vendor.currency, vid)
    variant_title = clean_text(variant.get("title"))
    title = common["title"]
    if variant_title and variant_title != DEFAULT_VARIANT_TITLE:
        title = f"{title} - {variant_title}"
    availability, stock = _availability(variant)
    return Offer(
        vendor_id=vendor.id,
        vendor_product_id=vid,
        title=title,
        price=price,
        currency=currency,
        description=common["description"],
        images=normalize_images(_images(product, variant), base_url=vendor.base_url),
        sku=clean_text(variant.get("sku")),
        gtin=normalize_gtin(variant.get("barcode")),
        brand=common["brand"],
        category=common["category"],
        availability=availability,
        stock=stock,
        url=common["url"],
        vendor_updated_at=later(common["updated_at"], parse_datetime(variant.get("updated_at"))),
        fetched_at=common["fetched_at"],
        parent_id=common["parent_id"],
    )


def map_shopify_product(
    vendor: Vendor,
    product: Mapping[str, Any],
    fetched_at: datetime,
    skipped: list[SkippedItem] | None = None,
) -> list[Offer]:
    """One offer per variant.

    Without ``skipped`` any bad variant raises ``MappingError``; with it, bad variants are recorded there and
    the good ones still returned, which is what a sync wants (one broken size must not hide the others).
    """
    pid = require_id(product)
    title = require_title(product.get("title"), pid)
    status = product.get("status")
    if status is not None and str(status).lower() != _ACTIVE:
        raise MappingError(f"product not active (status {status!r})", pid)
    variants = as_list(product.get("variants"))
    if not variants:
        raise MappingError("product has no variants", pid)
    handle = clean_text(product.get("handle"))
    common: dict[str, Any] = {
        "title": title,
        "description": html_to_text(body if isinstance(body := product.get("body_html"), str) else None),
        "brand": clean_text(product.get("vendor")),
        "category": clean_text(product.get("product_type")),
        "url": f"{vendor.base_url.rstrip('/')}/products/{handle}" if handle else None,
        "updated_at": parse_datetime(product.get("updated_at")),
        "fetched_at": fetched_at,
        "parent_id": pid,
    }
    offers: list[Offer] = []
    for variant in variants:
        try:
            if not isinstance(variant, Mapping):
                raise MappingError(f"variant is not an object ({type(variant).__name__})")
            offers.append(_map_variant(vendor, product, variant, common))
        except MappingError as exc:
            if skipped is None:
                raise
            vid = exc.vendor_product_id or (raw_id(variant.get("id")) if isinstance(variant, Mapping) else None)
            skipped.append(SkippedItem(vid, f"variant of product {pid}: {exc.reason}"))
    if not offers:
        raise MappingError("no usable variants", pid)
    return checked(offers)


def next_page_info(response: httpx.Response) -> str | None:
    """The ``page_info`` of the ``rel="next"`` link, or ``None`` on the last page."""
    link = response.links.get("next")
    if not link:
        return None
    url = link.get("url") or ""
    values = parse_qs(urlsplit(url).query).get("page_info")
    if not values or not values[0]:
        raise VendorBadResponse(f"Shopify next link without page_info: {url!r}")
    return values[0]


class ShopifySource:
    """A Shopify shop; the cursor is the next page's ``page_info``."""

    def __init__(self, vendor: Vendor, http: VendorHttp, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self.vendor = vendor
        self.http = http
        self.page_size = min(page_size, MAX_PAGE_SIZE)

    #: A fact of the platform's API, the same for every vendor on it (``app.sources.supports_changes_since``).
    supports_changes_since: ClassVar[bool] = True

    def _headers(self) -> dict[str, str]:
        creds = require_credentials(self.vendor, "access_token")
        return {"X-Shopify-Access-Token": creds["access_token"], "Accept": "application/json"}

    def _map(self, fetched_at: datetime) -> ItemMapper:
        def mapper(item: Mapping[str, Any], skipped: list[SkippedItem]) -> list[Offer]:
            return map_shopify_product(self.vendor, item, fetched_at, skipped)

        return mapper

    async def fetch_page(self, cursor: str | None = None, *, since: datetime | None = None) -> Page:
        headers = self._headers()
        params: dict[str, str | int] = {"limit": self.page_size}
        if cursor is not None:
            # Shopify rejects filters next to page_info: the page_info already encodes them.
            params["page_info"] = cursor
        elif since is not None:
            params["updated_at_min"] = utc_since(since).isoformat()
        body, response = await self.http.get_json(f"{API_PREFIX}/products.json", params=params, headers=headers)
        fetched_at = utcnow()
        products = expect_list(
            expect_dict(body, "Shopify product list").get("products"), "Shopify product list 'products'"
        )
        offers, skipped = await map_page(self.vendor, self.http.bounded_page(products), self._map(fetched_at))
        return Page(offers=tuple(offers), skipped=tuple(skipped), next_cursor=next_page_info(response))

    async def fetch_product(self, vendor_product_id: str) -> tuple[Offer, ...]:
        """By product id, or by variant id (then all offers of its product)."""
        headers = self._headers()
        vpid = vendor_product_id.strip()
        if not vpid.isdigit():
            # Shopify ids are numeric; anything else cannot exist and must not reach the URL path.
            raise VendorNotFound(f"no Shopify product or variant {vendor_product_id!r}")
        try:
            product = await self._get_product(vpid, headers)
        except VendorNotFound:
            body, _ = await self.http.get_json(f"{API_PREFIX}/variants/{vpid}.json", headers=headers)
            variant = as_mapping(expect_dict(body, "Shopify variant").get("variant"))
            parent = raw_id(variant.get("product_id"))
            if parent is None or not parent.isdigit():
                raise VendorBadResponse(f"Shopify variant {vpid} without a product_id") from None
            product = await self._get_product(parent, headers)
        status = product.get("status")
        if status is not None and str(status).lower() != _ACTIVE:
            # Drafts and archived products exist in the admin but are not for sale: not in the catalog.
            raise VendorNotFound(f"Shopify product {vendor_product_id} is {status}")
        skipped: list[SkippedItem] = []
        try:
            offers = map_shopify_product(self.vendor, product, utcnow(), skipped)
        except MappingError as exc:
            raise unusable_product("Shopify", vendor_product_id, exc) from exc
        for skip in skipped:
            logger.warning("vendor %s: skipped %s: %s", self.vendor.id, skip.vendor_product_id, skip.reason)
        return tuple(offers)

    async def _get_product(self, product_id: str, headers: Mapping[str, str]) -> Mapping[str, Any]:
        body, _ = await self.http.get_json(f"{API_PREFIX}/products/{product_id}.json", headers=headers)
        product = expect_dict(body, "Shopify product").get("product")
        return expect_dict(product, "Shopify product 'product'")

    async def aclose(self) -> None:
        await self.http.aclose()
