"""Magento 2 / Adobe Commerce REST (``/rest/V1/products``).

Every product row is its own offer keyed by SKU, because ``GET /V1/products/{sku}`` is the lookup Magento
offers (there is none by entity id). Lists are paged with ``searchCriteria`` and counted by ``total_count``;
the count matters, because Magento answers a ``currentPage`` past the end with the last page again instead of
an empty one. Descriptions, URL keys, special prices and barcodes are EAV ``custom_attributes``; the brand is
the ``manufacturer`` option id, and categories are ids, so the option labels and the category tree are read
once per sync. Timestamps are UTC without an offset; prices are in the store view's base currency, which the
payload does not name, so the vendor's configured currency is used.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

from app.domain.models import Availability, Offer, Page, SkippedItem, Vendor, utcnow
from app.domain.normalize import (
    clean_text,
    html_to_text,
    normalize_gtin,
    normalize_images,
    parse_datetime,
    parse_int,
)
from app.errors import VendorNotFound
from app.sources.base import (
    ItemMapper,
    MappingError,
    as_list,
    as_mapping,
    auxiliary,
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

API_PREFIX = "/rest/V1"
MAX_PAGE_SIZE = 300
DEFAULT_PAGE_SIZE = 200
MEDIA_PATH = "/media/catalog/product"
_ENABLED = 1
_BARCODE_ATTRIBUTES = ("gtin", "ean", "upc", "barcode")
_FILTER = "searchCriteria[filter_groups][0][filters][0]"

Names = Mapping[str, str]


def custom_attributes(product: Mapping[str, Any]) -> dict[str, Any]:
    """``[{"attribute_code", "value"}, ...]`` as a dict: Magento's EAV attributes, flattened."""
    result: dict[str, Any] = {}
    for entry in as_list(product.get("custom_attributes")):
        entry = as_mapping(entry)
        code = entry.get("attribute_code")
        if isinstance(code, str):
            result[code] = entry.get("value")
    return result


def _special_price(attrs: Mapping[str, Any], price: Decimal, currency: str, sku: str, now: datetime) -> Decimal:
    """The special price while its dates (whole days, the end day included) cover ``now``, if it is lower."""
    raw = attrs.get("special_price")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return price
    start, end = parse_datetime(attrs.get("special_from_date")), parse_datetime(attrs.get("special_to_date"))
    if (start is not None and now < start) or (end is not None and now >= end + timedelta(days=1)):
        return price
    special, _ = require_price(raw, currency, sku)
    return min(special, price)


def _availability(product: Mapping[str, Any]) -> tuple[Availability, int | None]:
    stock_item = as_mapping(as_mapping(product.get("extension_attributes")).get("stock_item"))
    if not stock_item:
        return Availability.UNKNOWN, None
    if stock_item.get("manage_stock") is False:
        return Availability.IN_STOCK, None
    qty = parse_int(stock_item.get("qty"))
    stock = None if qty is None else max(qty, 0)
    if stock_item.get("is_in_stock") is not True:
        return Availability.OUT_OF_STOCK, stock
    if (qty is None or qty <= 0) and (parse_int(stock_item.get("backorders")) or 0) > 0:
        return Availability.BACKORDER, stock
    return Availability.IN_STOCK, stock


def _images(product: Mapping[str, Any], base_url: str) -> list[object]:
    entries = [as_mapping(e) for e in as_list(product.get("media_gallery_entries"))]
    entries = [e for e in entries if e.get("disabled") is not True and e.get("media_type", "image") == "image"]
    entries.sort(key=lambda e: ("image" not in as_list(e.get("types")), parse_int(e.get("position")) or 0))
    root = f"{base_url.rstrip('/')}{MEDIA_PATH}"
    return [f"{root}/{file.lstrip('/')}" for e in entries if isinstance(file := e.get("file"), str) and file]


def _category(product: Mapping[str, Any], attrs: Mapping[str, Any], categories: Names) -> str | None:
    links = as_list(as_mapping(product.get("extension_attributes")).get("category_links"))
    ids = [raw_id(as_mapping(link).get("category_id")) for link in links] + [
        raw_id(c) for c in as_list(attrs.get("category_ids"))
    ]
    return next((categories[c] for c in ids if c is not None and c in categories), None)


