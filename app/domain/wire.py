"""The messages of the distributed runtime, as plain JSON-able dicts (one version field, ``v``).

Three streams cross process boundaries and must be read by code that did not write them (a Flink job, another API
node, a hand-written ``kcat`` message), so their shape lives here, in the domain, and nowhere else:

- requests (topics ``vendor_requests`` / ``product_requests``): ``FetchRequest.to_dict()``;
- vendor definitions (topic ``catalog_vendors``, compacted, key = vendor id): ``vendor_to_dict`` or a tombstone;
- updates (topic ``product_updates``, key = vendor id): one of the ``*_message`` dicts below (the Flink job's
  product and sync updates, and the ``webhook`` update a node publishes for a webhook it received).

Prices travel as strings so exact decimals survive; timestamps as ISO-8601 with offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from app.domain.documents import iso
from app.domain.models import Availability, Offer, Vendor, VendorKind
from app.domain.webhooks import Removal, WebhookChange, WebhookEffect

VERSION = 1


class UpdateType(StrEnum):
    #: Offers of a product request, together with the request's outcome (applied, then the waiter completes).
    PRODUCT = "product"
    #: A catalog sync began (a node records it in the vendor's sync status).
    SYNC_STARTED = "sync_started"
    #: One page of a catalog sync: its offers and what was skipped.
    PAGE = "page"
    #: A catalog sync ended, well or not; a successful full sync lets nodes mark what was not seen as unlisted.
    SYNC_FINISHED = "sync_finished"
    #: A vendor's webhook, received by one node: its offers to upsert, then what to remove (see ``WebhookChange``).
    WEBHOOK = "webhook"


class ChangelogError(ValueError):
    """A message that cannot be understood: it goes to the dead-letter topic, it never stops a consumer."""


def offer_to_dict(offer: Offer) -> dict[str, Any]:
    return {
        "vendor_id": offer.vendor_id,
        "vendor_product_id": offer.vendor_product_id,
        "title": offer.title,
        "price": str(offer.price),
        "currency": offer.currency,
        "description": offer.description,
        "images": list(offer.images),
        "sku": offer.sku,
        "gtin": offer.gtin,
        "brand": offer.brand,
        "category": offer.category,
        "availability": offer.availability.value,
        "stock": offer.stock,
        "url": offer.url,
        "vendor_updated_at": iso(offer.vendor_updated_at),
        "fetched_at": iso(offer.fetched_at),
        "parent_id": offer.parent_id,
    }


def _ts(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def offer_from_dict(data: Mapping[str, Any]) -> Offer:
    try:
        fetched = _ts(data.get("fetched_at"))
        return Offer(
            vendor_id=str(data["vendor_id"]),
            vendor_product_id=str(data["vendor_product_id"]),
            title=str(data["title"]),
            price=Decimal(str(data["price"])),
            currency=str(data["currency"]),
            description=str(data.get("description") or ""),
            images=tuple(str(i) for i in data.get("images") or ()),
            sku=data.get("sku"),
            gtin=data.get("gtin"),
            brand=data.get("brand"),
            category=data.get("category"),
            availability=Availability(data.get("availability") or Availability.UNKNOWN.value),
            stock=None if data.get("stock") is None else int(data["stock"]),
            url=data.get("url"),
            vendor_updated_at=_ts(data.get("vendor_updated_at")),
            parent_id=data.get("parent_id"),
            **({"fetched_at": fetched} if fetched is not None else {}),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise ChangelogError(f"bad offer: {exc!r}") from None


def offers_from(items: Any) -> tuple[Offer, ...]:
    if not isinstance(items, list):
        raise ChangelogError("offers must be a list")
    return tuple(offer_from_dict(item) for item in items)


def vendor_to_dict(vendor: Vendor) -> dict[str, Any]:
    """Carries credentials: the job calling the vendor needs them. Secure the topic like any secret store."""
    return {
        "v": VERSION,
        "id": vendor.id,
        "name": vendor.name,
        "kind": vendor.kind.value,
        "base_url": vendor.base_url,
        "currency": vendor.currency,
        "credentials": dict(vendor.credentials),
        "refresh_interval_s": vendor.refresh_interval_s,
        "enabled": vendor.enabled,
        "mapping": None if vendor.mapping is None else dict(vendor.mapping),
    }


def vendor_from_dict(data: Mapping[str, Any]) -> Vendor:
    try:
        return Vendor(
            id=str(data["id"]),
            name=str(data["name"]),
            kind=VendorKind(data["kind"]),
            base_url=str(data["base_url"]),
            currency=str(data["currency"]),
            credentials={str(k): str(v) for k, v in (data.get("credentials") or {}).items()},
            refresh_interval_s=int(data.get("refresh_interval_s", 3600)),
            enabled=bool(data.get("enabled", True)),
            mapping=data.get("mapping"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ChangelogError(f"bad vendor: {exc!r}") from None


def product_message(
    *,
    request_id: str,
    vendor_id: str,
    vendor_product_id: str,
    status: str,
    offers: Iterable[Offer] = (),
    error: str | None = None,
    error_code: str | None = None,
    vendor_failure: bool = False,
) -> dict[str, Any]:
    """``status`` is a ``RequestStatus`` value: done, not_found or failed."""
    return {
        "v": VERSION,
        "type": UpdateType.PRODUCT.value,
        "request_id": request_id,
        "vendor_id": vendor_id,
        "vendor_product_id": vendor_product_id,
        "status": status,
        "offers": [offer_to_dict(o) for o in offers],
        "error": error,
        "error_code": error_code,
        "vendor_failure": vendor_failure,
    }


@dataclass(frozen=True, slots=True)
class SyncRef:
    """Identifies one catalog sync across its messages (a node keys its sync status on ``vendor_id``)."""

    sync_id: str
    request_id: str
    vendor_id: str
    full: bool
    started_at: datetime


def _sync_fields(ref: SyncRef) -> dict[str, Any]:
    return {
        "v": VERSION,
        "sync_id": ref.sync_id,
        "request_id": ref.request_id,
        "vendor_id": ref.vendor_id,
        "full": ref.full,
        "started_at": iso(ref.started_at),
    }


def sync_started_message(ref: SyncRef) -> dict[str, Any]:
    return {**_sync_fields(ref), "type": UpdateType.SYNC_STARTED.value}


def page_message(
    ref: SyncRef,
    *,
    page_no: int,
    offers: Iterable[Offer],
    skipped: int = 0,
    skip_reasons: Mapping[str, int] | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    return {
        **_sync_fields(ref),
        "type": UpdateType.PAGE.value,
        "page_no": page_no,
        "offers": [offer_to_dict(o) for o in offers],
        "skipped": skipped,
        "skip_reasons": dict(skip_reasons or {}),
        "total": total,
    }


def sync_finished_message(ref: SyncRef, *, pages: int, items: int, error: str | None = None) -> dict[str, Any]:
    """``error`` None means the whole catalog was read; only then may a full sync mark unseen offers unlisted."""
    return {**_sync_fields(ref), "type": UpdateType.SYNC_FINISHED.value, "pages": pages, "items": items, "error": error}


def webhook_message(change: WebhookChange) -> dict[str, Any]:
    return {
        "v": VERSION,
        "type": UpdateType.WEBHOOK.value,
        "vendor_id": change.vendor_id,
        "delivery_id": change.delivery_id,
        "effect": change.effect.value,
        "offers": [offer_to_dict(o) for o in change.offers],
        "removals": [{"id": r.id, "keep": list(r.keep)} for r in change.removals],
    }


def _webhook_change(data: Mapping[str, Any], vendor_id: str, offers: tuple[Offer, ...]) -> WebhookChange:
    try:
        effect = WebhookEffect(str(data.get("effect")))
    except ValueError:
        raise ChangelogError(f"unknown webhook effect {data.get('effect')!r}") from None
    delivery_id = data.get("delivery_id")
    if delivery_id is not None and not isinstance(delivery_id, str):
        raise ChangelogError("delivery_id must be a string or null")
    removals = data.get("removals", [])
    if not isinstance(removals, list) or not all(
        isinstance(r, dict)
        and isinstance(r.get("id"), str)
        and r["id"]
        and isinstance(r.get("keep", []), list)
        and all(isinstance(k, str) for k in r.get("keep", []))
        for r in removals
    ):
        raise ChangelogError("removals must be a list of {id: str, keep: [str]}")
    if effect is WebhookEffect.DELETED and offers:
        raise ChangelogError("a deleting webhook carries no offers")
    return WebhookChange(
        vendor_id,
        effect,
        offers,
        tuple(Removal(r["id"], tuple(r.get("keep", []))) for r in removals),
        delivery_id,
    )


@dataclass(frozen=True, slots=True)
class Update:
    """A parsed ``product_updates`` message (what a node applies)."""

    type: UpdateType
    vendor_id: str
    request_id: str | None
    offers: tuple[Offer, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: ``WEBHOOK`` updates: the change to apply
    webhook: WebhookChange | None = None

    @property
    def sync(self) -> SyncRef | None:
        if self.type in (UpdateType.PRODUCT, UpdateType.WEBHOOK):
            return None
        started = _ts(self.raw.get("started_at"))
        if started is None:
            raise ChangelogError("sync message without started_at")
        return SyncRef(
            str(self.raw["sync_id"]), str(self.request_id or ""), self.vendor_id, bool(self.raw["full"]), started
        )


def parse_update(data: Any) -> Update:
    """Validates enough that applying cannot fail half-way on a malformed message."""
    if not isinstance(data, dict):
        raise ChangelogError("update must be a JSON object")
    if data.get("v") != VERSION:
        raise ChangelogError(f"unsupported update version {data.get('v')!r}")
    try:
        kind = UpdateType(str(data.get("type")))
    except ValueError:
        raise ChangelogError(f"unknown update type {data.get('type')!r}") from None
    vendor_id = data.get("vendor_id")
    if not isinstance(vendor_id, str) or not vendor_id:
        raise ChangelogError("update without vendor_id")
    carries_offers = kind in (UpdateType.PRODUCT, UpdateType.PAGE, UpdateType.WEBHOOK)
    offers = offers_from(data.get("offers", [])) if carries_offers else ()
    if any(o.vendor_id != vendor_id for o in offers):
        raise ChangelogError("update carries offers of another vendor")
    if kind is UpdateType.WEBHOOK:
        return Update(kind, vendor_id, None, offers, data, _webhook_change(data, vendor_id, offers))
    update = Update(kind, vendor_id, data.get("request_id"), offers, data)
    if kind is not UpdateType.PRODUCT:
        try:
            update.sync  # noqa: B018 - validates the sync fields now rather than while applying
        except (KeyError, TypeError, ValueError) as exc:
            raise ChangelogError(f"bad sync fields: {exc!r}") from None
    return update
