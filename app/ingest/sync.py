"""Syncing one vendor's catalog into the store, page by page.

The next page is fetched while the current one is written, so vendor latency and store writes overlap. A page
that still fails after the HTTP client's own retries is tried again a few times here before the sync gives up;
what was stored before a failure stays stored (upserts are idempotent, a later sync completes the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from app.domain.models import utcnow
from app.domain.queries import SyncProgress
from app.errors import CatalogError, VendorBadResponse, VendorError
from app.ingest.breaker import CircuitBreaker
from app.ingest.fetch import PageOutcome, fetch_catalog_page, merge_reasons
from app.sources.port import VendorSource
from app.store.port import CatalogStore

log = logging.getLogger(__name__)


async def page_with_retries(
    source: VendorSource,
    cursor: str | None,
    since: datetime | None,
    attempts: int,
    pause_s: float,
    breaker: CircuitBreaker | None = None,
) -> PageOutcome:
    """One page, tried again after a pause on a vendor failure; shared by the embedded sync and the Flink job."""
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


async def sync_vendor(
    store: CatalogStore,
    source: VendorSource,
    *,
    full: bool,
    since: datetime | None = None,
    page_attempts: int = 3,
    page_retry_pause_s: float = 1.0,
    on_progress: Callable[[SyncProgress], None] | None = None,
    read_ahead: int = 16,
    max_batch: int = 5000,
    progress_every_s: float = 0.5,
    breaker: CircuitBreaker | None = None,
) -> SyncProgress:
    """Walk the vendor's catalog (or its changes since ``since``) into the store; returns the counters.

    Pages are fetched ahead (up to ``read_ahead``) while earlier ones are written. Whatever has piled up
    while a write ran is written next as one batch (up to ``max_batch`` offers): one transaction for many
    pages costs far less than one per page, because each commit rewrites every index page it touched.

    A full sync that completes marks the vendor's offers it did not see as discontinued: the vendor stopped
    listing them, and keeping them buyable would sell what no longer exists.
    """
    vendor_id = source.vendor.id
    since = None if full else since
    started_at = utcnow()
    await store.sync_started(vendor_id)
    progress = SyncProgress()
    pages: asyncio.Queue[PageOutcome | None] = asyncio.Queue(maxsize=read_ahead)

    async def fetch_all() -> None:
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            outcome = await page_with_retries(source, cursor, since, page_attempts, page_retry_pause_s, breaker)
            await pages.put(outcome)
            cursor = outcome.page.next_cursor
            if cursor is None:
                break
            if cursor in seen:
                raise VendorBadResponse(f"vendor {vendor_id} repeated cursor {cursor!r}")
            seen.add(cursor)
        await pages.put(None)

    fetcher = asyncio.create_task(fetch_all())
    last_report = 0.0
    try:
        finished = False
        while not finished:
            batch = [await next_page(pages, fetcher)]
            size = len(batch[0].page.offers) if batch[0] else 0
            while batch[-1] is not None and not pages.empty() and size < max_batch:
                outcome = pages.get_nowait()
                batch.append(outcome)
                size += len(outcome.page.offers) if outcome else 0
            finished = batch[-1] is None
            outcomes = [o for o in batch if o is not None]
            await store.upsert_offers([offer for o in outcomes for offer in o.page.offers])
            for o in outcomes:
                progress.pages += 1
                progress.items_seen += len(o.page.offers)
                progress.items_skipped += len(o.page.skipped)
                if o.page.total is not None:
                    progress.items_total = o.page.total
                merge_reasons(progress.skip_reasons, o.skip_reasons)
            now = time.monotonic()
            if now - last_report >= progress_every_s or finished:
                last_report = now
                await store.sync_progress(vendor_id, progress)
            if on_progress is not None:
                on_progress(progress)
    except CatalogError as exc:
        log.warning("vendor %s: sync failed after %d pages: %s", vendor_id, progress.pages, exc.message)
        await store.sync_progress(vendor_id, progress)
        await store.sync_finished(vendor_id, error=f"{exc.code}: {exc.message}", full=full)
        raise
    except asyncio.CancelledError:
        # Shutdown (or the vendor's removal): not the vendor's failure; the next start resumes it at once.
        await store.sync_interrupted(vendor_id)
        raise
    except BaseException:
        await store.sync_finished(vendor_id, error="sync crashed", full=full)
        raise
    finally:
        fetcher.cancel()
        with contextlib.suppress(BaseException):
            await fetcher
    if full:
        discontinued = await store.mark_unlisted(vendor_id, started_at)
        if discontinued:
            log.info("vendor %s: %d offers no longer listed, marked discontinued", vendor_id, discontinued)
    await store.sync_finished(vendor_id, error=None, full=full)
    log.info(
        "vendor %s: %s sync done: %d offers, %d skipped, %d pages",
        vendor_id,
        "full" if full else "incremental",
        progress.items_seen,
        progress.items_skipped,
        progress.pages,
    )
    return progress


async def next_page(pages: asyncio.Queue[PageOutcome | None], fetcher: asyncio.Task[None]) -> PageOutcome | None:
    """The next page of a read-ahead fetcher (the embedded sync and the Flink job's catalog slices); pages already
    fetched are handed out before the fetcher's failure is raised, since their offers are good."""
    if not pages.empty():
        return pages.get_nowait()
    getter = asyncio.ensure_future(pages.get())
    await asyncio.wait({getter, fetcher}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    fetcher.result()  # raises the fetch error
    raise AssertionError("the fetcher ended without its end-of-catalog marker")
