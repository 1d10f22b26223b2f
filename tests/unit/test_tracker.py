from __future__ import annotations

import asyncio

from app.domain.requests import FetchRequest, RequestKind, RequestStatus
from app.domain.wire import request_from_dict, request_to_dict
from app.ingest.tracker import RequestTracker


def product_request(vpid: str = "1") -> FetchRequest:
    return FetchRequest(RequestKind.PRODUCT, "v", vpid)


async def test_identical_pending_requests_share_one_entry() -> None:
    tracker = RequestTracker()
    first, created = tracker.submit(product_request())
    second, created_again = tracker.submit(product_request())
    assert created and not created_again
    assert second is first
    other, created_other = tracker.submit(product_request("2"))
    assert created_other and other is not first


async def test_waiters_wake_on_completion_and_later_requests_start_afresh() -> None:
    tracker = RequestTracker()
    state, _ = tracker.submit(product_request())
    waiter = asyncio.create_task(tracker.wait(state.request.id, 5))
    await asyncio.sleep(0)
    tracker.complete(state.request.id, RequestStatus.DONE, product_id="p_1")
    done = await asyncio.wait_for(waiter, 1)
    assert done is not None and done.status is RequestStatus.DONE and done.product_id == "p_1"
    again, created = tracker.submit(product_request())
    assert created and again.request.id != state.request.id
    assert tracker.get(state.request.id) is state


async def test_wait_times_out_as_pending() -> None:
    tracker = RequestTracker()
    state, _ = tracker.submit(product_request())
    waited = await tracker.wait(state.request.id, 0.01)
    assert waited is not None and waited.status is RequestStatus.PENDING


async def test_completion_is_final() -> None:
    tracker = RequestTracker()
    state, _ = tracker.submit(product_request())
    tracker.complete(state.request.id, RequestStatus.FAILED, error="boom")
    tracker.complete(state.request.id, RequestStatus.DONE, product_id="p")
    assert state.status is RequestStatus.FAILED and state.error == "boom"


async def test_forget_lets_the_next_identical_request_through() -> None:
    tracker = RequestTracker()
    state, _ = tracker.submit(product_request())
    tracker.forget(state.request.id)
    assert tracker.get(state.request.id) is None
    assert tracker.submit(product_request())[1]


async def test_memory_is_bounded() -> None:
    tracker = RequestTracker(max_entries=10)
    for i in range(50):
        state, _ = tracker.submit(product_request(str(i)))
        tracker.complete(state.request.id, RequestStatus.DONE)
    assert len(tracker._states) <= 10


def test_request_json_round_trip() -> None:
    request = FetchRequest(RequestKind.CATALOG, "v", full=True)
    assert request_from_dict(request_to_dict(request)) == request
