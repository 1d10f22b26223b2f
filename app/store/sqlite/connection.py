"""The catalog file's connections: one writer thread, one read-only connection per reading thread.

Why it is shaped like this:
- Reads are the hot path (the mobile app), so they run inline on a per-thread reader connection: an indexed
  lookup on a local WAL file takes microseconds, less than a hop to a thread pool would cost.
- All writes go through one dedicated writer thread with its own connection, so the event loop never waits on
  a write lock and batches commit in one transaction each. Other processes (the ``catalog`` CLI) may write the
  same file; ``BEGIN IMMEDIATE`` (``immediate``) plus a busy timeout serialises them.
- ``change_seq`` comes from one counter in ``meta`` read and advanced inside each write transaction, so it is
  monotonic across processes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from app.domain.lanes import Lane, current_lane, interactive_work
from app.observability import Metric
from app.store.sqlite.checkpoint import WRITER_PAGES, Checkpointer
from app.store.sqlite.transaction import immediate
from app.store.sqlite.writer import PriorityWriter

T = TypeVar("T")

log = logging.getLogger(__name__)

# SQLite result codes (primary, the low byte) of a store that cannot take writes: disk or size cap full, I/O error,
# read-only file or file system, cannot open.
_CANNOT_WRITE = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN})

# Rows per ``IN (...)`` list: well under SQLite's bound-parameter limit, large enough to keep statements few.
CHUNK = 500


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def marks(n: int) -> str:
    """``n`` placeholders for an ``IN (...)`` list or a VALUES row."""
    return ",".join("?" * n)


#: Rows per multi-row ``INSERT`` (``insert_rows``); the rest goes in statements of halving sizes, so a table has a
#: handful of statement texts (cached), never one per batch size.
ROWS_PER_STATEMENT = 128


@functools.lru_cache(maxsize=64)
def _values(width: int, rows: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return ",".join([one] * rows)


def value_lists(
    conn: sqlite3.Connection, width: int, rows: Sequence[Sequence[object]]
) -> Iterator[tuple[str, list[object]]]:
    """The VALUES lists and parameters of multi-row statements over ``rows``, in order; never more parameters in
    one statement than this SQLite takes (999 in builds before 3.32)."""
    most = max(1, min(ROWS_PER_STATEMENT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    start = 0
    while start < len(rows):
        left = len(rows) - start
        size = most if left >= most else 1 << (left.bit_length() - 1)
        yield _values(width, size), [value for row in rows[start : start + size] for value in row]
        start += size


def insert_rows(
    conn: sqlite3.Connection, head: str, width: int, rows: Sequence[Sequence[object]], tail: str = ""
) -> None:
    """``executemany(f"{head} VALUES (?, ...) {tail}", rows)``, as few multi-row statements, rows in the same order.

    Why: a table with triggers (the change feed's on ``products``, replication's capture) makes each statement keep
    a statement journal, and that journal copies every page the statement first touches. One statement per row
    copied the pages of every index a row lands in, for every row: a third of what writing a product cost. Per
    statement, a page is copied once for all its rows. Row by row the effect is the same: triggers fire per row, in
    order, and an ``ON CONFLICT`` clause in ``tail`` sees each row as it would alone (a batch has no duplicates).
    """
    for values, params in value_lists(conn, width, rows):
        conn.execute(f"{head} VALUES {values} {tail}", params)


def dt(value: str | None) -> datetime | None:
    """A stored ISO timestamp (NULL and '' are no time)."""
    return datetime.fromisoformat(value) if value else None


def next_seq(conn: sqlite3.Connection, n: int) -> int:
    """Reserve ``n`` sequence numbers; returns the first. Only call inside a write transaction, so the read and
    the advance are one step for every process writing the file."""
    (last,) = conn.execute(
        "UPDATE meta SET value = value + ? WHERE key = 'change_seq' RETURNING value - ?", (n, n)
    ).fetchone()
    return int(last) + 1


class Connections:
    """Opens, hands out and closes the file's connections; runs write transactions on the writer thread."""

    def __init__(self, path: Path, *, busy_timeout_s: float, cache_mb: int) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._cache_mb = cache_mb
        self._writer: PriorityWriter | None = None
        self._checkpointer: Checkpointer | None = None
        self._w: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        #: Why the last write failed for want of room or permission (None: the last write went through).
        self.write_failure: str | None = None
        self.write_failed_at = 0.0
        self.write_failed_full = False
        #: Page cache of each reader: reads run on several pool threads, each with its own connection, and every
        #: one of them filled to ``cache_mb`` was RSS the OS page cache (shared, reclaimable) holds anyway.
        self.reader_cache_mb = max(2, cache_mb // 4)
        self._version_conn: sqlite3.Connection | None = None
        self._version_lock = threading.Lock()
        #: Runs on the writer thread after each transaction that committed (the search index follows the store).
        self.after_commit: Callable[[sqlite3.Connection], None] | None = None
        #: Runs on the writer thread after a bulk transaction that held nested writes rolled back.
        self.after_rollback: Callable[[], None] | None = None
        #: How long a nested write (``transaction(..., nested=...)``) may stay uncommitted inside a bulk job.
        self.nested_commit_s = 0.5
        self._nested: list[Callable[[sqlite3.Connection], object]] = []  # nested writes not committed yet
        self._nested_since = 0.0
        self._nested_total = 0
        #: Transactions this writer committed: with ``nested_pending``, what a caller that must know its write is
        #: on disk (a Kafka consumer storing its offsets) compares against.
        self.commits = 0
        self.held_s = 0.0  # time bulk parts spent letting nested writes in midway (``let_nested_in``)

    def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Create the file if needed and start the writer; ``prepare`` (migrations, say) runs on the writer
        connection before any write is accepted. Blocking; run once at start-up."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = PriorityWriter()
        self._writer.submit(lambda: self._open_writer(prepare)).result()
        self._checkpointer = Checkpointer(lambda: self._connect(2))
        self._checkpointer.start()

    def _connect(self, cache_mb: int | None = None, *, read_only: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA cache_size = -{(cache_mb or self._cache_mb) * 1024}")
        conn.execute("PRAGMA temp_store = MEMORY")
        if read_only:
            conn.execute("PRAGMA query_only = ON")
        return conn

    def _open_writer(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        conn = self._connect()
        # 8 KiB pages hold three ~2.3 KiB product rows where 4 KiB pages held one: the file is a fifth smaller and
        # list scans touch fewer pages. Only takes effect on a new file (WAL fixes the page size).
        conn.execute("PRAGMA page_size = 8192")
        conn.execute("PRAGMA journal_mode = WAL")
        # Checkpoints mostly run on their own thread (``checkpoint``); the writer's own finishes them, the log restarts.
        conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_PAGES}")
        conn.execute("PRAGMA synchronous = NORMAL")
        prepare(conn)
        self._w = conn

    def data_version(self) -> tuple[int, int]:
        """A version of the file that moves whenever anyone commits to it, the same for every thread.

        ``PRAGMA data_version`` is only comparable on one connection, and reads now run on several pool threads
        with a connection each: keyed by each thread's own, the read caches missed whenever two threads took
        turns. One connection, under a lock, answers for all (a microsecond).
        """
        with self._version_lock:
            conn = self._version_conn
            if conn is None:
                conn = self._version_conn = self._connect(2, read_only=True)
            return (id(conn), conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._writer is not None:
            if self._w is not None:
                w = self._w
                self._writer.submit(w.close).result()
                self._w = None
            self._writer.shutdown()
            self._writer = None
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._version_lock:
            if self._version_conn is not None:
                self._version_conn.close()
                self._version_conn = None
        self._local = threading.local()

    @property
    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection, opened on first use (a connection must not be shared by threads
        that use it at once, and opening one per read would cost more than the read)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(self.reader_cache_mb, read_only=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def ping(self) -> bool:
        try:
            self.reader.execute("SELECT 1 FROM meta LIMIT 1").fetchone()
            return self._writer is not None
        except sqlite3.Error:
            return False

    def change_seq(self) -> int:
        (value,) = self.reader.execute("SELECT value FROM meta WHERE key = 'change_seq'").fetchone()
        return int(value)

    async def transaction(
        self,
        fn: Callable[[sqlite3.Connection], T],
        lane: Lane | None = None,
        nested: Callable[[sqlite3.Connection], T] | None = None,
    ) -> T:
        """``fn`` in one write transaction on the writer thread, off the event loop; interactive ones (the default
        lane of the running code, ``app.domain.lanes``) go before every bulk one still waiting.

        ``nested``: a write that may be answered before it commits (data that can be fetched again: a shopper's
        miss). When a bulk job holds the writer, it runs inside the bulk transaction (a savepoint of its own) and
        commits with it, within ``nested_commit_s``; the sync's transaction goes on instead of committing for it,
        which is what a commit per miss cost a sync. Should that transaction fail, ``fn`` runs again on its own.
        """
        if self._writer is None:
            raise RuntimeError("store is not open")
        inside = None if nested is None else functools.partial(self._nested_write, fn, nested)
        future = self._writer.submit(lambda: self._in_transaction(fn), lane or current_lane(), inside)
        return await asyncio.wrap_future(future)

    def _nested_write(self, fn: Callable[[sqlite3.Connection], T], nested: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._w
        assert conn is not None and conn.in_transaction
        conn.execute("SAVEPOINT nested")
        try:
            result = nested(conn)
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back the whole of it (SQLITE_FULL): keep the real error
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
            raise
        conn.execute("RELEASE nested")
        if not self._nested:
            self._nested_since = time.monotonic()
        self._nested.append(fn)
        self._nested_total += 1
        return result

    async def bulk(self, parts: Sequence[Callable[[sqlite3.Connection], T]]) -> list[T]:
        """``parts`` in as few write transactions as possible, yet never holding the writer from an interactive
        write for longer than one part: between two parts, when an interactive transaction is waiting, what is done
        is committed, the waiting ones run, and a new transaction goes on with the rest. An idle service thus writes
        a sync's batch in one transaction (one commit for many pages), a busy one in several. Interactive writes
        with a nested variant run inside the open transaction instead (``transaction``), and the bulk job steps
        aside for running interactive work without committing. Within a part that cannot commit midway (one
        changelog message), ``let_nested_in`` does the same between its pieces."""
        if self._writer is None:
            raise RuntimeError("store is not open")
        writer = self._writer
        results: list[T] = []

        def run_some(conn: sqlite3.Connection) -> None:
            while len(results) < len(parts):
                results.append(parts[len(results)](conn))
                if len(results) == len(parts) or self._nested_due():
                    return
                if self.interactive_near():
                    admitted = self._admit_nested(conn, until_due=True)
                    if not admitted or writer.waiting(Lane.INTERACTIVE):
                        return

        def run_all() -> list[T]:
            while len(results) < len(parts):
                done = len(results)
                try:
                    self._in_transaction(run_some)
                except BaseException:
                    del results[done:]  # rolled back
                    self._rerun_nested()
                    raise
                if len(results) < len(parts):
                    writer.run_waiting_interactive()
                    # Committed: a running miss has the process for a moment, its writes run as they come.
                    interactive_work.step_aside(writer.run_waiting_interactive)
            return results

        return await asyncio.wrap_future(writer.submit(run_all, Lane.BULK))

    def interactive_near(self) -> bool:
        """Interactive work waits for the writer or runs (so a bulk part should cut what it writes smaller)."""
        return bool(self._writer is not None and self._writer.waiting(Lane.INTERACTIVE)) or not interactive_work.quiet

    def let_nested_in(self, conn: sqlite3.Connection) -> None:
        """On the writer thread, inside a bulk part that cannot commit midway (the pieces of one changelog
        message): the waiting nested writes run, and the part steps aside while interactive work runs, as
        ``bulk`` does between parts; a write that needs a commit waits for the part's end."""
        if not self.interactive_near():
            return
        started = time.perf_counter()
        self._admit_nested(conn, until_due=False)  # due or not, this part cannot commit before its end
        self.held_s += time.perf_counter() - started

    def _admit_nested(self, conn: sqlite3.Connection, *, until_due: bool) -> bool:
        """On the writer thread, inside a bulk transaction: run the waiting nested writes, then step aside while
        interactive work runs, letting in those that arrive. False when a write that needs a commit waits (or,
        ``until_due``, the nested writes held are due): the bulk job should commit at its next chance."""
        writer = self._writer
        assert writer is not None

        def let_in() -> bool:
            return writer.run_waiting_interactive(nested=True) and not (until_due and self._nested_due())

        admitted = let_in()
        if admitted:
            interactive_work.step_aside(let_in)
        if not conn.in_transaction:  # a nested write's error (SQLITE_FULL) rolled back the whole of it
            raise sqlite3.OperationalError("the bulk transaction was rolled back under a nested write")
        return admitted

    @property
    def nested_pending(self) -> bool:
        return bool(self._nested)

    def _nested_due(self) -> bool:
        return bool(self._nested) and time.monotonic() - self._nested_since >= self.nested_commit_s

    def _rerun_nested(self) -> None:
        """The bulk transaction rolled back the nested writes it held: each runs again, in its own transaction."""
        again, self._nested = self._nested, []
        if not again:
            return
        if self.after_rollback is not None:
            self.after_rollback()
        for fn in again:
            try:
                self._in_transaction(fn)
            except Exception:  # its caller was answered already; the data is fetched again on the next read
                log.exception("a nested write could not be written again after its bulk transaction failed")

    def metrics(self) -> list[Metric]:
        out = self._writer.metrics() if self._writer is not None else []
        out.append(
            Metric(
                "catalog_writer_nested_total",
                "Interactive writes (a shopper's miss) run inside a sync's open transaction instead of its commit.",
                "counter",
                self._nested_total,
                {},
            )
        )
        return out + (self._checkpointer.metrics() if self._checkpointer is not None else [])

    def _in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._w
        assert conn is not None
        try:
            result = immediate(conn, fn)
        except sqlite3.Error as exc:
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            if code in _CANNOT_WRITE:
                self.write_failure = f"{type(exc).__name__}: {exc}"  # e.g. "database or disk is full"
                self.write_failed_at, self.write_failed_full = time.monotonic(), code == sqlite3.SQLITE_FULL
            raise
        if not self.write_failed_full:  # a small write that fits says nothing about the batch that did not
            self.write_failure = None
        self._nested.clear()  # committed with it
        self.commits += 1
        if self.after_commit is not None:
            self.after_commit(conn)
        return result

    async def on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the writer thread and connection, outside any transaction (it may open a read one)."""
        if self._writer is None or self._w is None:
            raise RuntimeError("store is not open")
        conn = self._w
        # Background upkeep (the search index catching up at start): the bulk lane, behind any interactive write.
        return await asyncio.wrap_future(self._writer.submit(lambda: fn(conn), Lane.BULK))

    def connect_reader(self) -> sqlite3.Connection:
        """A read-only connection of the caller's own (a long read on a thread of its own), closed by the caller."""
        return self._connect(read_only=True)

    def write_problem(self, full_for_s: float) -> str | None:
        """The last write failure for want of room or permission; "full" holds ``full_for_s`` after the last one."""
        if self.write_failed_full and time.monotonic() - self.write_failed_at > full_for_s:
            self.write_failure, self.write_failed_full = None, False
        return self.write_failure
