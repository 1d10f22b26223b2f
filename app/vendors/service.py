"""The vendor lifecycle: register, change and remove vendors, and apply what their webhooks say.

Every way a vendor changes goes through here (the admin API, the CLI, the demo start-up), so the rules live once:
a generic vendor's mapping is tried against its live first page before anything is stored; a saved or deleted
vendor is published to the vendor feed (the kafka runtime's ``catalog_vendors``: the Flink job and the other nodes
read it); a removed vendor's source (its HTTP client) and circuit breaker are dropped, whichever node removed it.

A webhook is checked (vendor and kind, then the signature over the raw body, only then parsed), mapped by the
platform's own mapper (``app.sources.webhooks``) into a ``WebhookChange``, and then:

- embedded runtime (no changelog): applied to this node's store before the answer, as a sync would apply it;
- kafka runtime: published to ``product_updates`` (keyed by vendor id like every update) and answered once the
  broker has it. Every node, this one included, applies it from the changelog with ``apply_change``, so all nodes
  converge; what this node answers is what was published, not what is stored yet (see ``WebhookOutcome``).

A delivery id seen again gets the first answer and changes nothing, here and (kafka runtime) in every applier.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx
import orjson

from app.catalog.service import CatalogService
from app.domain.models import Vendor, VendorKind, utcnow
from app.domain.queries import VendorSyncStatus
from app.domain.webhooks import (
    SECRET_CREDENTIAL,
    WebhookChange,
    WebhookEffect,
    WebhookPlatform,
    verify,
)
from app.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable, Unauthorized, VendorAddressRefused
from app.ingest.breaker import BreakerRegistry, BreakerSnapshot
from app.sources.registry import SourceRegistry
from app.sources.safety import OutboundPolicy
from app.store.port import CatalogStore

log = logging.getLogger(__name__)

#: Tries a generic vendor's mapping against its live first page; raises ``InvalidInput`` when it does not fit.
Probe = Callable[[Vendor], Awaitable[None]]
#: A platform's webhook body as a change (``app.sources.webhooks.map_webhook``); None: nothing to change.
WebhookMapper = Callable[[WebhookPlatform, Vendor, str | None, Mapping[str, Any], datetime], WebhookChange | None]

#: How long registering a vendor waits for its host's name to resolve (the address check at connect time stays).
RESOLVE_TIMEOUT_S = 2.0
#: Changing one of these may make a generic mapping stop fitting, so the probe runs again.
PROBED_FIELDS = frozenset({"mapping", "base_url", "credentials"})


class VendorFeed(Protocol):
    """Where vendor definitions go for the other processes (Kafka's ``catalog_vendors``; none when embedded)."""

    async def saved(self, vendor: Vendor) -> None: ...
    async def deleted(self, vendor_id: str) -> None: ...


class ChangePublisher(Protocol):
    """Carries a webhook's change to every node (Kafka's ``product_updates``); raises ``ServiceUnavailable``."""

    async def publish(self, change: WebhookChange) -> None: ...


@dataclass(frozen=True, slots=True)
class VendorState:
    vendor: Vendor
    sync: VendorSyncStatus
    breaker: BreakerSnapshot


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """The answer to a webhook.

    ``offers``: the offers the body mapped to (an update), or the offers a delete removed from this node's store
    (embedded). A change published to the changelog is answered before any node applied it, so a delete's
    ``offers`` is then None.
    """

    applied: str  # "updated" | "deleted" | "ignored"
    offers: int | None


IGNORED = WebhookOutcome("ignored", 0)


def _outcome(answer: Mapping[str, object] | None) -> WebhookOutcome:
    """The first answer to a delivery; one only applied here (received by another node) answers as a replay."""
    if answer is None:
        return WebhookOutcome("ignored", 0)
    offers = answer.get("offers")
    return WebhookOutcome(str(answer.get("applied")), offers if isinstance(offers, int) else None)


async def apply_change(store: CatalogStore, change: WebhookChange) -> int:
    """A webhook's change into a store, the one way both runtimes apply it; returns how many offers went."""
    if change.effect is WebhookEffect.UPDATED:
        await store.upsert_offers(change.offers)
    removed = 0
    for removal in change.removals:
        removed += await store.delete_offers_of(change.vendor_id, removal.id, keep=removal.keep)
    return removed


class VendorService:
    def __init__(
        self,
        store: CatalogStore,
        *,
        probe: Probe,
        map_webhook: WebhookMapper,
        sources: SourceRegistry | None = None,
        breakers: BreakerRegistry | None = None,
        catalog: CatalogService | None = None,
        feed: VendorFeed | None = None,
        changes: ChangePublisher | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        """``catalog``: requests a new vendor's first sync (none from the CLI: a running API's scheduler does it).
        ``changes``: the kafka runtime's changelog; without it webhooks are applied to ``store`` directly."""
        self._store = store
        self._probe = probe
        self._map_webhook = map_webhook
        self._sources = sources
        self._breakers = breakers if breakers is not None else BreakerRegistry()
        self._catalog = catalog
        self._feed = feed
        self._changes = changes
        self._outbound = outbound or OutboundPolicy()

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, vendor_id: str) -> Vendor:
        vendor = self._store.get_vendor(vendor_id)
        if vendor is None:
            raise NotFound(f"vendor {vendor_id!r} does not exist", details={"vendor_id": vendor_id})
        return vendor

    def list_vendors(self) -> list[Vendor]:
        return self._store.list_vendors()

    def state(self, vendor: Vendor) -> VendorState:
        """The vendor with its sync status and its circuit breaker, as an admin wants to see it."""
        return VendorState(vendor, self._store.vendor_status(vendor.id), self._breakers.get(vendor.id).snapshot())

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def add(self, vendor: Vendor) -> Vendor:
        """Register a vendor and request its first full sync (kept for the scheduler when the queue is full)."""
        if self._store.get_vendor(vendor.id) is None:  # a duplicate is a 409 without asking the vendor
            await self.check_base_url(vendor.base_url)
            await self._check_mapping(vendor)
        await self._store.add_vendor(vendor)
        if self._feed is not None:
            await self._feed.saved(vendor)
        if vendor.enabled and self._catalog is not None:
            try:
                await self._catalog.request_sync(vendor.id, full=True)
            except ServiceUnavailable:
                # The vendor is registered either way; with the queue full, its first sync is left to the scheduler.
                log.info("vendor %s registered; its first sync waits for the scheduler (queue full)", vendor.id)
        return vendor

    async def register(self, vendors: Iterable[Vendor]) -> list[Vendor]:
        """Add those not registered yet, without probe, sync request or publishing (the demo vendors at start-up:
        the scheduler syncs them, and the vendor feed publishes what ``catalog_vendors`` has no record of)."""
        added: list[Vendor] = []
        for vendor in vendors:
            try:
                await self._store.add_vendor(vendor)
            except Conflict:
                continue
            added.append(vendor)
        return added

    async def patch(self, vendor_id: str, changes: Mapping[str, Any]) -> Vendor:
        """Apply the given fields (None values are left out); a changed generic mapping is probed again."""
        vendor = self.get(vendor_id)
        fields = {k: v for k, v in changes.items() if v is not None}
        if "mapping" in fields and vendor.kind is not VendorKind.GENERIC:
            raise InvalidInput(
                f"a {vendor.kind.value} vendor takes no mapping (only kind generic does)",
                details={"path": "mapping", "reason": "not a generic vendor"},
            )
        updated = dataclasses.replace(vendor, **fields)
        if "base_url" in fields:
            await self.check_base_url(updated.base_url)
        if PROBED_FIELDS & set(fields):
            await self._check_mapping(updated)
        await self._store.update_vendor(updated)
        if self._feed is not None:
            await self._feed.saved(updated)
        if updated != vendor:
            if self._sources is not None:
                self._sources.drop(vendor_id)  # the next request builds a client for the new definition
            if self._catalog is not None:
                self._catalog.tracker.forget_vendor(vendor_id)  # the new definition may have those products
        return updated

    async def delete(self, vendor_id: str) -> None:
        """Remove the vendor and its offers; products it shared with others keep their other offers."""
        await self._store.delete_vendor(vendor_id)
        if self._feed is not None:
            await self._feed.deleted(vendor_id)
        self.forget(vendor_id)

    def forget(self, vendor_id: str) -> None:
        """What a removed vendor leaves behind in this process: its source (HTTP client), breaker and remembered
        404s. Also called when a node applies another node's deletion from the vendor feed."""
        if self._sources is not None:
            self._sources.drop(vendor_id)
        self._breakers.drop(vendor_id)
        if self._catalog is not None:
            self._catalog.tracker.forget_vendor(vendor_id)

    async def check_base_url(self, url: str) -> None:
        """The outbound policy's verdict on a vendor URL before it is stored: 422 with the reason. A name is
        resolved too when it resolves in time; either way every connection checks the address it goes to."""
        try:
            parsed = self._outbound.check_url(url)
            with contextlib.suppress(httpx.ConnectError, TimeoutError):
                port = parsed.port or (443 if parsed.scheme == "https" else 80)
                await asyncio.wait_for(self._outbound.resolve(parsed.host, port), RESOLVE_TIMEOUT_S)
        except VendorAddressRefused as exc:
            reason = str(exc.details.get("reason") or exc.message)
            raise InvalidInput(
                f"base_url refused: {exc.message}", details={"path": "base_url", "reason": reason}
            ) from exc

    async def _check_mapping(self, vendor: Vendor) -> None:
        """A generic vendor's mapping against its live first page; a misfit is a 422 and nothing is stored."""
        if vendor.kind is VendorKind.GENERIC:
            await self._probe(vendor)

    # -- webhooks ------------------------------------------------------------------------------------------

    async def receive_webhook(
        self,
        platform: WebhookPlatform,
        vendor_id: str,
        body: bytes,
        *,
        signature: str | None,
        topic: str | None,
        delivery_id: str | None,
    ) -> WebhookOutcome:
        """Nothing a caller without the vendor's secret sends is ever parsed, stored or published."""
        vendor = self._store.get_vendor(vendor_id)
        if vendor is None or vendor.kind is not platform.kind:
            raise NotFound(f"no {platform.kind} vendor {vendor_id!r}", details={"vendor_id": vendor_id})
        secret = vendor.credentials.get(SECRET_CREDENTIAL)
        if not secret:
            raise Unauthorized(
                "webhooks not configured: the vendor has no webhook_secret credential", details={"vendor_id": vendor_id}
            )
        if not verify(body, secret, signature):
            raise Unauthorized(
                f"the {platform.signature_header} signature is missing or not valid", details={"vendor_id": vendor_id}
            )
        if delivery_id and (seen := self._store.delivery(vendor_id, delivery_id)) is not None:
            return _outcome(seen.answer)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput("the webhook body is not valid JSON", details={"reason": str(exc)}) from exc
        if not isinstance(payload, dict):
            raise InvalidInput("the webhook body must be a JSON object")
        change = self._map_webhook(platform, vendor, topic, payload, utcnow())
        outcome = IGNORED if change is None else await self._apply(dataclasses.replace(change, delivery_id=delivery_id))
        if delivery_id:
            # Embedded: applied here. Kafka: published; this node's applier marks it applied when it comes back.
            answer: dict[str, object] = {"applied": outcome.applied, "offers": outcome.offers}
            await self._store.record_delivery(vendor_id, delivery_id, answer=answer, applied=self._changes is None)
        return outcome

    async def _apply(self, change: WebhookChange) -> WebhookOutcome:
        updated = change.effect is WebhookEffect.UPDATED
        if self._changes is not None:
            await self._changes.publish(change)
            return WebhookOutcome(change.effect.value, len(change.offers) if updated else None)
        removed = await apply_change(self._store, change)
        return WebhookOutcome(change.effect.value, len(change.offers) if updated else removed)
