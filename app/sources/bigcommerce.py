"""BigCommerce v3 catalog (``/stores/{store_hash}/v3/catalog/products``).

Every product has at least one variant: the "base variant" the store creates for it. Only when there is more
than that (a product with options) is each variant its own offer, with the product id as ``parent_id``;
otherwise the product is the offer. Products carry a ``brand_id`` and category ids only, so the brand and
category names are read once per sync from ``/v3/catalog/brands`` and ``/v3/catalog/categories`` and looked up
locally, rather than with two extra calls per product. Pagination is by page number, with the page count in
``meta.pagination``; the store hash is part of every path, and the token goes in ``X-Auth-Token``.

The catalog API has no storefront host (``custom_url.url`` is a path, the host lives in ``/v2/store``), so
offers carry no ``url``. Rate limits are announced in ``X-Rate-Limit-Time-Reset-Ms`` rather than
``Retry-After``, so a 429 is retried with the shared HTTP policy's back-off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

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
    auxiliary,
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

MAX_PAGE_SIZE = 250
DEFAULT_PAGE_SIZE = 250
_INCLUDE = "variants,images"
# Brand and category lists are small; a runaway page count means the vendor's pagination is broken.
_MAX_NAME_PAGES = 200

Names = Mapping[str, str]


def _amount(value: object) -> object | None:
    """A price field, or ``None`` when absent: BigCommerce sends ``null`` (variants) or ``0`` (no sale)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _positive(value: object) -> bool:
    try:
        return value is not None and not isinstance(value, bool) and Decimal(str(value)) > 0
    except ArithmeticError:
        return False


def _price(product: Mapping[str, Any], variant: Mapping[str, Any] | None, currency: str, pid: str) -> Any:
    """What the shopper pays before tax.

    ``calculated_price`` is BigCommerce's own answer (sale and price rules applied) and wins when present.
    Without it a positive ``sale_price`` beats ``price``; a variant's ``null`` price means the product's.
    """
    sources = ([variant] if variant is not None else []) + [product]
    for source in sources:
        if (calculated := _amount(source.get("calculated_price"))) is not None:
            return require_price(calculated, currency, pid)
        if _positive(source.get("sale_price")):
            return require_price(source.get("sale_price"), currency, pid)
        if (price := _amount(source.get("price"))) is not None:
            return require_price(price, currency, pid)
    raise MappingError("missing price", pid)


def _availability(product: Mapping[str, Any], variant: Mapping[str, Any] | None) -> tuple[Availability, int | None]:
    """Stock counts only where ``inventory_tracking`` says it is kept (on the product or on each variant)."""
    availability = str(product.get("availability") or "available").strip().lower()
    if availability == "disabled" or (variant is not None and variant.get("purchasing_disabled") is True):
        return Availability.OUT_OF_STOCK, None
    if availability == "preorder":
        return Availability.PREORDER, None
    tracking = str(product.get("inventory_tracking") or "none").strip().lower()
    if tracking == "none":
        return Availability.IN_STOCK, None
    holder = variant if tracking == "variant" and variant is not None else product
    qty = parse_int(holder.get("inventory_level"))
    if qty is None:
        return Availability.UNKNOWN, None
    qty = max(qty, 0)
    return (Availability.IN_STOCK if qty > 0 else Availability.OUT_OF_STOCK), qty


def _gtin(*holders: Mapping[str, Any]) -> str | None:
    """The first valid barcode: ``gtin`` then ``upc`` (which stores fill with EANs too), variant before product."""
    for holder in holders:
        for field in ("gtin", "upc"):
            if (gtin := normalize_gtin(holder.get(field))) is not None:
                return gtin
    return None


def _images(product: Mapping[str, Any], variant: Mapping[str, Any] | None) -> list[object]:
    images = [as_mapping(i) for i in as_list(product.get("images"))]
    images.sort(key=lambda i: (i.get("is_thumbnail") is not True, parse_int(i.get("sort_order")) or 0))
    urls: list[object] = [i.get("url_zoom") or i.get("url_standard") for i in images]
    if variant is not None and variant.get("image_url"):
        urls.insert(0, variant.get("image_url"))
    return urls


def _option_label(variant: Mapping[str, Any]) -> str | None:
    labels = [clean_text(as_mapping(v).get("label")) for v in as_list(variant.get("option_values"))]
    return " / ".join(label for label in labels if label) or None


def _category(product: Mapping[str, Any], categories: Names) -> str | None:
    for raw in as_list(product.get("categories")):
        cid = raw_id(raw)
        if cid is not None and (name := categories.get(cid)):
            return name
    return None


