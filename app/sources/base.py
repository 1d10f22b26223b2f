"""What every platform's source shares: the mapping error, field helpers and the page-walking loop.

Mapping is strict per item and lenient per page: an item we cannot trust (no id, no title, no price) is
refused with a reason rather than guessed at, and that refusal is recorded as a ``SkippedItem`` instead of
failing the page, because one vendor's bad row must not keep its other thousand rows out of the catalog.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from app.domain.lanes import Lane, current_lane, interactive_work
from app.domain.models import Offer, SkippedItem, Vendor
from app.domain.normalize import clean_text, normalize_url, parse_price
from app.errors import VendorAuthError, VendorBadResponse, VendorError

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Field limits of an offer (an item over them is skipped with the field named: it is a vendor bug or an attack,
#: and a value this long would bloat every page that shows it).
MAX_ID_CHARS = 255
MAX_TEXT_CHARS = 1000
MAX_DESCRIPTION_CHARS = 100_000
#: Images beyond this many are dropped (the first ones are the vendor's own choice of what to show).
MAX_IMAGES = 50


class MappingError(ValueError):
    """An item the vendor sent that cannot become an offer; ``reason`` is what a SkippedItem records."""

    def __init__(self, reason: str, vendor_product_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.vendor_product_id = vendor_product_id


def unusable_product(platform: str, vendor_product_id: str, exc: MappingError) -> VendorBadResponse:
    """A single product the vendor sent but we cannot map: the vendor's data is at fault, not our request."""
    return VendorBadResponse(
        f"{platform} product {vendor_product_id}: {exc.reason}", details={"vendor_product_id": vendor_product_id}
    )


def raw_id(value: object) -> str | None:
    """A vendor id as text, or ``None``; booleans are not ids even though Python thinks they are ints."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        return text or None
    return None


def require_id(item: Mapping[str, Any], field: str = "id") -> str:
    value = raw_id(item.get(field))
    if value is None:
        raise MappingError(f"missing {field}")
    return value


def require_title(value: object, vendor_product_id: str | None = None) -> str:
    title = clean_text(value)
    if not title:
        raise MappingError("missing title", vendor_product_id)
    return title


def require_price(value: object, currency: str, vendor_product_id: str | None = None) -> tuple[Decimal, str]:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MappingError("missing price", vendor_product_id)
    try:
        price, cur = parse_price(value, currency)
    except (ValueError, ArithmeticError, TypeError) as exc:
        raise MappingError(f"unparseable price: {exc}", vendor_product_id) from exc
    if price < 0:
        raise MappingError("negative price", vendor_product_id)
    return price, cur


def check_offer(offer: Offer) -> Offer:
    """The last gate before an offer leaves a mapper: ids without control characters, texts within their limits,
    the ``url`` a client may open (http(s) only) and at most ``MAX_IMAGES`` images. Raises ``MappingError``."""
    vpid = offer.vendor_product_id
    for name, value, limit in (
        ("vendor_product_id", vpid, MAX_ID_CHARS),
        ("parent_id", offer.parent_id, MAX_ID_CHARS),
        ("sku", offer.sku, MAX_ID_CHARS),
        ("title", offer.title, MAX_TEXT_CHARS),
        ("brand", offer.brand, MAX_TEXT_CHARS),
        ("category", offer.category, MAX_TEXT_CHARS),
        ("description", offer.description, MAX_DESCRIPTION_CHARS),
    ):
        if value is None:
            continue
        if len(value) > limit:
            raise MappingError(f"field too long: {name} ({len(value)} characters, limit {limit})", vpid[:MAX_ID_CHARS])
        if name in ("vendor_product_id", "parent_id") and not value.isprintable():
            raise MappingError(f"control characters in {name}", None)
    url = normalize_url(offer.url)
    if url != offer.url or len(offer.images) > MAX_IMAGES:
        return dataclasses.replace(offer, url=url, images=offer.images[:MAX_IMAGES])
    return offer


def checked(offers: list[Offer]) -> list[Offer]:
    return [check_offer(offer) for offer in offers]


async def auxiliary(what: str, call: Awaitable[T], warnings: list[str], vendor_id: str) -> T | None:
    """An auxiliary look-up (brand or category names): its failure is a warning, never the sync's failure."""
    try:
        return await call
    except VendorError as exc:
        status = f", HTTP {exc.details['status']}" if "status" in exc.details else ""
        warning = f"{what} unavailable ({exc.code}{status})"
        logger.warning("vendor %s: %s: %s; those fields stay empty", vendor_id, warning, exc.message)
        warnings.append(warning)
        return None


