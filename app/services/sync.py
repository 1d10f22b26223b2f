"""Syncing one vendor's catalog into the store, page by page.

The next page is fetched while the current one is written, so vendor latency and store writes overlap. A page
that still fails after the HTTP client's own retries is tried again a few times here before the sync gives up;
what was stored before a failure stays stored (upserts are idempotent, a later sync completes the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from app.domain.ports import CatalogStore, VendorSource
from app.domain.queries import SyncProgress
from app.errors import CatalogError, VendorBadResponse, VendorError
from app.services.ingest import PageOutcome, fetch_catalog_page, merge_reasons

log = logging.getLogger(__name__)

#: Incremental syncs ask for changes since the last success minus this margin, because vendor clocks and our
#: own can disagree and an item updated during the previous sync must not be missed.
SINCE_MARGIN = timedelta(minutes=5)


async def _page_with_retries(
    source: VendorSource, cursor: str | None, since: datetime | None, attempts: int, pause_s: float
) -> PageOutcome:
    for attempt in range(1, attempts + 1):
        try:
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
) -> SyncProgress:
    """Walk the vendor's catalog (or its changes since ``since``) into the store; returns the counters."""
    vendor_id = source.vendor.id
    since = None if full else since
    await store.sync_started(vendor_id)
    progress = SyncProgress()
    seen: set[str] = set()
    prefetch: asyncio.Task[PageOutcome] | None = asyncio.create_task(
        _page_with_retries(source, None, since, page_attempts, page_retry_pause_s)
    )
    try:
        while prefetch is not None:
            outcome = await prefetch
            page = outcome.page
            prefetch = None
            if page.next_cursor is not None:
                if page.next_cursor in seen:
                    raise VendorBadResponse(f"vendor {vendor_id} repeated cursor {page.next_cursor!r}")
                seen.add(page.next_cursor)
                prefetch = asyncio.create_task(
                    _page_with_retries(source, page.next_cursor, since, page_attempts, page_retry_pause_s)
                )
            await store.upsert_offers(page.offers)
            progress.pages += 1
            progress.items_seen += len(page.offers)
            progress.items_skipped += len(page.skipped)
            if page.total is not None:
                progress.items_total = page.total
            merge_reasons(progress.skip_reasons, outcome.skip_reasons)
            await store.sync_progress(vendor_id, progress)
            if on_progress is not None:
                on_progress(progress)
    except CatalogError as exc:
        log.warning("vendor %s: sync failed after %d pages: %s", vendor_id, progress.pages, exc.message)
        await store.sync_finished(vendor_id, error=f"{exc.code}: {exc.message}", full=full)
        raise
    except BaseException:
        await store.sync_finished(vendor_id, error="sync interrupted", full=full)
        raise
    finally:
        if prefetch is not None:
            prefetch.cancel()
            with contextlib.suppress(BaseException):
                await prefetch
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


def incremental_since(last_success_at: datetime | None) -> datetime | None:
    return None if last_success_at is None else last_success_at - SINCE_MARGIN