def map_bigcommerce_product(
    vendor: Vendor,
    product: Mapping[str, Any],
    fetched_at: datetime,
    skipped: list[SkippedItem] | None = None,
    *,
    brands: Names | None = None,
    categories: Names | None = None,
) -> list[Offer]:
    """One offer per variant when the product has options, else one offer for the product.

    ``brands``/``categories`` map ids to names (from the brand and category lists); the v3 product itself only
    has ``brand_id``, so without them the brand is ``None`` unless the payload carries a ``brand_name`` (some
    stores add it through an extension). Invisible products are not for sale and are refused.
    """
    pid = require_id(product)
    title = require_title(product.get("name"), pid)
    if product.get("is_visible") is False:
        raise MappingError("product not visible", pid)
    brand_id = raw_id(product.get("brand_id"))
    brand = (brands or {}).get(brand_id or "") or clean_text(product.get("brand_name"))
    common: dict[str, Any] = {
        "title": title,
        "description": html_to_text(d if isinstance(d := product.get("description"), str) else None),
        "brand": brand,
        "category": _category(product, categories or {}),
        "updated_at": parse_datetime(product.get("date_modified")),
    }
    variants = [v for v in as_list(product.get("variants")) if isinstance(v, Mapping)]
    if len(variants) <= 1:
        base = variants[0] if variants else None
        price, currency = _price(product, None, vendor.currency, pid)
        availability, stock = _availability(product, base)
        holders = [product] + ([base] if base is not None else [])
        return checked(
            [
                Offer(
                    vendor_id=vendor.id,
                    vendor_product_id=pid,
                    title=title,
                    price=price,
                    currency=currency,
                    description=common["description"],
                    images=normalize_images(_images(product, None), base_url=vendor.base_url),
                    sku=clean_text(product.get("sku")) or (clean_text(base.get("sku")) if base else None),
                    gtin=_gtin(*holders),
                    brand=brand,
                    category=common["category"],
                    availability=availability,
                    stock=stock,
                    vendor_updated_at=common["updated_at"],
                    fetched_at=fetched_at,
                )
            ]
        )
    offers: list[Offer] = []
    for variant in variants:
        try:
            offers.append(_map_variant(vendor, product, variant, common, fetched_at, pid))
        except MappingError as exc:
            if skipped is None:
                raise
            skipped.append(
                SkippedItem(exc.vendor_product_id or raw_id(variant.get("id")), f"variant of product {pid}: {exc}")
            )
    if not offers:
        raise MappingError("no usable variants", pid)
    return checked(offers)


def _map_variant(
    vendor: Vendor,
    product: Mapping[str, Any],
    variant: Mapping[str, Any],
    common: dict[str, Any],
    fetched_at: datetime,
    pid: str,
) -> Offer:
    vid = require_id(variant)
    price, currency = _price(product, variant, vendor.currency, vid)
    availability, stock = _availability(product, variant)
    label = _option_label(variant)
    return Offer(
        vendor_id=vendor.id,
        vendor_product_id=vid,
        title=f"{common['title']} - {label}" if label else common["title"],
        price=price,
        currency=currency,
        description=common["description"],
        images=normalize_images(_images(product, variant), base_url=vendor.base_url),
        sku=clean_text(variant.get("sku")),
        gtin=_gtin(variant),  # not the product's: one barcode on two variants would merge them
        brand=common["brand"],
        category=common["category"],
        availability=availability,
        stock=stock,
        vendor_updated_at=later(common["updated_at"], parse_datetime(variant.get("date_modified"))),
        fetched_at=fetched_at,
        parent_id=pid,
    )


