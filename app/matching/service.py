"""People's control over unification: split an offer out of its product, pin two offers together, or clear both.

An override is a record in the store (``match_overrides``, replicated to PostgreSQL like any table), not a patch of
products, so it outlives re-syncs: every re-clustering of the offers reads it again. In the kafka runtime the node
that takes the call does not write its own store: it publishes the decision to ``product_updates`` and every node,
itself included, records it from the changelog, exactly like a webhook's change (``app.vendors.service``).
"""

from __future__ import annotations

from typing import Protocol

from app.domain.matching import OverrideChange
from app.errors import Conflict, NotFound
from app.store.port import CatalogStore


class OverridePublisher(Protocol):
    """Carries a decision to every node (Kafka's ``product_updates``); raises ``ServiceUnavailable``."""

    async def publish_override(self, change: OverrideChange) -> None: ...


class MatchingService:
    def __init__(self, store: CatalogStore, publisher: OverridePublisher | None = None) -> None:
        self.store = store
        self.publisher = publisher

    async def override(self, change: OverrideChange) -> str | None:
        """Record the decision (or publish it); returns the first offer's product when applied here."""
        named = [change.offer] if change.other is None else [change.offer, change.other]
        if change.other == change.offer:
            raise Conflict("an offer cannot be pinned to itself")
        for vendor_id, vpid in named:
            if self.store.find_offer(vendor_id, vpid) is None:
                raise NotFound(
                    f"no offer {vpid!r} of vendor {vendor_id!r}",
                    details={"vendor_id": vendor_id, "vendor_product_id": vpid},
                )
        if self.publisher is not None:
            await self.publisher.publish_override(change)
            return None
        await self.store.apply_override(change)
        ref = self.store.find_offer(*change.offer)
        return ref.product_id if ref is not None else None
