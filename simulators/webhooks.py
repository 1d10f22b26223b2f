"""Outgoing webhooks as Shopify and WooCommerce send them: the headers, the signature, the delivery.

Signed here independently of the service's own verifier (``app.domain.webhooks``): the simulator plays the
vendor, and a test that signed and verified with the same code could not notice both being wrong the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field

SHOPIFY_TOPICS = frozenset({"products/create", "products/update", "products/delete"})
WOOCOMMERCE_TOPICS = frozenset({"product.created", "product.updated", "product.deleted", "product.restored"})
SHOPIFY_API_VERSION = "2024-01"


class WebhookOrder(BaseModel):
    """Body of ``POST /_sim/webhook``: send ``topic`` about the item with public id ``item`` to ``url``."""

    url: str
    secret: str
    topic: str
    item: int
    # Reuse a delivery id to replay a delivery, as the platforms do when an answer was not 2xx.
    delivery_id: str = Field(default_factory=lambda: str(uuid.uuid4()))


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_headers(topic: str, body: bytes, secret: str, delivery_id: str, shop_domain: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign(body, secret),
        "X-Shopify-Shop-Domain": shop_domain,
        "X-Shopify-API-Version": SHOPIFY_API_VERSION,
        "X-Shopify-Webhook-Id": delivery_id,
        "X-Shopify-Event-Id": str(uuid.uuid5(uuid.NAMESPACE_URL, delivery_id)),
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
    }


def woocommerce_headers(
    topic: str, body: bytes, secret: str, delivery_id: str, site: str, webhook_id: int = 1
) -> dict[str, str]:
    resource, _, event = topic.partition(".")
    return {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/8.5.2 Hookshot (WordPress/6.4.3)",
        "X-WC-Webhook-Source": f"{site.rstrip('/')}/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": sign(body, secret),
        "X-WC-Webhook-ID": str(webhook_id),
        "X-WC-Webhook-Delivery-ID": delivery_id,
    }


async def deliver(url: str, body: bytes, headers: dict[str, str], *, timeout_s: float = 10.0) -> dict[str, Any]:
    """POST the delivery and report what the receiver answered (platforms log exactly this)."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.post(url, content=body, headers=headers)
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text
    return {"status": response.status_code, "body": answer}
