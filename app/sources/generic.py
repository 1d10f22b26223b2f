"""Declarative vendors (``kind: generic``): an API we have no adapter for, read through a JMESPath mapping.

Writing an adapter per platform does not scale to the long tail of small vendors whose APIs are "some JSON
list of products". For them the vendor record carries a mapping: where the item list is in a page, where each
canonical field is in an item, a few fixed transforms, and how to ask for the next page. Values then go through
the same normalisers as every adapter, so a generic vendor's prices and barcodes mean exactly what a Shopify
vendor's do. The transform set is closed on purpose: a mapping is data an admin posts, never code we run.

Mapping (all JMESPath expressions are evaluated with ``jmespath``)::

    {
      "path": "/api/v1/products",            # list endpoint (default "/")
      "items": "products",                   # JMESPath to the item list in a page body ("@": a bare array)
      "fields": {"id": "code", "title": "product_name",
                 "price": {"path": "price_cents", "transforms": ["minor_units"]}, ...},
      "pagination": {"style": "page", "page_param": "page", "size_param": "page_size", "size": 50, "start": 1},
      "item_path": "/api/v1/products/{id}",  # optional: the miss path
      "item": "@",                           # JMESPath to the item in that body (default "@")
      "auth_header": "Authorization", "auth_prefix": "Bearer "   # secret in credentials["token"]
    }

Transforms: ``minor_units`` (integer cents to units), ``comma_list`` ("a,b" to a list), ``html`` (markup to
text), ``bool_in_stock`` (true/false to an availability), ``epoch`` (seconds to a datetime), ``prefix:<text>``
(prefix a relative URL or path). Pagination styles: ``page``, ``offset``, ``cursor`` (``next_path`` in the body)
and ``link`` (the ``Link: <...>; rel="next"`` header); every style stops on an empty page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import jmespath  # type: ignore[import-untyped]
from jmespath.exceptions import JMESPathError  # type: ignore[import-untyped]
from jmespath.parser import ParsedResult  # type: ignore[import-untyped]

from app.domain.models import Availability, Offer, Page, SkippedItem, Vendor, utcnow
from app.domain.normalize import (
    clean_text,
    html_to_text,
    normalize_gtin,
    normalize_images,
    normalize_url,
    parse_currency,
    parse_datetime,
    parse_int,
)
from app.errors import InvalidInput, VendorBadResponse, VendorNotFound
from app.sources.base import (
    ItemMapper,
    MappingError,
    check_offer,
    map_page,
    raw_id,
    require_price,
    require_title,
    unusable_product,
)
from app.sources.http import QueryParams, VendorHttp

CANONICAL_FIELDS = (
    "id",
    "title",
    "price",
    "currency",
    "description",
    "images",
    "sku",
    "gtin",
    "brand",
    "category",
    "stock",
    "availability",
    "url",
    "updated_at",
)
REQUIRED_FIELDS = ("id", "title", "price")
TRANSFORMS = ("minor_units", "comma_list", "html", "bool_in_stock", "epoch", "prefix:")
STYLES = ("page", "offset", "cursor", "link")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
#: How many items of the first page must map before a mapping is accepted.
PROBE_ITEMS = 5

_LINK_NEXT = re.compile(r'<([^>]+)>\s*;[^,]*rel="?next"?', re.IGNORECASE)
_AVAILABILITY = {
    "in_stock": Availability.IN_STOCK,
    "instock": Availability.IN_STOCK,
    "available": Availability.IN_STOCK,
    "out_of_stock": Availability.OUT_OF_STOCK,
    "outofstock": Availability.OUT_OF_STOCK,
    "sold_out": Availability.OUT_OF_STOCK,
    "unavailable": Availability.OUT_OF_STOCK,
    "backorder": Availability.BACKORDER,
    "preorder": Availability.PREORDER,
}


class MappingSpecError(ValueError):
    """A mapping that cannot be used as written; ``path`` names the offending key or expression."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FieldError(MappingError):
    """An item a field's expression could not be mapped from; carries the field and its JMESPath."""

    def __init__(self, field_name: str, path: str, reason: str, vendor_product_id: str | None = None) -> None:
        super().__init__(reason, vendor_product_id)
        self.field_name = field_name
        self.path = path


