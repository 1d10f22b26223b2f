"""Syncing one vendor's catalog into the store, page by page, and the one end-of-sync rule.

The pages come from the read-ahead walk both runtimes use (``app.ingest.pages``), so vendor latency and store writes
overlap; what was stored before a failure stays stored (upserts are idempotent, a later sync completes the rest).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from app.allocator import release_free_memory
from app.domain.models import utcnow
from app.domain.queries import SyncProgress
from app.errors import CatalogError
from app.ingest.breaker import CircuitBreaker
from app.ingest.pages import walk_pages
from app.sources.port import VendorSource
from app.store.port import CatalogStore

log = logging.getLogger(__name__)


async def finish_sync(
    store: CatalogStore,
    vendor_id: str,
    *,
    full: bool,
    started_at: datetime,
    progress: SyncProgress,
    error: str | None,
    sync_id: str | None = None,
) -> None:
    """Record a sync's end, in both runtimes (the embedded sync, a node applying the job's ``sync_finished``).

    A full sync that read the whole catalog marks the vendor's offers it did not see as discontinued: the vendor
    stopped listing them, and keeping them buyable would sell what no longer exists. A failed one proves nothing.
    ``sync_id`` (the changelog's): a sync the store already recorded as finished is not recorded again.
    """
    if full and error is None:
        unlisted = await store.mark_unlisted(vendor_id, started_at)
        if unlisted:
            log.info("vendor %s: %d offers no longer listed, marked discontinued", vendor_id, unlisted)
    await store.sync_progress(vendor_id, progress)
    await store.sync_finished(vendor_id, error=error, full=full, sync_id=sync_id)
    # A sync's pages, mapped offers and product documents are freed by now, but glibc keeps their pages: 324 ->
    # 279 MB after a 30k first sync. A few ms off the loop, once per sync.
    await asyncio.to_thread(release_free_memory)


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

    Whatever has piled up while a write ran is written next as one batch (up to ``max_batch`` offers): one
    transaction for many pages costs far less than one per page, because each commit rewrites every index page it
    touched.
    """
    vendor_id = source.vendor.id
    since = None if full else since
    started_at = utcnow()
    await store.sync_started(vendor_id)
    progress = SyncProgress()
    last_report = 0.0
    walk = walk_pages(
        source,
        since=since,
        attempts=page_attempts,
        pause_s=page_retry_pause_s,
        breaker=breaker,
        read_ahead=read_ahead,
    )
    try:
        async with walk:
            while batch := await walk.next_batch(max_batch):
                await store.upsert_offers([offer for o in batch for offer in o.page.offers])
                for o in batch:
                    progress.add_page(len(o.page.offers), len(o.page.skipped), o.page.total, o.skip_reasons)
                now = time.monotonic()
                if now - last_report >= progress_every_s:
                    last_report = now
                    await store.sync_progress(vendor_id, progress)
                if on_progress is not None:
                    on_progress(progress)
    except CatalogError as exc:
        log.warning("vendor %s: sync failed after %d pages: %s", vendor_id, progress.pages, exc.message)
        error = f"{exc.code}: {exc.message}"
        await finish_sync(store, vendor_id, full=full, started_at=started_at, progress=progress, error=error)
        raise
    except asyncio.CancelledError:
        # Shutdown (or the vendor's removal): not the vendor's failure; the next start resumes it at once.
        await store.sync_interrupted(vendor_id)
        raise
    except BaseException:
        await store.sync_finished(vendor_id, error="sync crashed", full=full)
        raise
    await finish_sync(store, vendor_id, full=full, started_at=started_at, progress=progress, error=None)
    log.info(
        "vendor %s: %s sync done: %d offers, %d skipped, %d pages",
        vendor_id,
        "full" if full else "incremental",
        progress.items_seen,
        progress.items_skipped,
        progress.pages,
    )
    return progress
