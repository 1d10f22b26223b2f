"""The embedded workers (``EmbeddedWorkers.handle``) and the scheduler's due rules, with in-memory fakes.

The full path through real HTTP and SQLite is in tests/integration (test_api, test_resilience, test_scheduler);
here each rule is driven directly: what a request's outcome does to the tracker, the store and the breaker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from app.catalog.service import CatalogService, Served
from app.domain.models import Availability, Vendor, utcnow
from app.domain.requests import FetchRequest, RequestKind, RequestState, RequestStatus
from app.errors import VendorBadResponse, VendorTimeout
from app.ingest.breaker import BreakerRegistry, BreakerState, CircuitOpen
from app.ingest.port import RequestQueue
from app.ingest.scheduler import RefreshScheduler
from app.ingest.tracker import RequestTracker
from app.ingest.workers import EmbeddedWorkers
from app.sources.port import VendorSource
from app.sources.registry import SourceRegistry
from app.store.port import CatalogStore
from tests.fakes import FakeCatalogStore, FakeRequestQueue, FakeSource, offer, vendor

GUARD_S = 10  # only reached when a rule is broken and a request never finishes


class Clock:
    """The breakers' clock, moved by the tests (a breaker's cool-down is all that reads it)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    store: FakeCatalogStore
    tracker: RequestTracker
    breakers: BreakerRegistry
    sources: dict[str, FakeSource]
    workers: EmbeddedWorkers
    clock: Clock

    async def run(self, request: FetchRequest) -> RequestState:
        """Submit as the service would, handle as a worker would; the request's final state."""
        state, created = self.tracker.submit(request)
        assert created
        async with asyncio.timeout(GUARD_S):
            await self.workers.handle(request)
        return state


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock = Clock()
    store = FakeCatalogStore()
    tracker = RequestTracker()
    breakers = BreakerRegistry(failures=2, open_s=60, clock=clock)
    long_ago = utcnow() - timedelta(days=2)
    catalog = [offer("v", str(i), vendor_updated_at=long_ago) for i in range(1, 6)]
    catalog += [offer("v", "10a", parent_id="10"), offer("v", "10b", parent_id="10", price=Decimal("12.50"))]
    sources = {
        "v": FakeSource(vendor("v"), catalog, products={"empty": ()}),
        "w": FakeSource(vendor("w"), [offer("w", "1")]),
    }
    for source in sources.values():
        await store.add_vendor(source.vendor)

    def build(v: Vendor) -> VendorSource:
        built: VendorSource = sources[v.id]  # mypy checks here that the fake satisfies the port
        return built

    store_port: CatalogStore = store
    workers = EmbeddedWorkers(
        store_port, SourceRegistry(build), tracker, page_attempts=2, page_retry_pause_s=0, breakers=breakers
    )
    yield World(store, tracker, breakers, sources, workers, clock)


def product_request(vpid: str, vendor_id: str = "v") -> FetchRequest:
    return FetchRequest(RequestKind.PRODUCT, vendor_id, vpid)


def sync_request(vendor_id: str = "v", *, full: bool = False) -> FetchRequest:
    return FetchRequest(RequestKind.CATALOG, vendor_id, full=full)


# -- product requests -------------------------------------------------------------------------------------------


async def test_a_found_product_is_stored_and_completes_its_request(world: World) -> None:
    state = await world.run(product_request("3"))
    ref = world.store.find_offer("v", "3")
    assert ref is not None
    assert (state.status, state.product_id, state.error) == (RequestStatus.DONE, ref.product_id, None)
    assert list(world.store.offers) == [("v", "3")]
    assert world.breakers.get("v").state is BreakerState.CLOSED


async def test_a_parent_id_stores_every_variant_and_answers_with_the_first(world: World) -> None:
    state = await world.run(product_request("10"))
    assert set(world.store.offers) == {("v", "10a"), ("v", "10b")}
    assert state.status is RequestStatus.DONE
    assert state.product_id == world.store.product_of(("v", "10a"))


@pytest.mark.parametrize(
    ("vpid", "error_code", "failures_after"),
    # A 404 is neutral (any client can cause one); an item the vendor sent but that cannot be used is an answer.
    [("missing", "vendor_item_not_found", 1), ("empty", "vendor_item_unusable", 0)],
)
async def test_a_product_the_vendor_does_not_have_is_not_found_and_not_a_vendor_failure(
    world: World, vpid: str, error_code: str, failures_after: int
) -> None:
    breaker = world.breakers.get("v")
    breaker.record_failure()  # one short of opening: the vendor's answer must not open it
    state = await world.run(product_request(vpid))
    assert (state.status, state.error_code) == (RequestStatus.NOT_FOUND, error_code)
    assert world.store.offers == {}
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().consecutive_failures == failures_after