@dataclass(frozen=True, slots=True)
class FieldSpec:
    path: str
    expression: ParsedResult
    transforms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pagination:
    style: str = "page"
    page_param: str = "page"
    size_param: str | None = "size"
    size: int = DEFAULT_PAGE_SIZE
    start: int = 1
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    next_path: str | None = None
    next_expression: ParsedResult | None = None

    def request(self, cursor: str | None) -> tuple[str | None, dict[str, str | int]]:
        """(absolute URL to get instead of the list path, query params) for the page ``cursor`` names."""
        if self.style == "page":
            page = self.start if cursor is None else int(cursor)
            params: dict[str, str | int] = {self.page_param: page}
            if self.size_param:
                params[self.size_param] = self.size
            return None, params
        if self.style == "offset":
            return None, {self.offset_param: 0 if cursor is None else int(cursor), self.limit_param: self.size}
        if self.style == "cursor":
            return None, ({} if cursor is None else {self.cursor_param: cursor})
        return cursor, {}

    def next_cursor(
        self, cursor: str | None, count: int, body: object, headers: Mapping[str, str] | None = None
    ) -> str | None:
        """The cursor of the page after this one (``count`` items), or ``None`` when this was the last."""
        if count == 0:
            return None
        if self.style == "page":
            return str((self.start if cursor is None else int(cursor)) + 1)
        if self.style == "offset":
            return str((0 if cursor is None else int(cursor)) + count)
        if self.style == "cursor":
            value = self.next_expression.search(body) if self.next_expression is not None else None
            text = raw_id(value)
            return text if text and text != cursor else None
        match = _LINK_NEXT.search((headers or {}).get("link", "") or (headers or {}).get("Link", ""))
        return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class GenericMapping:
    items: str
    items_expression: ParsedResult
    fields: Mapping[str, FieldSpec]
    pagination: Pagination = field(default_factory=Pagination)
    path: str = "/"
    item_path: str | None = None
    item: str = "@"
    item_expression: ParsedResult | None = None
    auth_header: str | None = None
    auth_prefix: str = ""


def _compile(value: object, where: str) -> ParsedResult:
    if not isinstance(value, str) or not value.strip():
        raise MappingSpecError(where, "must be a non-empty JMESPath expression")
    try:
        return jmespath.compile(value)
    except JMESPathError as exc:
        raise MappingSpecError(where, f"invalid JMESPath {value!r}: {exc}") from exc