def map_magento_product(
    vendor: Vendor,
    product: Mapping[str, Any],
    fetched_at: datetime,
    *,
    brands: Names | None = None,
    categories: Names | None = None,
) -> list[Offer]:
    """One offer per product row, keyed by SKU.

    Disabled products (``status`` 2) are refused: they exist in the admin but cannot be bought. A
    configurable product's own price is 0 and its sellable children are rows of their own, so it is refused
    too. ``brands`` maps ``manufacturer`` option ids to labels; a text ``brand`` attribute is used otherwise.
    """
    sku = clean_text(product.get("sku"))
    if not sku:
        raise MappingError("missing sku", raw_id(product.get("id")))
    require_id(product)
    title = require_title(product.get("name"), sku)
    status = parse_int(product.get("status"))
    if status is not None and status != _ENABLED:
        raise MappingError(f"product not enabled (status {product.get('status')!r})", sku)
    if str(product.get("type_id") or "").lower() == "configurable":
        raise MappingError("configurable product (its children are listed on their own)", sku)
    attrs = custom_attributes(product)
    price, currency = require_price(product.get("price"), vendor.currency, sku)
    price = _special_price(attrs, price, currency, sku, fetched_at)
    availability, stock = _availability(product)
    manufacturer = raw_id(attrs.get("manufacturer"))
    brand = (brands or {}).get(manufacturer or "") or clean_text(attrs.get("brand"))
    url_key = clean_text(attrs.get("url_key"))
    description = html_to_text(d if isinstance(d := attrs.get("description"), str) else None) or html_to_text(
        d if isinstance(d := attrs.get("short_description"), str) else None
    )
    return checked(
        [
            Offer(
                vendor_id=vendor.id,
                vendor_product_id=sku,
                title=title,
                price=price,
                currency=currency,
                description=description,
                images=normalize_images(_images(product, vendor.base_url), base_url=vendor.base_url),
                sku=sku,
                gtin=next((g for a in _BARCODE_ATTRIBUTES if (g := normalize_gtin(attrs.get(a))) is not None), None),
                brand=brand,
                category=_category(product, attrs, categories or {}),
                availability=availability,
                stock=stock,
                url=f"{vendor.base_url.rstrip('/')}/{url_key}.html" if url_key else None,
                vendor_updated_at=parse_datetime(product.get("updated_at")),
                fetched_at=fetched_at,
            )
        ]
    )


def _category_names(tree: object) -> dict[str, str]:
    names: dict[str, str] = {}
    stack = [tree]
    while stack:
        node = as_mapping(stack.pop())
        key, name = raw_id(node.get("id")), clean_text(node.get("name"))
        # Levels 0 and 1 are the invisible root and the store's root category ("Default Category").
        if key is not None and name and (parse_int(node.get("level")) or 0) >= 2:
            names[key] = name
        stack.extend(as_list(node.get("children_data")))
    return names


