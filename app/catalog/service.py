"""Reads with the miss path: answer from the local store, and ask the vendor only when that falls short.

- Fresh local data: served at once.
- Stale local data (older than the vendor's refresh interval): served at once with its age, and a refresh is
  requested in the background.
- Missing: a product request is published and the caller waits up to ``wait_ms``; if the vendor has not
  answered by then the caller gets the request to poll instead of a hanging connection. Identical misses share
  the request in flight, and one the vendor answered 404 answers 404 again for ``not_found_ttl_s`` (the
  tracker remembers it): one vendor call per (vendor, id) per that time, however many clients ask.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from app.catalog.search import CatalogSearch
from app.domain.models import Vendor, utcnow
from app.domain.queries import ProductPage, ProductQuery, StoredProduct
from app.domain.requests import FetchRequest, RequestKind, RequestState, RequestStatus
from app.errors import CatalogError, Conflict, NotFound, ServiceUnavailable, VendorError
from app.ingest.breaker import BreakerRegistry, CircuitOpen
from app.ingest.port import RequestQueue
from app.ingest.tracker import RequestTracker
from app.search import Facets
from app.store.port import CatalogStore

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cached:
    """Look-ups in the store's read caches that never query (a current answer or None)."""

    product: Callable[[str], tuple[StoredProduct | None] | None]
    page: Callable[[ProductQuery], ProductPage | None]


@dataclass(frozen=True, slots=True)
class Served:
    """A product answered from the store; ``age_s`` is how old its oldest offer data is."""

    product: StoredProduct
    age_s: float
    stale: bool
    #: A miss: how long it waited (see ``MissTiming``); None when answered from the store.
    timing: MissTiming | None = None


@dataclass(frozen=True, slots=True)
class MissTiming:
    """What a miss answer reports in ``Server-Timing``: the whole wait, and the part before a worker (embedded) or
    the job (kafka) took the request (None: not known, e.g. the request joined one already running)."""

    total_s: float
    queued_s: float | None


@dataclass(frozen=True, slots=True)
class Pending:
    """The vendor has not answered within the wait: poll the request."""

    state: RequestState