async def test_vendor_failures_fail_the_request_and_open_the_breaker(world: World) -> None:
    source = world.sources["v"]
    source.fail_products = VendorTimeout("the vendor took too long")
    for vpid in ("1", "2"):
        state = await world.run(product_request(vpid))
        assert (state.status, state.error_code) == (RequestStatus.FAILED, "vendor_timeout")
        assert state.error == "the vendor took too long"
    assert world.breakers.get("v").state is BreakerState.OPEN

    # Open: the next request is refused without calling the vendor, and other vendors are unaffected.
    refused = await world.run(product_request("3"))
    assert (refused.status, refused.error_code) == (RequestStatus.FAILED, CircuitOpen.code)
    assert [c[1] for c in source.calls] == ["1", "2"]
    assert (await world.run(product_request("1", "w"))).status is RequestStatus.DONE


async def test_an_unexpected_error_fails_the_request_as_internal_and_propagates(world: World) -> None:
    source = world.sources["v"]
    source.fail_products = VendorTimeout("slow")
    for vpid in ("1", "2"):
        await world.run(product_request(vpid))
    breaker = world.breakers.get("v")
    world.clock.now += timedelta(seconds=61)  # cooled down: the next call is the probe

    source.fail_products = RuntimeError("a bug")
    state, _ = world.tracker.submit(product_request("3"))
    with pytest.raises(RuntimeError):
        await world.workers.handle(state.request)
    assert (state.status, state.error_code, state.error) == (RequestStatus.FAILED, "internal_error", "a bug")
    # Not the vendor's fault: no verdict, so the probe slot is free for the next call instead of blocking it.
    assert breaker.state is BreakerState.HALF_OPEN and not breaker.blocked()


async def test_a_request_for_an_unknown_vendor_fails_without_a_source(world: World) -> None:
    state = await world.run(product_request("1", "gone"))
    assert (state.status, state.error_code) == (RequestStatus.FAILED, "not_found")
    assert all(s.calls == [] for s in world.sources.values())


async def test_a_miss_through_the_queue_and_the_workers_is_served_from_the_vendor(world: World) -> None:
    """The whole embedded miss path in memory: service -> queue -> workers -> source -> store -> tracker."""
    queue = FakeRequestQueue(handler=world.workers.handle)
    queue_port: RequestQueue = queue
    service = CatalogService(world.store, queue_port, world.tracker, breakers=world.breakers)
    async with asyncio.timeout(GUARD_S):
        served = await service.vendor_product("v", "10b", wait_ms=GUARD_S * 1000)
        await queue.drain()
    assert isinstance(served, Served) and not served.stale
    doc = orjson.loads(served.product.doc)
    assert {o["vendor_product_id"] for o in doc["offers"]} == {"10b"}
    assert [c[:2] for c in world.sources["v"].calls] == [("product", "10b")]
    # Now local: the next read is served without another vendor call.
    assert isinstance(await service.vendor_product("v", "10b", wait_ms=0), Served)
    assert len(queue.published) == 1


# -- catalog requests -------------------------------------------------------------------------------------------


async def test_a_catalog_request_runs_a_full_sync_first_then_incremental_ones(world: World) -> None:
    source = world.sources["v"]
    state = await world.run(sync_request())
    assert (state.status, state.error) == (RequestStatus.DONE, None)
    assert len(world.store.offers) == 7
    first = world.store.vendor_status("v")
    # Never synced: read whole even though an incremental one was asked for.
    assert (first.state, first.syncs_ok, first.offers) == ("ok", 1, 7)
    assert first.last_full_sync_at is not None and first.progress.items_seen == 7
    assert [(c[1], c[2]) for c in source.calls] == [(None, None), ("2", None), ("4", None), ("6", None)]

    # A change at the vendor: the next sync asks for changes since the last success and reads only those.
    source.catalog[0] = offer("v", "1", price=Decimal("1.00"), vendor_updated_at=utcnow())
    source.calls.clear()
    assert (await world.run(sync_request())).status is RequestStatus.DONE
    later = world.store.vendor_status("v")
    assert later.last_full_sync_at == first.last_full_sync_at and later.syncs_ok == 2
    assert later.progress.items_seen == 1
    ((kind, cursor, since),) = source.calls
    assert (kind, cursor) == ("page", None)
    assert since is not None and first.last_success_at is not None and since < first.last_success_at
    assert world.store.offers[("v", "1")].price == Decimal("1.00")


async def test_a_full_sync_marks_what_the_vendor_no_longer_lists(world: World) -> None:
    await world.run(sync_request())
    world.sources["v"].catalog.pop(0)
    assert (await world.run(sync_request(full=True))).status is RequestStatus.DONE
    assert world.store.offers[("v", "1")].availability is Availability.DISCONTINUED
    assert world.store.offers[("v", "2")].availability is not Availability.DISCONTINUED


