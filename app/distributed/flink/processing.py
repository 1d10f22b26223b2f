"""The Flink job's work, without Flink: a request and its vendor in, the Kafka records to write out.

Everything vendor-specific is the embedded runtime's own code: ``build_source`` + ``VendorHttp`` (through
``make_source_factory``), ``fetch_product``, and the sync's read-ahead page walk with its retries (``walk_pages``).
This module only turns their outcomes into ``app.domain.wire`` messages, so the job cannot drift from the embedded
workers.

A catalog sync is cut into slices: each request (or continuation) message fetches at most ``pages_per_message``
pages or ``message_budget_s`` seconds, emits one PAGE update per page, then writes a continuation message back to
``vendor_requests`` (``app.domain.wire.Continuation``: written only by the job, a ``kcat`` user writes the plain
request). One large vendor therefore never holds the operator for long, other vendors' requests are interleaved
between its slices, and a sync survives a job restart (the continuation is in Kafka, not in memory).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.bootstrap import make_source_factory
from app.domain.models import Vendor, utcnow
from app.domain.requests import FetchRequest, RequestKind, RequestStatus
from app.domain.wire import (
    Continuation,
    SyncRef,
    Work,
    encode,
    page_message,
    product_message,
    sync_finished_message,
    sync_started_message,
)
from app.domain.wire import dead_letter as wire_dead_letter
from app.errors import CatalogError
from app.ingest.breaker import BreakerRegistry
from app.ingest.fetch import ProductOutcome, guarded_fetch_product
from app.ingest.not_found import NotFoundMemory
from app.ingest.pages import slice_budget, walk_pages
from app.secrets import load_secrets
from app.settings import Settings
from app.sources.port import VendorSource
from app.sources.registry import SourceRegistry

log = logging.getLogger(__name__)

CONTINUATION_VERSION = 1


class Sink(StrEnum):
    """Where an output record goes; the job maps each to its topic."""

    UPDATES = "updates"
    INTERACTIVE = "interactive"  # product outcomes: their own topic, applied by nodes apart from catalog pages
    REQUESTS = "requests"  # continuations, back to the vendor requests topic
    DEAD_LETTERS = "dead_letters"


@dataclass(frozen=True, slots=True)
class Output:
    sink: Sink
    key: str | None
    value: str


def dumps(data: Mapping[str, Any]) -> str:
    return encode(data).decode()


def dead_letter(raw: str | None, reason: str, *, source: str, by: str, key: str | None = None) -> Output:
    """The unreadable message itself plus why (``app.domain.wire.dead_letter``), so it can be fixed and replayed."""
    letter = wire_dead_letter(source=source, error=reason, raw=raw, key=key, by=by)
    return Output(Sink.DEAD_LETTERS, key, dumps(letter))


def unknown_vendor(work: Work, waited_s: float) -> list[Output]:
    """A request whose vendor definition never arrived: fail it visibly instead of keeping it forever."""
    reason = f"vendor {work.request.vendor_id!r} is unknown to the ingest job (no definition after {waited_s:g}s)"
    return failed(work, "unknown_vendor", reason)


def failed(work: Work, code: str, reason: str) -> list[Output]:
    """The updates that end a request without result, so nodes waiting on it answer instead of timing out."""
    request = work.request
    if request.kind is RequestKind.PRODUCT:
        message = product_message(
            request_id=request.id,
            vendor_id=request.vendor_id,
            vendor_product_id=request.vendor_product_id or "",
            status=RequestStatus.FAILED.value,
            error=reason,
            error_code=code,
        )
        return [Output(Sink.INTERACTIVE, request.vendor_id, dumps(message))]
    ref = _sync_ref(work)
    items = work.continuation.items if work.continuation else 0
    pages = work.continuation.page_no if work.continuation else 0
    out = [] if work.continuation else [Output(Sink.UPDATES, request.vendor_id, dumps(sync_started_message(ref)))]
    finished = sync_finished_message(ref, pages=pages, items=items, error=f"{code}: {reason}")
    return [*out, Output(Sink.UPDATES, request.vendor_id, dumps(finished))]


def _sync_ref(work: Work) -> SyncRef:
    request, cont = work.request, work.continuation
    if cont is None:
        # Derived from the request id: a replayed request (after a crash) re-runs the same sync, not a second one.
        sync_id = "s_" + uuid.uuid5(uuid.NAMESPACE_URL, request.id).hex
        return SyncRef(sync_id, request.id, request.vendor_id, request.full, utcnow())
    return SyncRef(cont.sync_id, request.id, request.vendor_id, request.full, cont.started_at)


@dataclass(frozen=True)
class ProcessingConfig:
    """What the workers need, as plain values: settings travel to cluster workers inside the pickled function."""

    settings: dict[str, Any] = field(default_factory=dict)
    pages_per_message: int = 40
    message_budget_s: float = 1.0
    read_ahead: int = 4
    page_retry_pause_s: float = 1.0
    #: How long a request waits for its vendor's definition (which may trail it) before it is failed.
    unknown_vendor_wait_s: float = 30.0
    #: Product requests one worker of the product operator has in flight at once (each vendor's own concurrency
    #: limit still holds within that).
    product_in_flight: int = 16
    #: Most of those one vendor may hold (default: half of them, at least one), the embedded lane's rule: a vendor
    #: that answers in 9 s keeps its share and the others keep theirs.
    product_in_flight_per_vendor: int | None = None
    #: Product requests a worker keeps waiting for a free call (their vendor at its share, or all calls taken);
    #: beyond that the operator stops reading until a call finishes (back-pressure).
    product_backlog: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ProcessingConfig:
        values = settings.model_dump(mode="json", include=_VENDOR_SETTINGS)
        return cls(settings=values, **overrides)

    def build_settings(self) -> Settings:
        return Settings(**self.settings)


_VENDOR_SETTINGS = {
    "vendor_timeout_s",
    "vendor_max_attempts",
    "vendor_backoff_base_s",
    "vendor_backoff_max_s",
    "vendor_max_retry_after_s",
    "vendor_concurrency",
    "vendor_max_response_bytes",
    "vendor_max_items_per_page",
    "outbound_allow_private",
    "page_attempts",
    "not_found_ttl_s",
    "breaker_failures",
    "breaker_open_s",
    "breaker_open_max_s",
    # the job opens the sealed credentials of catalog_vendors: the keys travel with the other job settings
    "env",
    "secret_keys",
}


class Processor:
    """One per Python worker: its own event loop, one source (HTTP connection pool) and one circuit breaker per vendor.

    ``threaded``: the loop runs in a thread of its own and ``start`` hands a request to it without waiting, so one
    worker has several vendor calls in flight (the product operator); otherwise ``handle`` runs one request to its
    end (the catalog operator, whose slices are sequential per vendor anyway).
    """

    def __init__(self, config: ProcessingConfig, *, threaded: bool = False) -> None:
        self.config = config
        self._threaded = threaded
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._settings = config.build_settings()
        #: Opens the credentials of the vendor definitions the job reads (sealed on ``catalog_vendors``).
        self.secrets = load_secrets(self._settings)
        self._sources = SourceRegistry(make_source_factory(self._settings))
        self._not_found: NotFoundMemory[ProductOutcome] = NotFoundMemory(self._settings.not_found_ttl_s)
        self._definitions: dict[str, Vendor] = {}  # the definition each vendor's remembered 404s were answered by
        s = self._settings
        self.breakers = BreakerRegistry(
            failures=s.breaker_failures, open_s=s.breaker_open_s, max_open_s=s.breaker_open_max_s
        )

    def open(self) -> None:
        self._loop = asyncio.new_event_loop()
        if self._threaded:
            self._thread = threading.Thread(target=self._loop.run_forever, name="vendor-calls", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._loop is None:
            return
        self._run(self._sources.aclose())
        loop, self._loop = self._loop, None
        if self._thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            self._thread = None
        loop.close()

    def start(self, work: Work, vendor: Vendor) -> concurrent.futures.Future[list[Output]]:
        """Hand a request to the loop's thread (``threaded`` only); its records when the future is done."""
        if self._loop is None or not self._threaded:
            raise RuntimeError("start() needs an open, threaded Processor")
        return asyncio.run_coroutine_threadsafe(self.handle_async(work, vendor), self._loop)

    def __enter__(self) -> Processor:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forget(self, vendor_id: str) -> None:
        """The vendor was deleted: its client is closed (on this worker's loop, where the registry retires it)."""
        self._not_found.forget_vendor(vendor_id)
        self._definitions.pop(vendor_id, None)

        async def drop() -> None:
            self._sources.drop(vendor_id)

        self._run(drop())

    def _run(self, coro: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("Processor.open() was not called")
        if self._threaded:
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        return self._loop.run_until_complete(coro)

    def handle(self, work: Work, vendor: Vendor) -> list[Output]:
        """The records one request message produces; vendor failures are outcomes, never exceptions."""
        result: list[Output] = self._run(self.handle_async(work, vendor))
        return result

    async def handle_async(self, work: Work, vendor: Vendor) -> list[Output]:
        source = self._sources.get(vendor)  # rebuilt (the old one closed) when the definition changes
        if work.request.kind is RequestKind.PRODUCT:
            return await self._product(source, work.request)
        return await self._catalog_slice(source, work)

    async def _product(self, source: VendorSource, request: FetchRequest) -> list[Output]:
        """A product the vendor said it lacks a moment ago is answered from memory: the nodes each remember their
        own 404s, but several nodes missing one unknown id at once each publish a request (keyed by vendor, they all
        reach this worker; only those that arrive after the first answer are saved a call, since several calls are
        in flight at once)."""
        queued_s = max(0.0, (utcnow() - request.requested_at).total_seconds())
        vpid = request.vendor_product_id or ""
        if self._definitions.get(source.vendor.id) != source.vendor:  # redefined: it may have them now
            self._not_found.forget_vendor(source.vendor.id)
            self._definitions[source.vendor.id] = source.vendor
        remembered = self._not_found.get(request.vendor_id, vpid)
        if remembered is not None:
            outcome = dataclasses.replace(remembered, request_id=request.id)
        else:
            outcome = await guarded_fetch_product(source, request, self.breakers.get(request.vendor_id))
            if outcome.status is RequestStatus.NOT_FOUND:
                self._not_found.remember(request.vendor_id, vpid, outcome)
        message = outcome_message(outcome, queued_s=queued_s)
        return [Output(Sink.INTERACTIVE, request.vendor_id, dumps(message))]

    async def _catalog_slice(self, source: VendorSource, work: Work) -> list[Output]:
        """Up to ``pages_per_message`` pages (or ``message_budget_s``), the next one fetched while the current one is
        serialised: the embedded sync's own walk (``walk_pages``), cut into a slice."""
        request, cont = work.request, work.continuation
        vendor_id = request.vendor_id
        ref = _sync_ref(work)
        out: list[Output] = []
        if cont is None:
            out.append(Output(Sink.UPDATES, vendor_id, dumps(sync_started_message(ref))))
        page_no = cont.page_no if cont else 0
        items = cont.items if cont else 0
        config = self.config
        # An incremental request carries the node's ``since``; fetch_catalog_page ignores it for a source that
        # cannot filter by change time. The continuations carry the request, so every slice filters alike.
        walk = walk_pages(
            source,
            cursor=cont.cursor if cont else None,
            since=None if request.full else request.since,
            attempts=self._settings.page_attempts,
            pause_s=config.page_retry_pause_s,
            breaker=self.breakers.get(vendor_id),
            read_ahead=config.read_ahead,
            stop=slice_budget(config.pages_per_message, config.message_budget_s),
        )
        try:
            async with walk:
                async for outcome in walk:
                    page_no += 1
                    page = outcome.page
                    items += len(page.offers)
                    message = page_message(
                        ref,
                        page_no=page_no,
                        offers=page.offers,
                        skipped=len(page.skipped),
                        skip_reasons=outcome.skip_reasons,
                        total=page.total,
                    )
                    out.append(Output(Sink.UPDATES, vendor_id, dumps(message)))
        except CatalogError as exc:
            log.warning("vendor %s: sync %s failed after %d pages: %s", vendor_id, ref.sync_id, page_no, exc.message)
            error = f"{exc.code}: {exc.message}"
            finished = sync_finished_message(ref, pages=page_no, items=items, error=error)
            return [*out, Output(Sink.UPDATES, vendor_id, dumps(finished))]
        if walk.next_cursor is None:
            finished = sync_finished_message(ref, pages=page_no, items=items, error=None)
            out.append(Output(Sink.UPDATES, vendor_id, dumps(finished)))
        else:
            more = Continuation(ref.sync_id, ref.started_at, walk.next_cursor, page_no, items)
            out.append(Output(Sink.REQUESTS, vendor_id, dumps(Work(request, more).to_dict())))
        return out


#: Starts one product request's vendor call; its records when the future is done (``Processor.start``).
StartCall = Callable[[Work, Vendor], concurrent.futures.Future[list[Output]]]


class ProductCalls:
    """One product worker's vendor calls: at most ``limit`` in flight, at most ``per_vendor`` of them one vendor's;
    the other requests wait here, in arrival order, and a waiting request whose vendor is at its share lets the
    ones behind it go first (the embedded lane's rule, ``app.ingest.inprocess_queue``).

    Without the share, one slow vendor's requests took every call (those beyond the vendor's own concurrency limit
    waiting inside its HTTP client) and the next request, whatever its vendor, waited for one of them to finish.
    """

    def __init__(self, start: StartCall, *, limit: int, per_vendor: int | None = None, backlog: int = 1000) -> None:
        self._start = start
        self.limit = max(1, limit)
        self.per_vendor = max(1, min(per_vendor or self.limit // 2, self.limit))
        self.backlog = max(1, backlog)
        self._waiting: deque[tuple[str, Work, Vendor]] = deque()
        self._in_flight: list[tuple[str, str, concurrent.futures.Future[list[Output]]]] = []  # vendor id, raw, call
        self._busy: Counter[str] = Counter()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def busy(self, vendor_id: str) -> int:
        return self._busy[vendor_id]

    @property
    def full(self) -> bool:
        """No room for another waiting request: the caller waits for a call (``wait``), then collects (``done``)."""
        return len(self._waiting) >= self.backlog

    def add(self, raw: str, work: Work, vendor: Vendor) -> None:
        """``raw``: the request message, for the dead letter if its call crashes."""
        self._waiting.append((raw, work, vendor))
        self._start_waiting()

    def done(self) -> list[tuple[str, concurrent.futures.Future[list[Output]]]]:
        """The finished calls (raw request, future), taken out; the requests their slots let in are started."""
        finished, still = [], []
        for vendor_id, raw, future in self._in_flight:
            if future.done():
                finished.append((raw, future))
                self._busy[vendor_id] -= 1
                if self._busy[vendor_id] <= 0:
                    del self._busy[vendor_id]
            else:
                still.append((vendor_id, raw, future))
        self._in_flight = still
        if finished:
            self._start_waiting()
        return finished

    def wait(self) -> None:
        """Blocks until a call in flight finishes (at once when there is none)."""
        if self._in_flight:
            concurrent.futures.wait([f for _, _, f in self._in_flight], return_when=concurrent.futures.FIRST_COMPLETED)

    def cancel(self) -> None:
        for _, _, future in self._in_flight:
            future.cancel()
        self._in_flight.clear()
        self._waiting.clear()
        self._busy.clear()

    def _start_waiting(self) -> None:
        if not self._waiting or len(self._in_flight) >= self.limit:
            return
        kept: deque[tuple[str, Work, Vendor]] = deque()
        while self._waiting:
            entry = self._waiting.popleft()
            raw, work, vendor = entry
            vendor_id = work.request.vendor_id
            if len(self._in_flight) >= self.limit:
                kept.append(entry)
                kept.extend(self._waiting)
                break
            if self._busy[vendor_id] >= self.per_vendor:
                kept.append(entry)
                continue
            self._busy[vendor_id] += 1
            self._in_flight.append((vendor_id, raw, self._start(work, vendor)))
        self._waiting = kept


def outcome_message(outcome: ProductOutcome, *, queued_s: float | None = None) -> dict[str, Any]:
    """The ``product`` update of a product request's outcome: what the job publishes and the nodes apply;
    ``queued_s``: how long the request waited before the job took it (the miss answer reports it)."""
    return product_message(
        queued_s=queued_s,
        request_id=outcome.request_id,
        vendor_id=outcome.vendor_id,
        vendor_product_id=outcome.vendor_product_id,
        status=outcome.status.value,
        offers=outcome.offers,
        error=outcome.error,
        error_code=outcome.error_code,
        vendor_failure=outcome.vendor_failure,
    )
