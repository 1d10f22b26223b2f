"""Interactive and bulk work: which lane the code running now belongs to.

A shopper's miss or a webhook (interactive) must never wait behind a catalog sync (bulk). The lane travels as a
context variable, so the pieces that arbitrate between the two (the in-process queue's workers, the vendor's HTTP
concurrency limit, the SQLite writer) see it without every call in between passing it on. Anything not marked bulk is
interactive: an admin write or a webhook is short and a person waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from enum import StrEnum


class Lane(StrEnum):
    INTERACTIVE = "interactive"
    BULK = "bulk"


_current: ContextVar[Lane] = ContextVar("catalog_lane", default=Lane.INTERACTIVE)
#: True inside ``InteractiveWork.running`` (and not ``away``): this task is one of the counted interactive jobs.
_counted: ContextVar[bool] = ContextVar("catalog_interactive_counted", default=False)


def current_lane() -> Lane:
    return _current.get()


@contextlib.contextmanager
def in_lane(lane: Lane) -> Iterator[None]:
    """Run the block (and the tasks it starts) as ``lane`` work."""
    token = _current.set(lane)
    try:
        yield
    finally:
        _current.reset(token)


class InteractiveWork:
    """How many interactive jobs run in this process right now, so bulk work can step aside for them.

    Queues and the writer put interactive work first, but once a miss is being handled it still shares the
    interpreter (one core's worth under the GIL) with a sync's fetching, mapping and writing threads: measured with
    a 30k sync running, a miss took 95 ms at the median and 213 ms at p95 against 6 ms idle. A sync that pauses at
    its natural steps (before a page, between items it maps, between the writer's parts) while a miss runs lets the
    miss have the process; each pause is bounded, so a steady stream of misses slows a sync but never stops it.
    A miss that waits long for its vendor stops counting meanwhile (``away``): a vendor answering in 9 s would
    otherwise hold every sync back for 9 s at each of its steps.
    """

    def __init__(self, max_pause_s: float = 0.05) -> None:
        self.max_pause_s = max_pause_s
        self._running = 0
        self._lock = threading.Lock()
        self._quiet = threading.Event()
        self._quiet.set()
        self.paused_s = 0.0  # total time bulk work stepped aside: what the lanes cost the syncs (``/metrics``)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self._enter()
        token = _counted.set(True)
        try:
            yield
        finally:
            _counted.reset(token)
            self._leave()

    @contextlib.contextmanager
    def away(self, after_s: float = 0.0) -> Iterator[None]:
        """Inside ``running``, on the event loop: the block waits on something outside the process (the vendor's
        answer), so once it has waited ``after_s`` it no longer counts, until it ends. A vendor answering within
        ``after_s`` changes nothing (the sync steps aside for the whole miss, which then is fastest); a slow one
        no longer holds every sync back for as long as it takes. Anywhere else (bulk work, a task never counted)
        it changes nothing."""
        if not _counted.get():
            yield
            return
        left = False

        def leave() -> None:
            nonlocal left
            left = True
            self._leave()

        handle = asyncio.get_running_loop().call_later(after_s, leave)
        token = _counted.set(False)
        try:
            yield
        finally:
            handle.cancel()
            _counted.reset(token)
            if left:
                self._enter()

    def _enter(self) -> None:
        with self._lock:
            self._running += 1
            self._quiet.clear()

    def _leave(self) -> None:
        with self._lock:
            self._running -= 1
            if not self._running:
                self._quiet.set()

    @property
    def quiet(self) -> bool:
        return self._quiet.is_set()

    def step_aside(self, between: Callable[[], object] | None = None) -> None:
        """Bulk work, in a thread: wait (bounded) while interactive work runs. ``between`` is called every 2 ms
        meanwhile: the writer thread runs the interactive writes that arrive while it waits (the miss it steps
        aside for needs it); when it returns False, the wait ends (the writer must commit first)."""
        if self._quiet.is_set():
            return
        started = time.monotonic()
        deadline = started + self.max_pause_s
        while not self._quiet.wait(0.002 if between is not None else self.max_pause_s):
            if time.monotonic() >= deadline:
                break
            if between is not None and between() is False:
                break
        self._paused(started)

    async def step_aside_async(self) -> None:
        """Bulk work, on the event loop: the same, without blocking the loop."""
        if self._quiet.is_set():
            return
        started = time.monotonic()
        await asyncio.to_thread(self._quiet.wait, self.max_pause_s)  # the count changes on other threads too
        self._paused(started)

    def _paused(self, started: float) -> None:
        with self._lock:  # bulk threads and the event loop add to it
            self.paused_s += time.monotonic() - started


#: The process's one count (both runtimes' interactive paths enter it; bulk paths step aside).
interactive_work = InteractiveWork()
