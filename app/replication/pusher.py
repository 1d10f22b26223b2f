"""The acknowledged push of this node's SQLite changes to PostgreSQL.

The loop (``Pusher.run``) is synchronous and runs on its own thread, in the API (``BackgroundPusher``, a background
task) or alone (``catalog sync run``); both run exactly this code. Its contract:
- PostgreSQL's watermark for this node is the truth. On start and after any error it is read again and the outbox
  rows at or below it are dropped, so a crash between PostgreSQL's commit and SQLite's delete loses and duplicates
  nothing.
- Nothing is skipped silently. A batch PostgreSQL rejects is bisected to the row, which is logged and shown on
  /ready and /metrics; the loop retries with back-off. Only once a newer image of that same row exists (someone fixed
  or deleted it) is the rejected image dropped, with a warning, since the newer image supersedes it anyway.
- It refuses to push while SQLite's and PostgreSQL's replicated columns differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from app.replication.capture import OUTBOX_ERRORS, SqliteOutbox
from app.replication.postgres.replica import (
    REJECTED,
    UNAVAILABLE,
    PostgresReplica,
    Rejected,
    SchemaMismatch,
    Staged,
    WatermarkMoved,
    pg_error,
)
from app.replication.schema import Change

log = logging.getLogger(__name__)


class RejectedBatch(Exception):
    def __init__(self, rejected: Rejected | None) -> None:
        what = rejected.describe() if rejected else "the batch as a whole (no single row fails alone)"
        super().__init__(f"PostgreSQL rejected a batch: {what}")
        self.rejected = rejected


@dataclass
class PushCounters:
    batches: int = 0
    changes: int = 0
    errors: int = 0
    rejected: int = 0
    superseded: int = 0
    last_error: str | None = None
    blocked: dict[str, object] | None = None
    connected: bool = False
    schema_ok: bool | None = None
    last_batch_lag_s: float = 0.0


class Pusher:
    def __init__(
        self,
        outbox: SqliteOutbox,
        replica: PostgresReplica,
        *,
        batch_size: int = 5000,
        poll_s: float = 0.2,
        backoff_max_s: float = 10.0,
        migrate: bool = True,
        on_batch: Callable[[Sequence[Change], float], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.replica = replica
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.backoff_max_s = backoff_max_s
        self.migrate = migrate
        # Called with each acknowledged batch and the time PostgreSQL committed it (the benchmark measures lag so).
        self.on_batch = on_batch
        self.counters = PushCounters()
        self.watermark = 0
        self._prepared = False
        self._blocked_change: Change | None = None
        self._io: ThreadPoolExecutor | None = None
        self._io_box: SqliteOutbox | None = None
        self._prefetch: _ReadAhead | None = None
        self._ack: Future[None] | None = None
        self._stop = threading.Event()

    # -- start-up --------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Connect, migrate, check the schema, install capture, and line the outbox up with PostgreSQL's watermark."""
        if self.migrate:
            self.replica.upgrade()
            self.migrate = False  # once per process; a reconnect does not need it again
        self.replica.connect()
        self.counters.connected = True
        try:
            self.replica.check_schema(self.outbox.columns())
        except SchemaMismatch:
            self.counters.schema_ok = False
            raise
        self.counters.schema_ok = True
        reloaded = self.outbox.install_capture()
        if reloaded:
            log.info("replication: capture installed on %s; existing rows queued", ", ".join(reloaded))
        self.resync()
        self._prepared = True

    def resync(self) -> None:
        self._prefetch = None
        self._finish_ack()
        watermark = self.replica.watermark()
        if self.outbox.last_issued() < watermark:
            log.warning(
                "replication: PostgreSQL already holds changes up to %d from node %r, more than this SQLite file "
                "ever issued (a new file under an old node name); continuing the sequence after it",
                watermark,
                self.replica.node_id,
            )
            self.outbox.adopt_watermark(watermark)
        self.outbox.drop_acknowledged(watermark)
        self.watermark = watermark

    # -- one batch -------------------------------------------------------------------------------------------

    def step(self) -> int:
        """Push one batch; returns how many changes it held (0: nothing pending).

        While a backlog drains, the pusher's own work overlaps PostgreSQL's: the next batch is read and staged
        (parsed, coalesced, encoded for COPY), and the previous one deleted, on a second SQLite connection in a
        helper thread while PostgreSQL applies this one. A deletion can lag behind PostgreSQL's commit safely: the
        watermark decides what was sent, and a restart drops the rest. A staged batch is used only for exactly the
        changes it was built from: if ``_without_superseded`` filters the batch, the replica stages it again.
        """
        staged: Staged | None = None
        prefetched = self._prefetched()
        if prefetched is None:
            changes = self.outbox.read(self.watermark, self.batch_size)
        else:
            changes, staged = prefetched
        if not changes:
            if self.counters.last_error is not None:  # recovered, and nothing left to send
                self.outbox.clear_error()
                self.counters.last_error = None
                self.counters.blocked = None
            return 0
        upto = changes[-1].seq
        full = len(changes) == self.batch_size
        ahead = None
        if full:
            ahead = self._prefetch = _ReadAhead(
                upto, self._io_pool().submit(self._io_outbox().read, upto, self.batch_size)
            )
        changes = self._without_superseded(changes)
        try:
            self.replica.apply(
                changes,
                expected=self.watermark,
                upto=upto,
                staged=staged,
                meanwhile=None if ahead is None else lambda: self._stage_ahead(ahead),
            )
        except REJECTED as exc:
            rejected = self.replica.find_rejected(changes)
            self._blocked_change = rejected.change if rejected else None
            self.counters.rejected += 1
            self.counters.blocked = rejected.describe() if rejected else {"error": pg_error(exc), "seq_upto": upto}
            raise RejectedBatch(rejected) from exc
        committed = time.time()
        self._finish_ack()
        self._ack = self._io_pool().submit(self._io_outbox().acknowledge, upto, pushed=len(changes))
        if not full:
            self._finish_ack()
        self.watermark = upto
        self.counters.last_batch_lag_s = max((committed - c.at for c in changes), default=0.0)
        if self.on_batch is not None:
            self.on_batch(changes, committed)
        self.counters.batches += 1
        self.counters.changes += len(changes)
        self.counters.last_error = None
        self.counters.blocked = None
        self._blocked_change = None
        return len(changes)

    def _io_pool(self) -> ThreadPoolExecutor:
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replication-sqlite")
        return self._io

    def _io_outbox(self) -> SqliteOutbox:
        if self._io_box is None:
            self._io_box = SqliteOutbox(self.outbox.path)
            self._io_box.open()
        return self._io_box

    def _stage_ahead(self, ahead: _ReadAhead) -> None:
        """Stage the batch read ahead on the helper thread, from when PostgreSQL runs this batch's statements."""

        def stage() -> Staged | None:
            try:
                changes = ahead.changes.result()
                return self.replica.stage(changes) if changes else None
            except Exception:
                # Not this thread's to report: apply stages the batch again and the loop handles what that raises.
                return None

        ahead.staged = self._io_pool().submit(stage)

    def _prefetched(self) -> tuple[list[Change], Staged | None] | None:
        ahead, self._prefetch = self._prefetch, None
        if ahead is None:
            return None
        changes = ahead.changes.result()
        staged = ahead.staged.result() if ahead.staged is not None else None
        return (changes, staged) if ahead.after == self.watermark else None

    def _finish_ack(self) -> None:
        ack, self._ack = self._ack, None
        if ack is not None:
            ack.result()

    def close(self) -> None:
        """Finish pending SQLite work and close the helper connection (the loop's own outbox stays the caller's)."""
        with contextlib.suppress(Exception):
            self._finish_ack()
        self._prefetch = None
        if self._io is not None:
            self._io.shutdown(wait=True)
            self._io = None
        if self._io_box is not None:
            self._io_box.close()
            self._io_box = None

    def _without_superseded(self, changes: list[Change]) -> list[Change]:
        bad = self._blocked_change
        if bad is None:
            return changes
        newer = self.outbox.newer_image(bad.tbl, bad.pk, bad.seq)
        if newer is None:
            return changes
        kept = [c for c in changes if not (c.tbl == bad.tbl and c.pk == bad.pk and c.seq < newer)]
        dropped = len(changes) - len(kept)
        if not dropped:
            return changes  # the very list, so a batch staged ahead from it still applies
        self.counters.superseded += dropped
        log.warning(
            "replication: dropping %d rejected image(s) of %s %s (seq %d): superseded by seq %d",
            dropped,
            bad.tbl,
            bad.pk,
            bad.seq,
            newer,
        )
        return kept

    # -- the loop --------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Push until ``stop``; every failure is logged, recorded and retried with back-off."""
        self._stop.clear()
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    if not self._prepared:
                        self.prepare()
                    polled = time.monotonic()
                    pushed = self.step()
                    failures = 0
                    if pushed < self.batch_size:
                        # A fixed cadence, not a fixed pause: a change waits at most one poll interval for its read.
                        self._stop.wait(max(0.0, polled + self.poll_s - time.monotonic()))
                    continue
                except RejectedBatch as exc:
                    log.error("replication: push stopped: %s", exc)
                    self._record(str(exc), self.counters.blocked)
                except SchemaMismatch as exc:
                    log.error("replication: %s", exc)
                    self._record(str(exc), {"error": str(exc)})
                    self._prepared = False
                except (*UNAVAILABLE, WatermarkMoved) as exc:
                    log.warning("replication: PostgreSQL unavailable or moved on: %s", exc)
                    # Recorded for /ready without the driver's text: it names the server, port and user.
                    self._record(f"PostgreSQL unavailable ({type(exc).__name__})", self.counters.blocked)
                    self._reset()
                except Exception as exc:
                    log.exception("replication: push failed")
                    self._record(f"push failed ({type(exc).__name__}; see the log)", self.counters.blocked)
                    self._reset()
                failures += 1
                self._stop.wait(min(self.backoff_max_s, 0.1 * 2 ** min(failures, 10)))
        finally:
            self.close()
            self.replica.close()
            self.counters.connected = False

    def _reset(self) -> None:
        self._prefetch = None
        with contextlib.suppress(Exception):
            self._finish_ack()
        self._prepared = False
        self.counters.connected = False
        self.replica.close()

    def _record(self, message: str, blocked: dict[str, object] | None) -> None:
        self.counters.errors += 1
        self.counters.last_error = message
        try:
            self.outbox.record_error(message, blocked)
        except OUTBOX_ERRORS:
            log.exception("replication: could not record the error in SQLite")


@dataclass
class _ReadAhead:
    """The batch after ``after``, read (and later staged) on the helper thread while the current one is applied."""

    after: int
    changes: Future[list[Change]]
    staged: Future[Staged | None] | None = None


class BackgroundPusher:
    """The push loop as an asyncio task of the API (its work runs on a thread: psycopg and sqlite3 block)."""

    def __init__(self, pusher: Pusher) -> None:
        self.pusher = pusher
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.pusher.outbox.open()
        self._task = asyncio.create_task(asyncio.to_thread(self.pusher.run), name="replication-push")

    async def stop(self) -> None:
        self.pusher.stop()
        if self._task is not None:
            await self._task
            self._task = None
        self.pusher.outbox.close()