def as_mapping(value: object) -> Mapping[str, Any]:
    """A nested object the vendor may omit or null out, as a mapping to ``.get`` from."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def later(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def require_credentials(vendor: Vendor, *names: str) -> dict[str, str]:
    """The named credentials, or ``VendorAuthError`` before any request is made with half of them."""
    missing = [n for n in names if not (vendor.credentials.get(n) or "").strip()]
    if missing:
        raise VendorAuthError(
            f"vendor {vendor.id} has no {', '.join(missing)} configured",
            details={"vendor_id": vendor.id, "missing": missing},
        )
    return {n: vendor.credentials[n].strip() for n in names}


def utc_since(since: datetime) -> datetime:
    """``since`` in UTC, floored to the whole second.

    A naive datetime is taken to already be UTC rather than the host's local time. Platforms stamp changes
    in whole seconds, so a change at 12:00:00.7 shows as 12:00:00; asking for "since 12:00:00.5" would miss
    it, while flooring can only re-send an item, which is harmless.
    """
    aware = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
    return aware.replace(microsecond=0)


ItemMapper = Callable[[Mapping[str, Any], list[SkippedItem]], list[Offer]]
"""Maps one raw item to its offers; may record partial skips (a bad Shopify variant) in the given list."""


def map_items(vendor: Vendor, items: Iterable[object], mapper: ItemMapper) -> tuple[list[Offer], list[SkippedItem]]:
    """Map a page's items, turning each item's failure into a ``SkippedItem`` and a warning."""
    offers: list[Offer] = []
    skipped: list[SkippedItem] = []
    bulk = current_lane() is Lane.BULK
    for item in items:
        if bulk:
            interactive_work.step_aside()
        if not isinstance(item, Mapping):
            skip = SkippedItem(None, f"item is not an object ({type(item).__name__})")
        else:
            try:
                offers.extend(mapper(item, skipped))
                continue
            except MappingError as exc:
                skip = SkippedItem(exc.vendor_product_id or raw_id(item.get("id")), exc.reason)
            except Exception as exc:  # a mapper bug or a shape nobody foresaw: still only this item
                logger.exception("vendor %s: mapping crashed on item %r", vendor.id, item.get("id"))
                skip = SkippedItem(raw_id(item.get("id")), f"mapping failed: {type(exc).__name__}: {exc}")
        skipped.append(skip)
    for skip in skipped:
        logger.warning("vendor %s: skipped item %s: %s", vendor.id, skip.vendor_product_id, skip.reason)
    return offers, skipped


async def map_page(
    vendor: Vendor, items: Iterable[object], mapper: ItemMapper
) -> tuple[list[Offer], list[SkippedItem]]:
    """``map_items`` for a page: a sync's pages (the bulk lane) are mapped in a worker thread. Mapping 250 items
    takes tens of milliseconds of Python; on the event loop that would hold up every shopper's request for as
    long, while in a thread the loop gets the interpreter back within Python's switch interval (5 ms)."""
    if current_lane() is Lane.BULK:
        return await asyncio.to_thread(map_items, vendor, items, mapper)
    return map_items(vendor, items, mapper)


def expect_dict(body: object, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise VendorBadResponse(f"{what}: expected a JSON object, got {type(body).__name__}")
    return body


def expect_list(body: object, what: str) -> list[Any]:
    if not isinstance(body, list):
        raise VendorBadResponse(f"{what}: expected a JSON array, got {type(body).__name__}")
    return body