class BigCommerceSource:
    """A BigCommerce store; the cursor is the next page number as text."""

    def __init__(self, vendor: Vendor, http: VendorHttp, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self.vendor = vendor
        self.http = http
        self.page_size = min(page_size, MAX_PAGE_SIZE)
        self._brands: dict[str, str] | None = None
        self._categories: dict[str, str] | None = None

    #: A fact of the platform's API, the same for every vendor on it (``app.sources.supports_changes_since``).
    supports_changes_since: ClassVar[bool] = True

    def _prefix_and_headers(self) -> tuple[str, dict[str, str]]:
        creds = require_credentials(self.vendor, "store_hash", "access_token")
        headers = {"X-Auth-Token": creds["access_token"], "Accept": "application/json"}
        return f"/stores/{creds['store_hash']}/v3/catalog", headers

    async def _names(self, path: str, headers: Mapping[str, str]) -> dict[str, str]:
        names: dict[str, str] = {}
        for page in range(1, _MAX_NAME_PAGES + 1):
            params = {"page": page, "limit": MAX_PAGE_SIZE}
            body, _ = await self.http.get_json(path, params=params, headers=headers)
            body = expect_dict(body, f"BigCommerce {path}")
            for item in expect_list(body.get("data"), f"BigCommerce {path} 'data'"):
                entry = as_mapping(item)
                key, name = raw_id(entry.get("id")), clean_text(entry.get("name"))
                if key is not None and name:
                    names[key] = name
            pagination = as_mapping(as_mapping(body.get("meta")).get("pagination"))
            if page >= (parse_int(pagination.get("total_pages")) or 0):
                return names
        raise VendorBadResponse(f"BigCommerce {path}: more than {_MAX_NAME_PAGES} pages")

    async def _load_names(
        self, prefix: str, headers: Mapping[str, str], *, refresh: bool
    ) -> tuple[Names, Names, list[str]]:
        """Brand and category names, read once per sync (a walk starts with ``cursor=None``); either failing leaves
        those fields empty with a warning, and the products still sync."""
        warnings: list[str] = []
        if refresh or self._brands is None or self._categories is None:
            brands = await auxiliary("brand names", self._names(f"{prefix}/brands", headers), warnings, self.vendor.id)
            categories = await auxiliary(
                "category names", self._names(f"{prefix}/categories", headers), warnings, self.vendor.id
            )
            self._brands, self._categories = brands or {}, categories or {}
        return self._brands, self._categories, warnings

    def _map(self, fetched_at: datetime, brands: Names, categories: Names) -> ItemMapper:
        def mapper(item: Mapping[str, Any], skipped: list[SkippedItem]) -> list[Offer]:
            return map_bigcommerce_product(self.vendor, item, fetched_at, skipped, brands=brands, categories=categories)

        return mapper

    async def fetch_page(self, cursor: str | None = None, *, since: datetime | None = None) -> Page:
        prefix, headers = self._prefix_and_headers()
        page = _parse_page(cursor)
        brands, categories, warnings = await self._load_names(prefix, headers, refresh=cursor is None)
        params: dict[str, str | int] = {"include": _INCLUDE, "page": page, "limit": self.page_size}
        if since is not None:
            params["date_modified:min"] = utc_since(since).isoformat()
        body, _ = await self.http.get_json(f"{prefix}/products", params=params, headers=headers)
        fetched_at = utcnow()
        body = expect_dict(body, "BigCommerce product list")
        items = expect_list(body.get("data"), "BigCommerce product list 'data'")
        offers, skipped = await map_page(
            self.vendor, self.http.bounded_page(items), self._map(fetched_at, brands, categories)
        )
        pagination = as_mapping(as_mapping(body.get("meta")).get("pagination"))
        total_pages = parse_int(pagination.get("total_pages"))
        # Without the meta (a proxy rewrote the body?) a full page may have a successor.
        has_next = (page < total_pages and bool(items)) if total_pages is not None else len(items) >= self.page_size
        return Page(
            offers=tuple(offers),
            skipped=tuple(skipped),
            next_cursor=str(page + 1) if has_next else None,
            total=parse_int(pagination.get("total")),
            warnings=tuple(warnings),
        )

    async def fetch_product(self, vendor_product_id: str) -> tuple[Offer, ...]:
        """By product id only: BigCommerce has no variant lookup without its product id (a variant id is 404)."""
        prefix, headers = self._prefix_and_headers()
        vpid = vendor_product_id.strip()
        if not vpid.isdigit():
            raise VendorNotFound(f"no BigCommerce product {vendor_product_id!r}")
        body, _ = await self.http.get_json(f"{prefix}/products/{vpid}", params={"include": _INCLUDE}, headers=headers)
        product = expect_dict(expect_dict(body, "BigCommerce product").get("data"), "BigCommerce product 'data'")
        if product.get("is_visible") is False:
            raise VendorNotFound(f"BigCommerce product {vendor_product_id} is not visible")
        brands, categories, _ = await self._load_names(prefix, headers, refresh=False)
        skipped: list[SkippedItem] = []
        try:
            offers = map_bigcommerce_product(
                self.vendor, product, utcnow(), skipped, brands=brands, categories=categories
            )
        except MappingError as exc:
            raise unusable_product("BigCommerce", vendor_product_id, exc) from exc
        for skip in skipped:
            logger.warning("vendor %s: skipped %s: %s", self.vendor.id, skip.vendor_product_id, skip.reason)
        return tuple(offers)

    async def aclose(self) -> None:
        await self.http.aclose()


def _parse_page(cursor: str | None) -> int:
    if cursor is None:
        return 1
    if not cursor.isdigit() or int(cursor) < 1:
        raise ValueError(f"invalid BigCommerce cursor {cursor!r}")
    return int(cursor)