class MagentoSource:
    """A Magento 2 store; the cursor is the next ``currentPage`` as text."""

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

    def _headers(self) -> dict[str, str]:
        creds = require_credentials(self.vendor, "access_token")
        return {"Authorization": f"Bearer {creds['access_token']}", "Accept": "application/json"}

    async def _load_names(self, headers: Mapping[str, str], *, refresh: bool) -> tuple[Names, Names, list[str]]:
        """Manufacturer labels and category names, read once per sync (a walk starts with ``cursor=None``).

        Both are auxiliary: a store without the ``manufacturer`` attribute (404), or a token that may not read the
        category tree (401), leaves brands or categories empty with a warning; the products still sync.
        """
        warnings: list[str] = []
        if refresh or self._brands is None or self._categories is None:
            brands = await auxiliary(
                "brand names (manufacturer options)",
                self._manufacturers(headers),
                warnings,
                self.vendor.id,
            )
            categories = await auxiliary("category names", self._category_tree(headers), warnings, self.vendor.id)
            self._brands, self._categories = brands or {}, categories or {}
        return self._brands, self._categories, warnings

    async def _manufacturers(self, headers: Mapping[str, str]) -> dict[str, str]:
        body, _ = await self.http.get_json(f"{API_PREFIX}/products/attributes/manufacturer/options", headers=headers)
        brands: dict[str, str] = {}
        for option in expect_list(body, "Magento manufacturer options"):
            option = as_mapping(option)
            key, label = raw_id(option.get("value")), clean_text(option.get("label"))
            if key is not None and label:
                brands[key] = label
        return brands

    async def _category_tree(self, headers: Mapping[str, str]) -> dict[str, str]:
        tree, _ = await self.http.get_json(f"{API_PREFIX}/categories", headers=headers)
        return _category_names(expect_dict(tree, "Magento category tree"))

    def _map(self, fetched_at: datetime, brands: Names, categories: Names) -> ItemMapper:
        def mapper(item: Mapping[str, Any], _skipped: list[SkippedItem]) -> list[Offer]:
            return map_magento_product(self.vendor, item, fetched_at, brands=brands, categories=categories)

        return mapper

    async def fetch_page(self, cursor: str | None = None, *, since: datetime | None = None) -> Page:
        headers = self._headers()
        page = _parse_page(cursor)
        brands, categories, warnings = await self._load_names(headers, refresh=cursor is None)
        params: dict[str, str | int] = {
            "searchCriteria[pageSize]": self.page_size,
            "searchCriteria[currentPage]": page,
            # Without an order Magento's pages may overlap; entity id never changes.
            "searchCriteria[sortOrders][0][field]": "entity_id",
            "searchCriteria[sortOrders][0][direction]": "ASC",
        }
        if since is not None:
            # `gt` on second-granular stamps: one second earlier keeps the changes stamped exactly `since`.
            params[f"{_FILTER}[field]"] = "updated_at"
            params[f"{_FILTER}[value]"] = (utc_since(since) - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
            params[f"{_FILTER}[condition_type]"] = "gt"
        body, _ = await self.http.get_json(f"{API_PREFIX}/products", params=params, headers=headers)
        fetched_at = utcnow()
        body = expect_dict(body, "Magento product list")
        items = expect_list(body.get("items"), "Magento product list 'items'")
        offers, skipped = await map_page(
            self.vendor, self.http.bounded_page(items), self._map(fetched_at, brands, categories)
        )
        total = parse_int(body.get("total_count"))
        # total_count is the only end marker: past the last page Magento repeats the last page.
        has_next = (page * self.page_size < total and bool(items)) if total is not None else False
        return Page(
            offers=tuple(offers),
            skipped=tuple(skipped),
            next_cursor=str(page + 1) if has_next else None,
            total=total,
            warnings=tuple(warnings),
        )

    async def fetch_product(self, vendor_product_id: str) -> tuple[Offer, ...]:
        """By SKU, the key Magento's REST API looks products up by."""
        headers = self._headers()
        sku = vendor_product_id.strip()
        if not sku:
            raise VendorNotFound("no Magento product with an empty SKU")
        body, _ = await self.http.get_json(f"{API_PREFIX}/products/{quote(sku, safe='')}", headers=headers)
        product = expect_dict(body, "Magento product")
        status = parse_int(product.get("status"))
        if status is not None and status != _ENABLED:
            raise VendorNotFound(f"Magento product {vendor_product_id} is disabled")
        brands, categories, _ = await self._load_names(headers, refresh=False)
        try:
            return tuple(map_magento_product(self.vendor, product, utcnow(), brands=brands, categories=categories))
        except MappingError as exc:
            raise unusable_product("Magento", vendor_product_id, exc) from exc

    async def aclose(self) -> None:
        await self.http.aclose()


def _parse_page(cursor: str | None) -> int:
    if cursor is None:
        return 1
    if not cursor.isdigit() or int(cursor) < 1:
        raise ValueError(f"invalid Magento cursor {cursor!r}")
    return int(cursor)
