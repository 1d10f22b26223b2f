"""The embedded runtime's request handling: what the in-process queue's workers run for each request.

``handle`` calls the fetch functions and the sync both runtimes share (``app.ingest.fetch``, ``app.ingest.sync``),
writes to the store and completes the waiting request; the distributed runtime does the same through the Flink job
and the changelog (``complete_product_request`` is the one copy of the completion rule). The refresh scheduler,
which decides when a vendor is due, is ``app.ingest.scheduler``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from app.domain.requests import FetchRequest, RequestKind, RequestStatus
from app.errors import CatalogError
from app.ingest.breaker import BreakerRegistry
from app.ingest.fetch import ProductOutcome, guarded_fetch_product
from app.ingest.planning import plan_sync
from app.ingest.sync import sync_vendor
from app.ingest.tracker import RequestTracker
from app.sources.port import VendorSource
from app.sources.registry import SourceRegistry
from app.store.port import CatalogStore

log = logging.getLogger(__name__)


async def apply_product_outcome(store: CatalogStore, tracker: RequestTracker, outcome: ProductOutcome) -> None:
    """Store a product request's offers and complete whoever is waiting for it. The vendor can be asked again, so
    the write may be answered before it commits (``refetchable``; a kafka node does the same, storing its offsets
    only once the outcome is committed: ``DeferredOffsets``)."""
    if outcome.status is RequestStatus.DONE:
        await store.upsert_offers(outcome.offers, refetchable=True)
    complete_product_request(store, tracker, outcome)


def complete_product_request(store: CatalogStore, tracker: RequestTracker, outcome: ProductOutcome) -> None:
    """Complete the waiting request once the outcome's offers are stored (the changelog stores many at once)."""
    if outcome.status is RequestStatus.DONE:
        wanted = outcome.offer_for_request()
        ref = store.find_offer(outcome.vendor_id, wanted.vendor_product_id) if wanted else None
        if ref is not None:
            tracker.complete(outcome.request_id, RequestStatus.DONE, product_id=ref.product_id)
            return
        tracker.complete(
            outcome.request_id,
            RequestStatus.FAILED,
            error="offer vanished after storing",
            error_code="internal_error",
        )
        return
    tracker.complete(outcome.request_id, outcome.status, error=outcome.error, error_code=outcome.error_code)


class EmbeddedWorkers:
    def __init__(
        self,
        store: CatalogStore,
        sources: SourceRegistry,
        tracker: RequestTracker,
        *,
        page_attempts: int = 3,
        page_retry_pause_s: float = 1.0,
        breakers: BreakerRegistry | None = None,
    ) -> None:
        self._store = store
        self._sources = sources
        self._tracker = tracker
        self._breakers = breakers or BreakerRegistry()
        self._page_attempts = page_attempts
        self._page_retry_pause_s = page_retry_pause_s
        # One sync per vendor at a time: a full one requested during an incremental one runs after it.
        self._sync_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def handle(self, request: FetchRequest, waited_s: float = 0.0) -> None:
        """``waited_s``: how long the request waited for a worker (the miss answer reports it)."""
        self._tracker.started(request.id, waited_s)
        try:
            await self._handle(request)
        except CatalogError as exc:
            self._tracker.complete(request.id, RequestStatus.FAILED, error=exc.message, error_code=exc.code)
        except Exception as exc:
            log.exception("request %s failed unexpectedly", request.id)
            self._tracker.complete(
                request.id,
                RequestStatus.FAILED,
                error=str(exc) or type(exc).__name__,
                error_code="internal_error",
            )
            raise

    async def _handle(self, request: FetchRequest) -> None:
        vendor = self._store.get_vendor(request.vendor_id)
        if vendor is None:
            self._tracker.complete(
                request.id, RequestStatus.FAILED, error="vendor no longer exists", error_code="not_found"
            )
            return
        source = self._sources.get(vendor)
        if request.kind is RequestKind.PRODUCT:
            outcome = await guarded_fetch_product(source, request, self._breakers.get(vendor.id))
            await apply_product_outcome(self._store, self._tracker, outcome)
            return
        async with self._sync_locks[vendor.id]:
            await self._sync(request, source)
        self._tracker.complete(request.id, RequestStatus.DONE)

    async def _sync(self, request: FetchRequest, source: VendorSource) -> None:
        vendor = source.vendor
        status = self._store.vendor_status(vendor.id)
        full, since = plan_sync(request.full, status, source.supports_changes_since)
        await sync_vendor(
            self._store,
            source,
            full=full,
            since=since,
            page_attempts=self._page_attempts,
            page_retry_pause_s=self._page_retry_pause_s,
            breaker=self._breakers.get(vendor.id),
        )
