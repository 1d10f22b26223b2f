"""Webhook signatures and the platforms' webhook conventions, as pure functions and data.

Shopify and WooCommerce both sign a webhook as base64(HMAC-SHA256(raw body, shared secret)). The signature
covers the exact bytes sent, so it must be checked on the raw body before anything parses (and possibly
re-serialises) it, and compared in constant time so a forger learns nothing from how fast a guess fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from app.domain.models import Offer, VendorKind

SECRET_CREDENTIAL = "webhook_secret"


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode("ascii")


def verify(body: bytes, secret: str, signature: str | None) -> bool:
    """False for a missing signature or secret too: an unsigned webhook is never accepted."""
    if not secret or not signature:
        return False
    return hmac.compare_digest(sign(body, secret).encode(), signature.strip().encode())


@dataclass(frozen=True, slots=True)
class WebhookPlatform:
    """Where a platform puts the signature, topic and delivery id, and which topics mean what."""

    kind: VendorKind
    signature_header: str
    topic_header: str
    delivery_header: str
    update_topics: frozenset[str]
    delete_topics: frozenset[str]
    # Shopify sends the whole product with all its variants, so variants it no longer lists were removed;
    # a WooCommerce product's variations live elsewhere and must not be touched by an update of the parent.
    update_lists_all_variants: bool


SHOPIFY = WebhookPlatform(
    kind=VendorKind.SHOPIFY,
    signature_header="X-Shopify-Hmac-Sha256",
    topic_header="X-Shopify-Topic",
    delivery_header="X-Shopify-Webhook-Id",
    update_topics=frozenset({"products/create", "products/update"}),
    delete_topics=frozenset({"products/delete"}),
    update_lists_all_variants=True,
)

WOOCOMMERCE = WebhookPlatform(
    kind=VendorKind.WOOCOMMERCE,
    signature_header="X-WC-Webhook-Signature",
    topic_header="X-WC-Webhook-Topic",
    delivery_header="X-WC-Webhook-Delivery-ID",
    update_topics=frozenset({"product.created", "product.updated", "product.restored"}),
    delete_topics=frozenset({"product.deleted"}),
    update_lists_all_variants=False,
)


class WebhookEffect(StrEnum):
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Removal:
    """The vendor's offer ``id`` goes, with every variant whose parent it is, except the ids in ``keep``.

    A vendor deletes a product, not its variants one by one, so one id reaches both; ``keep`` spares the variants
    a product update still lists.
    """

    id: str
    keep: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WebhookChange:
    """What one webhook changes in a vendor's offers: its offers upserted first, then the removals.

    A plain value, so the same change is applied directly by the node that received it (embedded runtime) or
    travels the changelog to every node (kafka runtime) and is applied there by the same function.
    """

    vendor_id: str
    effect: WebhookEffect
    offers: tuple[Offer, ...] = ()
    removals: tuple[Removal, ...] = ()
    #: The platform's delivery id: a delivery seen again changes nothing (see ``Delivery``).
    delivery_id: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a node knows of a webhook delivery id: the answer it gave (if it received it) and whether the change
    reached its store. Kept durably (SQLite ``webhook_deliveries``), so a redelivery after a restart, or to another
    node, gets the first answer and changes nothing."""

    answer: dict[str, object] | None
    applied: bool
