"""The vendor service's rules with in-memory fakes (tests/fakes.py, and small recorders of the feed, the changelog
and the probe): what is probed, stored, published, requested, dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.catalog.service import CatalogService
from app.domain.models import Offer, Vendor, VendorKind
from app.domain.requests import RequestKind
from app.domain.webhooks import SHOPIFY, WOOCOMMERCE, Removal, WebhookChange, WebhookEffect, WebhookPlatform, sign
from app.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable, Unauthorized
from app.ingest.breaker import BreakerRegistry, BreakerState
from app.ingest.tracker import RequestTracker
from app.sources.registry import SourceRegistry
from app.vendors.service import VendorService, apply_change
from tests.fakes import FakeCatalogStore, FakeRequestQueue, FakeSource

SECRET = "whsec_unit"
AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def offer(vpid: str, parent: str | None = None, vendor_id: str = "shop") -> Offer:
    return Offer(vendor_id, vpid, f"Item {vpid}", Decimal("9.99"), "EUR", parent_id=parent, fetched_at=AT)


@dataclass
class FakeFeed:
    events: list[tuple[str, str]] = field(default_factory=list)

    async def saved(self, vendor: Vendor) -> None:
        self.events.append(("saved", vendor.id))

    async def deleted(self, vendor_id: str) -> None:
        self.events.append(("deleted", vendor_id))


@dataclass
class FakeChangelog:
    published: list[WebhookChange] = field(default_factory=list)
    down: bool = False

    async def publish(self, change: WebhookChange) -> None:
        if self.down:
            raise ServiceUnavailable("broker away", retry_after=5)
        self.published.append(change)


class Probe:
    def __init__(self, error: str | None = None) -> None:
        self.probed: list[Vendor] = []
        self.error = error

    async def __call__(self, vendor: Vendor) -> None:
        self.probed.append(vendor)
        if self.error is not None:
            raise InvalidInput(self.error)


def map_by_hand(
    platform: WebhookPlatform, vendor: Vendor, topic: str | None, payload: Mapping[str, Any], _at: datetime
) -> WebhookChange | None:
    """A stand-in for the platform mappers: ``{"id", "variants": [...]}`` bodies, Shopify's update/delete topics."""
    pid = str(payload["id"])
    if topic == "products/delete":
        return WebhookChange(vendor.id, WebhookEffect.DELETED, removals=(Removal(pid),))
    if topic != "products/update":
        return None
    offers = tuple(offer(str(v), pid, vendor.id) for v in payload.get("variants", []))
    return WebhookChange(
        vendor.id, WebhookEffect.UPDATED, offers, (Removal(pid, tuple(o.vendor_product_id for o in offers)),)
    )


SHOP = Vendor("shop", "Shop", VendorKind.SHOPIFY, "http://shop", "EUR", credentials={"webhook_secret": SECRET})
GENERIC = Vendor("gen", "Gen", VendorKind.GENERIC, "http://gen", "USD", mapping={"items": "data"})


@dataclass
class World:
    store: FakeCatalogStore
    queue: FakeRequestQueue
    feed: FakeFeed
    probe: Probe
    breakers: BreakerRegistry
    sources: SourceRegistry
    built: list[FakeSource]
    service: VendorService
    changelog: FakeChangelog | None = None


async def world(
    *vendors: Vendor, probe: Probe | None = None, queue_full: bool = False, changelog: FakeChangelog | None = None
) -> World:
    store, queue, feed = FakeCatalogStore(), FakeRequestQueue(), FakeFeed()
    for v in vendors:
        await store.add_vendor(v)
    queue.full = queue_full
    probe = probe or Probe()
    breakers = BreakerRegistry(failures=1)
    built: list[FakeSource] = []

    def factory(vendor: Vendor) -> FakeSource:
        built.append(FakeSource(vendor))
        return built[-1]

    sources = SourceRegistry(factory)
    catalog = CatalogService(store, queue, RequestTracker(), breakers=breakers)
    service = VendorService(
        store,
        probe=probe,
        map_webhook=map_by_hand,
        sources=sources,
        breakers=breakers,
        catalog=catalog,
        feed=feed,
        changes=changelog,
    )
    return World(store, queue, feed, probe, breakers, sources, built, service, changelog)


async def settle() -> None:
    """Let the registry's background close of a retired client run."""
    for _ in range(3):
        await asyncio.sleep(0)


# -- lifecycle ---------------------------------------------------------------------------------------------------


async def test_an_added_vendor_is_stored_published_and_its_first_full_sync_requested() -> None:
    w = await world()
    await w.service.add(SHOP)
    assert w.store.get_vendor("shop") == SHOP
    assert w.feed.events == [("saved", "shop")]
    [request] = w.queue.published
    assert (request.kind, request.vendor_id, request.full) == (RequestKind.CATALOG, "shop", True)
    assert w.probe.probed == []  # only a generic mapping is probed


