"""Applying the ``product_updates`` changelog (and vendor definitions) to a node's own store.

Every node of the distributed runtime runs this on what its consumer reads, so every node's SQLite converges on the
same catalog, and the node that published a product request completes its waiting client here, exactly as the
embedded workers do (``complete_product_request`` is the one copy of that rule). Every node also learns of every
request (``request`` updates, and the outcomes themselves), so any node answers ``GET /requests/{id}``.

Applying is idempotent, across restarts too: offers are upserts keyed by vendor and vendor product id, a finished
request is never completed twice, and what was applied of each catalog sync is recorded in the store in the same
transaction as the sync's status (``CatalogStore.applied_sync``): a page read again (a redelivery after a crash,
before the offsets were committed; the job replaying after its restart) is not counted again, and a
``sync_finished`` read again records nothing (``syncs_ok``, ``finished_at`` stay as they were). A webhook is
recognised by its delivery id. Consecutive offer-carrying updates are written with one ``upsert_offers`` call: one
transaction for many pages is what makes a fast catalog sync land at thousands of offers per second.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from app.domain.changes import FeedPosition
from app.domain.models import Offer, Vendor
from app.domain.queries import SyncProgress
from app.domain.requests import FetchRequest, RequestKind, RequestStatus
from app.domain.webhooks import WebhookEffect
from app.domain.wire import ChangelogError, SyncRef, Update, UpdateType
from app.errors import Conflict, NotFound
from app.ingest.breaker import BreakerRegistry, Verdict
from app.ingest.fetch import ProductOutcome
from app.ingest.sync import finish_sync
from app.ingest.tracker import RequestTracker
from app.ingest.workers import complete_product_request
from app.store.port import CatalogStore
from app.vendors.service import apply_change

log = logging.getLogger(__name__)

#: Sync ids known to be finished, kept in memory too so most updates cost no store read.
FINISHED_SYNCS_CACHED = 10_000
#: Most offers one store call (one write transaction, when no interactive write cuts in) carries. A sync's store CPU
#: falls with the offers per transaction (30,000 offers at 250 per transaction: 19.9 s, 5,000: 14.0 s, 30,000:
#: 12.9 s), while the WAL grows with it (30,000 offers in one: 155 MB) and a consumer's batch can hold 1,000 pages.
MAX_UPSERT = 20_000
SYNC_FAILED = "sync_failed"


def product_outcome(update: Update) -> ProductOutcome:
    raw = update.raw
    return ProductOutcome(
        request_id=str(update.request_id),
        vendor_id=update.vendor_id,
        vendor_product_id=str(raw["vendor_product_id"]),
        status=RequestStatus(raw["status"]),
        offers=update.offers,
        error=raw.get("error"),
        error_code=raw.get("error_code"),
        vendor_failure=bool(raw.get("vendor_failure")),
    )


def outcome_request(update: Update) -> FetchRequest:
    """The request an outcome answers, for a node that did not see the request itself (its time: unknown, now)."""
    if update.type is UpdateType.PRODUCT:
        vendor_product_id = str(update.raw["vendor_product_id"])
        return FetchRequest(RequestKind.PRODUCT, update.vendor_id, vendor_product_id, id=str(update.request_id))
    ref = update.sync
    assert ref is not None
    return FetchRequest(
        RequestKind.CATALOG, ref.vendor_id, full=ref.full, id=ref.request_id, requested_at=ref.started_at
    )


@dataclass
class _Sync:
    ref: SyncRef
    progress: SyncProgress = field(default_factory=SyncProgress)
    #: the highest page number applied (the job emits a sync's pages in order; a replay repeats lower ones)
    last_page: int | None = None


class ChangelogApplier:
    def __init__(
        self,
        store: CatalogStore,
        tracker: RequestTracker,
        *,
        max_upsert: int = MAX_UPSERT,
        on_vendor_removed: Callable[[str], None] | None = None,
        breakers: BreakerRegistry | None = None,
    ) -> None:
        self._store = store
        self._tracker = tracker
        self._breakers = breakers
        self._max_upsert = max_upsert
        self._on_vendor_removed = on_vendor_removed
        self._syncs: dict[str, _Sync] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()  # a cache of the store's finished syncs
        self.applied = 0
        self.offers_applied = 0
        #: ``apply`` calls (a consumer's batches): offers per batch is what one transaction can carry at most.
        self.batches = 0
        #: Updates of a vendor this node does not know (deleted; the consumer catches up on definitions first).
        self.unknown_vendor = 0
        #: How long the product requests whose outcomes came here waited before the job took them (summed, counted).
        self.queued_s_total = 0.0
        self.queued = 0

    def durable_at(self) -> int:
        """The store's ``durable_at``: what ``commits`` must reach before the offsets of what was applied so far
        may be stored."""
        return self._store.durable_at()

    def commits(self) -> int:
        return self._store.commits()

    async def unknown_vendors(self, vendor_ids: Iterable[str]) -> set[str]:
        """Which of these vendors this node does not hold (a coroutine: it runs on the store's loop)."""
        return {vid for vid in vendor_ids if self._store.get_vendor(vid) is None}

    def _skipped(self, vendor_id: str, count: int) -> None:
        self.unknown_vendor += count
        log.warning("%d update(s) of vendor %r skipped: no definition on catalog_vendors (deleted?)", count, vendor_id)

    # -- product updates -----------------------------------------------------------------------------------

    async def apply(
        self, updates: Sequence[Update], positions: Sequence[FeedPosition] | None = None, *, refetchable: bool = False
    ) -> None:
        """Apply in order; runs of offer-carrying updates share one upsert. ``positions`` (one per update: where
        the consumer read it) make the change feed record each product change at its message's position.
        ``refetchable``: the consumer stores these messages' offsets only once ``durable_at`` is reached (it reads
        them again otherwise), so their offers may be answered before they commit (``upsert_positioned``)."""
        if positions is not None and len(positions) != len(updates):
            raise ValueError("one position per update")
        run: list[tuple[Update, FeedPosition | None]] = []
        for i, update in enumerate(updates):
            position = positions[i] if positions is not None else None
            if update.type in (UpdateType.PRODUCT, UpdateType.PAGE):
                run.append((update, position))
                continue
            await self._apply_run(run, refetchable)
            run = []
            if position is not None:
                await self._store.set_feed_position(position)
            try:
                if update.type is UpdateType.WEBHOOK:
                    await self._apply_webhook(update)
                elif update.type is UpdateType.REQUEST:
                    assert update.request is not None
                    self._tracker.learn(update.request)
                elif update.type is UpdateType.PLACEHOLDER:
                    assert update.placeholder is not None
                    await self._store.set_placeholder(*update.placeholder)
                elif update.type is UpdateType.OVERRIDE:
                    assert update.override is not None
                    await self._store.apply_override(update.override)  # as the embedded runtime records it
                else:
                    await self._apply_sync_edge(update)
            finally:
                if position is not None:
                    await self._store.set_feed_position(None)
        await self._apply_run(run, refetchable)
        self.applied += len(updates)
        self.batches += 1

    async def _apply_run(self, positioned: list[tuple[Update, FeedPosition | None]], refetchable: bool) -> None:
        if not positioned:
            return
        run = [u for u, _ in positioned]
        known = {vid for vid in {u.vendor_id for u in run} if self._store.get_vendor(vid) is not None}
        for vendor_id, count in Counter(u.vendor_id for u in run if u.vendor_id not in known).items():
            self._skipped(vendor_id, count)
        # Which pages are new, decided before anything is written; counted only once their offers are stored. The
        # offers of every page are written, new or not: an identical upsert changes nothing, and a page replayed
        # by the job after its restart was fetched again (it may be newer).
        fresh: list[tuple[Update, _Sync]] = []
        highest: dict[str, int] = {}
        for u in run:
            if u.type is UpdateType.PAGE and u.vendor_id in known:
                sync = await self._open_sync(u)
                if sync is None:
                    continue  # a page of a sync that finished: applied before
                page_no = int(u.raw["page_no"])
                last = highest.get(sync.ref.sync_id, sync.last_page)
                if last is None or page_no > last:
                    highest[sync.ref.sync_id] = page_no
                    fresh.append((u, sync))

        def carries_offers(u: Update) -> bool:
            return u.vendor_id in known and (
                u.type is UpdateType.PAGE or u.raw.get("status") == RequestStatus.DONE.value
            )

        offers: list[Offer] = [offer for u in run if carries_offers(u) for offer in u.offers]
        if all(p is not None for _, p in positioned):
            batch: list[tuple[FeedPosition, Sequence[Offer]]] = []
            size = 0
            for u, position in positioned:
                if carries_offers(u) and u.offers and position is not None:
                    batch.append((position, u.offers))
                    size += len(u.offers)
                if size >= self._max_upsert:
                    await self._store.upsert_positioned(batch, refetchable=refetchable)
                    batch, size = [], 0
            await self._store.upsert_positioned(batch, refetchable=refetchable)
        else:
            for start in range(0, len(offers), self._max_upsert):
                await self._store.upsert_offers(offers[start : start + self._max_upsert], refetchable=refetchable)
        self.offers_applied += len(offers)
        for u in run:
            if u.type is not UpdateType.PRODUCT:
                continue
            outcome = product_outcome(u)
            self._tracker.learn(outcome_request(u), from_outcome=True)
            queued_ms = u.raw.get("queued_ms")
            if isinstance(queued_ms, int | float):
                self._tracker.started(outcome.request_id, float(queued_ms) / 1000)
                self.queued_s_total += float(queued_ms) / 1000
                self.queued += 1
            if u.vendor_id not in known:
                self._tracker.complete(
                    outcome.request_id,
                    RequestStatus.FAILED,
                    error="vendor no longer exists",
                    error_code="not_found",
                )
            else:
                self._record_vendor_health(outcome)
                complete_product_request(self._store, self._tracker, outcome)
        progressed: dict[str, _Sync] = {}
        for u, sync in fresh:
            raw = u.raw  # the counts were checked by ``parse_update``
            sync.progress.add_page(
                len(u.offers), int(raw.get("skipped") or 0), raw.get("total"), raw.get("skip_reasons")
            )
            sync.last_page = int(raw["page_no"])
            progressed[sync.ref.sync_id] = sync
        for sync in progressed.values():
            await self._store.sync_progress(
                sync.ref.vendor_id, sync.progress, sync_id=sync.ref.sync_id, last_page=sync.last_page
            )

    def _record_vendor_health(self, outcome: ProductOutcome) -> None:
        """The job calls the vendors, so its outcomes drive this node's breakers: misses of a vendor that keeps
        failing are refused at once (503 + Retry-After), as in the embedded runtime."""
        if self._breakers is None:
            return
        breaker = self._breakers.get(outcome.vendor_id)
        if outcome.verdict is Verdict.FAILURE:
            breaker.try_acquire()  # after a cool-down this outcome is the probe's verdict
        breaker.record(outcome.verdict)  # a vendor 404 neither fails nor resets it

    def _is_finished(self, sync_id: str) -> bool:
        if sync_id in self._finished:
            return True
        seen = self._store.applied_sync(sync_id)
        if seen is not None and seen.finished:
            self._remember_finished(sync_id)
            return True
        return False

    def _remember_finished(self, sync_id: str) -> None:
        self._finished[sync_id] = None
        while len(self._finished) > FINISHED_SYNCS_CACHED:
            self._finished.popitem(last=False)

    async def _open_sync(self, update: Update) -> _Sync | None:
        """The vendor's current sync for this update (None: that sync finished already). A sync met for the first
        time in this process is either new (this node missed its start: it joined mid-sync) or one this node was
        applying before it restarted: then it goes on from what the store recorded."""
        ref = update.sync
        assert ref is not None
        current = self._syncs.get(ref.vendor_id)
        if current is not None and current.ref.sync_id == ref.sync_id:
            return current
        if self._is_finished(ref.sync_id):
            return None
        seen = self._store.applied_sync(ref.sync_id)
        sync = _Sync(ref)
        if seen is not None and seen.last_page is not None:
            sync.progress = self._store.vendor_status(ref.vendor_id).progress
            sync.last_page = seen.last_page
        await self._store.sync_started(ref.vendor_id, sync_id=ref.sync_id)
        if seen is not None and seen.last_page is not None:  # the counters sync_started reset, put back
            await self._store.sync_progress(ref.vendor_id, sync.progress, sync_id=ref.sync_id, last_page=sync.last_page)
        self._syncs[ref.vendor_id] = sync
        return sync

    async def _apply_sync_edge(self, update: Update) -> None:
        ref = update.sync
        assert ref is not None
        if ref.request_id:
            self._tracker.learn(outcome_request(update), from_outcome=True)
        known = self._store.get_vendor(ref.vendor_id) is not None
        if update.type is UpdateType.SYNC_STARTED:
            if not known:
                self._skipped(ref.vendor_id, 1)
            elif not self._is_finished(ref.sync_id):
                await self._open_sync(update)
            return
        # SYNC_FINISHED
        error: str | None = update.raw.get("error")
        if not self._is_finished(ref.sync_id):
            if not known:
                self._skipped(ref.vendor_id, 1)
            current = self._syncs.get(ref.vendor_id)
            mine = current is not None and current.ref.sync_id == ref.sync_id
            sync = self._syncs.pop(ref.vendor_id) if mine else None
            progress = sync.progress if sync is not None else SyncProgress()
            progress.pages = max(progress.pages, int(update.raw["pages"]))
            progress.items_seen = max(progress.items_seen, int(update.raw["items"]))
            if known:
                await finish_sync(
                    self._store,
                    ref.vendor_id,
                    full=ref.full,
                    started_at=ref.started_at,
                    progress=progress,
                    error=error,
                    sync_id=ref.sync_id,
                )
            self._remember_finished(ref.sync_id)
        if ref.request_id:  # also when read again: this node may have learnt the request since (after a restart)
            if error is None:
                self._tracker.complete(ref.request_id, RequestStatus.DONE)
            else:
                self._tracker.complete(ref.request_id, RequestStatus.FAILED, error=error, error_code=SYNC_FAILED)

    async def _apply_webhook(self, update: Update) -> None:
        """A webhook one node received, applied here as the embedded runtime applies it (``apply_change``); a
        delivery id applied before (the vendor delivered it again, maybe to another node) changes nothing, so a
        late redelivery of an older update cannot roll a product back."""
        change = update.webhook
        assert change is not None
        if self._store.get_vendor(change.vendor_id) is None:
            self._skipped(change.vendor_id, 1)
            return
        seen = self._store.delivery(change.vendor_id, change.delivery_id) if change.delivery_id else None
        if seen is not None and seen.applied:
            return
        removed = await apply_change(self._store, change)
        self.offers_applied += len(change.offers)
        if change.delivery_id:
            updated = change.effect is WebhookEffect.UPDATED
            answer: dict[str, object] = {
                "applied": change.effect.value,
                "offers": len(change.offers) if updated else removed,
            }
            await self._store.record_delivery(change.vendor_id, change.delivery_id, answer=answer, applied=True)

    # -- vendor definitions --------------------------------------------------------------------------------

    async def apply_vendor(self, vendor_id: str, vendor: Vendor | None, position: FeedPosition | None = None) -> bool:
        """Bring this node's vendor in line with the definition read (None: deleted); True when it changed.
        ``position``: where it was read, for the change feed (a deletion removes the vendor's products)."""
        if position is None:
            return await self._apply_vendor(vendor_id, vendor)
        await self._store.set_feed_position(position)
        try:
            return await self._apply_vendor(vendor_id, vendor)
        finally:
            await self._store.set_feed_position(None)

    async def _apply_vendor(self, vendor_id: str, vendor: Vendor | None) -> bool:
        current = self._store.get_vendor(vendor_id)
        if vendor is None:
            if current is None:
                return False
            try:
                await self._store.delete_vendor(vendor_id)
            except NotFound:
                return False
            self._syncs.pop(vendor_id, None)
            if self._on_vendor_removed is not None:
                self._on_vendor_removed(vendor_id)
            return True
        if vendor.id != vendor_id:
            raise ChangelogError(f"vendor definition keyed {vendor_id!r} describes {vendor.id!r}")
        if current == vendor:
            return False
        self._tracker.forget_vendor(vendor_id)  # what it said it lacks: the new definition may have it
        if current is None:
            try:
                await self._store.add_vendor(vendor)
                return True
            except Conflict:  # added through this node's own API in between
                pass
        await self._store.update_vendor(vendor)
        return True
