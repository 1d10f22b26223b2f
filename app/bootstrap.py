"""The composition root: the one place that turns settings into connected adapters.

Nothing connects at import time; ``Container.start`` opens the store and starts the workers, ``stop`` undoes it.
The API, the CLI and the tests all build their object graph here, so they run the same wiring.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from app.catalog.service import CatalogService
from app.distributed.changelog_applier import ChangelogApplier
from app.distributed.kafka.consumer import KafkaChangelog
from app.distributed.kafka.queue import KafkaRequestQueue
from app.distributed.kafka.vendor_feed import KafkaVendorFeed
from app.domain.models import Vendor
from app.domain.money import Rates, parse_rates
from app.domain.requests import FetchRequest
from app.ingest.breaker import BreakerRegistry
from app.ingest.inprocess_queue import InProcessRequestQueue
from app.ingest.sync import plan_sync
from app.ingest.tracker import RequestTracker
from app.ingest.workers import EmbeddedWorkers, RefreshScheduler
from app.observability import Metric, MetricProvider
from app.replication.service import Replication
from app.settings import Settings
from app.sources import GenericSource, build_source, validate_generic
from app.sources.http import HttpPolicy, VendorHttp
from app.sources.port import VendorSource
from app.sources.registry import SourceRegistry
from app.sources.webhooks import map_webhook
from app.store.port import CatalogStore
from app.store.sqlite.catalog import SqliteCatalog
from app.vendors.service import ChangePublisher, Probe, VendorFeed, VendorService

log = logging.getLogger(__name__)


def http_policy(settings: Settings) -> HttpPolicy:
    return HttpPolicy(
        timeout_s=settings.vendor_timeout_s,
        max_attempts=settings.vendor_max_attempts,
        backoff_base_s=settings.vendor_backoff_base_s,
        backoff_max_s=settings.vendor_backoff_max_s,
        max_concurrency=settings.vendor_concurrency,
        max_retry_after_s=settings.vendor_max_retry_after_s,
    )


def make_source_factory(settings: Settings) -> Callable[[Vendor], VendorSource]:
    policy = http_policy(settings)

    def make(vendor: Vendor) -> VendorSource:
        return build_source(vendor, VendorHttp(vendor.base_url, policy=policy, vendor_id=vendor.id))

    return make


def make_probe(settings: Settings) -> Probe:
    """The generic-mapping probe: the vendor's first page through a client of its own, closed right after."""
    policy = http_policy(settings)

    async def probe(vendor: Vendor) -> None:
        async with VendorHttp(vendor.base_url, policy=policy, vendor_id=vendor.id) as http:
            await validate_generic(GenericSource(vendor, http))

    return probe


def vendor_service(
    settings: Settings,
    store: CatalogStore,
    *,
    sources: SourceRegistry | None = None,
    breakers: BreakerRegistry | None = None,
    catalog: CatalogService | None = None,
    feed: VendorFeed | None = None,
    changes: ChangePublisher | None = None,
) -> VendorService:
    """The API's and the CLI's vendor service (the CLI has no queue to request a sync through, nor a feed)."""
    return VendorService(
        store,
        probe=make_probe(settings),
        map_webhook=map_webhook,
        sources=sources,
        breakers=breakers,
        catalog=catalog,
        feed=feed,
        changes=changes,
    )


def load_rates(settings: Settings) -> Rates:
    """Read once at start-up: a bad rates file should stop the service, not fail requests one by one."""
    if settings.rates_file is not None:
        raw = settings.rates_file.read_bytes()
    else:
        raw = (resources.files("app.data") / "rates.json").read_bytes()
    try:
        return parse_rates(raw)
    except ValueError as exc:
        raise ValueError(f"rates file {settings.rates_file or 'app/data/rates.json'}: {exc}") from None


