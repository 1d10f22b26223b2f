"""SQLite catalog store: the ``CatalogStore`` port over one local file.

``SqliteCatalog`` is a facade: it owns the pieces and says which transaction each write is, nothing more.
- ``connection``: the writer thread, per-thread readers, pragmas, transactions, the change sequence;
- ``migrate``: the schema migrations (``migrations/*.sql``);
- ``vendors``: vendor and sync-status records;
- ``offers``: the offer writer (incremental unification, product rebuilds, base prices);
- ``reads``: the product reader (list pages, FTS search, caches).
Each write of the port is one ``BEGIN IMMEDIATE`` transaction on the writer thread, so readers never see half
of it; each read runs inline on the calling thread.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from app.domain import documents
from app.domain.changes import FeedPosition
from app.domain.lanes import Lane, current_lane
from app.domain.matching import OverrideChange, default_matcher
from app.domain.models import Offer, Vendor, utcnow
from app.domain.money import Rates
from app.domain.queries import (
    AppliedSync,
    OfferRef,
    ProductPage,
    ProductQuery,
    StoredImage,
    StoredProduct,
    SyncProgress,
    UpsertResult,
    VendorSyncStatus,
)
from app.domain.webhooks import Delivery
from app.observability import Metric
from app.secrets import Secrets
from app.store.sqlite import vendors
from app.store.sqlite.changes import SqliteChanges, prune, set_position
from app.store.sqlite.connection import Connections
from app.store.sqlite.matching import overrides_of, store_override
from app.store.sqlite.migrate import migrate
from app.store.sqlite.offers import OfferWriter, rebuild_all, refresh_base_prices, set_placeholder, unique
from app.store.sqlite.ordering import Stored, newer_only
from app.store.sqlite.reads import ProductReader
from app.store.sqlite.search import SearchSync, install_removal_trigger
from app.store.sqlite.slicing import BulkSlicer
from app.store.sqlite.transaction import immediate
from app.store.sqlite.unsettled import Unsettled

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Parts' sizes per piece of a changelog message while no interactive work is near (``upsert_positioned``).
PIECES_WHEN_QUIET = 4
#: Share of the size cap in use at which the store counts as full (a batch needs room; at 100% every write fails).
FULL_AT = 0.98
#: How long a write that failed for want of room keeps the store "full" (a later small write may fit, a batch not).
FULL_FOR_S = 60.0


class SqliteCatalog:
    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = 10.0,
        cache_mb: int = 32,
        page_cache_size: int = 256,
        rates: Rates | None = None,
        secrets: Secrets | None = None,
        deliveries_keep_s: float = 7 * 86_400,
        max_mb: int | None = None,
        min_free_mb: int = 64,
        search: SearchSync | None = None,
        bulk_slice_s: float = 0.01,
        miss_commit_s: float = 0.5,
        matching: bool = True,
    ) -> None:
        """``secrets``: seals vendor credentials (default: the public development key, for tools and tests);
        ``search``: the search index this store keeps in step with every write it commits; ``bulk_slice_s``: about
        how long one part of a bulk write holds the writer (``BulkSlicer``, ``Connections.bulk``); ``miss_commit_s``:
        how long a refetchable write may wait inside a bulk transaction for its commit (``upsert_offers``,
        ``upsert_positioned``);
        ``matching``: unify with the matcher (issue 10), else with identifiers and overrides alone."""
        self.path = Path(path)
        self.secrets = secrets or Secrets.development_only()
        self.deliveries_keep_s = deliveries_keep_s
        self.max_mb = max_mb
        self.min_free_mb = min_free_mb
        self._db = Connections(self.path, busy_timeout_s=busy_timeout_s, cache_mb=cache_mb)
        self._db.nested_commit_s = miss_commit_s
        self._offers = OfferWriter(rates, default_matcher() if matching else None)
        self._reads = ProductReader(self._db, rates, page_cache_size=page_cache_size)
        self.changes = SqliteChanges(self._db)
        self.search = search
        self._unsettled = Unsettled()
        self._db.after_commit = self._committed
        self._db.after_rollback = self._unsettled.clear
        self._slicer = BulkSlicer(bulk_slice_s)

    def _committed(self, conn: sqlite3.Connection) -> None:
        self._unsettled.clear()  # the readers see it all now
        if self.search is not None:
            self.search.after_commit(conn)

    @property
    def rates(self) -> Rates | None:
        """The rates comparable prices (sorting, price filters) are computed with; None: main-currency prices."""
        return self._offers.rates

    @rates.setter
    def rates(self, value: Rates | None) -> None:
        self._offers.rates = value
        self._reads.rates = value

    # -- lifecycle -------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the file if needed, bring its schema and base prices up to date, open the search index and
        bring it up to date too (blocking; run once at start)."""
        self._db.open(self._prepare)
        self._start_search()

    def _prepare(self, conn: sqlite3.Connection) -> None:
        if self.max_mb is not None:  # the writer connection's cap; a write past it fails with SQLITE_FULL
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            conn.execute(f"PRAGMA max_page_count = {self.max_mb * 1024 * 1024 // int(page_size)}")
        migrate(conn)
        refresh_base_prices(conn, self.rates)
        immediate(conn, self._documents_current)
        immediate(conn, self._offers.reunify)  # a store that predates matching, or another model: re-index once
        sealed = immediate(conn, lambda c: vendors.seal_clear_credentials(c, self.secrets))
        if sealed:
            log.warning("sealed the clear-text credentials of %d vendor(s) stored by an older version", sealed)
        if self.search is not None:
            install_removal_trigger(conn)

    def _documents_current(self, conn: sqlite3.Connection) -> None:
        """Documents of an older shape (``documents.VERSION``) rebuilt once, so every stored product has the
        fields the schema promises (a list page is stored bytes: nothing adds a field at read time)."""
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'documents_version'").fetchone()
        if int(version) < documents.VERSION:
            rebuilt = rebuild_all(conn, self._offers)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'documents_version'", (documents.VERSION,))
            if rebuilt:
                log.info("rebuilt %d product documents (document version %d)", rebuilt, documents.VERSION)

    def close(self) -> None:
        self._db.close()
        self._reads.clear()
        if self.search is not None:
            self.search.close()

    # -- the search index (app/store/sqlite/search.py) -------------------------------------------------------

    def _start_search(self) -> None:
        """Rebuild the index in the background when it cannot be trusted, else catch it up with what was written
        while this process was not running (blocking: a few products in the usual case)."""
        if self.search is None:
            return
        search = self.search
        search.open(self._db.connect_reader)
        if self.read(search.needs_rebuild):
            search.rebuild_in_background(self._db.connect_reader)
        else:
            with contextlib.closing(self._db.connect_reader()) as conn:
                search.catch_up(conn)
        search.follow()

    async def catch_up_search(self) -> None:
        """What the index does not have yet, now, on the writer thread (the index's own thread does this on its
        own within ``catch_up_s``); a no-op when nothing moved."""
        if self.search is not None and not self.search.rebuilding:
            await self._db.on_writer(self.search.catch_up)

    def rebuild_search(self) -> int:
        """The whole index from the store, now (blocking: the CLI's ``catalog search rebuild``)."""
        if self.search is None:
            raise RuntimeError("this store keeps no search index")
        if self.search.wait_rebuilt():  # ``open`` found the index unusable and rebuilt it already
            if self.search.failure:
                raise RuntimeError(self.search.failure)
            return self.search.index.count()
        with contextlib.closing(self._db.connect_reader()) as conn:
            return self.search.rebuild(conn)

    def search_problem(self) -> str | None:
        return self.search.problem(self.change_seq()) if self.search is not None else None

    def ping(self) -> bool:
        return self._db.ping()

    def write_problem(self) -> str | None:
        """Why the store cannot take writes, or None: too little room (the file system's free space under
        ``min_free_mb``, or the pages in use at the size cap), or a last write that failed for want of room or
        permission (a later write that went through clears that, but not the room checks)."""
        try:
            free_mb = shutil.disk_usage(self.path.parent).free / (1024 * 1024)
        except OSError:
            free_mb = float("inf")
        if free_mb < self.min_free_mb:
            return f"the file system has {free_mb:.0f} MB free, less than {self.min_free_mb} MB"
        if self.max_mb is not None:
            reader = self._db.reader
            used = (
                reader.execute("PRAGMA page_count").fetchone()[0]
                - reader.execute("PRAGMA freelist_count").fetchone()[0]
            )
            size = reader.execute("PRAGMA page_size").fetchone()[0]
            if used * size >= FULL_AT * self.max_mb * 1024 * 1024:
                return f"the file is at its size cap of {self.max_mb} MB"
        return self._db.write_problem(FULL_FOR_S)

    def change_seq(self) -> int:
        return self._db.change_seq()

    def metrics(self) -> list[Metric]:
        return self._db.metrics()

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the calling thread's read-only connection (replication's /ready status reads the outbox so)."""
        return fn(self._db.reader)

    async def run_in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction on the writer thread (the replication initial load uses it)."""
        return await self._db.transaction(fn)

    # -- vendors ---------------------------------------------------------------------------------------------

    async def add_vendor(self, vendor: Vendor) -> None:
        await self._db.transaction(lambda c: vendors.put(c, vendor, self.secrets, create=True))

    async def update_vendor(self, vendor: Vendor) -> None:
        await self._db.transaction(lambda c: vendors.put(c, vendor, self.secrets, create=False))

    async def delete_vendor(self, vendor_id: str) -> None:
        """Remove a vendor and its offers; products it shared with other vendors are rebuilt from the rest."""
        await self._db.transaction(lambda c: vendors.delete(c, vendor_id, self._offers))

    def get_vendor(self, vendor_id: str) -> Vendor | None:
        return vendors.get(self._db.reader, vendor_id, self.secrets)

    def list_vendors(self) -> list[Vendor]:
        return vendors.list_all(self._db.reader, self.secrets)

    async def reseal_credentials(self) -> int:
        """Every vendor's credentials sealed with the first secret key; returns how many (key rotation)."""
        return await self._db.transaction(lambda c: vendors.reseal_all(c, self.secrets))

    def vendor_status(self, vendor_id: str) -> VendorSyncStatus:
        return vendors.status(self._db.reader, vendor_id)

    def delivery(self, vendor_id: str, delivery_id: str) -> Delivery | None:
        return vendors.delivery(self._db.reader, vendor_id, delivery_id)

    async def record_delivery(
        self, vendor_id: str, delivery_id: str, *, answer: dict[str, object] | None, applied: bool
    ) -> None:
        await self._db.transaction(
            lambda c: vendors.record_delivery(
                c, vendor_id, delivery_id, answer=answer, applied=applied, keep_s=self.deliveries_keep_s
            )
        )

    async def mark_interrupted_syncs(self) -> None:
        await self._db.transaction(vendors.mark_interrupted_syncs)

    async def sync_interrupted(self, vendor_id: str) -> None:
        await self._db.transaction(lambda c: vendors.sync_interrupted(c, vendor_id))

    def applied_sync(self, sync_id: str) -> AppliedSync | None:
        return vendors.applied_sync(self._db.reader, sync_id)

    async def sync_started(self, vendor_id: str, *, sync_id: str | None = None) -> None:
        await self._db.transaction(lambda c: vendors.sync_started(c, vendor_id, sync_id))

    async def sync_progress(
        self, vendor_id: str, progress: SyncProgress, *, sync_id: str | None = None, last_page: int | None = None
    ) -> None:
        await self._db.transaction(lambda c: vendors.sync_progress(c, vendor_id, progress, sync_id, last_page))

    async def sync_finished(self, vendor_id: str, *, error: str | None, full: bool, sync_id: str | None = None) -> bool:
        at = utcnow()
        return await self._db.transaction(
            lambda c: vendors.sync_finished(c, vendor_id, error=error, full=full, at=at, sync_id=sync_id)
        )

    # -- offers ----------------------------------------------------------------------------------------------

    async def upsert_offers(self, offers: Iterable[Offer], *, refetchable: bool = False) -> UpsertResult:
        """Write offers; one older than the stored version of it (``vendor_updated_at``) is left out (``ordering``).

        ``refetchable``: interactive offers the vendor can be asked for again (a shopper's miss, not a webhook's
        change, which would be lost): answered before they commit when a sync holds the writer (``Unsettled``)."""
        batch = unique(offers)
        if not batch:
            return UpsertResult()
        if current_lane() is Lane.INTERACTIVE:
            write = self._upsert(batch)
            return await self._db.transaction(write, nested=self._settling(write, batch) if refetchable else None)
        # A sync's batch: parts of about ``bulk_slice_s`` each, interactive writes let in between (``bulk``).
        results = await self._db.bulk(
            [self._timed(self._upsert(part), len(part)) for part in self._slicer.parts(batch)]
        )
        return UpsertResult(
            sum(r.inserted for r in results),
            sum(r.updated for r in results),
            sum(r.unchanged for r in results),
            sum(r.products_changed for r in results),
        )

    def _settling(
        self, write: Callable[[sqlite3.Connection], T], offers: Sequence[Offer]
    ) -> Callable[[sqlite3.Connection], T]:
        """``write``'s variant for inside a sync's transaction: what it wrote is read back for the readers until
        that transaction commits (``Unsettled``)."""

        def settling(conn: sqlite3.Connection) -> T:
            result = write(conn)
            self._unsettled.record(conn, offers)
            return result

        return settling

    def _upsert(self, offers: list[Offer]) -> Callable[[sqlite3.Connection], UpsertResult]:
        return lambda conn: self._guarded(conn, offers)

    def _guarded(self, conn: sqlite3.Connection, offers: list[Offer]) -> UpsertResult:
        """The ordering guard (``newer_only``), then the write, over one read of the stored rows."""
        stored: Stored = {}
        return self._offers.upsert(conn, newer_only(conn, offers, stored), stored)

    def _timed(self, fn: Callable[[sqlite3.Connection], T], offers: int) -> Callable[[sqlite3.Connection], T]:
        """``fn``, its time told to the slicer (so the next parts follow the measured write rate)."""

        def timed(conn: sqlite3.Connection) -> T:
            started, held = time.perf_counter(), self._db.held_s
            result = fn(conn)
            # Less the time it let nested writes in midway: the rate is the writing's, not the misses'.
            self._slicer.took(offers, time.perf_counter() - started - (self._db.held_s - held))
            return result

        return timed

    def upsert_in(self, conn: sqlite3.Connection, offers: Iterable[Offer]) -> UpsertResult:
        """``upsert_offers`` inside a transaction the caller already holds (``run_in_transaction``)."""
        return self._guarded(conn, unique(offers))

    async def mark_unlisted(self, vendor_id: str, before: datetime) -> int:
        """Mark the vendor's offers not fetched since ``before`` discontinued (after a full sync that started
        then); returns how many changed."""
        return await self._db.transaction(lambda c: self._offers.mark_unlisted(c, vendor_id, before))

    async def delete_offers_of(self, vendor_id: str, product_or_parent_id: str, keep: Sequence[str] = ()) -> int:
        """Remove the vendor's offer with this id and every variant whose parent has it, but ``keep``."""
        return await self._db.transaction(
            lambda c: self._offers.delete_offers_of(c, vendor_id, product_or_parent_id, keep)
        )

    async def apply_override(self, change: OverrideChange) -> None:
        """Record a person's split or pin (``match_overrides``) and re-cluster the offers it names, at once."""
        at = documents.iso(utcnow())

        def run(conn: sqlite3.Connection) -> None:
            self._offers.reunify(conn, store_override(conn, change, at or ""))

        await self._db.transaction(run)

    def overrides_of(self, vendor_id: str, vendor_product_id: str) -> list[dict[str, str]]:
        """The overrides naming this offer, as stored."""
        return overrides_of(self._db.reader, (vendor_id, vendor_product_id))

    # -- the change feed (app/store/sqlite/changes.py) -------------------------------------------------------

    async def upsert_positioned(
        self, batches: Sequence[tuple[FeedPosition, Sequence[Offer]]], *, refetchable: bool = False
    ) -> None:
        """Upsert each batch of offers as the changelog message at its position, all in one transaction (one
        commit for many pages, as ``upsert_offers`` of the whole run did), each product change recorded at the
        position of the message that made it. ``refetchable``: interactive messages the consumer reads again
        unless they are durable (it stores their offsets only once ``durable_at`` is reached), so they may be
        answered before they commit, as ``upsert_offers``' misses."""

        def run(
            part: Sequence[tuple[FeedPosition, Sequence[Offer]]], between: bool = False
        ) -> Callable[[sqlite3.Connection], None]:
            def apply(conn: sqlite3.Connection) -> None:
                for position, offers in part:
                    rest = unique(offers)
                    while rest:
                        # A message's products commit together (the feed marks them by its position), but it is
                        # written in pieces, nested writes let in between them: of a part's size while interactive
                        # work is near, of four otherwise (pieces cost; a miss arriving then waits for one).
                        cut = len(rest)
                        if between:
                            cut = self._slicer.size * (1 if self._db.interactive_near() else PIECES_WHEN_QUIET)
                        set_position(conn, position)
                        self._guarded(conn, rest[:cut])  # the ordering guard, as upsert_offers
                        rest = rest[cut:]
                        if rest:
                            self._db.let_nested_in(conn)
                set_position(conn, None)

            return apply

        if not batches:
            return
        if current_lane() is Lane.INTERACTIVE:
            write = run(batches)
            outcome = [offer for _, part in batches for offer in part]
            await self._db.transaction(write, nested=self._settling(write, outcome) if refetchable else None)
            return
        parts = list(self._slicer.groups(batches))
        await self._db.bulk(
            [self._timed(run(part, between=True), sum(len(offers) for _, offers in part)) for part in parts]
        )

    def commits(self) -> int:
        """How many transactions this store's writer has committed."""
        return self._db.commits

    def durable_at(self) -> int:
        """The ``commits()`` at which every write answered so far is on disk: now, or the next commit when
        refetchable writes wait inside a sync's transaction (read in this order, a commit in between only makes
        the answer one commit later than needed)."""
        done = self._db.commits
        return done + 1 if self._db.nested_pending else done

    async def set_feed_position(self, position: FeedPosition | None) -> None:
        """For the writes of one changelog message that are not plain upserts (a webhook's removals, a sync's
        end, a vendor deleted): set before them, cleared (None) after."""
        await self._db.transaction(lambda c: set_position(c, position))

    async def prune_changes(self, before: float) -> int:
        return await self._db.transaction(lambda c: prune(c, before))

    # -- products --------------------------------------------------------------------------------------------

    def get_product(self, pid: str) -> StoredProduct | None:
        if (unsettled := self._unsettled.products.get(pid)) is not None:
            return unsettled
        return self._reads.get_product(pid)

    def cached_product(self, pid: str) -> tuple[StoredProduct | None] | None:
        if (unsettled := self._unsettled.products.get(pid)) is not None:
            return (unsettled,)
        return self._reads.cached_product(pid)

    def cached_page(self, query: ProductQuery) -> ProductPage | None:
        return self._reads.cached_page(query)

    def find_offer(self, vendor_id: str, vendor_product_id: str) -> OfferRef | None:
        if (unsettled := self._unsettled.offers.get((vendor_id, vendor_product_id))) is not None:
            return unsettled
        return self._reads.find_offer(vendor_id, vendor_product_id)

    def list_products(self, query: ProductQuery) -> ProductPage:
        return self._reads.list_products(query)

    def count_products(self) -> int:
        return self._reads.count_products()

    # -- images (app/images) ---------------------------------------------------------------------------------

    def image(self, image_id: str) -> StoredImage | None:
        """The URL and placeholder of an image a stored offer brought in; None for any other id."""
        if (unsettled := self._unsettled.images.get(image_id)) is not None:
            return unsettled
        row = self._db.reader.execute(
            "SELECT url, vendor_id, placeholder FROM images WHERE id = ?", (image_id,)
        ).fetchone()
        return StoredImage(image_id, row[0], row[1], row[2]) if row is not None else None

    async def set_placeholder(self, image: StoredImage, placeholder: str) -> int:
        """Record the image's placeholder; the products leading with it are rebuilt (their documents carry it).
        Returns how many products changed."""
        return await self._db.transaction(lambda c: set_placeholder(c, self._offers, image, placeholder))

    def summaries(self, ids: Sequence[str]) -> list[tuple[bytes, str]]:
        """List documents and ETags of these products in this order; ids with no product are left out."""
        return self._reads.summaries(ids)
