from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

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


# -- requests another node accepted (runtime=kafka) --------------------------------------------------------------


async def test_a_request_learnt_from_another_node_is_pending_then_done_but_never_joined() -> None:
    tracker = RequestTracker()
    remote = product_request()
    tracker.learn(remote)
    state = tracker.get(remote.id)
    assert state is not None and state.status is RequestStatus.PENDING
    # This node's own identical miss publishes a request of its own: it cannot vouch for the other node's.
    mine, created = tracker.submit(product_request())
    assert created and mine.request.id != remote.id
    waiter = asyncio.create_task(tracker.wait(remote.id, 5))
    await asyncio.sleep(0)
    tracker.complete(remote.id, RequestStatus.DONE, product_id="p_1")
    done = await asyncio.wait_for(waiter, 1)
    assert done is not None and (done.status, done.product_id) == (RequestStatus.DONE, "p_1")
    tracker.learn(remote)  # read again: nothing changes
    assert tracker.get(remote.id) is done and done.status is RequestStatus.DONE


async def test_an_outcome_before_its_request_update_is_known_and_the_update_fills_in_the_details() -> None:
    tracker = RequestTracker()
    accepted = FetchRequest(RequestKind.PRODUCT, "v", "1", requested_at=datetime(2026, 1, 1, tzinfo=UTC))
    guessed = FetchRequest(RequestKind.PRODUCT, "v", "1", id=accepted.id)  # from the outcome: time unknown (now)
    tracker.learn(guessed, from_outcome=True)
    tracker.complete(accepted.id, RequestStatus.NOT_FOUND, error="gone")
    tracker.learn(accepted)
    state = tracker.get(accepted.id)
    assert state is not None and state.status is RequestStatus.NOT_FOUND
    assert state.request.requested_at == accepted.requested_at


async def test_an_old_request_read_again_is_not_learnt() -> None:
    tracker = RequestTracker(keep_finished_s=60)
    old = FetchRequest(RequestKind.PRODUCT, "v", "1", requested_at=datetime.now(UTC) - timedelta(minutes=5))
    tracker.learn(old)
    assert tracker.get(old.id) is None


async def test_a_lookup_waits_for_an_id_the_changelog_has_not_brought_yet() -> None:
    tracker = RequestTracker(lookup_wait_s=5)
    request = product_request()
    lookup = asyncio.create_task(tracker.lookup(request.id))
    await asyncio.sleep(0.01)
    assert not lookup.done()
    tracker.learn(request)
    found = await asyncio.wait_for(lookup, 1)
    assert found is not None and found.request.id == request.id
    assert await RequestTracker(lookup_wait_s=0.01).lookup("r_unknown") is None


async def test_learnt_requests_are_bounded_too() -> None:
    tracker = RequestTracker(max_entries=3)
    requests = [product_request(str(i)) for i in range(10)]
    for request in requests:
        tracker.learn(request)
    assert [tracker.get(r.id) is not None for r in requests] == [False] * 7 + [True] * 3


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_not_found_answers_identical_requests_until_its_time_is_up() -> None:
    ticks = Ticks()
    tracker = RequestTracker(not_found_ttl_s=30, clock=ticks)
    first, _ = tracker.submit(product_request("gone"))
    tracker.complete(first.request.id, RequestStatus.NOT_FOUND, error="no", error_code="vendor_item_not_found")
    ticks.now += 29
    again, created = tracker.submit(product_request("gone"))
    assert not created and again is first
    assert tracker.not_found("v", "gone") is first
    assert tracker.not_found("v", "other") is None
    ticks.now += 1
    assert tracker.not_found("v", "gone") is None
    fresh, created = tracker.submit(product_request("gone"))
    assert created and fresh is not first


async def test_only_product_not_founds_are_remembered_and_only_when_a_time_is_set() -> None:
    tracker = RequestTracker(not_found_ttl_s=30)
    failed, _ = tracker.submit(product_request("1"))
    tracker.complete(failed.request.id, RequestStatus.FAILED, error="timeout", error_code="vendor_timeout")
    assert tracker.submit(product_request("1"))[1]  # a failure is the breaker's business, not remembered
    off = RequestTracker(not_found_ttl_s=0)
    state, _ = off.submit(product_request("1"))
    off.complete(state.request.id, RequestStatus.NOT_FOUND)
    assert off.not_found("v", "1") is None and off.submit(product_request("1"))[1]


async def test_a_not_found_learnt_from_another_node_is_remembered_too() -> None:
    tracker = RequestTracker(not_found_ttl_s=30)
    theirs = product_request("gone")
    tracker.learn(theirs, from_outcome=True)  # as the changelog applier does for a ``product`` update
    tracker.complete(theirs.id, RequestStatus.NOT_FOUND, error_code="vendor_item_not_found")
    mine, created = tracker.submit(product_request("gone"))
    assert not created and mine.request.id == theirs.id and mine.status is RequestStatus.NOT_FOUND


async def test_a_redefined_vendor_forgets_what_it_did_not_have() -> None:
    tracker = RequestTracker(not_found_ttl_s=30)
    state, _ = tracker.submit(product_request("gone"))
    tracker.complete(state.request.id, RequestStatus.NOT_FOUND)
    tracker.forget_vendor("v")
    assert tracker.not_found("v", "gone") is None and tracker.submit(product_request("gone"))[1]
