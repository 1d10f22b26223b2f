"""The miss-path rules of ``CatalogService`` against the in-memory store and queue.

Nobody completes a request here unless the test does (as a worker would, through the tracker), so each
outcome is chosen by the test and the waits end on that completion or at once (``wait_ms=0``), never on a clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import orjson
import pytest

from app.catalog.service import CatalogService, Pending, Served
from app.domain.models import utcnow
from app.domain.requests import FetchRequest, RequestKind, RequestStatus
from app.errors import CatalogError, Conflict, NotFound, ServiceUnavailable, VendorError
from app.ingest.breaker import BreakerRegistry, CircuitOpen
from app.ingest.port import RequestQueue
from app.ingest.tracker import RequestTracker
from app.store.port import CatalogStore
from tests.fakes import FakeCatalogStore, FakeRequestQueue, offer, vendor

# Generous: only reached when a rule is broken and something waits for a completion that never comes.
GUARD_S = 10


@dataclass
class World:
    store: FakeCatalogStore
    queue: FakeRequestQueue
    tracker: RequestTracker
    breakers: BreakerRegistry
    service: CatalogService


@pytest.fixture
async def world() -> AsyncIterator[World]:
    store = FakeCatalogStore()
    queue = FakeRequestQueue()
    tracker = RequestTracker()
    breakers = BreakerRegistry(failures=1, open_s=60)
    # Typed as the ports: mypy checks here that the fakes satisfy them.
    store_port: CatalogStore = store
    queue_port: RequestQueue = queue
    service = CatalogService(store_port, queue_port, tracker, default_wait_ms=GUARD_S * 1000, breakers=breakers)
    await store.add_vendor(vendor("v", refresh_interval_s=3600))
    yield World(store, queue, tracker, breakers, service)
    await queue.stop()


async def answer(world: World, complete: Callable[[FetchRequest], Awaitable[None]], nth: int = 1) -> FetchRequest:
    """Play the worker: wait for the ``nth`` request to be published, then complete it with ``complete``."""
    async with asyncio.timeout(GUARD_S):
        published = await world.queue.wait_published(nth)
    request = published[nth - 1]
    await complete(request)
    return request


async def test_fresh_data_is_served_without_asking_the_vendor(world: World) -> None:
    await world.store.upsert_offers([offer("v", "1")])
    served = await world.service.vendor_product("v", "1", wait_ms=0)
    assert isinstance(served, Served)
    assert not served.stale and served.age_s < 3600
    assert orjson.loads(served.product.doc)["offers"][0]["vendor_product_id"] == "1"

    by_id = world.service.product(world.store.product_of(("v", "1")))
    assert not by_id.stale and by_id.product.etag == served.product.etag
    await asyncio.sleep(0)  # a background refresh, had one been started, would have published by now
    assert world.queue.published == []


async def test_stale_data_is_served_with_its_age_and_refreshed_in_the_background(world: World) -> None:
    await world.store.upsert_offers([offer("v", "1", fetched_at=utcnow() - timedelta(hours=2))])
    served = await world.service.vendor_product("v", "1", wait_ms=0)
    assert isinstance(served, Served)
    assert served.stale and served.age_s >= 7200
    async with asyncio.timeout(GUARD_S):
        (refresh,) = await world.queue.wait_published(1)
    assert (refresh.kind, refresh.vendor_id, refresh.vendor_product_id) == (RequestKind.PRODUCT, "v", "1")

    # By product id too; the refresh still pending is joined, not published again.
    by_id = world.service.product(world.store.product_of(("v", "1")))
    assert by_id.stale and by_id.age_s >= 7200
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(world.queue.published) == 1 and world.tracker.pending() == 1


async def test_stale_data_of_a_disabled_vendor_or_an_open_breaker_is_served_without_a_refresh(world: World) -> None:
    await world.store.add_vendor(vendor("off", enabled=False, refresh_interval_s=60))
    await world.store.upsert_offers(
        [
            offer("off", "1", fetched_at=utcnow() - timedelta(hours=1)),
            offer("v", "2", fetched_at=utcnow() - timedelta(hours=2)),
        ]
    )
    world.breakers.get("v").record_failure()  # failures=1: open

    off = await world.service.vendor_product("off", "1", wait_ms=0)
    down = await world.service.vendor_product("v", "2", wait_ms=0)
    assert isinstance(off, Served) and off.stale
    assert isinstance(down, Served) and down.stale
    assert world.service.product(world.store.product_of(("off", "1"))).stale
    assert world.service.product(world.store.product_of(("v", "2"))).stale
    for _ in range(3):
        await asyncio.sleep(0)
    assert world.queue.published == [] and world.tracker.pending() == 0


async def test_a_refresh_the_queue_refuses_is_skipped_and_the_data_still_served(world: World) -> None:
    await world.store.upsert_offers([offer("v", "1", fetched_at=utcnow() - timedelta(hours=2))])
    world.queue.full = True
    served = await world.service.vendor_product("v", "1", wait_ms=0)
    assert isinstance(served, Served) and served.stale
    for _ in range(3):
        await asyncio.sleep(0)
    assert world.queue.published == [] and world.tracker.pending() == 0


async def test_a_miss_publishes_a_request_and_serves_the_product_once_it_is_stored(world: World) -> None:
    async def store_it(request: FetchRequest) -> None:
        await world.store.upsert_offers([offer("v", "42", title="Fetched")])
        ref = world.store.find_offer("v", "42")
        assert ref is not None
        world.tracker.complete(request.id, RequestStatus.DONE, product_id=ref.product_id)

    helper = asyncio.create_task(answer(world, store_it))
    served = await world.service.vendor_product("v", "42", wait_ms=None)
    request = await helper
    assert isinstance(served, Served)
    assert (served.stale, served.age_s) == (False, 0.0)
    assert orjson.loads(served.product.doc)["name"] == "Fetched"
    assert world.queue.published == [request]
    assert (request.kind, request.vendor_id, request.vendor_product_id) == (RequestKind.PRODUCT, "v", "42")


async def test_a_miss_the_vendor_has_not_answered_in_time_is_pending(world: World) -> None:
    result = await world.service.vendor_product("v", "42", wait_ms=0)
    assert isinstance(result, Pending)
    assert result.state.status is RequestStatus.PENDING
    assert world.queue.published == [result.state.request]
    assert world.tracker.get(result.state.request.id) is result.state


async def test_the_wait_is_capped_at_max_wait_ms(world: World) -> None:
    capped = CatalogService(world.store, world.queue, world.tracker, max_wait_ms=0, breakers=world.breakers)
    async with asyncio.timeout(GUARD_S):  # uncapped, this would wait a day
        result = await capped.vendor_product("v", "42", wait_ms=86_400_000)
    assert isinstance(result, Pending)


@pytest.mark.parametrize(
    ("status", "error_code", "expected", "http"),
    [
        (RequestStatus.NOT_FOUND, "vendor_item_not_found", NotFound, 404),
        (RequestStatus.FAILED, "vendor_timeout", VendorError, 502),
        (RequestStatus.FAILED, CircuitOpen.code, CircuitOpen, 503),
        # Done, yet the offer is not in the store (removed in between): an error, not an empty 200.
        (RequestStatus.DONE, None, VendorError, 502),
    ],
)
async def test_a_miss_the_vendor_could_not_answer_raises_its_error(
    world: World, status: RequestStatus, error_code: str | None, expected: type[Exception], http: int
) -> None:
    async def fail(request: FetchRequest) -> None:
        if status is RequestStatus.DONE:
            world.tracker.complete(request.id, status, product_id="p_gone")
        else:
            world.tracker.complete(request.id, status, error="vendor said no", error_code=error_code)

    helper = asyncio.create_task(answer(world, fail))
    with pytest.raises(expected) as raised:
        await world.service.vendor_product("v", "42", wait_ms=None)
    request = await helper
    error = raised.value
    assert type(error) is expected and isinstance(error, CatalogError)
    assert error.status_code == http
    details = error.details
    assert details["request_id"] == request.id and details["vendor_product_id"] == "42"
    if isinstance(error, CircuitOpen):
        assert error.retry_after >= 1.0
    elif status is RequestStatus.FAILED:
        assert details["vendor_error"] == "vendor_timeout"


async def test_identical_concurrent_misses_share_one_request(world: World) -> None:
    waiters = [asyncio.create_task(world.service.vendor_product("v", "7", wait_ms=None)) for _ in range(5)]
    other = asyncio.create_task(world.service.vendor_product("v", "8", wait_ms=0))
    async with asyncio.timeout(GUARD_S):
        await world.queue.wait_published(2)
        for _ in range(3):
            await asyncio.sleep(0)  # let every waiter reach the tracker
        first = next(r for r in world.queue.published if r.vendor_product_id == "7")
        await world.store.upsert_offers([offer("v", "7")])
        world.tracker.complete(first.id, RequestStatus.DONE, product_id=world.store.product_of(("v", "7")))
        results = await asyncio.gather(*waiters)
        assert isinstance(await other, Pending)
    assert [r.vendor_product_id for r in world.queue.published] == ["7", "8"]
    assert all(isinstance(r, Served) for r in results)
    assert len({r.product.etag for r in results if isinstance(r, Served)}) == 1


async def test_a_disabled_vendor_refuses_a_miss_and_a_sync(world: World) -> None:
    await world.store.add_vendor(vendor("off", enabled=False))
    with pytest.raises(Conflict):
        await world.service.vendor_product("off", "1", wait_ms=0)
    with pytest.raises(Conflict):
        await world.service.request_sync("off")
    assert world.queue.published == []


async def test_an_unknown_vendor_or_product_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        await world.service.vendor_product("nobody", "1", wait_ms=0)
    with pytest.raises(NotFound):
        world.service.product("p_nothing")
    assert world.queue.published == []


async def test_an_open_breaker_refuses_a_miss_at_once(world: World) -> None:
    world.breakers.get("v").record_failure()
    with pytest.raises(CircuitOpen) as raised:
        await world.service.vendor_product("v", "1", wait_ms=None)
    assert raised.value.retry_after >= 1.0
    assert raised.value.details["vendor_id"] == "v"
    with pytest.raises(CircuitOpen):
        await world.service.request_sync("v")
    assert world.queue.published == [] and world.tracker.pending() == 0


async def test_a_full_queue_answers_unavailable_and_the_tracker_forgets_the_request(world: World) -> None:
    world.queue.full = True
    with pytest.raises(ServiceUnavailable) as raised:
        await world.service.vendor_product("v", "1", wait_ms=None)
    assert raised.value.retry_after > 0
    assert world.tracker.pending() == 0

    # The next identical miss is tried afresh, not joined to the request that was never queued.
    world.queue.full = False
    result = await world.service.vendor_product("v", "1", wait_ms=0)
    assert isinstance(result, Pending)
    assert world.queue.published == [result.state.request]


async def test_an_unhealthy_queue_answers_unavailable(world: World) -> None:
    world.queue.healthy = False
    with pytest.raises(ServiceUnavailable):
        await world.service.request_sync("v")
    assert world.tracker.pending() == 0


async def test_sync_requests_are_shared_but_a_full_one_never_joins_an_incremental_one(world: World) -> None:
    first = await world.service.request_sync("v")
    again = await world.service.request_sync("v")
    full = await world.service.request_sync("v", full=True)
    assert again is first and full is not first
    assert [(r.kind, r.full) for r in world.queue.published] == [
        (RequestKind.CATALOG, False),
        (RequestKind.CATALOG, True),
    ]


async def test_a_remembered_not_found_answers_404_without_a_request_even_with_the_breaker_open() -> None:
    store, queue = FakeCatalogStore(), FakeRequestQueue()
    breakers = BreakerRegistry(failures=1, open_s=60)
    service = CatalogService(store, queue, RequestTracker(not_found_ttl_s=60), breakers=breakers)
    await store.add_vendor(vendor("v"))
    miss = asyncio.create_task(service.vendor_product("v", "gone", wait_ms=GUARD_S * 1000))
    async with asyncio.timeout(GUARD_S):
        published = await queue.wait_published(1)
    service.tracker.complete(published[0].id, RequestStatus.NOT_FOUND, error="no", error_code="vendor_item_not_found")
    with pytest.raises(NotFound):
        await miss
    breakers.get("v").record_failure()  # open now: a new id is refused, the remembered one still answers 404
    with pytest.raises(NotFound) as again:
        await service.vendor_product("v", "gone", wait_ms=0)
    assert again.value.details["request_id"] == published[0].id
    with pytest.raises(ServiceUnavailable):
        await service.vendor_product("v", "other", wait_ms=0)
    assert len(queue.published) == 1
    await queue.stop()
