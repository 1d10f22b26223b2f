"""The composition root: the one place that turns settings into connected adapters.

Nothing connects at import time; ``Container.start`` opens the store and starts the workers, ``stop`` undoes it.
The API, the CLI and the tests all build their object graph here, so they run the same wiring.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources

from app.api.ratelimit import ClientAddress, RateLimits, TokenBucket
from app.catalog.search import CatalogSearch
from app.catalog.service import Cached, CatalogService
from app.changes.service import ChangeFeed
from app.distributed.changelog_applier import ChangelogApplier
from app.distributed.kafka.consumer import KafkaChangelog
from app.distributed.kafka.leader import KafkaLeadership
from app.distributed.kafka.queue import KafkaRequestQueue
from app.distributed.kafka.updates import KafkaChangePublisher
from app.distributed.kafka.vendor_feed import KafkaVendorFeed
from app.domain.cursor import TokenSigner
from app.domain.lanes import Lane
from app.domain.models import Vendor
from app.domain.money import Rates, parse_rates
from app.health.service import HealthService
from app.health.thread_cpu import ThreadCpu
from app.images.cache import DiskCache
from app.images.origin import VendorImages
from app.images.pillow import MAX_SIDE, PillowImaging
from app.images.service import ImageService
from app.ingest.breaker import BreakerRegistry
from app.ingest.inprocess_queue import InProcessRequestQueue
from app.ingest.planning import plan_catalog
from app.ingest.scheduler import RefreshScheduler
from app.ingest.tracker import RequestTracker
from app.ingest.workers import EmbeddedWorkers
from app.matching.service import MatchingService
from app.observability import MetricProvider
from app.replication.service import Replication
from app.secrets import load_secrets
from app.settings import Settings
from app.sources import GenericSource, build_source, supports_changes_since, validate_generic
from app.sources.http import HttpPolicy, VendorHttp
from app.sources.port import VendorSource
from app.sources.registry import SourceRegistry
from app.sources.safety import OutboundPolicy
from app.sources.webhooks import map_webhook
from app.store.port import CatalogStore
from app.store.sqlite.catalog import SqliteCatalog
from app.store.sqlite.search import SearchSync, default_index_dir
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
        max_response_bytes=settings.vendor_max_response_bytes,
        max_items_per_page=settings.vendor_max_items_per_page,
    )


def outbound_policy(settings: Settings) -> OutboundPolicy:
    return OutboundPolicy.parse(settings.outbound_allow_private)


def make_source_factory(settings: Settings) -> Callable[[Vendor], VendorSource]:
    policy, outbound = http_policy(settings), outbound_policy(settings)

    def make(vendor: Vendor) -> VendorSource:
        http = VendorHttp(vendor.base_url, policy=policy, vendor_id=vendor.id, outbound=outbound)
        return build_source(vendor, http)

    return make


def make_probe(settings: Settings) -> Probe:
    """The generic-mapping probe: the vendor's first page through a client of its own, closed right after."""
    policy, outbound = http_policy(settings), outbound_policy(settings)

    async def probe(vendor: Vendor) -> None:
        async with VendorHttp(vendor.base_url, policy=policy, vendor_id=vendor.id, outbound=outbound) as http:
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
        outbound=outbound_policy(settings),
    )


