"""A platform's product webhook as a change of the vendor's offers: the platform half of receiving a webhook.

The body of a create/update webhook is the platform's own product object, so it is mapped by the very function a
sync maps it with; which topic means what comes from ``app.domain.webhooks``. The vendor service checks the
signature first and applies (or publishes) the change this returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from app.domain.models import Offer, SkippedItem, Vendor, VendorKind
from app.domain.webhooks import Removal, WebhookChange, WebhookEffect, WebhookPlatform
from app.errors import InvalidInput
from app.sources.base import MappingError, raw_id
from app.sources.shopify import map_shopify_product
from app.sources.woocommerce import map_woocommerce_product

log = logging.getLogger(__name__)

Mapper = Callable[[Vendor, Mapping[str, Any], datetime, list[SkippedItem]], list[Offer]]


def _map_woocommerce(
    vendor: Vendor, product: Mapping[str, Any], fetched_at: datetime, _skipped: list[SkippedItem]
) -> list[Offer]:
    return map_woocommerce_product(vendor, product, fetched_at)


MAPPERS: dict[VendorKind, Mapper] = {VendorKind.SHOPIFY: map_shopify_product, VendorKind.WOOCOMMERCE: _map_woocommerce}


def map_webhook(
    platform: WebhookPlatform, vendor: Vendor, topic: str | None, payload: Mapping[str, Any], received_at: datetime
) -> WebhookChange | None:
    """The change a webhook asks for; None when it changes nothing.

    Nothing changes for a topic we do not act on, or for a product a sync would skip too (a Shopify draft): that
    is answered 200, because the vendor would only redeliver the same unusable product. A delete without the
    product's id is ``InvalidInput``.
    """
    if topic in platform.delete_topics:
        pid = raw_id(payload.get("id"))
        if pid is None:
            raise InvalidInput("a delete webhook needs the product's id", details={"field": "id"})
        return WebhookChange(vendor.id, WebhookEffect.DELETED, removals=(Removal(pid),))
    if topic not in platform.update_topics:
        log.info("vendor %s: webhook topic %r ignored", vendor.id, topic)
        return None
    skipped: list[SkippedItem] = []
    try:
        offers = MAPPERS[platform.kind](vendor, payload, received_at, skipped)
    except MappingError as exc:
        log.info("vendor %s: webhook product %s not applied: %s", vendor.id, exc.vendor_product_id, exc.reason)
        return None
    removals: tuple[Removal, ...] = ()
    if platform.update_lists_all_variants:
        parent = raw_id(payload.get("id"))
        if parent is not None:
            keep = [o.vendor_product_id for o in offers] + [s.vendor_product_id for s in skipped if s.vendor_product_id]
            removals = (Removal(parent, tuple(keep)),)
    return WebhookChange(vendor.id, WebhookEffect.UPDATED, offers=tuple(offers), removals=removals)
