"""The embedded runtime's request queue: two lanes, each bounded, in-process, drained by its own workers.

A shopper's miss (interactive) must never wait behind a catalog sync (bulk), of its own vendor or another: each lane
has its own queue and its own workers, so a lane's backlog delays only that lane. Within a lane no vendor takes more
than ``per_vendor`` workers at once: a vendor that answers in 9 s holds its share, the others keep theirs (its
further requests wait while other vendors' go ahead). The vendor's own concurrency and rate limits are shared by both
lanes: they live on its HTTP client (``app.sources.http``), which lets an interactive call go first.

Bounded so a burst of misses degrades into quick 503s with a retry hint instead of unbounded memory and latency; the
workers run the fetch functions the distributed runtime's Flink job reuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable

from app.domain.lanes import Lane, in_lane, interactive_work
from app.domain.requests import FetchRequest, RequestKind
from app.errors import ServiceUnavailable
from app.observability import Metric

log = logging.getLogger(__name__)

#: The request, and how long it waited for a worker (seconds).
Handler = Callable[[FetchRequest, float], Awaitable[None]]


def lane_of(request: FetchRequest) -> Lane:
    """A product request is a shopper's (or a stale read's refresh); a catalog sync is bulk."""
    return Lane.INTERACTIVE if request.kind is RequestKind.PRODUCT else Lane.BULK


class LaneQueue:
    """One lane's pending requests and workers; a vendor at its quota waits while other vendors' requests go."""

    def __init__(self, lane: Lane, handler: Handler, *, workers: int, per_vendor: int, maxsize: int) -> None:
        self.lane = lane
        self._handler = handler
        self._workers = workers
        self._per_vendor = max(1, min(per_vendor, workers))
        self._maxsize = maxsize
        self._pending: deque[tuple[FetchRequest, float]] = deque()
        self._busy: Counter[str] = Counter()
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self.taken = 0
        self.wait_s_total = 0.0
        self.wait_s_max = 0.0  # since the last scrape: the worst wait a scraper has not seen yet

    @property
    def running(self) -> bool:
        return bool(self._tasks) and all(not t.done() for t in self._tasks)

    @property
    def depth(self) -> int:
        return len(self._pending)

    def busy(self, vendor_id: str | None = None) -> int:
        return self._busy[vendor_id] if vendor_id is not None else sum(self._busy.values())

    def oldest_wait_s(self) -> float:
        return time.monotonic() - self._pending[0][1] if self._pending else 0.0

    async def put(self, request: FetchRequest) -> None:
        if len(self._pending) >= self._maxsize:
            raise ServiceUnavailable(
                "too many pending vendor requests; try again shortly",
                retry_after=2,
                details={"queue_size": self._maxsize, "lane": self.lane.value},
            )
        self._pending.append((request, time.monotonic()))
        async with self._changed:
            self._changed.notify_all()

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(i), name=f"{self.lane.value}-worker-{i}") for i in range(self._workers)
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _take(self) -> tuple[FetchRequest, float]:
        async with self._changed:
            while True:
                for i, (request, queued_at) in enumerate(self._pending):
                    if self._busy[request.vendor_id] < self._per_vendor:
                        del self._pending[i]
                        self._busy[request.vendor_id] += 1
                        return request, time.monotonic() - queued_at
                await self._changed.wait()

    async def _done(self, vendor_id: str) -> None:
        self._busy[vendor_id] -= 1
        if self._busy[vendor_id] <= 0:
            del self._busy[vendor_id]
        async with self._changed:
            self._changed.notify_all()  # a request held back by its vendor's quota may go now

    async def _run(self, index: int) -> None:
        with in_lane(self.lane):
            while True:
                request, waited_s = await self._take()
                self.taken += 1
                self.wait_s_total += waited_s
                self.wait_s_max = max(self.wait_s_max, waited_s)
                try:
                    with interactive_work.running() if self.lane is Lane.INTERACTIVE else contextlib.nullcontext():
                        await self._handler(request, waited_s)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # A worker must survive anything one request does; the handler reports failures itself.
                    log.exception("%s worker %d: request %s crashed", self.lane.value, index, request.id)
                finally:
                    await asyncio.shield(self._done(request.vendor_id))

    def metrics(self) -> Iterable[Metric]:
        labels = {"lane": self.lane.value}
        worst, self.wait_s_max = self.wait_s_max, 0.0
        return [
            Metric("catalog_lane_depth", "Requests waiting for a worker, per lane.", "gauge", self.depth, labels),
            Metric("catalog_lane_busy", "Workers running a request, per lane.", "gauge", self.busy(), labels),
            Metric("catalog_lane_workers", "Workers of the lane.", "gauge", self._workers, labels),
            Metric(
                "catalog_lane_oldest_wait_seconds",
                "How long the oldest waiting request of the lane has waited.",
                "gauge",
                self.oldest_wait_s(),
                labels,
            ),
            Metric(
                "catalog_lane_wait_seconds_max",
                "Longest wait for a worker since the last scrape, per lane.",
                "gauge",
                worst,
                labels,
            ),
            Metric(
                "catalog_lane_wait_seconds_total",
                "Time requests waited for a worker, summed, per lane (divide by catalog_lane_taken_total).",
                "counter",
                self.wait_s_total,
                labels,
            ),
            Metric("catalog_lane_taken_total", "Requests a worker took, per lane.", "counter", self.taken, labels),
        ]


class InProcessRequestQueue:
    """The two lanes behind the one ``RequestQueue`` port."""

    def __init__(
        self,
        handler: Handler,
        *,
        workers: int = 4,
        maxsize: int = 1000,
        interactive_workers: int = 8,
        bulk_per_vendor: int | None = None,
        interactive_per_vendor: int | None = None,
    ) -> None:
        """``workers``: the bulk lane's (syncs); ``*_per_vendor``: most workers of a lane one vendor may hold
        (default: half the lane's, at least one)."""
        self.lanes = {
            Lane.INTERACTIVE: LaneQueue(
                Lane.INTERACTIVE,
                handler,
                workers=interactive_workers,
                per_vendor=interactive_per_vendor or max(1, interactive_workers // 2),
                maxsize=maxsize,
            ),
            Lane.BULK: LaneQueue(
                Lane.BULK, handler, workers=workers, per_vendor=bulk_per_vendor or max(1, workers // 2), maxsize=maxsize
            ),
        }
        self._started = False

    @property
    def healthy(self) -> bool:
        return self._started and all(lane.running for lane in self.lanes.values())

    @property
    def reason(self) -> str | None:
        return None if self.healthy else "the request workers are not running"

    @property
    def depth(self) -> int:
        return sum(lane.depth for lane in self.lanes.values())

    async def publish(self, request: FetchRequest) -> None:
        if not self._started:
            raise ServiceUnavailable("request workers are not running", retry_after=5)
        await self.lanes[lane_of(request)].put(request)

    async def start(self) -> None:
        for lane in self.lanes.values():
            lane.start()
        self._started = True

    async def stop(self) -> None:
        self._started = False
        for lane in self.lanes.values():
            await lane.stop()

    def metrics(self) -> list[Metric]:
        return [metric for lane in self.lanes.values() for metric in lane.metrics()]