def _text(raw: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str | None:
    value = raw.get(key, default)
    if value is not None and not isinstance(value, str):
        raise MappingSpecError(f"{where}{key}", "must be a string")
    return value


def _parse_field(name: str, spec: object) -> FieldSpec:
    where = f"fields.{name}"
    if isinstance(spec, str):
        return FieldSpec(spec, _compile(spec, where))
    if not isinstance(spec, Mapping):
        raise MappingSpecError(where, "must be a JMESPath string or {path, transforms}")
    unknown = set(spec) - {"path", "transforms"}
    if unknown:
        raise MappingSpecError(f"{where}.{sorted(unknown)[0]}", "unknown key")
    path = spec.get("path")
    expression = _compile(path, f"{where}.path")
    transforms = spec.get("transforms", [])
    if isinstance(transforms, str):
        transforms = [transforms]
    if not isinstance(transforms, list) or not all(isinstance(t, str) for t in transforms):
        raise MappingSpecError(f"{where}.transforms", "must be a list of transform names")
    for t in transforms:
        if t not in TRANSFORMS[:-1] and not (t.startswith("prefix:") and len(t) > len("prefix:")):
            raise MappingSpecError(f"{where}.transforms", f"unknown transform {t!r} (known: {', '.join(TRANSFORMS)})")
    assert isinstance(path, str)
    return FieldSpec(path, expression, tuple(transforms))


def _parse_pagination(raw: object) -> Pagination:
    if raw is None:
        return Pagination()
    if not isinstance(raw, Mapping):
        raise MappingSpecError("pagination", "must be an object")
    allowed = {"style", "page_param", "size_param", "size", "start", "offset_param", "limit_param"}
    allowed |= {"cursor_param", "next_path"}
    unknown = set(raw) - allowed
    if unknown:
        raise MappingSpecError(f"pagination.{sorted(unknown)[0]}", "unknown key")
    style = raw.get("style", "page")
    if style not in STYLES:
        raise MappingSpecError("pagination.style", f"must be one of {', '.join(STYLES)}")
    size = raw.get("size", DEFAULT_PAGE_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE:
        raise MappingSpecError("pagination.size", f"must be an integer from 1 to {MAX_PAGE_SIZE}")
    start = raw.get("start", 1)
    if start not in (0, 1) or isinstance(start, bool):
        raise MappingSpecError("pagination.start", "must be 0 or 1")
    next_path = _text(raw, "next_path", "pagination.")
    if style == "cursor" and next_path is None:
        raise MappingSpecError("pagination.next_path", "is required for cursor pagination")
    names = {k: _text(raw, k, "pagination.") for k in ("page_param", "offset_param", "limit_param", "cursor_param")}
    size_param = raw.get("size_param", "size")
    if size_param is not None and not isinstance(size_param, str):
        raise MappingSpecError("pagination.size_param", "must be a string or null")
    return Pagination(
        style=style,
        page_param=names["page_param"] or "page",
        size_param=size_param,
        size=size,
        start=start,
        offset_param=names["offset_param"] or "offset",
        limit_param=names["limit_param"] or "limit",
        cursor_param=names["cursor_param"] or "cursor",
        next_path=next_path,
        next_expression=_compile(next_path, "pagination.next_path") if next_path is not None else None,
    )


def parse_mapping(raw: object) -> GenericMapping:
    """A mapping as posted, checked for shape only (the vendor is not asked); raises ``MappingSpecError``."""
    if not isinstance(raw, Mapping):
        raise MappingSpecError("mapping", "must be an object")
    allowed = {"items", "fields", "pagination", "path", "item_path", "item", "auth_header", "auth_prefix"}
    unknown = set(raw) - allowed
    if unknown:
        raise MappingSpecError(sorted(unknown)[0], "unknown key")
    items = raw.get("items", "@")
    items_expression = _compile(items, "items")
    fields_raw = raw.get("fields")
    if not isinstance(fields_raw, Mapping):
        raise MappingSpecError("fields", "must be an object of canonical field -> JMESPath")
    for name in fields_raw:
        if name not in CANONICAL_FIELDS:
            raise MappingSpecError(f"fields.{name}", f"not a canonical field (known: {', '.join(CANONICAL_FIELDS)})")
    for name in REQUIRED_FIELDS:
        if name not in fields_raw:
            raise MappingSpecError(f"fields.{name}", "is required")
    fields = {name: _parse_field(name, spec) for name, spec in fields_raw.items()}
    path = _text(raw, "path", "", "/") or "/"
    item_path = _text(raw, "item_path", "")
    if item_path is not None and "{id}" not in item_path:
        raise MappingSpecError("item_path", "must contain {id}")
    item = _text(raw, "item", "", "@") or "@"
    return GenericMapping(
        items=items,
        items_expression=items_expression,
        fields=fields,
        pagination=_parse_pagination(raw.get("pagination")),
        path=path,
        item_path=item_path,
        item=item,
        item_expression=_compile(item, "item"),
        auth_header=_text(raw, "auth_header", ""),
        auth_prefix=_text(raw, "auth_prefix", "", "") or "",
    )


# -- transforms and field values ------------------------------------------------------------------------------


def _minor_units(value: object) -> object:
    if isinstance(value, bool) or value is None:
        return value
    try:
        return Decimal(str(value).strip()) / 100
    except InvalidOperation as exc:
        raise ValueError(f"not an amount in minor units: {value!r}") from exc


def _epoch(value: object) -> object:
    if isinstance(value, bool) or value is None:
        return value
    try:
        return datetime.fromtimestamp(float(str(value)), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"not epoch seconds: {value!r}") from exc


def _prefix(text: str, value: object) -> object:
    if isinstance(value, list):
        return [_prefix(text, v) for v in value]
    if isinstance(value, str) and value and not value.startswith(("http://", "https://", "//")):
        return text + value
    return value


def apply_transform(name: str, value: object) -> object:
    """One transform; a value of the wrong kind raises ``ValueError`` (the item is skipped with the reason)."""
    if name == "minor_units":
        return _minor_units(value)
    if name == "comma_list":
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value
    if name == "html":
        return html_to_text(value) if isinstance(value, str) else value
    if name == "bool_in_stock":
        if isinstance(value, bool):
            return Availability.IN_STOCK if value else Availability.OUT_OF_STOCK
        return value
    if name == "epoch":
        return _epoch(value)
    if name.startswith("prefix:"):
        return _prefix(name[len("prefix:") :], value)
    raise ValueError(f"unknown transform {name!r}")  # pragma: no cover - parse_mapping refuses these


def _first(value: object) -> object:
    """Brand and category are one name: of a list (``comma_list``, an array) the first one counts."""
    if isinstance(value, list):
        return next((v for v in value if v not in (None, "")), None)
    if isinstance(value, Mapping):
        return value.get("name")
    return value


def _availability(value: object, stock: int | None) -> Availability:
    if isinstance(value, Availability):
        return value
    if isinstance(value, bool):
        return Availability.IN_STOCK if value else Availability.OUT_OF_STOCK
    if isinstance(value, str):
        known = _AVAILABILITY.get(value.strip().lower().replace(" ", "_").replace("-", "_"))
        if known is not None:
            return known
    if stock is None:
        return Availability.UNKNOWN
    return Availability.IN_STOCK if stock > 0 else Availability.OUT_OF_STOCK


def map_generic_item(
    vendor: Vendor, mapping: GenericMapping, item: Mapping[str, Any], fetched_at: datetime | None = None
) -> Offer:
    """One item as an offer; a required field that is missing or unparseable raises ``FieldError``."""
    values: dict[str, object] = {}
    for name, spec in mapping.fields.items():
        value = spec.expression.search(item)
        try:
            for transform in spec.transforms:
                value = apply_transform(transform, value)
        except ValueError as exc:
            if name in REQUIRED_FIELDS:
                raise FieldError(name, spec.path, f"{name}: {exc}", raw_id(values.get("id"))) from exc
            value = None
        values[name] = value

    def fail(name: str, reason: str, vpid: str | None = None) -> FieldError:
        return FieldError(name, mapping.fields[name].path, reason, vpid)

    vpid = raw_id(values["id"]) if not isinstance(values["id"], float) else raw_id(int(values["id"]))
    if vpid is None:
        raise fail("id", f"missing id (JMESPath {mapping.fields['id'].path!r} gave {values['id']!r})")
    try:
        title = require_title(values["title"], vpid)
    except MappingError as exc:
        raise fail("title", exc.reason, vpid) from exc
    currency = vendor.currency
    if values.get("currency"):
        try:
            currency = parse_currency(values["currency"])
        except ValueError as exc:
            raise fail("currency", f"unknown currency {values['currency']!r}", vpid) from exc
    try:
        price, currency = require_price(values["price"], currency, vpid)
    except MappingError as exc:
        raise fail("price", exc.reason, vpid) from exc
    images = values.get("images")
    raw_images = images if isinstance(images, list) else [images] if images else []
    stock = parse_int(values.get("stock"))
    updated = values.get("updated_at")
    offer = Offer(
        vendor_id=vendor.id,
        vendor_product_id=vpid,
        title=title,
        price=price,
        currency=currency,
        description=clean_text(values.get("description")) or "",
        images=normalize_images(dict.fromkeys(i for i in raw_images if isinstance(i, str)), base_url=vendor.base_url),
        sku=clean_text(raw_id(values.get("sku"))),
        gtin=normalize_gtin(values.get("gtin")),
        brand=clean_text(_first(values.get("brand"))),
        category=clean_text(_first(values.get("category"))),
        availability=_availability(values.get("availability"), stock),
        stock=None if stock is None else max(stock, 0),
        url=normalize_url(values.get("url"), vendor.base_url),
        vendor_updated_at=updated if isinstance(updated, datetime) else parse_datetime(updated),
        fetched_at=fetched_at or utcnow(),
    )
    return check_offer(offer)


def find_items(mapping: GenericMapping, body: object) -> list[Any]:
    """The item list of a page body; anything but a list is the vendor (or the mapping) being wrong."""
    items = mapping.items_expression.search(body)
    if not isinstance(items, list):
        raise VendorBadResponse(
            f"generic mapping: items path {mapping.items!r} gave {type(items).__name__}, not a list",
            details={"path": mapping.items},
        )
    return items


class GenericSource:
    """A vendor read through its mapping; no change tracking, so every sync is a full walk."""

    def __init__(self, vendor: Vendor, http: VendorHttp) -> None:
        self.vendor = vendor
        self.http = http
        try:
            self.mapping = parse_mapping(vendor.mapping)
        except MappingSpecError as exc:
            raise InvalidInput(str(exc), details={"path": exc.path, "reason": exc.reason}) from exc

    #: A fact of the platform's API, the same for every vendor on it (``app.sources.supports_changes_since``).
    supports_changes_since: ClassVar[bool] = False

    def _headers(self) -> dict[str, str]:
        if self.mapping.auth_header is None:
            return {}
        token = self.vendor.credentials.get("token", "")
        return {self.mapping.auth_header: f"{self.mapping.auth_prefix}{token}"}

    def _map(self, fetched_at: datetime) -> ItemMapper:
        def mapper(item: Mapping[str, Any], _skipped: list[SkippedItem]) -> list[Offer]:
            return [map_generic_item(self.vendor, self.mapping, item, fetched_at)]

        return mapper

    async def get_page(self, cursor: str | None) -> tuple[Any, httpx.Response]:
        url, params = self.mapping.pagination.request(cursor)
        query: QueryParams = params
        return await self.http.get_json(url or self.mapping.path, params=query, headers=self._headers())

    async def fetch_page(self, cursor: str | None = None, *, since: datetime | None = None) -> Page:
        """``since`` is ignored: a mapping has no notion of "changed since", hence ``supports_changes_since``."""
        body, response = await self.get_page(cursor)
        fetched_at = utcnow()
        items = find_items(self.mapping, body)
        offers, skipped = await map_page(self.vendor, self.http.bounded_page(items), self._map(fetched_at))
        next_cursor = self.mapping.pagination.next_cursor(cursor, len(items), body, response.headers)
        return Page(offers=tuple(offers), skipped=tuple(skipped), next_cursor=next_cursor)

    async def fetch_product(self, vendor_product_id: str) -> tuple[Offer, ...]:
        if self.mapping.item_path is None:
            raise VendorNotFound(
                f"vendor {self.vendor.id} has no item_path in its mapping, so single products cannot be fetched",
                details={"vendor_product_id": vendor_product_id},
            )
        path = self.mapping.item_path.replace("{id}", quote(vendor_product_id, safe=""))
        body, _ = await self.http.get_json(path, headers=self._headers())
        expression = self.mapping.item_expression
        item = expression.search(body) if expression is not None else body
        if not isinstance(item, Mapping):
            raise VendorBadResponse(
                f"generic product {vendor_product_id}: item path {self.mapping.item!r} is not an object",
                details={"vendor_product_id": vendor_product_id, "path": self.mapping.item},
            )
        try:
            return (map_generic_item(self.vendor, self.mapping, item),)
        except MappingError as exc:
            raise unusable_product("generic", vendor_product_id, exc) from exc

    async def aclose(self) -> None:
        await self.http.aclose()


async def validate_generic(source: GenericSource, probe: int = PROBE_ITEMS) -> None:
    """Refuse a mapping that does not fit the vendor's live first page, before the vendor is stored.

    A wrong path would otherwise be found only at the first sync, as a catalog of zero items and a thousand
    "missing price" skips; checking one page now turns it into a 422 that names the expression to fix.
    """
    body, _ = await source.get_page(None)
    mapping = source.mapping
    items = mapping.items_expression.search(body)
    if not isinstance(items, list):
        raise InvalidInput(
            f"mapping 'items' ({mapping.items!r}) does not give a list on the vendor's first page",
            details={"path": mapping.items, "reason": f"gave {type(items).__name__}, not a list"},
        )
    if not items:
        raise InvalidInput(
            f"mapping 'items' ({mapping.items!r}) gives an empty list on the vendor's first page",
            details={"path": mapping.items, "reason": "empty list: nothing to check the fields against"},
        )
    for item in items[:probe]:
        if not isinstance(item, Mapping):
            raise InvalidInput(
                "mapping 'items' gives a list of non-objects",
                details={"path": mapping.items, "reason": f"an item is {type(item).__name__}, not an object"},
            )
        try:
            map_generic_item(source.vendor, mapping, item)
        except FieldError as exc:
            raise InvalidInput(
                f"mapping field {exc.field_name!r} ({exc.path!r}) does not fit the vendor's items: {exc.reason}",
                details={"path": exc.path, "field": exc.field_name, "reason": exc.reason},
            ) from exc
