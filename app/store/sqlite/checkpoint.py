"""WAL checkpoints on a thread of their own, not in the writer's commits.

Why: with SQLite's automatic checkpoints, the commit that crosses the WAL's page threshold copies the whole log into
the database file and fsyncs it, on the writer thread, inside the write. During a sync that is ~100 ms every few
seconds, and a shopper's miss whose write comes next waits for it (the interactive lane's wait for the writer
averaged 20 ms per write with a 30k sync running; 9.8 ms with this thread and a writer threshold of 50,000 pages).
A ``PASSIVE`` checkpoint on another connection copies the log without taking the writer's lock or blocking readers,
and SQLite releases the GIL meanwhile, so the copy overlaps the writer's own work on the second core.

It cannot do it all: the log restarts from its beginning only when a write transaction begins with every frame
copied, which a writer that never pauses rarely gives a checkpoint on another connection, so left alone the log
grows without bound during a sync. The writer keeps its own threshold (``WRITER_PAGES``): when it crosses it, this
thread has copied all but the last round's frames, the writer's checkpoint copies only those, and the log restarts.
Measured with a 30k sync and 20 misses/s (``bench.lanes``): threshold 5,000 pages (the earlier setting, now with
this thread) miss p95 73-81 ms, sync loss 52-59%; 20,000 pages 55-66 ms, loss 39-44%; 50,000 pages 54-61 ms (one
run each); without this thread 89-108 ms, loss 47-71% over four runs.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from app.observability import Metric

log = logging.getLogger(__name__)

#: The writer connection's own ``wal_autocheckpoint``: the log's bound (8 KiB pages: 160 MB), the rest of a copy
#: this thread made.
WRITER_PAGES = 20_000


class Checkpointer:
    def __init__(self, connect: Callable[[], sqlite3.Connection], *, every_s: float = 0.25) -> None:
        """``connect``: a connection of its own to the file (not read-only: a checkpoint writes the database file);
        a ``PASSIVE`` checkpoint every ``every_s``."""
        self._connect = connect
        self.every_s = every_s
        self._last = (0, 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0
        self.seconds = 0.0
        self.failures = 0

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        conn = self._connect()
        try:
            while not self._stop.wait(self.every_s):
                self.run_once(conn)
        finally:
            conn.close()

    def run_once(self, conn: sqlite3.Connection) -> bool:
        """One ``PASSIVE`` checkpoint; True when it copied pages. Never raises: a failed checkpoint is retried at
        the next round (the writer's own checkpoints bound the log meanwhile). With nothing new in the log it only reads
        the WAL index (no copy, no fsync)."""
        try:
            started = time.perf_counter()
            (_, frames, done) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            self.failures += 1
            log.warning("WAL checkpoint failed (retried in %.1f s): %s", self.every_s, exc)
            return False
        # The log as this round left it: the same as the last round's, nothing was written (nor copied) since.
        copied = done > 0 and (frames, done) != self._last
        self._last = (frames, done)
        if copied:
            self.seconds += time.perf_counter() - started
            self.checkpoints += 1
        return copied

    def metrics(self) -> list[Metric]:
        return [
            Metric(
                "catalog_wal_checkpoints_total",
                "WAL checkpoints run by the checkpoint thread (off the writer).",
                "counter",
                self.checkpoints,
            ),
            Metric("catalog_wal_checkpoint_seconds_total", "Time those checkpoints took.", "counter", self.seconds),
            Metric(
                "catalog_wal_checkpoint_failures_total",
                "Checkpoints that failed (retried at the next round).",
                "counter",
                self.failures,
            ),
        ]