class CatalogService:
    def __init__(
        self,
        store: CatalogStore,
        queue: RequestQueue,
        tracker: RequestTracker,
        *,
        default_wait_ms: int = 1500,
        max_wait_ms: int = 10_000,
        breakers: BreakerRegistry | None = None,
        search: CatalogSearch | None = None,
        reads: Executor | None = None,
        searches: Executor | None = None,
        cached: Cached | None = None,
    ) -> None:
        """``search``: ``q=`` through the search index (None: the store's own FTS5); ``reads``/``searches``: the
        thread pools store reads and searches run in, off the event loop, each its own so slow searches never
        queue the product reads (None: the loop's default executor); ``cached``: the store's answers already in
        its read caches, returned on the loop (a thread hop costs more than such a read: the detail ratio fell
        from 0.91 to 0.65 with every read hopping)."""
        self._cached = cached
        self.store = store
        self.search = search
        self._reads = reads
        self._searches = searches
        self.queue = queue
        self.tracker = tracker
        self.breakers = breakers or BreakerRegistry()
        self.default_wait_ms = default_wait_ms
        self.max_wait_ms = max_wait_ms
        self._background: set[asyncio.Task[None]] = set()

    async def off_loop(self, fn: Callable[..., T], *args: object, search: bool = False) -> T:
        """``fn(*args)`` in the read (or search) pool: a read that takes long delays only its own request."""
        pool = self._searches if search else self._reads
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args))

    def page(self, query: ProductQuery) -> ProductPage:
        """One list page (blocking: call through ``list_page``); text searches through the index when it is up."""
        if query.q and self.search is not None and self.search.ready:
            return self.search.page(query)
        return self.store.list_products(query)

    async def list_page(self, query: ProductQuery) -> ProductPage:
        if self._cached is not None and not query.q:
            page = self._cached.page(query)
            if page is not None:
                return page
        return await self.off_loop(self.page, query, search=bool(query.q))

    async def facets(self, query: ProductQuery, size: int) -> Facets:
        """Counts of what ``query``'s filters return (its cursor and sort play no part)."""
        if self.search is None:
            raise ServiceUnavailable("facet counts need the search index, which this node does not keep")
        return await self.off_loop(self.search.facets, query, size, search=True)

    async def product_read(self, pid: str) -> Served:
        """``product`` with the store read off the loop."""
        hit = self._cached.product(pid) if self._cached is not None else None
        stored = hit[0] if hit is not None else await self.off_loop(self.store.get_product, pid)
        return self.served(pid, stored)

    def vendor(self, vendor_id: str) -> Vendor:
        vendor = self.store.get_vendor(vendor_id)
        if vendor is None:
            raise NotFound(f"vendor {vendor_id!r} does not exist", details={"vendor_id": vendor_id})
        return vendor

    async def submit(self, request: FetchRequest) -> RequestState:
        """Publish a request unless an identical one is already in flight (then share that one)."""
        state, created = self.tracker.submit(request)
        if created:
            try:
                await self.queue.publish(request)
            except BaseException:
                self.tracker.forget(request.id)
                raise
        return state

    async def request_sync(self, vendor_id: str, *, full: bool = False) -> RequestState:
        vendor = self.vendor(vendor_id)
        if not vendor.enabled:
            raise Conflict(f"vendor {vendor_id!r} is disabled", details={"vendor_id": vendor_id})
        self._refuse_if_open(vendor_id)
        return await self.submit(FetchRequest(RequestKind.CATALOG, vendor_id, full=full))

    def product(self, pid: str) -> Served:
        return self.served(pid, self.store.get_product(pid))

    def served(self, pid: str, stored: StoredProduct | None) -> Served:
        """On the loop (a stale product's refresh is scheduled on it)."""
        if stored is None:
            raise NotFound(f"product {pid!r} does not exist", details={"product_id": pid})
        now = utcnow()
        stale = False
        for offer in stored.offers:
            if now - offer.fetched_at > timedelta(seconds=offer.refresh_interval_s):
                stale = True
                if offer.vendor_enabled:
                    self._refresh_in_background(offer.vendor_id, offer.vendor_product_id)
        oldest = min((o.fetched_at for o in stored.offers), default=now)
        return Served(stored, max(0.0, (now - oldest).total_seconds()), stale)

    async def vendor_product(self, vendor_id: str, vendor_product_id: str, wait_ms: int | None) -> Served | Pending:
        vendor = self.vendor(vendor_id)
        ref = self.store.find_offer(vendor_id, vendor_product_id)
        now = utcnow()
        if ref is not None:
            stored = self.store.get_product(ref.product_id)
            if stored is not None:
                stale = now - ref.fetched_at > timedelta(seconds=vendor.refresh_interval_s)
                if stale and vendor.enabled:
                    self._refresh_in_background(vendor_id, vendor_product_id)
                return Served(stored, max(0.0, (now - ref.fetched_at).total_seconds()), stale)
        if not vendor.enabled:
            raise Conflict(f"vendor {vendor_id!r} is disabled", details={"vendor_id": vendor_id})
        remembered = self.tracker.not_found(vendor_id, vendor_product_id)
        if remembered is not None:  # the vendor said so a moment ago: no call, even while its breaker is open
            return self.resolve(remembered)
        # A vendor known to be down: say so at once instead of making the client wait for nothing.
        self._refuse_if_open(vendor_id)
        started = time.monotonic()
        state = await self.submit(FetchRequest(RequestKind.PRODUCT, vendor_id, vendor_product_id))
        wait_s = min(self.default_wait_ms if wait_ms is None else wait_ms, self.max_wait_ms) / 1000
        waited = await self.tracker.wait(state.request.id, wait_s) or state
        result = self.resolve(waited)
        if isinstance(result, Served):
            return dataclasses.replace(result, timing=MissTiming(time.monotonic() - started, waited.queued_s))
        return result

    def resolve(self, state: RequestState) -> Served | Pending:
        """Turn a request's state into the product, a pending answer, or the vendor's error."""
        if state.status is RequestStatus.PENDING:
            return Pending(state)
        if state.status is RequestStatus.DONE and state.product_id:
            stored = self.store.get_product(state.product_id)
            if stored is not None:
                return Served(stored, 0.0, False)
        details = {
            "vendor_id": state.request.vendor_id,
            "vendor_product_id": state.request.vendor_product_id,
            "request_id": state.request.id,
        }
        if state.status is RequestStatus.NOT_FOUND:
            raise NotFound(state.error or "the vendor does not have this product", details=details)
        if state.error_code == CircuitOpen.code:
            breaker = self.breakers.get(state.request.vendor_id)
            raise CircuitOpen(
                state.error or "the vendor is unavailable",
                retry_after=max(1.0, breaker.retry_after_s()),
                details=details,
            )
        error = VendorError(
            state.error or "the vendor request failed", details={**details, "vendor_error": state.error_code}
        )
        raise error

    def _refuse_if_open(self, vendor_id: str) -> None:
        breaker = self.breakers.get(vendor_id)
        if breaker.blocked():
            raise breaker.refusal()

    def _refresh_in_background(self, vendor_id: str, vendor_product_id: str) -> None:
        """Best effort: the reader never waits for the publish, and a full queue just skips this refresh."""
        if self.breakers.get(vendor_id).blocked():
            return  # the stored data is all there is until the vendor's breaker lets a call through again
        task = asyncio.get_running_loop().create_task(
            self._submit_quietly(FetchRequest(RequestKind.PRODUCT, vendor_id, vendor_product_id))
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _submit_quietly(self, request: FetchRequest) -> None:
        try:
            await self.submit(request)
        except CatalogError as exc:
            log.info("refresh of %s/%s not queued: %s", request.vendor_id, request.vendor_product_id, exc.message)
