"""The embedded runtime's request queue: bounded, in-process, drained by N worker tasks.

Bounded so a burst of misses degrades into quick 503s with a retry hint instead of unbounded memory and
latency; the workers run the fetch functions the distributed runtime's Flink job is to reuse.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from app.domain.requests import FetchRequest
from app.errors import ServiceUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[FetchRequest], Awaitable[None]]


class InProcessRequestQueue:
    def __init__(self, handler: Handler, *, workers: int = 4, maxsize: int = 1000) -> None:
        self._handler = handler
        self._workers = workers
        self._queue: asyncio.Queue[FetchRequest] = asyncio.Queue(maxsize=maxsize)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def healthy(self) -> bool:
        return bool(self._tasks) and all(not t.done() for t in self._tasks)

    @property
    def reason(self) -> str | None:
        return None if self.healthy else "the request workers are not running"

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def publish(self, request: FetchRequest) -> None:
        if not self._tasks:
            raise ServiceUnavailable("request workers are not running", retry_after=5)
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            raise ServiceUnavailable(
                "too many pending vendor requests; try again shortly",
                retry_after=2,
                details={"queue_size": self._queue.maxsize},
            ) from None

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(i), name=f"worker-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _run(self, index: int) -> None:
        while True:
            request = await self._queue.get()
            try:
                await self._handler(request)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A worker must survive anything one request does; the handler reports failures itself.
                log.exception("worker %d: request %s crashed", index, request.id)
            finally:
                self._queue.task_done()
