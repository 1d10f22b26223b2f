"""Applying the ``product_updates`` changelog (and vendor definitions) to a node's own store.

Every node of the distributed runtime runs this on what its consumer reads, so every node's SQLite converges on the
same catalog, and the node that published a product request completes its waiting client here, exactly as the
embedded workers do (``complete_product_request`` is the one copy of that rule).

Applying is idempotent: offers are upserts keyed by vendor and vendor product id, a finished request is never
completed twice, a sync's status messages seen again (a redelivery after a crash, before the offsets were
committed) are recognised by their sync id and page number, and a webhook's by its delivery id. Replaying the
log in order from any point leaves the store as it was. Consecutive offer-carrying updates are written with one
``upsert_offers`` call: one transaction for many pages is what makes a fast catalog sync land at thousands of offers
per second.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from app.domain.changes import FeedPosition
from app.domain.models import Offer, Vendor
from app.domain.queries import SyncProgress
from app.domain.requests import RequestStatus
from app.domain.webhooks import WebhookEffect
from app.domain.wire import ChangelogError, SyncRef, Update, UpdateType
from app.errors import Conflict, NotFound
from app.ingest.breaker import BreakerRegistry
from app.ingest.fetch import ProductOutcome
from app.ingest.sync import finish_sync
from app.ingest.tracker import RequestTracker
from app.ingest.workers import complete_product_request
from app.store.port import CatalogStore
from app.vendors.service import apply_change

log = logging.getLogger(__name__)

#: Sync ids remembered as finished, so a redelivered message of a finished sync changes no status.
FINISHED_SYNCS_KEPT = 10_000
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


@dataclass
class _Sync:
    ref: SyncRef
    progress: SyncProgress = field(default_factory=SyncProgress)
    pages_seen: set[int] = field(default_factory=set)


class ChangelogApplier:
    def __init__(
        self,
        store: CatalogStore,
        tracker: RequestTracker,
        *,
        max_upsert: int = 5000,
        on_vendor_removed: Callable[[str], None] | None = None,
        breakers: BreakerRegistry | None = None,
    ) -> None:
        self._store = store
        self._tracker = tracker
        self._breakers = breakers
        self._max_upsert = max_upsert
        self._on_vendor_removed = on_vendor_removed
        self._syncs: dict[str, _Sync] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self.applied = 0
        self.offers_applied = 0
        #: Updates of a vendor this node does not know (deleted; the consumer catches up on definitions first).
        self.unknown_vendor = 0

    async def unknown_vendors(self, vendor_ids: Iterable[str]) -> set[str]:
        """Which of these vendors this node does not hold (a coroutine: it runs on the store's loop)."""
        return {vid for vid in vendor_ids if self._store.get_vendor(vid) is None}

    def _skipped(self, vendor_id: str, count: int) -> None:
        self.unknown_vendor += count
        log.warning("%d update(s) of vendor %r skipped: no definition on catalog_vendors (deleted?)", count, vendor_id)

    # -- product updates -----------------------------------------------------------------------------------

    async def apply(self, updates: Sequence[Update], positions: Sequence[FeedPosition] | None = None) -> None:
        """Apply in order; runs of offer-carrying updates share one upsert. ``positions`` (one per update: where
        the consumer read it) make the change feed record each product change at its message's position."""
        if positions is not None and len(positions) != len(updates):
            raise ValueError("one position per update")
        run: list[tuple[Update, FeedPosition | None]] = []
        for i, update in enumerate(updates):
            position = positions[i] if positions is not None else None
            if update.type in (UpdateType.PRODUCT, UpdateType.PAGE):
                run.append((update, position))
                continue
            await self._apply_run(run)
            run = []
            if position is not None:
                await self._store.set_feed_position(position)
            try:
                if update.type is UpdateType.WEBHOOK:
                    await self._apply_webhook(update)
                else:
                    await self._apply_sync_edge(update)
            finally:
                if position is not None:
                    await self._store.set_feed_position(None)
        await self._apply_run(run)
        self.applied += len(updates)

    async def _apply_run(self, positioned: list[tuple[Update, FeedPosition | None]]) -> None:
        if not positioned:
            return
        run = [u for u, _ in positioned]
        known = {vid for vid in {u.vendor_id for u in run} if self._store.get_vendor(vid) is not None}
        for vendor_id, count in Counter(u.vendor_id for u in run if u.vendor_id not in known).items():
            self._skipped(vendor_id, count)

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
                    await self._store.upsert_positioned(batch)
                    batch, size = [], 0
            await self._store.upsert_positioned(batch)
        else:
            for start in range(0, len(offers), self._max_upsert):
                await self._store.upsert_offers(offers[start : start + self._max_upsert])
        self.offers_applied += len(offers)
        progressed: dict[str, _Sync] = {}
        for u in run:
            if u.type is UpdateType.PRODUCT:
                outcome = product_outcome(u)
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
            elif u.vendor_id in known:
                sync = await self._page(u)
                if sync is not None:
                    progressed[u.vendor_id] = sync
        for vendor_id, sync in progressed.items():
            await self._store.sync_progress(vendor_id, sync.progress)

    def _record_vendor_health(self, outcome: ProductOutcome) -> None:
        """The job calls the vendors, so its outcomes drive this node's breakers: misses of a vendor that keeps
        failing are refused at once (503 + Retry-After), as in the embedded runtime."""
        if self._breakers is None:
            return
        breaker = self._breakers.get(outcome.vendor_id)
        if outcome.vendor_failure:
            breaker.try_acquire()  # after a cool-down this outcome is the probe's verdict
            breaker.record_failure()
        else:
            breaker.record_success()

    async def _page(self, update: Update) -> _Sync | None:
        ref = update.sync
        assert ref is not None
        if ref.sync_id in self._finished:
            return None
        sync = self._syncs.get(ref.vendor_id)
        if sync is None or sync.ref.sync_id != ref.sync_id:
            # This node missed the sync's start (it joined mid-sync): show it running all the same.
            sync = self._syncs[ref.vendor_id] = _Sync(ref)
            await self._store.sync_started(ref.vendor_id)
        page_no = int(update.raw["page_no"])
        if page_no in sync.pages_seen:
            return None
        sync.pages_seen.add(page_no)
        raw = update.raw  # the counts were checked by ``parse_update``
        sync.progress.add_page(
            len(update.offers), int(raw.get("skipped") or 0), raw.get("total"), raw.get("skip_reasons")
        )
        return sync

    async def _apply_sync_edge(self, update: Update) -> None:
        ref = update.sync
        assert ref is not None
        if ref.sync_id in self._finished:
            return
        known = self._store.get_vendor(ref.vendor_id) is not None
        if not known:
            self._skipped(ref.vendor_id, 1)
        current = self._syncs.get(ref.vendor_id)
        if update.type is UpdateType.SYNC_STARTED:
            if current is not None and current.ref.sync_id == ref.sync_id:
                return
            self._syncs[ref.vendor_id] = _Sync(ref)
            if known:
                await self._store.sync_started(ref.vendor_id)
            return
        # SYNC_FINISHED
        error: str | None = update.raw.get("error")
        sync = self._syncs.pop(ref.vendor_id) if current is not None and current.ref.sync_id == ref.sync_id else None
        progress = sync.progress if sync is not None else SyncProgress()
        progress.pages = max(progress.pages, int(update.raw["pages"]))
        progress.items_seen = max(progress.items_seen, int(update.raw["items"]))
        if known:
            await finish_sync(
                self._store, ref.vendor_id, full=ref.full, started_at=ref.started_at, progress=progress, error=error
            )
        self._finished[ref.sync_id] = None
        while len(self._finished) > FINISHED_SYNCS_KEPT:
            self._finished.popitem(last=False)
        if ref.request_id:
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
        if current is None:
            try:
                await self._store.add_vendor(vendor)
                return True
            except Conflict:  # added through this node's own API in between
                pass
        await self._store.update_vendor(vendor)
        return True
