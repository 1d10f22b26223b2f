"""SQLite's one writer thread, interactive writes first.

SQLite has one writer at a time. A plain single-thread executor runs writes in arrival order, so a shopper's miss
(one small upsert) queued behind a sync's batches waited for all of them. Here each job carries its lane: the thread
always runs the oldest interactive job before any bulk one, so a miss waits at most for the one bulk transaction
that is running, and the bulk writers keep those short (``SqliteCatalog`` cuts a sync's batch by time).

A job may also carry a variant of itself that runs inside the bulk transaction already open (``nested``): a
shopper's miss, whose data can be fetched again, need not make the sync commit (``Connections.bulk``).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from app.domain.lanes import Lane, interactive_work
from app.observability import Metric

T = TypeVar("T")

_PRIORITY = {Lane.INTERACTIVE: 0, Lane.BULK: 1}
_STOP = 2  # after every job already submitted

#: priority, order, lane, submitted at, the job, its variant inside an open transaction, its future
_Job = tuple[int, int, Lane | None, float, Callable[[], Any] | None, Callable[[], Any] | None, Future[Any]]


class PriorityWriter:
    def __init__(self, name: str = "sqlite-writer") -> None:
        self._jobs: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._waiting = dict.fromkeys(Lane, 0)
        self._wait_s_total = dict.fromkeys(Lane, 0.0)
        self._wait_s_max = dict.fromkeys(Lane, 0.0)
        self._ran = dict.fromkeys(Lane, 0)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(
        self, fn: Callable[[], T], lane: Lane = Lane.INTERACTIVE, nested: Callable[[], T] | None = None
    ) -> Future[T]:
        """``nested``: the same job for when it runs inside a transaction a bulk job holds open
        (``run_waiting_interactive(nested=True)``); without it, the bulk job commits before this one runs."""
        future: Future[T] = Future()
        with self._lock:
            self._waiting[lane] += 1
        self._jobs.put((_PRIORITY[lane], next(self._seq), lane, time.monotonic(), fn, nested, future))
        return future

    def shutdown(self) -> None:
        """Runs what was submitted, then ends the thread."""
        self._jobs.put((_STOP, next(self._seq), None, 0.0, None, None, Future()))
        self._thread.join()

    def waiting(self, lane: Lane) -> int:
        return self._waiting[lane]

    def run_waiting_interactive(self, nested: bool = False) -> bool:
        """On the writer thread, between two parts of a bulk job: run the interactive jobs waiting now. With
        ``nested`` (the bulk job's transaction is open) only as long as the next one has a nested variant; False
        when one without it waits (the bulk job must commit first)."""
        while True:
            with self._jobs.mutex:
                heap = self._jobs.queue
                if not heap or heap[0][0] != _PRIORITY[Lane.INTERACTIVE]:
                    return True
                if nested and heap[0][5] is None:
                    return False
            self._one(self._jobs.get_nowait(), nested)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job[4] is None:
                return
            self._one(job)

    def _one(self, job: _Job, nested: bool = False) -> None:
        _, _, lane, submitted, fn, inside, future = job
        if fn is None or lane is None:
            return
        if nested and inside is not None:
            fn = inside
        waited = time.monotonic() - submitted
        with self._lock:
            self._waiting[lane] -= 1
            self._ran[lane] += 1
            self._wait_s_total[lane] += waited
            self._wait_s_max[lane] = max(self._wait_s_max[lane], waited)
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the caller, as an executor would
            future.set_exception(exc)

    def metrics(self) -> list[Metric]:
        out: list[Metric] = []
        for lane in Lane:
            labels = {"lane": lane.value}
            with self._lock:
                worst, self._wait_s_max[lane] = self._wait_s_max[lane], 0.0
            out += [
                Metric(
                    "catalog_writer_depth",
                    "Write transactions waiting for SQLite's writer, per lane.",
                    "gauge",
                    self._waiting[lane],
                    labels,
                ),
                Metric(
                    "catalog_writer_wait_seconds_max",
                    "Longest wait for the writer since the last scrape.",
                    "gauge",
                    worst,
                    labels,
                ),
                Metric(
                    "catalog_writer_wait_seconds_total",
                    "Time write transactions waited for the writer, summed.",
                    "counter",
                    self._wait_s_total[lane],
                    labels,
                ),
                Metric(
                    "catalog_writer_transactions_total",
                    "Write transactions run, per lane.",
                    "counter",
                    self._ran[lane],
                    labels,
                ),
            ]
        out.append(
            Metric(
                "catalog_bulk_paused_seconds_total",
                "Time bulk work (sync pages, mapping, the writer's parts) stepped aside for running interactive work.",
                "counter",
                interactive_work.paused_s,
                {},
            )
        )
        return out