async def test_a_disabled_vendor_is_registered_without_a_sync_and_a_full_queue_leaves_it_to_the_scheduler() -> None:
    w = await world(queue_full=True)
    await w.service.add(SHOP)  # the queue refuses: still registered
    assert w.store.get_vendor("shop") is not None and w.queue.published == []
    w = await world()
    await w.service.add(Vendor("off", "Off", VendorKind.SHOPIFY, "http://off", "EUR", enabled=False))
    assert w.store.get_vendor("off") is not None and w.queue.published == []


async def test_a_generic_vendor_whose_mapping_does_not_fit_is_refused_and_nothing_is_stored_or_published() -> None:
    w = await world(probe=Probe(error="items: not a list"))
    with pytest.raises(InvalidInput):
        await w.service.add(GENERIC)
    assert w.probe.probed == [GENERIC]
    assert w.store.get_vendor("gen") is None and w.feed.events == [] and w.queue.published == []


async def test_a_duplicate_is_a_conflict_without_asking_the_vendor() -> None:
    w = await world(GENERIC)
    with pytest.raises(Conflict):
        await w.service.add(GENERIC)
    assert w.probe.probed == [] and w.feed.events == []


async def test_a_patch_probes_again_only_when_what_the_mapping_reads_changes() -> None:
    w = await world(GENERIC)
    renamed = await w.service.patch("gen", {"name": "Renamed", "currency": None})
    assert renamed.name == "Renamed" and renamed.currency == "USD"  # None means "not given"
    assert w.probe.probed == []
    moved = await w.service.patch("gen", {"base_url": "http://gen2"})
    assert w.probe.probed == [moved] and w.store.get_vendor("gen") == moved
    assert w.feed.events == [("saved", "gen"), ("saved", "gen")]


async def test_a_patch_whose_mapping_does_not_fit_changes_nothing() -> None:
    w = await world(GENERIC)
    w.probe.error = "no title"
    with pytest.raises(InvalidInput):
        await w.service.patch("gen", {"mapping": {"items": "other"}})
    assert w.store.get_vendor("gen") == GENERIC and w.feed.events == []


async def test_only_a_generic_vendor_takes_a_mapping() -> None:
    w = await world(SHOP)
    with pytest.raises(InvalidInput) as refused:
        await w.service.patch("shop", {"mapping": {"items": "data"}})
    assert refused.value.details == {"path": "mapping", "reason": "not a generic vendor"}
    with pytest.raises(NotFound):
        await w.service.patch("nobody", {"name": "x"})


async def test_a_changed_vendor_gets_a_new_client() -> None:
    w = await world(SHOP)
    first = w.sources.get(SHOP)
    await w.service.patch("shop", {"name": "Shop 2"})
    await settle()
    assert isinstance(first, FakeSource) and first.closed  # closed now, not at the next request
    assert w.sources.get(w.service.get("shop")) is not first


async def test_a_deleted_vendor_is_unpublished_and_its_client_and_breaker_are_dropped() -> None:
    w = await world(SHOP)
    source = w.sources.get(SHOP)
    w.breakers.get("shop").record_failure()
    assert w.breakers.get("shop").snapshot().state is BreakerState.OPEN
    await w.service.delete("shop")
    assert w.store.get_vendor("shop") is None and w.feed.events == [("deleted", "shop")]
    assert w.breakers.get("shop").snapshot().state is BreakerState.CLOSED  # a fresh breaker
    await settle()
    assert isinstance(source, FakeSource) and source.closed
    with pytest.raises(NotFound):
        await w.service.delete("shop")


async def test_register_adds_only_the_missing_vendors_quietly() -> None:
    w = await world(SHOP)
    added = await w.service.register([SHOP, GENERIC])
    assert added == [GENERIC] and w.store.get_vendor("gen") == GENERIC
    assert w.probe.probed == [] and w.feed.events == [] and w.queue.published == []


async def test_the_state_shows_sync_status_and_breaker() -> None:
    w = await world(SHOP)
    state = w.service.state(SHOP)
    assert state.vendor == SHOP and state.sync.state == "never" and state.breaker.state is BreakerState.CLOSED


# -- webhooks ----------------------------------------------------------------------------------------------------


def body_of(payload: str) -> tuple[bytes, str]:
    raw = payload.encode()
    return raw, sign(raw, SECRET)


async def receive(
    service: VendorService, payload: str, topic: str = "products/update", delivery: str | None = "d1", **kw: Any
) -> Any:
    raw, signature = body_of(payload)
    values: dict[str, Any] = {"signature": signature, "topic": topic, "delivery_id": delivery, **kw}
    return await service.receive_webhook(SHOPIFY, "shop", raw, **values)


async def test_a_signed_update_is_applied_here_when_there_is_no_changelog() -> None:
    w = await world(SHOP)
    await w.store.upsert_offers([offer("71", "7"), offer("72", "7"), offer("73", "7")])
    outcome = await receive(w.service, '{"id": 7, "variants": [71, 72]}')
    assert (outcome.applied, outcome.offers) == ("updated", 2)
    assert sorted(vpid for _, vpid in w.store.offers) == ["71", "72"]  # 73 is no longer listed: removed


