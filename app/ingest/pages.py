"""The one read-ahead walk over a vendor's catalog pages, for the embedded sync and the Flink job's slices.

A fetcher task reads pages ahead (up to ``read_ahead``) while the caller writes or serialises earlier ones, so vendor
latency and the caller's own work overlap. A page that still fails after the HTTP client's own retries is tried again
a few times here; a page already fetched is handed out before a later failure is raised, since its offers are good.

The walk ends at the catalog's last page, or when ``stop`` says so (the job's slices of N pages / T seconds, see
``slice_budget``); ``next_cursor`` then says where to go on. A vendor whose pagination loops (a cursor it gave
before) would otherwise make a sync run forever: that is a ``VendorBadResponse``, in both runtimes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType

from app.errors import VendorBadResponse, VendorError
from app.ingest.breaker import CircuitBreaker
from app.ingest.fetch import PageOutcome, fetch_catalog_page
from app.sources.port import VendorSource

log = logging.getLogger(__name__)

#: Called with the number of pages fetched so far; True ends the walk after that page.
StopRule = Callable[[int], bool]


def slice_budget(pages: int, seconds: float) -> StopRule:
    """At most ``pages`` pages or ``seconds`` from now, whichever comes first (the last page is always whole)."""
    deadline = time.monotonic() + seconds
    return lambda fetched: fetched >= pages or time.monotonic() >= deadline


async def page_with_retries(
    source: VendorSource,
    cursor: str | None,
    since: datetime | None,
    attempts: int,
    pause_s: float,
    breaker: CircuitBreaker | None = None,
) -> PageOutcome:
    """One page, tried again after a pause on a vendor failure (a 404 is final)."""
    for attempt in range(1, attempts + 1):
        try:
            # Each page try counts for the breaker; once it opens, the refusal ends the sync (not retried).
            with breaker.call() if breaker is not None else contextlib.nullcontext():
                return await fetch_catalog_page(source, cursor, since=since)
        except VendorError as exc:
            if attempt == attempts or exc.status_code == 404:
                raise
            log.warning(
                "vendor %s: page %r failed (%s), attempt %d/%d",
                source.vendor.id,
                cursor,
                exc.message,
                attempt,
                attempts,
            )
            await asyncio.sleep(pause_s * attempt)
    raise AssertionError("unreachable")


class PageWalk:
    """``async with walk_pages(...) as walk: async for outcome in walk: ...`` (or ``next_batch`` for a writer
    that takes whatever has piled up)."""

    def __init__(
        self,
        source: VendorSource,
        *,
        cursor: str | None = None,
        since: datetime | None = None,
        attempts: int = 3,
        pause_s: float = 1.0,
        breaker: CircuitBreaker | None = None,
        read_ahead: int = 16,
        stop: StopRule | None = None,
    ) -> None:
        self._source = source
        self._start = cursor
        self._since = since
        self._attempts = attempts
        self._pause_s = pause_s
        self._breaker = breaker
        self._stop = stop
        self._pages: asyncio.Queue[PageOutcome | None] = asyncio.Queue(maxsize=read_ahead)
        self._fetcher: asyncio.Task[None] | None = None
        self._ended = False
        #: Where the walk goes on after the last page handed out; None once the catalog's last page was.
        self.next_cursor = cursor

    async def __aenter__(self) -> PageWalk:
        self._fetcher = asyncio.create_task(self._fetch())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fetcher is not None:
            self._fetcher.cancel()
            with contextlib.suppress(BaseException):
                await self._fetcher

    def __aiter__(self) -> PageWalk:
        return self

    async def __anext__(self) -> PageOutcome:
        outcome = await self.next()
        if outcome is None:
            raise StopAsyncIteration
        return outcome

    async def _fetch(self) -> None:
        cursor, fetched, seen = self._start, 0, set[str]()
        vendor_id = self._source.vendor.id
        while True:
            outcome = await page_with_retries(
                self._source, cursor, self._since, self._attempts, self._pause_s, self._breaker
            )
            await self._pages.put(outcome)
            fetched += 1
            cursor = outcome.page.next_cursor
            if cursor is None:
                break
            if cursor in seen:
                raise VendorBadResponse(f"vendor {vendor_id} repeated cursor {cursor!r}", details={"cursor": cursor})
            seen.add(cursor)
            if self._stop is not None and self._stop(fetched):
                break
        await self._pages.put(None)

    async def next(self) -> PageOutcome | None:
        """The next page, waiting for it; None once the walk is over. Raises what made the fetcher fail."""
        if self._ended:
            return None
        if self._fetcher is None:
            raise RuntimeError("use the walk inside `async with`")
        outcome = await _next_page(self._pages, self._fetcher)
        return self._handed(outcome)

    async def next_batch(self, max_offers: int) -> list[PageOutcome]:
        """The next page and those already fetched behind it, up to ``max_offers`` offers; [] once it is over."""
        first = await self.next()
        if first is None:
            return []
        batch, size = [first], len(first.page.offers)
        while size < max_offers and not self._pages.empty():
            outcome = self._handed(self._pages.get_nowait())
            if outcome is None:
                break
            batch.append(outcome)
            size += len(outcome.page.offers)
        return batch

    def _handed(self, outcome: PageOutcome | None) -> PageOutcome | None:
        if outcome is None:
            self._ended = True
        else:
            self.next_cursor = outcome.page.next_cursor
        return outcome


def walk_pages(
    source: VendorSource,
    *,
    cursor: str | None = None,
    since: datetime | None = None,
    attempts: int = 3,
    pause_s: float = 1.0,
    breaker: CircuitBreaker | None = None,
    read_ahead: int = 16,
    stop: StopRule | None = None,
) -> PageWalk:
    """The catalog from ``cursor`` (None: the first page) to its end or ``stop``; ``since`` asks for the changes
    only, where the platform can filter by change time."""
    return PageWalk(
        source,
        cursor=cursor,
        since=since,
        attempts=attempts,
        pause_s=pause_s,
        breaker=breaker,
        read_ahead=read_ahead,
        stop=stop,
    )


async def _next_page(pages: asyncio.Queue[PageOutcome | None], fetcher: asyncio.Task[None]) -> PageOutcome | None:
    """Pages already fetched are handed out before the fetcher's failure is raised."""
    if not pages.empty():
        return pages.get_nowait()
    getter = asyncio.ensure_future(pages.get())
    await asyncio.wait({getter, fetcher}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    fetcher.result()  # raises the fetch error
    raise AssertionError("the fetcher ended without its end-of-catalog marker")