@dataclass
class Container:
    settings: Settings
    store: SqliteCatalog
    tracker: RequestTracker
    sources: SourceRegistry
    workers: EmbeddedWorkers
    queue: InProcessRequestQueue | KafkaRequestQueue
    catalog: CatalogService
    vendors: VendorService
    scheduler: RefreshScheduler
    breakers: BreakerRegistry
    # runtime=kafka only: this node's changelog consumer and the feed of vendor definitions to the Flink job
    changelog: KafkaChangelog | None = None
    vendor_feed: KafkaVendorFeed | None = None
    # DATABASE_URL set: the PostgreSQL long-term store (initial load, push task, analytics)
    replication: Replication | None = None
    # GET /metrics renders whatever these return; a component adds its gauges by appending a provider
    metric_providers: list[MetricProvider] = field(default_factory=list)

    async def start(self) -> None:
        self.store.open()
        await self.store.mark_interrupted_syncs()
        if self.replication is not None:
            await self.replication.start()
        if self.settings.demo_vendors:
            await self.register_demo_vendors()
        await self.queue.start()
        if self.changelog is not None:
            await self.changelog.start()
        if self.settings.scheduler_enabled:
            await self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        if self.changelog is not None:
            await self.changelog.stop()
        await self.queue.stop()
        await self.sources.aclose()
        if self.replication is not None:
            await self.replication.stop()
        self.store.close()

    async def register_demo_vendors(self) -> None:
        from simulators.demo import demo_vendors  # lazily: only the demo needs the simulators

        for vendor in await self.vendors.register(demo_vendors(self.settings.demo_host)):
            log.info("registered demo vendor %s at %s", vendor.id, vendor.base_url)

    def readiness(self) -> Readiness:
        """Every check, and why each failing one fails, from one read of each dependency (/ready shows the
        replication status it decided on, not a second read that may disagree)."""
        replication = self.replication.monitor.read() if self.replication is not None else None
        checks = {"store": self.store.ping()}
        if self.changelog is None:
            checks["workers"] = self.queue.healthy
        else:
            checks["broker"] = self.queue.healthy
            checks["changelog"] = self.changelog.running
        checks["scheduler"] = self.scheduler.running or not self.settings.scheduler_enabled
        if replication is not None:
            checks["replication"] = replication.ok
        reasons = {
            "store": f"the SQLite store {self.settings.db_path} does not answer",
            "workers": "the request workers are not running",
            "broker": (self.queue.reason if isinstance(self.queue, KafkaRequestQueue) else None)
            or "the Kafka broker is unreachable",
            "changelog": "the changelog consumer is not running",
            "scheduler": "the refresh scheduler is not running",
            "replication": replication.reason if replication is not None else "",
        }
        failing = [reasons.get(name, name) for name, ok in checks.items() if not ok]
        if replication is None:
            return Readiness(checks, None, failing)
        return Readiness(checks, replication.status(), failing, replication.metrics())

    @property
    def ready(self) -> dict[str, bool]:
        return self.readiness().checks


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, bool]
    #: ``ReplicationState.status()`` when DATABASE_URL is set
    replication: dict[str, Any] | None
    #: why each failing check fails, in words an operator can act on
    reasons: list[str]
    #: the gauges of the same reads (replication), so /metrics shows what decided ``catalog_ready``
    metrics: list[Metric] = field(default_factory=list)


def build_container(settings: Settings) -> Container:
    store = SqliteCatalog(settings.db_path, page_cache_size=settings.list_cache_pages, rates=load_rates(settings))
    tracker = RequestTracker(keep_finished_s=settings.request_keep_s)
    sources = SourceRegistry(make_source_factory(settings))
    breakers = BreakerRegistry(
        failures=settings.breaker_failures, open_s=settings.breaker_open_s, max_open_s=settings.breaker_open_max_s
    )
    workers = EmbeddedWorkers(store, sources, tracker, page_attempts=settings.page_attempts, breakers=breakers)
    queue: InProcessRequestQueue | KafkaRequestQueue
    changelog: KafkaChangelog | None = None
    vendor_feed: KafkaVendorFeed | None = None
    if settings.runtime == "kafka":
        # No embedded workers: the Flink job calls the vendors; this node publishes and applies the changelog.

        def plan_catalog(request: FetchRequest) -> FetchRequest:
            """The embedded workers' full-or-incremental rule, applied here: the job holds no sync status."""
            vendor = store.get_vendor(request.vendor_id)
            if vendor is None:
                return request
            status = store.vendor_status(vendor.id)
            full, since = plan_sync(request.full, status, sources.get(vendor).supports_changes_since)
            return dataclasses.replace(request, full=full, since=since)

        queue = KafkaRequestQueue(settings, plan=plan_catalog)

        vendor_feed = KafkaVendorFeed(queue, settings.kafka_topic_vendors, store.list_vendors)
    else:
        queue = InProcessRequestQueue(workers.handle, workers=settings.workers, maxsize=settings.queue_size)
    catalog = CatalogService(
        store,
        queue,
        tracker,
        default_wait_ms=settings.wait_ms_default,
        max_wait_ms=settings.wait_ms_max,
        breakers=breakers,
    )
    vendors = vendor_service(settings, store, sources=sources, breakers=breakers, catalog=catalog, feed=vendor_feed)
    if settings.runtime == "kafka":
        applier = ChangelogApplier(store, tracker, on_vendor_removed=vendors.forget, breakers=breakers)
        changelog = KafkaChangelog(settings, applier)
    scheduler = RefreshScheduler(
        store,
        catalog,
        tick_s=settings.scheduler_tick_s,
        full_sync_every_s=settings.full_sync_every_s,
        retry_after_failure_s=settings.retry_failed_sync_s,
        breakers=breakers,
    )
    container = Container(
        settings, store, tracker, sources, workers, queue, catalog, vendors, scheduler, breakers, changelog, vendor_feed
    )
    if changelog is not None:
        container.metric_providers.append(changelog.metrics)
    if settings.database_url:
        container.replication = Replication(settings, store)
    return container
