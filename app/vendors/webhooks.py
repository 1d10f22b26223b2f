"""Signed vendor webhooks: a product changed or went away at the vendor, so its offers change here at once.

The vendor service does the work (``VendorService.receive_webhook``): the vendor (and its kind) first, then the
signature over the raw body, and only then is the body parsed. Nothing a caller without the vendor's secret sends
is ever parsed, stored or published.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, Field

from app.api.deps import VendorsDep
from app.api.errors import ErrorResponse
from app.domain.webhooks import SHOPIFY, WOOCOMMERCE
from app.vendors.service import WebhookOutcome

router = APIRouter(tags=["webhooks"])


class WebhookResult(BaseModel):
    applied: Literal["updated", "deleted", "ignored"]
    offers: int | None = Field(
        description="Offers the body mapped to (an update) or removed (a delete). With `CATALOG_RUNTIME=kafka` "
        "the change is answered once published to the changelog, before any node applied it: a delete answers "
        "null then."
    )

    @classmethod
    def of(cls, outcome: WebhookOutcome) -> WebhookResult:
        return cls.model_validate({"applied": outcome.applied, "offers": outcome.offers})


WEBHOOK_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        401: "Signature missing or not valid, or the vendor has no `webhook_secret` credential.",
        404: "No such vendor, or the vendor is of another platform.",
        413: "The body is larger than `CATALOG_MAX_BODY_BYTES` (refused before it is read).",
        422: "Signed, but the body is not the JSON object the topic needs.",
        503: "The changelog cannot take the change now (`CATALOG_RUNTIME=kafka`, broker away): deliver it again.",
    }.items()
}


@router.post("/webhooks/shopify/{vendor_id}", operation_id="receiveShopifyWebhook", responses=WEBHOOK_ERRORS)
async def shopify_webhook(
    request: Request,
    vendors: VendorsDep,
    vendor_id: str,
    x_shopify_hmac_sha256: Annotated[str | None, Header(description="base64(HMAC-SHA256(body, secret))")] = None,
    x_shopify_topic: Annotated[str | None, Header(description="products/create|update|delete")] = None,
    x_shopify_webhook_id: Annotated[str | None, Header(description="The delivery's id (replays are no-ops).")] = None,
) -> WebhookResult:
    """A Shopify `products/*` webhook, signed with the vendor's `webhook_secret` credential."""
    outcome = await vendors.receive_webhook(
        SHOPIFY,
        vendor_id,
        await request.body(),
        signature=x_shopify_hmac_sha256,
        topic=x_shopify_topic,
        delivery_id=x_shopify_webhook_id,
    )
    return WebhookResult.of(outcome)


@router.post("/webhooks/woocommerce/{vendor_id}", operation_id="receiveWooCommerceWebhook", responses=WEBHOOK_ERRORS)
async def woocommerce_webhook(
    request: Request,
    vendors: VendorsDep,
    vendor_id: str,
    x_wc_webhook_signature: Annotated[str | None, Header(description="base64(HMAC-SHA256(body, secret))")] = None,
    x_wc_webhook_topic: Annotated[str | None, Header(description="product.created|updated|deleted")] = None,
    x_wc_webhook_delivery_id: Annotated[
        str | None, Header(description="The delivery's id (replays are no-ops).")
    ] = None,
) -> WebhookResult:
    """A WooCommerce `product.*` webhook, signed with the vendor's `webhook_secret` credential."""
    outcome = await vendors.receive_webhook(
        WOOCOMMERCE,
        vendor_id,
        await request.body(),
        signature=x_wc_webhook_signature,
        topic=x_wc_webhook_topic,
        delivery_id=x_wc_webhook_delivery_id,
    )
    return WebhookResult.of(outcome)
