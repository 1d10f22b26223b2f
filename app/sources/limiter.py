"""A vendor's concurrency limit, shared by both lanes, interactive calls first.

Both lanes call a vendor through its one HTTP client, so its politeness limits hold for the sum of a sync and the
misses. When every slot is taken, a waiting miss gets the next free one before any waiting page of a sync: the sync
slows down, the miss is not starved.
"""

from __future__ import annotations

import asyncio
from collections import deque

from app.domain.lanes import Lane, current_lane


class LaneLimiter:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self._free = limit
        self._waiters: dict[Lane, deque[asyncio.Future[None]]] = {Lane.INTERACTIVE: deque(), Lane.BULK: deque()}

    def waiting(self, lane: Lane) -> int:
        return sum(1 for f in self._waiters[lane] if not f.done())

    async def __aenter__(self) -> None:
        if self._free > 0 and not any(self._waiters.values()):
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters[current_lane()]
        waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # granted, then cancelled before it could be used: hand the slot on
            elif future in waiters:
                waiters.remove(future)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        for lane in (Lane.INTERACTIVE, Lane.BULK):
            waiters = self._waiters[lane]
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self._free += 1