async def test_a_failed_sync_fails_its_request_and_feeds_the_breaker(world: World) -> None:
    source = world.sources["v"]
    source.fail_pages = VendorBadResponse("garbage")
    state = await world.run(sync_request())
    assert (state.status, state.error_code) == (RequestStatus.FAILED, "vendor_bad_response")
    status = world.store.vendor_status("v")
    assert (status.state, status.syncs_failed, status.syncs_ok) == ("failed", 1, 0)
    assert status.last_error is not None and "garbage" in status.last_error
    assert len(source.calls) == 2  # page_attempts
    assert world.breakers.get("v").state is BreakerState.OPEN  # failures=2: each page try counted


async def test_one_sync_per_vendor_at_a_time(world: World) -> None:
    v, w = world.sources["v"], world.sources["w"]
    v.gate = w.gate = asyncio.Event()
    states = [world.tracker.submit(r)[0] for r in (sync_request(), sync_request(full=True), sync_request("w"))]
    tasks = [asyncio.create_task(world.workers.handle(s.request)) for s in states]
    for _ in range(20):
        await asyncio.sleep(0)
    # Both of v's syncs are waiting, only one of them at the vendor; w's runs beside it.
    assert (v.active, w.active) == (1, 1)
    v.gate.set()
    async with asyncio.timeout(GUARD_S):
        await asyncio.gather(*tasks)
    assert all(s.status is RequestStatus.DONE for s in states)
    assert v.max_active == 1
    # Two whole walks one after the other, not interleaved.
    assert [c[1] for c in v.calls] == [None, "2", "4", "6", None, "2", "4", "6"]
    assert world.store.vendor_status("v").syncs_ok == 2


# -- the scheduler's due rules (the runs themselves: tests/integration/test_scheduler.py) ------------------------


MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("state", "succeeded_ago", "failed_ago", "interval_s", "expected"),
    [
        pytest.param("ok", 1 * MINUTE, None, 3600, None, id="synced-recently"),
        pytest.param("ok", 2 * HOUR, None, 3600, False, id="interval-elapsed"),
        pytest.param("ok", 48 * HOUR, None, 3600, True, id="full-sync-due"),
        pytest.param("running", 2 * HOUR, None, 3600, None, id="running"),
        pytest.param("interrupted", 1 * MINUTE, None, 3600, False, id="interrupted"),
        # A failed vendor waits min(its interval, retry_after_failure_s = 30 min) after the failure.
        pytest.param("failed", None, 45 * MINUTE, 4 * 3600, False, id="failed-retry-elapsed"),
        pytest.param("failed", None, 15 * MINUTE, 600, False, id="failed-interval-shorter"),
        pytest.param("failed", None, 5 * MINUTE, 600, None, id="failed-within-both"),
    ],
)
async def test_scheduler_due_rules(
    state: str, succeeded_ago: timedelta | None, failed_ago: timedelta | None, interval_s: int, expected: bool | None
) -> None:
    """``expected``: None when not due, else whether the requested sync is full (once a day here)."""
    store = FakeCatalogStore()
    queue = FakeRequestQueue()
    await store.add_vendor(vendor("v", refresh_interval_s=interval_s))
    now = utcnow()  # ages from now, not from collection time: the margins are minutes, the run may take many
    succeeded = None if succeeded_ago is None else now - succeeded_ago
    store.set_sync(
        "v",
        state=state,
        last_success_at=succeeded,
        last_full_sync_at=succeeded or now - HOUR,
        last_error_at=None if failed_ago is None else now - failed_ago,
    )
    service = CatalogService(store, queue, RequestTracker())
    scheduler = RefreshScheduler(store, service, full_sync_every_s=86_400, retry_after_failure_s=1800)
    assert await scheduler.tick() == (0 if expected is None else 1)
    assert [r.full for r in queue.published] == ([] if expected is None else [expected])


async def test_scheduler_skips_an_open_breaker_and_asks_again_after_a_refusal() -> None:
    store = FakeCatalogStore()
    queue = FakeRequestQueue()
    for vendor_id in ("a", "b", "c"):
        await store.add_vendor(vendor(vendor_id))
    breakers = BreakerRegistry(failures=1, open_s=60)
    breakers.get("a").record_failure()
    service = CatalogService(store, queue, RequestTracker(), breakers=breakers)
    scheduler = RefreshScheduler(store, service)

    # The queue refuses (full): nothing counted, nothing raised out of the tick, nothing left pending.
    queue.full = True
    assert await scheduler.tick() == 0
    assert service.tracker.pending() == 0
    queue.full = False
    assert await scheduler.tick() == 2
    assert [r.vendor_id for r in queue.published] == ["b", "c"]
