"""Signed vendor webhooks: a product changed or went away at the vendor, so its offers change here at once.

The order of checks is the point: the vendor (and its kind) first, then the signature over the raw body, and
only then is the body parsed. Nothing a caller without the vendor's secret sends is ever parsed or stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Request
from pydantic import BaseModel

from app.api.deps import ContainerDep
from app.api.errors import ErrorResponse
from app.domain.models import Offer, SkippedItem, Vendor, utcnow
from app.domain.webhooks import SECRET_CREDENTIAL, SHOPIFY, WOOCOMMERCE, SeenDeliveries, WebhookPlatform, verify
from app.errors import InvalidInput, NotFound, Unauthorized
from app.sources.base import MappingError, raw_id
from app.sources.shopify import map_shopify_product
from app.sources.woocommerce import map_woocommerce_product
from app.store.sqlite.catalog import SqliteCatalog

router = APIRouter(tags=["webhooks"])
log = logging.getLogger(__name__)


class WebhookResult(BaseModel):
    applied: Literal["updated", "deleted", "ignored"]
    offers: int


WEBHOOK_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        401: "Signature missing or not valid, or the vendor has no `webhook_secret` credential.",
        404: "No such vendor, or the vendor is of another platform.",
        422: "Signed, but the body is not the JSON object the topic needs.",
    }.items()
}

Mapper = Callable[[Vendor, Mapping[str, Any], datetime, list[SkippedItem]], list[Offer]]


def _map_woocommerce(
    vendor: Vendor, product: Mapping[str, Any], fetched_at: datetime, _skipped: list[SkippedItem]
) -> list[Offer]:
    return map_woocommerce_product(vendor, product, fetched_at)


_MAPPERS: dict[WebhookPlatform, Mapper] = {SHOPIFY: map_shopify_product, WOOCOMMERCE: _map_woocommerce}


def _seen(request: Request) -> SeenDeliveries[tuple[str, str, str], WebhookResult]:
    """One record per app, made on first use: it lives exactly as long as the app's state."""
    seen: SeenDeliveries[tuple[str, str, str], WebhookResult] | None = getattr(
        request.app.state, "webhook_deliveries", None
    )
    if seen is None:
        seen = request.app.state.webhook_deliveries = SeenDeliveries()
    return seen


async def _receive(
    platform: WebhookPlatform,
    request: Request,
    store: SqliteCatalog,
    vendor_id: str,
    signature: str | None,
    topic: str | None,
    delivery_id: str | None,
) -> WebhookResult:
    vendor = store.get_vendor(vendor_id)
    if vendor is None or vendor.kind is not platform.kind:
        raise NotFound(f"no {platform.kind} vendor {vendor_id!r}", details={"vendor_id": vendor_id})
    secret = vendor.credentials.get(SECRET_CREDENTIAL)
    if not secret:
        raise Unauthorized(
            "webhooks not configured: the vendor has no webhook_secret credential", details={"vendor_id": vendor_id}
        )
    body = await request.body()
    if not verify(body, secret, signature):
        raise Unauthorized(
            f"the {platform.signature_header} signature is missing or not valid", details={"vendor_id": vendor_id}
        )
    seen = _seen(request)
    key = (platform.kind.value, vendor_id, delivery_id or "")
    if delivery_id and (answer := seen.get(key)) is not None:
        return answer
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("the webhook body is not valid JSON", details={"reason": str(exc)}) from exc
    if not isinstance(payload, dict):
        raise InvalidInput("the webhook body must be a JSON object")

    if topic in platform.delete_topics:
        pid = raw_id(payload.get("id"))
        if pid is None:
            raise InvalidInput("a delete webhook needs the product's id", details={"field": "id"})
        result = WebhookResult(applied="deleted", offers=await store.delete_offers_of(vendor.id, pid))
    elif topic in platform.update_topics:
        result = await _update(platform, store, vendor, payload)
    else:
        log.info("vendor %s: webhook topic %r ignored", vendor_id, topic)
        result = WebhookResult(applied="ignored", offers=0)
    if delivery_id:
        seen.put(key, result)
    return result


async def _update(
    platform: WebhookPlatform, store: SqliteCatalog, vendor: Vendor, payload: Mapping[str, Any]
) -> WebhookResult:
    skipped: list[SkippedItem] = []
    try:
        offers = _MAPPERS[platform](vendor, payload, utcnow(), skipped)
    except MappingError as exc:
        # Answered 200: the vendor would only redeliver the same unusable product. A sync counts such items.
        log.info("vendor %s: webhook product %s not applied: %s", vendor.id, exc.vendor_product_id, exc.reason)
        return WebhookResult(applied="ignored", offers=0)
    await store.upsert_offers(offers)
    if platform.update_lists_all_variants:
        parent = raw_id(payload.get("id"))
        if parent is not None:
            keep = [o.vendor_product_id for o in offers] + [s.vendor_product_id for s in skipped if s.vendor_product_id]
            await store.delete_offers_of(vendor.id, parent, keep=keep)
    return WebhookResult(applied="updated", offers=len(offers))


@router.post("/webhooks/shopify/{vendor_id}", responses=WEBHOOK_ERRORS)
async def shopify_webhook(
    request: Request,
    container: ContainerDep,
    vendor_id: str,
    x_shopify_hmac_sha256: Annotated[str | None, Header(description="base64(HMAC-SHA256(body, secret))")] = None,
    x_shopify_topic: Annotated[str | None, Header(description="products/create|update|delete")] = None,
    x_shopify_webhook_id: Annotated[str | None, Header(description="The delivery's id (replays are no-ops).")] = None,
) -> WebhookResult:
    """A Shopify `products/*` webhook, signed with the vendor's `webhook_secret` credential."""
    return await _receive(
        SHOPIFY,
        request,
        container.store,
        vendor_id,
        x_shopify_hmac_sha256,
        x_shopify_topic,
        x_shopify_webhook_id,
    )


@router.post("/webhooks/woocommerce/{vendor_id}", responses=WEBHOOK_ERRORS)
async def woocommerce_webhook(
    request: Request,
    container: ContainerDep,
    vendor_id: str,
    x_wc_webhook_signature: Annotated[str | None, Header(description="base64(HMAC-SHA256(body, secret))")] = None,
    x_wc_webhook_topic: Annotated[str | None, Header(description="product.created|updated|deleted")] = None,
    x_wc_webhook_delivery_id: Annotated[
        str | None, Header(description="The delivery's id (replays are no-ops).")
    ] = None,
) -> WebhookResult:
    """A WooCommerce `product.*` webhook, signed with the vendor's `webhook_secret` credential."""
    return await _receive(
        WOOCOMMERCE,
        request,
        container.store,
        vendor_id,
        x_wc_webhook_signature,
        x_wc_webhook_topic,
        x_wc_webhook_delivery_id,
    )