def rate_limits(settings: Settings) -> RateLimits:
    return RateLimits(
        misses=TokenBucket(settings.rate_limit_misses_per_min, settings.rate_limit_miss_burst),
        admin_failures=TokenBucket(settings.rate_limit_admin_failures_per_min, settings.rate_limit_admin_burst),
        clients=ClientAddress(settings.trusted_proxies),
        thumbnails=TokenBucket(settings.rate_limit_thumbnails_per_min, settings.rate_limit_thumbnail_burst),
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
    health: HealthService
    scheduler: RefreshScheduler
    breakers: BreakerRegistry
    # runtime=kafka only: this node's changelog consumer and the feed of vendor definitions to the Flink job
    changelog: KafkaChangelog | None = None
    vendor_feed: KafkaVendorFeed | None = None
    # DATABASE_URL set: the PostgreSQL long-term store (initial load, push task, analytics)
    replication: Replication | None = None
    # runtime=kafka with the scheduler enabled: the election of the one node that runs it
    leadership: KafkaLeadership | None = None
    # runtime=kafka: the consumer of the interactive updates (miss outcomes, webhooks), apart from the pages
    interactive_changelog: KafkaChangelog | None = None
    # GET /metrics renders whatever these return; a component adds its gauges by appending a provider
    metric_providers: list[MetricProvider] = field(default_factory=list)
    # signs the cursors and change tokens the API hands out (setting CATALOG_CURSOR_KEY)
    tokens: TokenSigner = field(default_factory=lambda: TokenSigner(b"unset: replaced by build_container"))
    # GET /changes and /changes/stream
    changes: ChangeFeed | None = None
    # per-client rate limits of the public miss path and of admin key failures
    limits: RateLimits = field(default_factory=lambda: rate_limits(Settings(env="development")))
    # GET /images/{id}: thumbnails of stored products' images
    images: ImageService | None = None
    image_origin: VendorImages | None = None
    # the thread pools of store reads and searches (CatalogService), shut down on stop
    pools: list[ThreadPoolExecutor] = field(default_factory=list)
    # splits and pins of unification (replaced by build_container: published to every node in runtime kafka)
    matching: MatchingService | None = None

    async def start(self) -> None:
        self.store.open()
        if self.images is not None:
            self.images.cache.open()
        await self.store.mark_interrupted_syncs()
        if self.replication is not None:
            await self.replication.start()
        if self.settings.demo_vendors:
            await self.register_demo_vendors()
        await self.queue.start()
        if self.changelog is not None:
            await self.changelog.start()
        if self.interactive_changelog is not None:
            await self.interactive_changelog.start()
        if self.leadership is not None:
            await self.leadership.start()  # the scheduler starts on the node that wins
        elif self.settings.scheduler_enabled:
            await self.scheduler.start()

    async def stop(self) -> None:
        if self.leadership is not None:
            await self.leadership.stop()
        await self.scheduler.stop()
        if self.interactive_changelog is not None:
            await self.interactive_changelog.stop()
        if self.changelog is not None:
            await self.changelog.stop()
        await self.queue.stop()
        await self.sources.aclose()
        if self.image_origin is not None:
            await self.image_origin.aclose()
        if self.replication is not None:
            await self.replication.stop()
        self.store.close()
        for pool in self.pools:
            pool.shutdown(wait=False)

    async def register_demo_vendors(self) -> None:
        from simulators.demo import demo_vendors  # lazily: only the demo needs the simulators

        for vendor in await self.vendors.register(demo_vendors(self.settings.demo_host)):
            log.info("registered demo vendor %s at %s", vendor.id, vendor.base_url)


def change_feed(settings: Settings, store: SqliteCatalog) -> ChangeFeed:
    """Embedded: positions are this file's own (its epoch); kafka: the changelog's, the same on every node, so
    the epoch is the changelog topic's name (a token from another deployment's topic is refused)."""
    kafka = settings.runtime == "kafka"
    epoch = (
        int.from_bytes(hashlib.blake2b(settings.kafka_topic_updates.encode(), digest_size=7).digest())
        if kafka
        else None
    )
    return ChangeFeed(
        store.changes, store.prune_changes, epoch=epoch, local_part=not kafka, retention_s=settings.changes_retention_s
    )


def image_service(
    settings: Settings, store: SqliteCatalog, origin: VendorImages, changes: KafkaChangePublisher | None
) -> ImageService:
    """Placeholders go where the runtime's writes go: the store, or the changelog (every node applies it)."""
    return ImageService(
        store,
        origin,
        PillowImaging(max_pixels=settings.images_max_pixels, max_side=MAX_SIDE),
        DiskCache(
            settings.images_cache_dir or settings.db_path.parent / "images", settings.images_cache_mb * 1024 * 1024
        ),
        changes.publish_placeholder if changes is not None else store.set_placeholder,
        concurrency=settings.images_concurrency,
    )


def read_pools(settings: Settings) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
    """Store reads and searches off the event loop, one thread per core each: two pools, so searches that take
    long (a deep page, a rare word) queue behind each other, never in front of a product read."""
    n = settings.read_threads or os.cpu_count() or 2
    return (
        ThreadPoolExecutor(max_workers=n, thread_name_prefix="store-read"),
        ThreadPoolExecutor(max_workers=n, thread_name_prefix="search"),
    )


def build_container(settings: Settings) -> Container:
    secrets = load_secrets(settings)
    search = SearchSync(
        settings.search_index_dir or default_index_dir(settings.db_path),
        max_lag_s=settings.search_max_lag_s,
        catch_up_s=settings.search_catch_up_s,
    )
    store = SqliteCatalog(
        settings.db_path,
        bulk_slice_s=settings.bulk_write_slice_ms / 1000,
        miss_commit_s=settings.miss_commit_within_ms / 1000,
        page_cache_size=settings.list_cache_pages,
        rates=load_rates(settings),
        secrets=secrets,
        deliveries_keep_s=settings.webhook_deliveries_keep_s,
        max_mb=settings.db_max_mb,
        min_free_mb=settings.db_min_free_mb,
        search=search,
        matching=settings.matching,
    )
    tracker = RequestTracker(
        keep_finished_s=settings.request_keep_s,
        not_found_ttl_s=settings.not_found_ttl_s,
        # Embedded: this process took every request there is. Kafka: others are learnt from the changelog.
        lookup_wait_s=settings.request_lookup_wait_ms / 1000 if settings.runtime == "kafka" else 0.0,
    )
    sources = SourceRegistry(make_source_factory(settings))
    breakers = BreakerRegistry(
        failures=settings.breaker_failures, open_s=settings.breaker_open_s, max_open_s=settings.breaker_open_max_s
    )
    workers = EmbeddedWorkers(store, sources, tracker, page_attempts=settings.page_attempts, breakers=breakers)
    queue: InProcessRequestQueue | KafkaRequestQueue
    changelog: KafkaChangelog | None = None
    interactive_changelog: KafkaChangelog | None = None
    vendor_feed: KafkaVendorFeed | None = None
    changes: KafkaChangePublisher | None = None  # without one, a webhook is applied to this node's store
    if settings.runtime == "kafka":
        # No embedded workers: the Flink job calls the vendors; this node publishes and applies the changelog. The
        # job holds no sync status, so this node plans full or incremental before publishing.
        queue = KafkaRequestQueue(
            settings, plan=functools.partial(plan_catalog, store=store, changes_since=supports_changes_since)
        )
        vendor_feed = KafkaVendorFeed(queue, settings.kafka_topic_vendors, store.list_vendors, secrets=secrets)
        # A webhook stays in the catalog's changelog: ordered with the syncs' pages of its vendor on every node (on
        # the interactive topic a node catching up could apply them in another order than its peers did).
        changes = KafkaChangePublisher(queue, settings.kafka_topic_updates)
    else:
        queue = InProcessRequestQueue(
            workers.handle,
            workers=settings.workers,
            maxsize=settings.queue_size,
            interactive_workers=settings.interactive_workers,
            bulk_per_vendor=settings.bulk_workers_per_vendor,
            interactive_per_vendor=settings.interactive_workers_per_vendor,
        )
    reads, searches = read_pools(settings)
    catalog = CatalogService(
        store,
        queue,
        tracker,
        default_wait_ms=settings.wait_ms_default,
        max_wait_ms=settings.wait_ms_max,
        breakers=breakers,
        search=CatalogSearch(lambda: search.index, store.summaries, lambda: search.ready, store.rates),
        reads=reads,
        searches=searches,
        cached=Cached(store.cached_product, store.cached_page),
    )
    vendors = vendor_service(
        settings, store, sources=sources, breakers=breakers, catalog=catalog, feed=vendor_feed, changes=changes
    )
    if settings.runtime == "kafka":
        applier = ChangelogApplier(store, tracker, on_vendor_removed=vendors.forget, breakers=breakers)
        changelog = KafkaChangelog(settings, applier, secrets=secrets)
        interactive_changelog = KafkaChangelog(settings, applier, secrets=secrets, lane=Lane.INTERACTIVE)
    scheduler = RefreshScheduler(
        store,
        catalog,
        tick_s=settings.scheduler_tick_s,
        full_sync_every_s=settings.full_sync_every_s,
        retry_after_failure_s=settings.retry_failed_sync_s,
        breakers=breakers,
    )
    replication = Replication(settings, store) if settings.database_url else None
    leadership = None
    if settings.runtime == "kafka" and settings.scheduler_enabled:
        leadership = KafkaLeadership(settings, scheduler.start, scheduler.stop)
    health = HealthService(
        store,
        queue,
        leadership or scheduler,
        db_path=settings.db_path,
        scheduler_enabled=settings.scheduler_enabled,
        changelog=changelog,
        replication=replication.monitor if replication is not None else None,
        writable=store.write_problem,
        search=store.search_problem,
    )
    container = Container(
        settings,
        store,
        tracker,
        sources,
        workers,
        queue,
        catalog,
        vendors,
        health,
        scheduler,
        breakers,
        changelog,
        vendor_feed,
        replication,
        leadership,
    )
    container.tokens = TokenSigner(settings.token_key())
    container.interactive_changelog = interactive_changelog
    container.matching = MatchingService(store, changes)
    container.changes = change_feed(settings, store)
    container.limits = rate_limits(settings)
    container.image_origin = VendorImages(
        outbound_policy(settings), max_bytes=settings.images_max_bytes, timeout_s=settings.images_timeout_s
    )
    container.images = image_service(settings, store, container.image_origin, changes)
    container.pools = [reads, searches]
    if isinstance(queue, InProcessRequestQueue):
        container.metric_providers.append(queue.metrics)
    container.metric_providers.append(store.metrics)
    container.metric_providers.append(ThreadCpu().metrics)
    if changelog is not None:
        container.metric_providers.append(changelog.metrics)
    if interactive_changelog is not None:
        container.metric_providers.append(interactive_changelog.metrics)
    if leadership is not None:
        container.metric_providers.append(leadership.metrics)
    return container
