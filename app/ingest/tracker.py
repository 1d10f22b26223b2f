"""Where fetch requests wait for their outcome.

Both runtimes complete requests here: the embedded workers directly, the distributed runtime when the
changelog consumer sees the request's outcome. Identical concurrent requests share one entry (and so one vendor
call); finished entries are kept for a while so ``GET /requests/{id}`` can still answer after the wait.

In the distributed runtime a node also *learns* of requests other nodes accepted (their ``request`` update on the
changelog, or the outcome itself when it comes first), so the ``Location`` of a 202 answers on every node behind a
load balancer. Learned requests are never joined by this node's own identical misses: their outcome depends on
another node's publish, and a miss must not wait on a request this node cannot vouch for. Memory stays bounded:
at most ``max_entries`` requests, oldest first out, finished ones dropped after ``keep_finished_s``.

A product request that ended ``not_found`` is remembered for ``not_found_ttl_s`` (``app.ingest.not_found``): an
identical request within that time is answered by the finished one, without a vendor call. Learned outcomes count
too: on a kafka node a 404 another node's client caused is remembered here as well, because nothing is waited on
(the outcome is there).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta

from app.domain.models import utcnow
from app.domain.requests import FetchRequest, RequestKind, RequestState, RequestStatus
from app.ingest.not_found import NotFoundMemory


class RequestTracker:
    def __init__(
        self,
        *,
        max_entries: int = 20_000,
        keep_finished_s: float = 900.0,
        lookup_wait_s: float = 0.0,
        not_found_ttl_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._states: OrderedDict[str, RequestState] = OrderedDict()
        self._events: dict[str, asyncio.Event] = {}
        self._pending_by_key: dict[tuple[str, str, str], str] = {}
        #: the finished not_found product requests, each answering for its product while its time lasts
        self._not_found: NotFoundMemory[RequestState] = NotFoundMemory(
            not_found_ttl_s, max_entries=max_entries, clock=clock
        )
        self._finished_at: dict[str, float] = {}
        # request id -> set when a request of that id becomes known (a poll of one not learnt yet waits on it)
        self._arrivals: dict[str, asyncio.Event] = {}
        self._learnt_from_outcome: set[str] = set()
        self._max_entries = max_entries
        self._keep_finished_s = keep_finished_s
        #: How long a lookup of an unknown id waits for the changelog to bring it (0: this node knows them all).
        self.lookup_wait_s = lookup_wait_s

    def submit(self, request: FetchRequest) -> tuple[RequestState, bool]:
        """Register a request; returns the state and whether it is new (False: joined an identical one, in flight
        or a not_found one still remembered)."""
        existing = self._pending_by_key.get(request.dedup_key)
        if existing is not None and existing in self._states:
            return self._states[existing], False
        if request.kind is RequestKind.PRODUCT:
            remembered = self._not_found.get(request.vendor_id, request.vendor_product_id or "")
            if remembered is not None:
                return remembered, False
        state = self._add(request)
        self._events[request.id] = asyncio.Event()
        self._pending_by_key[request.dedup_key] = request.id
        return state, True

    def learn(self, request: FetchRequest, *, from_outcome: bool = False) -> None:
        """A request another node accepted (or whose outcome arrived before its ``request`` update: then
        ``from_outcome``, and the update that follows only corrects the request's details)."""
        state = self._states.get(request.id)
        if state is not None:
            if request.id in self._learnt_from_outcome and not from_outcome:
                self._learnt_from_outcome.discard(request.id)
                state.request = request
            return
        if not from_outcome and utcnow() - request.requested_at > timedelta(seconds=self._keep_finished_s):
            return  # an old one read again (a new node replays the changelog): it would only be evicted
        self._add(request)
        if from_outcome:
            self._learnt_from_outcome.add(request.id)

    def _add(self, request: FetchRequest) -> RequestState:
        self._evict()
        state = RequestState(request=request)
        self._states[request.id] = state
        arrival = self._arrivals.pop(request.id, None)
        if arrival is not None:
            arrival.set()
        return state

    def forget(self, request_id: str) -> None:
        """Drop a request that could not be queued, so the next identical one is tried afresh."""
        state = self._states.pop(request_id, None)
        if state is not None:
            self._release(state)
            event = self._events.pop(request_id, None)
            if event is not None:
                event.set()

    def not_found(self, vendor_id: str, vendor_product_id: str) -> RequestState | None:
        """The finished not_found request that still answers for this product (None: none, or its time is up)."""
        return self._not_found.get(vendor_id, vendor_product_id)

    def forget_vendor(self, vendor_id: str) -> None:
        """What the vendor said it does not have: a removed or redefined vendor may have it after all."""
        self._not_found.forget_vendor(vendor_id)

    def get(self, request_id: str) -> RequestState | None:
        return self._states.get(request_id)

    async def lookup(self, request_id: str) -> RequestState | None:
        """``get``, waiting up to ``lookup_wait_s`` for an id this node has not learnt yet: a client following a
        202's ``Location`` to another node may be faster than the changelog that tells that node."""
        state = self._states.get(request_id)
        if state is not None or self.lookup_wait_s <= 0:
            return state
        arrival = self._arrivals.setdefault(request_id, asyncio.Event())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrival.wait(), self.lookup_wait_s)
        finally:
            if self._arrivals.get(request_id) is arrival and not arrival.is_set():
                del self._arrivals[request_id]
        return self._states.get(request_id)

    def pending(self) -> int:
        return len(self._pending_by_key)

    def started(self, request_id: str, queued_s: float) -> None:
        """A worker (or the job) took the request after ``queued_s`` in a queue: what the miss answer reports."""
        state = self._states.get(request_id)
        if state is not None and state.queued_s is None:
            state.queued_s = queued_s

    def complete(
        self,
        request_id: str,
        status: RequestStatus,
        *,
        product_id: str | None = None,
        error: str | None = None,
        error_code: str | None = None,
    ) -> None:
        state = self._states.get(request_id)
        if state is None or state.status is not RequestStatus.PENDING:
            return
        state.status = status
        state.product_id = product_id
        state.error = error
        state.error_code = error_code
        state.finished_at = utcnow()
        self._finished_at[request_id] = time.monotonic()
        self._release(state)
        request = state.request
        if status is RequestStatus.NOT_FOUND and request.kind is RequestKind.PRODUCT:
            self._not_found.remember(request.vendor_id, request.vendor_product_id or "", state)
        event = self._events.pop(request_id, None)
        if event is not None:
            event.set()

    async def wait(self, request_id: str, timeout_s: float) -> RequestState | None:
        state = self._states.get(request_id)
        if state is not None and state.status is RequestStatus.PENDING and timeout_s > 0:
            event = self._events.setdefault(request_id, asyncio.Event())  # a learnt request has none yet
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout_s)
        return self._states.get(request_id)

    def _release(self, state: RequestState) -> None:
        key = state.request.dedup_key
        if self._pending_by_key.get(key) == state.request.id:
            del self._pending_by_key[key]

    def _evict(self) -> None:
        now = time.monotonic()
        while self._states:
            oldest_id, oldest = next(iter(self._states.items()))
            finished = self._finished_at.get(oldest_id)
            expired = finished is not None and now - finished > self._keep_finished_s
            if not expired and len(self._states) < self._max_entries:
                break
            self._states.popitem(last=False)
            self._finished_at.pop(oldest_id, None)
            self._events.pop(oldest_id, None)
            self._learnt_from_outcome.discard(oldest_id)
            self._release(oldest)
