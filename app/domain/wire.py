"""Every Kafka message of the distributed runtime, encoded and validated here and nowhere else.

Messages are read by code that did not write them (the Flink job, another API node, a hand-written ``kcat``
message), so each is a JSON object with a version field ``v`` and decoding checks everything applying needs: a
message that passes its ``parse_*`` cannot fail half-way through being applied. Whatever does not pass raises
``ChangelogError`` and goes to the dead-letter topic. Prices travel as strings so exact decimals survive,
timestamps as ISO-8601 with offset.

=================================  ==============  ===========================================================
topic                              key             value
=================================  ==============  ===========================================================
``vendor_requests``,               vendor id       a request, ``request_to_dict``; a catalog request the job
``product_requests``                               continues carries ``"continuation"`` (``Work``)
``catalog_vendors`` (compacted)    vendor id       ``vendor_to_dict``, or a tombstone when deleted
``product_updates``                vendor id       the job's ``product``, ``sync_started``, ``page``,
                                                   ``sync_finished``; a node's ``webhook``, ``request``,
                                                   ``placeholder`` and ``override`` (``parse_update``)
``catalog_dead_letters``           original key    ``dead_letter``: the refused message and why
=================================  ==============  ===========================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from app.domain.documents import iso
from app.domain.images import image_id
from app.domain.matching.clustering import OverrideChange
from app.domain.models import Availability, Offer, Vendor, VendorKind, utcnow
from app.domain.queries import StoredImage
from app.domain.requests import FetchRequest, RequestKind, RequestStatus, new_request_id
from app.domain.webhooks import Removal, WebhookChange, WebhookEffect
from app.secrets import Secrets, SecretsError

VERSION = 1
#: The version of a continuation, inside a request (written and read by the job only).
CONTINUATION_VERSION = 1


class ChangelogError(ValueError):
    """A message that cannot be understood: it goes to the dead-letter topic, it never stops a consumer."""


def encode(message: Mapping[str, Any]) -> bytes:
    return orjson.dumps(message)


def loads(raw: str | bytes | None, what: str) -> dict[str, Any]:
    """A message's JSON object; ``what`` names it in the error."""
    if raw is None:
        raise ChangelogError(f"empty {what} (tombstone)")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ChangelogError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ChangelogError(f"a {what} must be a JSON object")
    return data


def _version(data: Mapping[str, Any], what: str, version: int = VERSION) -> None:
    if data.get("v") != version:
        raise ChangelogError(f"unsupported {what} version {data.get('v')!r}")


