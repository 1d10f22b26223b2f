"""Keeping PostgreSQL in step with this node's SQLite: the push loop and the initial load of a fresh node.

The loop (``Pusher.run``) is synchronous and runs on its own thread, in the API (a background task) or alone
(``catalog sync run``); both run exactly this code. Its contract:
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
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from app.domain import documents
from app.observability import Metric
from app.replication import capture
from app.replication.capture import Change, SqliteOutbox
from app.replication.postgres.migrate import upgrade
from app.replication.postgres.replica import (
    REJECTED,
    PostgresReplica,
    Rejected,
    SchemaMismatch,
    Staged,
    WatermarkMoved,
)
from app.settings import Settings
from app.store.sqlite.catalog import SqliteCatalog
from app.store.sqlite.offers import OFFER_READ, row_to_offer

log = logging.getLogger(__name__)


def replication_node(settings: Settings) -> str:
    """The source name this SQLite file pushes under: stable across restarts of the same node."""
    return settings.node_id or f"{socket.gethostname()}:{settings.db_path.resolve()}"


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
            upgrade(self.replica.url, self.replica.schema)
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
            self.counters.blocked = rejected.describe() if rejected else {"error": str(exc), "seq_upto": upto}
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
                except (psycopg.OperationalError, psycopg.InterfaceError, WatermarkMoved) as exc:
                    log.warning("replication: PostgreSQL unavailable or moved on: %s", exc)
                    self._record(f"{type(exc).__name__}: {exc}", self.counters.blocked)
                    self._reset()
                except Exception as exc:
                    log.exception("replication: push failed")
                    self._record(f"{type(exc).__name__}: {exc}", self.counters.blocked)
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
        except sqlite3.Error:
            log.exception("replication: could not record the error in SQLite")

    def metrics(self) -> list[Metric]:
        c = self.counters
        return [
            Metric(
                "catalog_replication_pushed_changes_total", "Changes PostgreSQL acknowledged.", "counter", c.changes
            ),
            Metric(
                "catalog_replication_pushed_batches_total", "Batches PostgreSQL acknowledged.", "counter", c.batches
            ),
            Metric("catalog_replication_errors_total", "Failed push attempts.", "counter", c.errors),
            Metric("catalog_replication_rejected_batches_total", "Batches PostgreSQL refused.", "counter", c.rejected),
            Metric("catalog_replication_connected", "1 while connected to PostgreSQL.", "gauge", int(c.connected)),
            Metric("catalog_replication_watermark", "Last outbox sequence PostgreSQL holds.", "gauge", self.watermark),
            Metric(
                "catalog_replication_last_batch_lag_seconds",
                "Capture to PostgreSQL commit, oldest change of the last batch.",
                "gauge",
                c.last_batch_lag_s,
            ),
        ]


@dataclass
class _ReadAhead:
    """The batch after ``after``, read (and later staged) on the helper thread while the current one is applied."""

    after: int
    changes: Future[list[Change]]
    staged: Future[Staged | None] | None = None


# -- status for /ready and /metrics (any process on the file) ---------------------------------------------------


class ReplicationMonitor:
    """What /ready and /metrics show, read from the SQLite file the pusher records into (whichever process pushes)."""

    def __init__(self, settings: Settings, pusher: Pusher | None) -> None:
        self.settings = settings
        self.pusher = pusher
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def stats(self) -> capture.OutboxStats | None:
        with self._lock:
            if self._conn is None:
                self._conn = sqlite3.connect(self.settings.db_path, check_same_thread=False, isolation_level=None)
                self._conn.execute("PRAGMA query_only = ON")
            return capture.outbox_stats(self._conn)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def status(self) -> dict[str, Any]:
        stats = self.stats()
        pushing = self.pusher is not None
        blocked = stats.blocked if stats else None
        body: dict[str, Any] = {
            "pushing": pushing,
            "backlog": stats.backlog if stats else 0,
            "lag_s": round(stats.lag_s(), 3) if stats else 0.0,
            "watermark": stats.watermark if stats else 0,
            "last_push_at": stats.last_push_at if stats else None,
            "last_error": stats.last_error if stats else None,
            "blocked": blocked,
        }
        if self.pusher is not None:
            body["connected"] = self.pusher.counters.connected
            body["schema_ok"] = self.pusher.counters.schema_ok
        return body

    @staticmethod
    def ok(status: dict[str, Any]) -> bool:
        """Of a ``status()``: not ready only when a person must act (a rejected row, different columns);
        PostgreSQL being down is not a reason to take the API out of service: the outbox keeps everything."""
        return status["blocked"] is None and status.get("schema_ok") is not False

    @staticmethod
    def reason(status: dict[str, Any]) -> str:
        """Of a ``status()`` that is not ``ok``: what the operator has to act on."""
        if status["blocked"]:
            return f"replication to PostgreSQL is stopped on a rejected row: {status['blocked']}"
        return f"replication to PostgreSQL cannot run: {status['last_error']}"

    def metrics(self) -> list[Metric]:
        stats = self.stats()
        metrics = [
            Metric(
                "catalog_replication_backlog",
                "Captured changes not yet acknowledged by PostgreSQL.",
                "gauge",
                stats.backlog if stats else 0,
            ),
            Metric(
                "catalog_replication_lag_seconds",
                "Age of the oldest unsent change.",
                "gauge",
                stats.lag_s() if stats else 0.0,
            ),
            Metric(
                "catalog_replication_blocked",
                "1 while the push is stopped on a rejected row.",
                "gauge",
                int(bool(stats and stats.blocked)),
            ),
            Metric(
                "catalog_replication_last_error_timestamp_seconds",
                "When the push last failed (0: never).",
                "gauge",
                (stats.last_error_at or 0.0) if stats else 0.0,
            ),
        ]
        if self.pusher is not None:
            metrics.extend(self.pusher.metrics())
        return metrics


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


# -- initial load -----------------------------------------------------------------------------------------------

_CHUNK = 2000


def _insert_rows(conn: sqlite3.Connection, table: str, rows: Iterable[dict[str, Any]], extra: dict[str, Any]) -> int:
    n = 0
    for row in rows:
        values = {**row, **extra}
        names = ", ".join(values)
        conn.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(values))})", list(values.values()))
        n += 1
    return n


def _adopt_product_times(conn: sqlite3.Connection, pg: psycopg.Connection[tuple[Any, ...]]) -> int:
    """Give the re-derived products the ``updated_at`` the source node computed; returns how many differed.

    A product's ``updated_at`` is the newest of its offers' ``vendor_updated_at or fetched_at``. ``fetched_at`` is
    carried, not watched: when an offer without a vendor timestamp is only re-fetched, its new fetch time stays in
    the source's SQLite, and if another offer's change then rebuilds the product, the product row PostgreSQL gets
    holds that newer time while PostgreSQL's offer still holds the older one. Re-deriving from the offers alone
    then gives an older ``updated_at`` (and so another document and etag). Everything else in a product's
    document is a function of its offers' replicated content, so taking ``updated_at`` from PostgreSQL's product
    row makes the document byte for byte the source's. The offers' ``fetched_at`` stay as PostgreSQL has them
    (never later than the truth: which offer was re-fetched is not known).
    """
    theirs: dict[str, str] = {pid: at for pid, at in pg.execute("SELECT id, updated_at FROM products")}
    fixes: list[tuple[str, bytes, bytes, str, str]] = []
    for pid, updated_at, summary, doc in conn.execute("SELECT id, updated_at, summary, doc FROM products"):
        wanted = theirs.get(pid)
        if wanted is None or wanted == updated_at:
            continue
        new_summary, new_doc = orjson.loads(summary), orjson.loads(doc)
        new_summary["updated_at"] = new_doc["updated_at"] = wanted
        body = orjson.dumps(new_doc)
        fixes.append((wanted, orjson.dumps(new_summary), body, documents.etag_of(body), pid))
    conn.executemany("UPDATE products SET updated_at = ?, summary = ?, doc = ?, etag = ? WHERE id = ?", fixes)
    return len(fixes)


async def initial_load(store: SqliteCatalog, replica: PostgresReplica, *, install_capture: bool) -> int | None:
    """Fill an empty SQLite from PostgreSQL, in one SQLite transaction with capture suppressed.

    Returns the offers loaded, or None when SQLite is not empty (or PostgreSQL has no catalog). Products are
    re-derived through the store's own upsert path (unification), so they are what the source node computed.
    One transaction: a node that dies mid-load starts empty again and reloads, never half-loaded.
    """
    if store.list_vendors() or store.count_products():
        return None

    def load(conn: sqlite3.Connection) -> int | None:
        columns = {spec.name: [c.name for c in capture.replicated_columns(conn, spec)] for spec in capture.REPLICATED}
        with replica.snapshot() as pg:

            def rows(table: str) -> list[dict[str, Any]]:
                cols = columns[table]
                cur = pg.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY 1")
                return [dict(zip(cols, r, strict=True)) for r in cur]

            vendors = rows("vendors")
            if not vendors:
                return None
            capture.set_suppressed(conn, True)
            first = SqliteCatalog.next_seq(conn, len(vendors))
            for i, vendor in enumerate(vendors):
                _insert_rows(conn, "vendors", [vendor], {"change_seq": first + i})
            _insert_rows(conn, "vendor_sync", rows("vendor_sync"), {})
            loaded = 0
            with pg.cursor(name="initial_load_offers") as cur:
                cur.itersize = _CHUNK
                # PostgreSQL keeps the offers' columns as SQLite's text, so the store's own row reader applies.
                cur.execute(f"SELECT {OFFER_READ} FROM offers ORDER BY vendor_id, vendor_product_id")
                while batch := cur.fetchmany(_CHUNK):
                    offers = [row_to_offer(r) for r in batch]
                    store.upsert_in(conn, offers)
                    loaded += len(offers)
            _adopt_product_times(conn, pg)
            capture.set_suppressed(conn, False)
            if install_capture:
                capture.install(conn, reload=False)
            return loaded

    loaded = await store.run_in_transaction(load)
    if loaded is not None:
        log.info("replication: initial load of %d offers from PostgreSQL", loaded)
    return loaded


# -- wiring -----------------------------------------------------------------------------------------------------


class Replication:
    """Everything PostgreSQL does for one API node: initial load, the optional push task, status, analytics."""

    def __init__(self, settings: Settings) -> None:
        from app.replication.postgres.analytics import PostgresAnalytics

        url = settings.database_url
        if not url:
            raise ValueError("replication needs DATABASE_URL")
        self.settings = settings
        self.url = url
        self.background: BackgroundPusher | None = None
        pusher = build_pusher(settings) if settings.replication_push else None
        if pusher is not None:
            self.background = BackgroundPusher(pusher)
        self.monitor = ReplicationMonitor(settings, pusher)
        self.analytics = PostgresAnalytics(url, schema=settings.database_schema)

    async def start(self, store: SqliteCatalog) -> None:
        if self.settings.replication_initial_load:
            replica = PostgresReplica(
                self.url, schema=self.settings.database_schema, node_id=replication_node(self.settings)
            )
            try:
                await initial_load(store, replica, install_capture=self.settings.replication_push)
            except (psycopg.OperationalError, psycopg.errors.UndefinedTable) as exc:
                log.warning(
                    "replication: no initial load from PostgreSQL (%s); starting with this SQLite as it is", exc
                )
        if self.background is not None:
            await self.background.start()
        await self.analytics.open()

    async def stop(self) -> None:
        if self.background is not None:
            await self.background.stop()
        await self.analytics.close()
        self.monitor.close()


def build_pusher(settings: Settings) -> Pusher:
    if not settings.database_url:
        raise ValueError("DATABASE_URL is not set: nothing to push to")
    return Pusher(
        SqliteOutbox(settings.db_path),
        PostgresReplica(settings.database_url, schema=settings.database_schema, node_id=replication_node(settings)),
        batch_size=settings.replication_batch_size,
        poll_s=settings.replication_poll_s,
        backoff_max_s=settings.replication_backoff_max_s,
    )
