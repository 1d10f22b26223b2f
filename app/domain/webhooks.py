"""Webhook signatures and the platforms' webhook conventions, as pure functions and data.

Shopify and WooCommerce both sign a webhook as base64(HMAC-SHA256(raw body, shared secret)). The signature
covers the exact bytes sent, so it must be checked on the raw body before anything parses (and possibly
re-serialises) it, and compared in constant time so a forger learns nothing from how fast a guess fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

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
    #: The platform's delivery id: a delivery seen again changes nothing (see ``SeenDeliveries``).
    delivery_id: str | None = None


K = TypeVar("K")
V = TypeVar("V")


class SeenDeliveries(Generic[K, V]):
    """The answers given to recent deliveries, so a redelivery gets the same answer and changes nothing.

    Upserts are idempotent by content anyway; this is what keeps a late redelivery of an *older* update from
    rolling a product back, and a replayed delete answering with the count it first reported. Bounded: the
    oldest are forgotten first, which only costs the content-hash idempotency falling back in.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._answers: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._answers.get(key)

    def put(self, key: K, answer: V) -> None:
        self._answers[key] = answer
        self._answers.move_to_end(key)
        while len(self._answers) > self._size:
            self._answers.popitem(last=False)

    def __len__(self) -> int:
        return len(self._answers)