async def test_a_delete_here_answers_how_many_offers_went() -> None:
    w = await world(SHOP)
    await w.store.upsert_offers([offer("71", "7"), offer("72", "7"), offer("8")])
    outcome = await receive(w.service, '{"id": 7}', topic="products/delete")
    assert (outcome.applied, outcome.offers) == ("deleted", 2)
    assert list(w.store.offers) == [("shop", "8")]


async def test_with_a_changelog_the_change_is_published_not_applied_here() -> None:
    w = await world(SHOP, changelog=FakeChangelog())
    assert w.changelog is not None
    outcome = await receive(w.service, '{"id": 7, "variants": [71]}', delivery="d9")
    assert (outcome.applied, outcome.offers) == ("updated", 1)
    assert w.store.offers == {}  # this node applies it from the changelog, like every other node
    [change] = w.changelog.published
    assert change.delivery_id == "d9" and change.offers == (offer("71", "7"),)
    deleted = await receive(w.service, '{"id": 7}', topic="products/delete", delivery="d10")
    assert (deleted.applied, deleted.offers) == ("deleted", None)
    assert w.changelog.published[1].removals == (Removal("7"),)


async def test_a_changelog_that_cannot_take_the_change_fails_the_delivery_so_the_vendor_sends_it_again() -> None:
    w = await world(SHOP, changelog=FakeChangelog(down=True))
    assert w.changelog is not None
    with pytest.raises(ServiceUnavailable):
        await receive(w.service, '{"id": 7, "variants": [71]}')
    w.changelog.down = False
    outcome = await receive(w.service, '{"id": 7, "variants": [71]}')  # the same delivery, now taken
    assert outcome.applied == "updated" and len(w.changelog.published) == 1


async def test_a_replayed_delivery_gets_the_first_answer_and_changes_nothing() -> None:
    w = await world(SHOP, changelog=FakeChangelog())
    assert w.changelog is not None
    first = await receive(w.service, '{"id": 7, "variants": [71]}', delivery="d1")
    again = await receive(w.service, '{"id": 7, "variants": [71, 72, 73]}', delivery="d1")
    assert again == first and len(w.changelog.published) == 1
    await receive(w.service, '{"id": 7, "variants": [71]}', delivery=None)  # no id: nothing to recognise it by
    await receive(w.service, '{"id": 7, "variants": [71]}', delivery=None)
    assert len(w.changelog.published) == 3


async def test_nothing_unsigned_is_parsed_stored_or_published() -> None:
    w = await world(SHOP, Vendor("nosecret", "N", VendorKind.SHOPIFY, "http://n", "EUR"), changelog=FakeChangelog())
    assert w.changelog is not None
    raw, _ = body_of('{"id": 7, "variants": [71]}')
    with pytest.raises(Unauthorized):
        await w.service.receive_webhook(
            SHOPIFY, "shop", raw, signature="bm9wZQ==", topic="products/update", delivery_id="x"
        )
    with pytest.raises(Unauthorized):
        await w.service.receive_webhook(SHOPIFY, "shop", raw, signature=None, topic="products/update", delivery_id="x")
    with pytest.raises(Unauthorized, match="webhook_secret"):
        await w.service.receive_webhook(
            SHOPIFY, "nosecret", raw, signature=sign(raw, SECRET), topic="products/update", delivery_id="x"
        )
    with pytest.raises(NotFound):  # a Shopify vendor's webhook on the WooCommerce route
        await w.service.receive_webhook(
            WOOCOMMERCE, "shop", raw, signature=sign(raw, SECRET), topic="product.updated", delivery_id="x"
        )
    assert w.changelog.published == [] and w.store.offers == {}


@pytest.mark.parametrize("payload", ["{not json", "[1, 2]"])
async def test_a_signed_body_that_is_not_a_json_object_is_invalid_input(payload: str) -> None:
    w = await world(SHOP)
    with pytest.raises(InvalidInput):
        await receive(w.service, payload)


async def test_a_topic_the_mapper_does_not_act_on_is_ignored() -> None:
    w = await world(SHOP, changelog=FakeChangelog())
    assert w.changelog is not None
    outcome = await receive(w.service, '{"id": 7}', topic="products/teleport")
    assert (outcome.applied, outcome.offers) == ("ignored", 0)
    assert w.changelog.published == []


async def test_apply_change_upserts_then_removes_what_the_update_no_longer_lists() -> None:
    store = FakeCatalogStore()
    await store.add_vendor(SHOP)
    await store.upsert_offers([offer("71", "7"), offer("72", "7"), offer("9")])
    change = WebhookChange(
        "shop", WebhookEffect.UPDATED, (offer("71", "7"), offer("74", "7")), (Removal("7", ("71", "74")),)
    )
    assert await apply_change(store, change) == 1
    assert sorted(vpid for _, vpid in store.offers) == ["71", "74", "9"]
