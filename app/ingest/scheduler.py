"""The refresh scheduler: when each vendor is due for a sync, in both runtimes.

It only requests syncs through ``CatalogService``; who runs them (embedded workers, or the Flink job behind Kafka)
is the queue's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from app.catalog.service import CatalogService
from app.domain.models import utcnow
from app.errors import CatalogError
from app.ingest.breaker import BreakerRegistry
from app.store.port import CatalogStore

log = logging.getLogger(__name__)


class RefreshScheduler:
    """Re-syncs every enabled vendor on its own interval; a full sync at least every ``full_sync_every_s``.

    A vendor whose last sync failed is retried after ``retry_after_failure_s`` (or its interval, if shorter),
    not on every tick, so a dead vendor is not hammered; one whose circuit breaker is open is not synced until
    its cool-down is over (that sync is then the probe).
    """

    def __init__(
        self,
        store: CatalogStore,
        catalog: CatalogService,
        *,
        tick_s: float = 5.0,
        full_sync_every_s: float = 86_400.0,
        retry_after_failure_s: float = 60.0,
        breakers: BreakerRegistry | None = None,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._breakers = breakers or catalog.breakers
        self._tick_s = tick_s
        self._full_every = timedelta(seconds=full_sync_every_s)
        self._retry_after_failure = timedelta(seconds=retry_after_failure_s)
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="refresh-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("refresh scheduler tick failed")
            await asyncio.sleep(self._tick_s)

    async def tick(self) -> int:
        """Request a sync of every vendor that is due; returns how many were requested."""
        now = utcnow()
        requested = 0
        for vendor in self._store.list_vendors():
            if not vendor.enabled:
                continue
            status = self._store.vendor_status(vendor.id)
            if status.state == "running" or self._breakers.get(vendor.id).blocked():
                continue
            interval = timedelta(seconds=vendor.refresh_interval_s)
            if status.state == "interrupted":
                due = True
            elif status.state == "failed" and status.last_error_at is not None:
                due = now - status.last_error_at >= min(interval, self._retry_after_failure)
            else:
                due = status.last_success_at is None or now - status.last_success_at >= interval
            if not due:
                continue
            full = status.last_full_sync_at is None or now - status.last_full_sync_at >= self._full_every
            try:
                await self._catalog.request_sync(vendor.id, full=full)
                requested += 1
            except CatalogError as exc:
                log.warning("could not schedule a sync of %s: %s", vendor.id, exc.message)
        return requested