def _ts(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


# -- offers (inside updates) -----------------------------------------------------------------------------------


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


# -- vendor definitions (catalog_vendors) ----------------------------------------------------------------------


def vendor_to_dict(vendor: Vendor, *, secrets: Secrets) -> dict[str, Any]:
    """Carries the credentials the job calling the vendor needs, sealed (``app.secrets``): the topic, its dead
    letters and the job's state hold a Fernet token, never a clear secret."""
    return {
        "v": VERSION,
        "id": vendor.id,
        "name": vendor.name,
        "kind": vendor.kind.value,
        "base_url": vendor.base_url,
        "currency": vendor.currency,
        "credentials": secrets.seal(vendor.credentials),
        "refresh_interval_s": vendor.refresh_interval_s,
        "enabled": vendor.enabled,
        "mapping": None if vendor.mapping is None else dict(vendor.mapping),
    }


def vendor_from_dict(data: Mapping[str, Any], *, secrets: Secrets) -> Vendor:
    """Sealed credentials are opened; a clear object (a hand-written or older message) is read as it is."""
    _version(data, "vendor definition")
    try:
        return Vendor(
            id=str(data["id"]),
            name=str(data["name"]),
            kind=VendorKind(data["kind"]),
            base_url=str(data["base_url"]),
            currency=str(data["currency"]),
            credentials=secrets.open(data.get("credentials")),
            refresh_interval_s=int(data.get("refresh_interval_s", 3600)),
            enabled=bool(data.get("enabled", True)),
            mapping=data.get("mapping"),
        )
    except SecretsError as exc:
        raise ChangelogError(f"bad vendor: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ChangelogError(f"bad vendor: {exc!r}") from None


def parse_vendor(raw: str | bytes | None, *, secrets: Secrets) -> Vendor:
    """A ``catalog_vendors`` value (a tombstone is handled by the reader: it means deleted, not unreadable)."""
    return vendor_from_dict(loads(raw, "vendor definition"), secrets=secrets)


# -- requests (vendor_requests, product_requests) --------------------------------------------------------------


def request_to_dict(request: FetchRequest) -> dict[str, Any]:
    return {
        "v": VERSION,
        "id": request.id,
        "kind": request.kind.value,
        "vendor_id": request.vendor_id,
        "vendor_product_id": request.vendor_product_id,
        "full": request.full,
        "requested_at": request.requested_at.isoformat(),
        "since": None if request.since is None else request.since.isoformat(),
    }


def request_from_dict(data: Mapping[str, Any]) -> FetchRequest:
    """Required: ``v``, ``kind``, ``vendor_id`` and, for a product, ``vendor_product_id``; a request without ``id``
    gets one (a hand-written ``kcat`` request)."""
    _version(data, "request")
    try:
        request = FetchRequest(
            kind=RequestKind(data["kind"]),
            vendor_id=str(data["vendor_id"]),
            vendor_product_id=data.get("vendor_product_id"),
            full=bool(data.get("full", False)),
            id=str(data.get("id") or new_request_id()),
            requested_at=datetime.fromisoformat(data["requested_at"]) if data.get("requested_at") else utcnow(),
            since=datetime.fromisoformat(str(data["since"])) if data.get("since") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ChangelogError(f"bad request: {exc!r}") from None
    if not request.vendor_id:
        raise ChangelogError("request without vendor_id")
    if request.kind is RequestKind.PRODUCT and not request.vendor_product_id:
        raise ChangelogError("product request without vendor_product_id")
    return request


@dataclass(frozen=True, slots=True)
class Continuation:
    """Where the job's catalog sync goes on: ``{"v", "sync_id", "started_at", "cursor", "page_no" (pages done),
    "items" (offers so far)}``, inside the request it continues."""

    sync_id: str
    started_at: datetime
    cursor: str
    page_no: int
    items: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": CONTINUATION_VERSION,
            "sync_id": self.sync_id,
            "started_at": iso(self.started_at),
            "cursor": self.cursor,
            "page_no": self.page_no,
            "items": self.items,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Continuation:
        if not isinstance(data, dict) or data.get("v") != CONTINUATION_VERSION:
            raise ChangelogError(f"unsupported continuation {data!r:.100}")
        try:
            return cls(
                sync_id=str(data["sync_id"]),
                started_at=datetime.fromisoformat(str(data["started_at"])),
                cursor=str(data["cursor"]),
                page_no=int(data["page_no"]),
                items=int(data["items"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ChangelogError(f"bad continuation: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class Work:
    """A request message: a client's request, or the job's own continuation of a catalog sync."""

    request: FetchRequest
    continuation: Continuation | None = None

    def to_dict(self) -> dict[str, Any]:
        data = request_to_dict(self.request)
        if self.continuation is not None:
            data["continuation"] = self.continuation.to_dict()
        return data


def parse_request(raw: str | bytes | None) -> Work:
    data = loads(raw, "request")
    request = request_from_dict(data)
    continuation = data.get("continuation")
    if continuation is not None and request.kind is not RequestKind.CATALOG:
        raise ChangelogError("only catalog requests continue")
    return Work(request, None if continuation is None else Continuation.from_dict(continuation))


# -- updates (product_updates) ---------------------------------------------------------------------------------


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
    #: A node published this request: every node can now answer ``GET /requests/{id}`` (pending until its outcome).
    REQUEST = "request"
    #: A node thumbnailed an image first: its placeholder, for every node's documents (at this message's position).
    PLACEHOLDER = "placeholder"
    #: An admin split an offer out of its product or pinned two together (``OverrideChange``), on one node.
    OVERRIDE = "override"


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
    queued_s: float | None = None,
) -> dict[str, Any]:
    """``status`` is a ``RequestStatus`` value: done, not_found or failed; ``queued_s`` (optional): how long the
    request waited before the job took it."""
    extra = {} if queued_s is None else {"queued_ms": round(queued_s * 1000, 1)}
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
        **extra,
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
    """``{"v", "type": "webhook", "vendor_id", "delivery_id", "effect": "updated" | "deleted", "offers",
    "removals": [{"id", "keep": [...]}]}``: the offers are upserted, then each removal deletes the offer ``id`` and
    the variants whose parent it is, except those in ``keep``."""
    return {
        "v": VERSION,
        "type": UpdateType.WEBHOOK.value,
        "vendor_id": change.vendor_id,
        "delivery_id": change.delivery_id,
        "effect": change.effect.value,
        "offers": [offer_to_dict(o) for o in change.offers],
        "removals": [{"id": r.id, "keep": list(r.keep)} for r in change.removals],
    }


def override_message(change: OverrideChange) -> dict[str, Any]:
    """``{"v", "type": "override", "vendor_id", "kind": "split" | "pin" | "clear", "offer": [vendor_id,
    vendor_product_id], "other": [...] | null}``: keyed by the offer's vendor, so it stays in order with that
    vendor's syncs; every node records it and re-clusters the offers it names."""
    return {
        "v": VERSION,
        "type": UpdateType.OVERRIDE.value,
        "vendor_id": change.offer[0],
        "kind": change.kind,
        "offer": list(change.offer),
        "other": list(change.other) if change.other is not None else None,
    }


def request_message(request: FetchRequest) -> dict[str, Any]:
    """``{"v", "type": "request", "vendor_id", "request": <the request as on its topic>}``: published by the node that
    accepted the request, beside it, so every node learns the request exists (the outcome follows on this topic)."""
    return {
        "v": VERSION,
        "type": UpdateType.REQUEST.value,
        "vendor_id": request.vendor_id,
        "request": request_to_dict(request),
    }


def placeholder_message(image: StoredImage, placeholder: str) -> dict[str, Any]:
    """``{"v", "type": "placeholder", "vendor_id", "image_id", "url", "placeholder"}``: keyed by a vendor listing the
    image, so it follows the offers that brought the image in on that vendor's partition."""
    return {
        "v": VERSION,
        "type": UpdateType.PLACEHOLDER.value,
        "vendor_id": image.vendor_id,
        "image_id": image.id,
        "url": image.url,
        "placeholder": placeholder,
    }


#: BlurHash's alphabet (base 83); a placeholder is short.
_BLURHASH = re.compile(r"^[0-9A-Za-z#$%*+,\-.:;=?@\[\]^_{|}~]{6,128}$")


def _placeholder(data: Mapping[str, Any], vendor_id: str) -> tuple[StoredImage, str]:
    url, image, placeholder = data.get("url"), data.get("image_id"), data.get("placeholder")
    if not isinstance(url, str) or not isinstance(image, str) or image != image_id(url):
        raise ChangelogError("placeholder update: image_id must be the id of url")
    if not isinstance(placeholder, str) or not _BLURHASH.match(placeholder):
        raise ChangelogError("placeholder update: not a BlurHash")
    return StoredImage(image, url, vendor_id), placeholder


@dataclass(frozen=True, slots=True)
class Update:
    """A parsed ``product_updates`` message (what a node applies)."""

    type: UpdateType
    vendor_id: str
    request_id: str | None
    offers: tuple[Offer, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: the sync it belongs to (``SYNC_STARTED``, ``PAGE``, ``SYNC_FINISHED``)
    sync: SyncRef | None = None
    #: the change to apply (``WEBHOOK``)
    webhook: WebhookChange | None = None
    #: the request a node accepted (``REQUEST``)
    request: FetchRequest | None = None
    #: the image and its placeholder (``PLACEHOLDER``)
    placeholder: tuple[StoredImage, str] | None = None
    #: the decision to record (``OVERRIDE``)
    override: OverrideChange | None = None


def parse_update(data: Any) -> Update:
    """The whole message is checked here, so applying it cannot fail half-way on a malformed one."""
    if not isinstance(data, dict):
        raise ChangelogError("update must be a JSON object")
    _version(data, "update")
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
    if kind is UpdateType.PRODUCT:
        _check_product(data, offers)
        return Update(kind, vendor_id, data.get("request_id"), offers, data)
    if kind is UpdateType.WEBHOOK:
        return Update(kind, vendor_id, None, offers, data, webhook=_webhook_change(data, vendor_id, offers))
    if kind is UpdateType.OVERRIDE:
        return Update(kind, vendor_id, None, (), data, override=_override_change(data, vendor_id))
    if kind is UpdateType.REQUEST:
        request = data.get("request")
        if not isinstance(request, dict):
            raise ChangelogError("request update without its request")
        accepted = request_from_dict(request)
        if accepted.vendor_id != vendor_id:
            raise ChangelogError("request update of another vendor")
        return Update(kind, vendor_id, accepted.id, (), data, request=accepted)
    if kind is UpdateType.PLACEHOLDER:
        return Update(kind, vendor_id, None, (), data, placeholder=_placeholder(data, vendor_id))
    return Update(kind, vendor_id, data.get("request_id"), offers, data, sync=_sync_ref(kind, data, vendor_id))


def _offer_ref(value: Any, name: str) -> tuple[str, str]:
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) and v for v in value):
        raise ChangelogError(f"override {name} must be [vendor_id, vendor_product_id]")
    return (value[0], value[1])


def _override_change(data: Mapping[str, Any], vendor_id: str) -> OverrideChange:
    kind = data.get("kind")
    if kind not in ("split", "pin", "clear"):
        raise ChangelogError(f"unknown override kind {kind!r}")
    offer = _offer_ref(data.get("offer"), "offer")
    if offer[0] != vendor_id:
        raise ChangelogError("override of another vendor's offer")
    other = _offer_ref(data.get("other"), "other") if kind == "pin" else None
    if other == offer:
        raise ChangelogError("an offer cannot be pinned to itself")
    return OverrideChange(str(kind), offer, other)


def _check_product(data: Mapping[str, Any], offers: tuple[Offer, ...]) -> None:
    if not isinstance(data.get("request_id"), str) or not data["request_id"]:
        raise ChangelogError("product update without request_id")
    if not isinstance(data.get("vendor_product_id"), str):
        raise ChangelogError("product update without vendor_product_id")
    try:
        status = RequestStatus(str(data.get("status")))
    except ValueError:
        raise ChangelogError(f"unknown request status {data.get('status')!r}") from None
    if status is RequestStatus.PENDING:
        raise ChangelogError("a product update cannot leave its request pending")
    if status is RequestStatus.DONE and not offers:
        raise ChangelogError("a done product update carries no offers")


def _count(data: Mapping[str, Any], name: str, *, optional: bool = False) -> None:
    value = data.get(name)
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ChangelogError(f"{name} must be a non-negative integer, not {value!r}")


def _sync_ref(kind: UpdateType, data: Mapping[str, Any], vendor_id: str) -> SyncRef:
    if not isinstance(data.get("sync_id"), str) or not data["sync_id"]:
        raise ChangelogError("sync update without sync_id")
    if kind is UpdateType.PAGE:
        _count(data, "page_no")
        _count(data, "skipped", optional=True)
        _count(data, "total", optional=True)
        reasons = data.get("skip_reasons") or {}
        if not isinstance(reasons, dict) or not all(isinstance(v, int) for v in reasons.values()):
            raise ChangelogError("skip_reasons must map reasons to counts")
    elif kind is UpdateType.SYNC_FINISHED:
        _count(data, "pages")
        _count(data, "items")
        if data.get("error") is not None and not isinstance(data["error"], str):
            raise ChangelogError("error must be a string or null")
    try:
        started = _ts(data.get("started_at"))
        full = bool(data["full"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ChangelogError(f"bad sync fields: {exc!r}") from None
    if started is None:
        raise ChangelogError("sync message without started_at")
    return SyncRef(str(data["sync_id"]), str(data.get("request_id") or ""), vendor_id, full, started)


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
        vendor_id, effect, offers, tuple(Removal(r["id"], tuple(r.get("keep", []))) for r in removals), delivery_id
    )


# -- dead letters (catalog_dead_letters) -----------------------------------------------------------------------


def dead_letter(
    *,
    source: str,
    error: str,
    raw: str | bytes | None,
    by: str,
    key: str | bytes | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> dict[str, Any]:
    """What could not be read or applied, so someone can fix it and replay it by hand; the one shape the job and
    the nodes write: ``{"v", "source", "error", "raw", "key", "partition", "offset", "by", "at"}``.

    ``source``: the topic it was read from (the job reads both request topics as one stream: ``requests``, and
    ``vendors`` for ``catalog_vendors``); ``raw``/``key``: the message as text (bytes that are not UTF-8 are
    replaced), ``raw`` null for a tombstone; ``partition``/``offset``: where it was read (null from the job);
    ``by``: the consumer group that refused it (the job's, or ``catalog-node-<node id>``).
    """
    return {
        "v": VERSION,
        "source": source,
        "error": error,
        "raw": _text(raw),
        "key": _text(key),
        "partition": partition,
        "offset": offset,
        "by": by,
        "at": iso(utcnow()),
    }


def _text(value: str | bytes | None) -> str | None:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
