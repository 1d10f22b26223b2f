"""Where fetch requests wait for their outcome.

Both runtimes complete requests here: the embedded workers directly, the distributed runtime when the
changelog consumer sees the request's outcome. Identical concurrent requests share one entry (and so one vendor
call); finished entries are kept for a while so ``GET /requests/{id}`` can still answer after the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict

from app.domain.models import utcnow
from app.domain.requests import FetchRequest, RequestState, RequestStatus


class RequestTracker:
    def __init__(self, *, max_entries: int = 20_000, keep_finished_s: float = 900.0) -> None:
        self._states: OrderedDict[str, RequestState] = OrderedDict()
        self._events: dict[str, asyncio.Event] = {}
        self._pending_by_key: dict[tuple[str, str, str], str] = {}
        self._finished_at: dict[str, float] = {}
        self._max_entries = max_entries
        self._keep_finished_s = keep_finished_s

    def submit(self, request: FetchRequest) -> tuple[RequestState, bool]:
        """Register a request; returns the state and whether it is new (False: joined an identical one)."""
        existing = self._pending_by_key.get(request.dedup_key)
        if existing is not None and existing in self._states:
            return self._states[existing], False
        self._evict()
        state = RequestState(request=request)
        self._states[request.id] = state
        self._events[request.id] = asyncio.Event()
        self._pending_by_key[request.dedup_key] = request.id
        return state, True

    def forget(self, request_id: str) -> None:
        """Drop a request that could not be queued, so the next identical one is tried afresh."""
        state = self._states.pop(request_id, None)
        if state is not None:
            self._release(state)
            event = self._events.pop(request_id, None)
            if event is not None:
                event.set()

    def get(self, request_id: str) -> RequestState | None:
        return self._states.get(request_id)

    def pending(self) -> int:
        return len(self._pending_by_key)

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
        event = self._events.pop(request_id, None)
        if event is not None:
            event.set()

    async def wait(self, request_id: str, timeout_s: float) -> RequestState | None:
        event = self._events.get(request_id)
        if event is not None and timeout_s > 0:
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
            self._release(oldest)
