"""CPU time by thread, on ``/metrics``: which part of the one process a node's CPU goes to.

A node is one process on few cores: the event loop (every request, vendor calls, the embedded workers), SQLite's one
writer, the search index's follower, the read pools, the page mapping of syncs (``asyncio.to_thread``, the
``executor`` group). When a node is slow, the first question is which of them is saturated (a writer at one full
core is the single-writer ceiling; an event loop at one core delays every request). Python threads are read through
their CPU clocks (``time.pthread_getcpuclockid``), grouped by name with a pool's number cut (``store-read_0`` and
``store-read_1`` are ``store-read``). What no live Python thread accounts for (native threads: Tantivy's merges,
librdkafka; threads that ended since the last scrape) is ``other``, so the groups add up to the process's CPU,
which is exported too under Prometheus' standard name.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Iterator

from app.observability import Metric

_POOL_SUFFIX = re.compile(r"_\d+$")
_UNNAMED = re.compile(r"^Thread-\d+")
#: The event loop's default executor (``asyncio.to_thread``): ``asyncio_0`` under asyncio, ``uvloop_0`` under
#: uvloop, ``ThreadPoolExecutor-0_0`` for a pool made without a name.
_EXECUTOR = re.compile(r"^(asyncio|uvloop|ThreadPoolExecutor-\d+)_\d+$")


def group_of(name: str) -> str:
    """``store-read_3`` -> ``store-read``; ``asyncio_0``, ``uvloop_2`` and ``ThreadPoolExecutor-0_1`` ->
    ``executor`` (the loop's default one: syncs' page mapping); ``Thread-12 (run)`` -> ``unnamed``; ``MainThread``
    as it is."""
    if _EXECUTOR.match(name):
        return "executor"
    if _UNNAMED.match(name):
        return "unnamed"
    return _POOL_SUFFIX.sub("", name)


class ThreadCpu:
    """Counters that never go back: each thread's CPU is added as it grows, and stays in its group once the thread
    ends (its clock is gone then; what it spent after the last read falls into ``other``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: weakref.WeakKeyDictionary[threading.Thread, float] = weakref.WeakKeyDictionary()
        self._groups: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        """Seconds of CPU by group, ``other`` included; they add up to the process's CPU."""
        with self._lock:
            for thread in threading.enumerate():
                spent = _cpu_of(thread)
                if spent is None:
                    continue
                before = self._seen.get(thread, 0.0)
                if spent > before:
                    group = group_of(thread.name)
                    self._groups[group] = self._groups.get(group, 0.0) + spent - before
                    self._seen[thread] = spent
            total = time.process_time()  # after the threads' clocks: never below what they add up to
            named = sum(self._groups.values())
            return {**self._groups, "other": max(0.0, total - named)}

    def metrics(self) -> Iterator[Metric]:
        groups = self.read()
        yield Metric("process_cpu_seconds_total", "CPU time of this process (user and system).", "counter",
                     sum(groups.values()))  # fmt: skip
        for group, seconds in sorted(groups.items()):
            yield Metric(
                "catalog_thread_cpu_seconds_total",
                "CPU time by thread group (pools summed; other: native threads and ended ones).",
                "counter",
                seconds,
                {"thread": group},
            )


def _cpu_of(thread: threading.Thread) -> float | None:
    ident = thread.ident
    if ident is None:  # not started yet
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, ValueError):  # ended between enumerate() and here
        return None
