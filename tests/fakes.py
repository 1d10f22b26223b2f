"""In-memory fakes of the ports, for unit tests of the services and workers without SQLite, Kafka or HTTP.

Each fake keeps the port's contract (the errors it raises, what counts as a change) but none of the adapter's
machinery: the store re-unifies the whole catalog with ``app.domain.unify.unify`` on every write, which is the
reference the incremental SQLite store must agree with, so a service tested against it is tested against the
rules themselves. The fakes also record what was asked of them, so tests can assert on calls instead of patching.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.domain import documents
from app.domain.changes import FeedPosition
from app.domain.cursor import Cursor, decode_cursor, encode_cursor, fingerprint
from app.domain.matching import Matcher, OverrideChange, Overrides, default_matcher, unify_explained
from app.domain.models import Availability, Offer, Page, Product, Vendor, VendorKind, utcnow
from app.domain.money import Rates
from app.domain.normalize import brand_key
from app.domain.queries import (
    AppliedSync,
    OfferFreshness,
    OfferRef,
    ProductPage,
    ProductQuery,
    Sort,
    StoredImage,
    StoredProduct,
    SyncProgress,
    UpsertResult,
    VendorSyncStatus,
)
from app.domain.requests import FetchRequest
from app.domain.unify import build_product, product_id
from app.domain.webhooks import Delivery
from app.errors import Conflict, NotFound, ServiceUnavailable, VendorNotFound


def vendor(vendor_id: str = "v", **changes: Any) -> Vendor:
    """A vendor record for tests; ``changes`` override any field."""
    values: dict[str, Any] = {
        "id": vendor_id,
        "name": vendor_id.title(),
        "kind": VendorKind.DUMMYJSON,
        "base_url": f"http://{vendor_id}.invalid",
        "currency": "EUR",
    }
    values.update(changes)
    return Vendor(**values)


def offer(vendor_id: str = "v", vendor_product_id: str = "1", **changes: Any) -> Offer:
    """An offer for tests; ``changes`` override any field (``fetched_at`` to make it stale)."""
    values: dict[str, Any] = {
        "vendor_id": vendor_id,
        "vendor_product_id": vendor_product_id,
        "title": f"Item {vendor_product_id}",
        "price": Decimal("9.99"),
        "currency": "EUR",
    }
    values.update(changes)
    return Offer(**values)


@dataclass(frozen=True, slots=True)
class _Doc:
    product: Product
    summary: bytes
    doc: bytes
    etag: str
    matches: dict[tuple[str, str], dict[str, object]] = dataclasses.field(default_factory=dict)


def _never_synced() -> VendorSyncStatus:
    return VendorSyncStatus(
        state="never",
        started_at=None,
        finished_at=None,
        last_success_at=None,
        last_full_sync_at=None,
        last_error=None,
        last_error_at=None,
        progress=SyncProgress(),
        syncs_ok=0,
        syncs_failed=0,
        offers=0,
        products=0,
    )


class FakeCatalogStore:
    """``CatalogStore`` in dictionaries. ``up = False`` makes ``ping`` fail.

    Writes yield to the event loop once, as the SQLite store's do (its writes run on a thread), so tests see
    the interleavings concurrent callers would. ``list_products`` filters and sorts like the real store but
    without full-text ranking (a ``q`` matches a substring; relevance order is by id) or currency conversion
    (price bounds compare with the product's main-currency minimum).
    """

    def __init__(self, *, rates: Rates | None = None, matcher: Matcher | bool | None = True) -> None:
        self.rates = rates
        self.matcher: Matcher | None = default_matcher() if matcher is True else (matcher or None)
        self.overrides = Overrides()
        self.up = True
        self.vendors: dict[str, Vendor] = {}
        self.offers: dict[tuple[str, str], Offer] = {}
        self._sync: dict[str, VendorSyncStatus] = {}
        self._applied: dict[str, AppliedSync] = {}
        self._docs: dict[str, _Doc] = {}
        self.deliveries: dict[tuple[str, str], Delivery] = {}
        self.placeholders: dict[str, str] = {}  # image id -> BlurHash

    # -- reads -----------------------------------------------------------------------------------------------

    def ping(self) -> bool:
        return self.up

    def get_vendor(self, vendor_id: str) -> Vendor | None:
        return self.vendors.get(vendor_id)

    def list_vendors(self) -> list[Vendor]:
        return [self.vendors[k] for k in sorted(self.vendors)]

    def vendor_status(self, vendor_id: str) -> VendorSyncStatus:
        status = self._sync.get(vendor_id)
        if status is None:
            raise NotFound(f"vendor {vendor_id!r} does not exist", details={"vendor_id": vendor_id})
        products = sum(1 for d in self._docs.values() if any(o.vendor_id == vendor_id for o in d.product.offers))
        offers = sum(1 for key in self.offers if key[0] == vendor_id)
        return dataclasses.replace(status, offers=offers, products=products)

    def get_product(self, pid: str) -> StoredProduct | None:
        entry = self._docs.get(pid)
        if entry is None:
            return None
        freshness = tuple(
            OfferFreshness(o.vendor_id, o.vendor_product_id, o.fetched_at, v.refresh_interval_s, v.enabled)
            for o in (self.offers[k] for k in sorted(o.key for o in entry.product.offers))
            if (v := self.vendors.get(o.vendor_id)) is not None
        )
        # Like the SQLite join: a product whose offers all belong to removed vendors is not served.
        return StoredProduct(entry.doc, entry.etag, freshness) if freshness else None

    def find_offer(self, vendor_id: str, vendor_product_id: str) -> OfferRef | None:
        """The offer with this id, or else the oldest-fetched variant whose parent has this id."""
        found = self.offers.get((vendor_id, vendor_product_id))
        if found is None:
            variants = sorted(
                (o for o in self.offers.values() if o.vendor_id == vendor_id and o.parent_id == vendor_product_id),
                key=lambda o: (o.fetched_at, o.vendor_product_id),
            )
            found = variants[0] if variants else None
        return None if found is None else OfferRef(self.product_of(found.key), found.fetched_at)

    def product_of(self, key: tuple[str, str]) -> str:
        """The id of the product the offer with this key belongs to (for assertions)."""
        return next(pid for pid, d in self._docs.items() if any(o.key == key for o in d.product.offers))

    def list_products(self, query: ProductQuery) -> ProductPage:
        sort = Sort.UPDATED if query.sort is Sort.RELEVANCE and not query.q else query.sort
        filters = {
            "q": query.q,
            "vendor": query.vendor,
            "brand": brand_key(query.brand),
            "category": brand_key(query.category),
            "min_price": None if query.min_price is None else str(query.min_price),
            "max_price": None if query.max_price is None else str(query.max_price),
            "price_currency": query.price_currency,
            "in_stock": query.in_stock,
        }
        fp = fingerprint(filters)
        offset = int(decode_cursor(query.cursor, sort=sort.value, fingerprint=fp).position[0]) if query.cursor else 0
        found = [d for d in self._docs.values() if _matches(d.product, query)]
        if sort is Sort.RELEVANCE:
            found.sort(key=lambda d: d.product.id)
        elif sort is Sort.UPDATED:
            found.sort(key=lambda d: (d.product.updated_at, d.product.id), reverse=True)
        else:
            found.sort(key=lambda d: (d.product.min_price, d.product.id), reverse=sort is Sort.PRICE_DESC)
        page = found[offset : offset + query.limit]
        more = len(found) > offset + query.limit
        next_cursor = encode_cursor(Cursor(sort.value, (offset + query.limit,), fp)) if more else None
        etag = documents.etag_of("".join([d.etag for d in page] + [next_cursor or ""]).encode())
        return ProductPage(items=[d.summary for d in page], next_cursor=next_cursor, etag=etag)

    # -- vendors and sync status -----------------------------------------------------------------------------

    async def add_vendor(self, vendor: Vendor) -> None:
        await asyncio.sleep(0)
        if vendor.id in self.vendors:
            raise Conflict(f"vendor {vendor.id!r} already exists", details={"vendor_id": vendor.id})
        self.vendors[vendor.id] = vendor
        self._sync.setdefault(vendor.id, _never_synced())

    async def update_vendor(self, vendor: Vendor) -> None:
        await asyncio.sleep(0)
        if vendor.id not in self.vendors:
            raise NotFound(f"vendor {vendor.id!r} does not exist", details={"vendor_id": vendor.id})
        self.vendors[vendor.id] = vendor

    async def delete_vendor(self, vendor_id: str) -> None:
        await asyncio.sleep(0)
        if self.vendors.pop(vendor_id, None) is None:
            raise NotFound(f"vendor {vendor_id!r} does not exist", details={"vendor_id": vendor_id})
        self._sync.pop(vendor_id, None)
        self.offers = {k: o for k, o in self.offers.items() if k[0] != vendor_id}
        self._rebuild()

    def set_sync(self, vendor_id: str, **changes: Any) -> None:
        """Put a vendor's sync record in a given state (tests of the scheduler's due rules backdate it)."""
        self._sync[vendor_id] = dataclasses.replace(self._sync[vendor_id], **changes)

    def applied_sync(self, sync_id: str) -> AppliedSync | None:
        return self._applied.get(sync_id)

    def _apply_sync(self, sync_id: str | None, vendor_id: str, **changes: Any) -> None:
        if sync_id is None:
            return
        known = self._applied.get(sync_id) or AppliedSync(sync_id, vendor_id, None, False)
        self._applied[sync_id] = dataclasses.replace(known, **changes)

    async def sync_started(self, vendor_id: str, *, sync_id: str | None = None) -> None:
        await asyncio.sleep(0)
        self._update_sync(vendor_id, state="running", started_at=utcnow(), progress=SyncProgress())
        self._apply_sync(sync_id, vendor_id)

    async def sync_progress(
        self, vendor_id: str, progress: SyncProgress, *, sync_id: str | None = None, last_page: int | None = None
    ) -> None:
        await asyncio.sleep(0)
        self._update_sync(vendor_id, progress=dataclasses.replace(progress, skip_reasons=dict(progress.skip_reasons)))
        if last_page is not None:
            known = self._applied.get(sync_id or "")
            highest = last_page if known is None or known.last_page is None else max(known.last_page, last_page)
            self._apply_sync(sync_id, vendor_id, last_page=highest)

    async def sync_finished(self, vendor_id: str, *, error: str | None, full: bool, sync_id: str | None = None) -> bool:
        await asyncio.sleep(0)
        now = utcnow()
        if sync_id is not None and (seen := self._applied.get(sync_id)) is not None and seen.finished:
            return False
        self._apply_sync(sync_id, vendor_id, finished=True)
        status = self._sync.get(vendor_id)
        if status is None:
            return True  # like an UPDATE of a removed vendor's row: nothing to record
        if error is None:
            self._sync[vendor_id] = dataclasses.replace(
                status,
                state="ok",
                finished_at=now,
                last_success_at=now,
                last_full_sync_at=now if full else status.last_full_sync_at,
                syncs_ok=status.syncs_ok + 1,
            )
        else:
            self._sync[vendor_id] = dataclasses.replace(
                status,
                state="failed",
                finished_at=now,
                last_error=error[:2000],
                last_error_at=now,
                syncs_failed=status.syncs_failed + 1,
            )
        return True

    async def sync_interrupted(self, vendor_id: str) -> None:
        await asyncio.sleep(0)
        self._update_sync(vendor_id, state="interrupted", finished_at=utcnow())

    def delivery(self, vendor_id: str, delivery_id: str) -> Delivery | None:
        return self.deliveries.get((vendor_id, delivery_id))

    async def record_delivery(
        self, vendor_id: str, delivery_id: str, *, answer: dict[str, object] | None, applied: bool
    ) -> None:
        await asyncio.sleep(0)
        seen = self.deliveries.get((vendor_id, delivery_id))
        if seen is not None:
            answer, applied = seen.answer if seen.answer is not None else answer, seen.applied or applied
        self.deliveries[(vendor_id, delivery_id)] = Delivery(answer, applied)

    def _update_sync(self, vendor_id: str, **changes: Any) -> None:
        status = self._sync.get(vendor_id)
        if status is not None:
            self._sync[vendor_id] = dataclasses.replace(status, **changes)

    # -- offers ----------------------------------------------------------------------------------------------

    async def upsert_offers(self, offers: Iterable[Offer], *, refetchable: bool = False) -> UpsertResult:
        """Same counting as the SQLite store: an offer equal but for ``fetched_at`` is unchanged (and touched);
        ``refetchable`` changes nothing here (nothing commits later)."""
        batch = list({o.key: o for o in offers}.values())
        await asyncio.sleep(0)
        if not batch:
            return UpsertResult()
        inserted = updated = unchanged = 0
        for new in batch:
            old = self.offers.get(new.key)
            if old is None:
                inserted += 1
            elif dataclasses.replace(old, fetched_at=new.fetched_at) == new:
                unchanged += 1
            else:
                updated += 1
            self.offers[new.key] = new
        changed = self._rebuild() if inserted or updated else 0
        return UpsertResult(inserted=inserted, updated=updated, unchanged=unchanged, products_changed=changed)

    async def mark_unlisted(self, vendor_id: str, before: datetime) -> int:
        await asyncio.sleep(0)
        unlisted = [
            o
            for o in self.offers.values()
            if o.vendor_id == vendor_id and o.fetched_at < before and o.availability is not Availability.DISCONTINUED
        ]
        for o in unlisted:
            self.offers[o.key] = dataclasses.replace(o, availability=Availability.DISCONTINUED)
        if unlisted:
            self._rebuild()
        return len(unlisted)

    async def upsert_positioned(
        self, batches: Sequence[tuple[FeedPosition, Sequence[Offer]]], *, refetchable: bool = False
    ) -> None:
        """No change feed here: the offers are upserted as ``upsert_offers`` would."""
        for _, offers in batches:
            await self.upsert_offers(offers)

    def commits(self) -> int:
        return 0  # every write here is done when it returns

    def durable_at(self) -> int:
        return 0

    async def set_feed_position(self, position: FeedPosition | None) -> None:
        return None

    async def delete_offers_of(self, vendor_id: str, product_or_parent_id: str, keep: Sequence[str] = ()) -> int:
        await asyncio.sleep(0)
        spared = set(keep)
        gone = [
            key
            for key, o in self.offers.items()
            if key[0] == vendor_id
            and product_or_parent_id in (o.vendor_product_id, o.parent_id)
            and o.vendor_product_id not in spared
        ]
        for key in gone:
            del self.offers[key]
        if gone:
            self._rebuild()
        return len(gone)

    def _render(self, product: Product, matches: dict[tuple[str, str], dict[str, object]]) -> _Doc:
        lead = documents.lead_image_id(product)
        placeholder = self.placeholders.get(lead) if lead else None
        summary, doc = documents.render(product, placeholder=placeholder, matches=matches)
        return _Doc(product, summary, doc, documents.etag_of(doc), matches)

    async def set_placeholder(self, image: StoredImage, placeholder: str) -> int:
        await asyncio.sleep(0)
        self.placeholders[image.id] = placeholder
        changed = 0
        for pid, old in list(self._docs.items()):
            if documents.lead_image_id(old.product) == image.id:
                self._docs[pid] = self._render(old.product, old.matches)
                changed += self._docs[pid].etag != old.etag
        return changed

    async def apply_override(self, change: OverrideChange) -> None:
        """As ``match_overrides`` records it: a split drops the offer's pins, a pin drops both offers' splits."""
        await asyncio.sleep(0)
        x = change.offer
        splits, pins = set(self.overrides.splits), set(self.overrides.pins)
        if change.kind in ("split", "clear"):
            splits.discard(x)
            pins = {p for p in pins if x not in p}
        if change.kind == "split":
            splits.add(x)
        elif change.kind == "pin" and change.other is not None and change.other != x:
            a, b = sorted((x, change.other))
            splits -= {a, b}
            pins.add((a, b))
        self.overrides = Overrides(frozenset(splits), frozenset(pins))
        self._rebuild()

    def _rebuild(self) -> int:
        """Re-unify everything; returns how many products appeared, changed or went.

        A product none of whose offers changed in content keeps its document, as in the SQLite store, which only
        rebuilds the products a write touched: its ``updated_at`` must not follow a mere re-fetch of its offers.
        """
        old = self._docs
        docs: dict[str, _Doc] = {}
        offers = list(self.offers.values())
        keys, why = unify_explained(offers, self.matcher, self.overrides)
        groups: dict[str, list[Offer]] = {}
        for o in offers:
            groups.setdefault(product_id(keys[o.key]), []).append(o)
        for pid, group in sorted(groups.items()):
            product = build_product(pid, group)
            prev = old.get(product.id)
            matches = {o.key: why[o.key] for o in group}
            if (
                prev is not None
                and _content(prev.product.offers) == _content(product.offers)
                and prev.matches == matches
            ):
                docs[product.id] = prev
                continue
            docs[product.id] = self._render(product, matches)
        self._docs = docs
        before = {pid: d.etag for pid, d in old.items()}
        after = {pid: d.etag for pid, d in docs.items()}
        return sum(1 for pid in before.keys() | after.keys() if before.get(pid) != after.get(pid))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _content(offers: Iterable[Offer]) -> frozenset[Offer]:
    """Offers as content: everything but ``fetched_at`` (what the SQLite store's content hash covers)."""
    return frozenset(dataclasses.replace(o, fetched_at=_EPOCH) for o in offers)


def _matches(product: Product, query: ProductQuery) -> bool:
    if query.q:
        text = " ".join(filter(None, (product.name, product.description, product.brand))).lower()
        if query.q.lower() not in text:
            return False
    if query.vendor and all(o.vendor_id != query.vendor for o in product.offers):
        return False
    if query.brand and brand_key(product.brand) != brand_key(query.brand):
        return False
    if query.category and brand_key(product.category) != brand_key(query.category):
        return False
    if query.min_price is not None and product.min_price < query.min_price:
        return False
    if query.max_price is not None and product.min_price > query.max_price:
        return False
    return query.in_stock is None or product.in_stock == query.in_stock


Handler = Callable[[FetchRequest], Coroutine[Any, Any, None]]


class FakeRequestQueue:
    """``RequestQueue`` that records what is published and, given a ``handler``, runs each request as a task.

    ``healthy = False`` refuses every publish, as both real queues do while they cannot deliver; ``full = True``
    refuses with the in-process queue's back-pressure answer.
    """

    def __init__(self, handler: Handler | None = None) -> None:
        self.published: list[FetchRequest] = []
        self.healthy = True
        self.full = False
        self.started = False
        self._handler = handler
        self._tasks: set[asyncio.Task[None]] = set()
        self._published = asyncio.Condition()

    @property
    def reason(self) -> str | None:
        return None if self.healthy else "the request queue cannot deliver right now"

    async def publish(self, request: FetchRequest) -> None:
        if not self.healthy:
            raise ServiceUnavailable("the request queue cannot deliver right now", retry_after=5)
        if self.full:
            raise ServiceUnavailable("too many pending vendor requests; try again shortly", retry_after=2)
        self.published.append(request)
        async with self._published:
            self._published.notify_all()
        if self._handler is not None:
            task = asyncio.get_running_loop().create_task(self._handler(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait_published(self, count: int = 1) -> list[FetchRequest]:
        """Until at least ``count`` requests were published (wrap in ``asyncio.timeout`` in tests)."""
        async with self._published:
            await self._published.wait_for(lambda: len(self.published) >= count)
        return list(self.published)

    async def drain(self) -> None:
        """Until every handled request has finished; raises what a handler raised."""
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class FakeSource:
    """``VendorSource`` over a list: ``catalog`` is read in pages of ``page_size`` and looked up by id (or parent id).

    ``products`` overrides what ``fetch_product`` answers for some ids (an empty tuple: nothing usable). An
    incremental read (``since``) returns the offers whose ``vendor_updated_at`` is at or after it. ``fail_pages``
    and ``fail_products`` raise the given error instead, on every call until cleared. Every call is recorded in
    ``calls``; ``gate``, when set, holds each call until it is opened, and ``max_active`` is the most calls ever
    in flight at once (how tests see whether two syncs overlapped).
    """

    def __init__(
        self,
        vendor: Vendor,
        catalog: Sequence[Offer] = (),
        *,
        products: Mapping[str, Sequence[Offer]] | None = None,
        page_size: int = 2,
        supports_changes_since: bool = True,
    ) -> None:
        self.vendor = vendor
        self.catalog = list(catalog)
        self.products = {k: tuple(v) for k, v in (products or {}).items()}
        self.page_size = page_size
        self.supports_changes_since = supports_changes_since
        self.fail_pages: Exception | None = None
        self.fail_products: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.calls: list[tuple[str, str | None, datetime | None]] = []
        self.active = 0
        self.max_active = 0
        self.closed = False

    async def fetch_page(self, cursor: str | None = None, *, since: datetime | None = None) -> Page:
        async with self._call("page", cursor, since):
            if self.fail_pages is not None:
                raise self.fail_pages
            items = [
                o
                for o in self.catalog
                if since is None or (o.vendor_updated_at is not None and o.vendor_updated_at >= since)
            ]
            start = int(cursor or 0)
            end = start + self.page_size
            return Page(
                offers=tuple(dataclasses.replace(o, fetched_at=utcnow()) for o in items[start:end]),
                next_cursor=str(end) if end < len(items) else None,
                total=len(items),
            )

    async def fetch_product(self, vendor_product_id: str) -> tuple[Offer, ...]:
        async with self._call("product", vendor_product_id, None):
            if self.fail_products is not None:
                raise self.fail_products
            if vendor_product_id in self.products:
                found = self.products[vendor_product_id]
            else:
                found = tuple(o for o in self.catalog if vendor_product_id in (o.vendor_product_id, o.parent_id))
                if not found:
                    raise VendorNotFound(f"no product {vendor_product_id!r}", details={"id": vendor_product_id})
            return tuple(dataclasses.replace(o, fetched_at=utcnow()) for o in found)

    async def aclose(self) -> None:
        self.closed = True

    @contextlib.asynccontextmanager
    async def _call(self, what: str, arg: str | None, since: datetime | None) -> AsyncIterator[None]:
        self.calls.append((what, arg, since))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(0)  # a real call always yields: other tasks may run meanwhile
            if self.gate is not None:
                await self.gate.wait()
            yield
        finally:
            self.active -= 1
