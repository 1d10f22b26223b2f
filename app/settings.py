"""All configuration, from ``CATALOG_*`` environment variables (or a ``.env`` file).

The README's settings table is generated from this class (``catalog settings``), so it cannot drift.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_ADMIN_KEY = "dev-admin-key"
#: An admin key shorter than this, or estimated below ``MIN_ADMIN_KEY_BITS``, is refused outside development.
MIN_ADMIN_KEY_CHARS = 24
MIN_ADMIN_KEY_BITS = 96


def estimated_bits(key: str) -> float:
    """A cheap upper bound of a key's entropy: its length times the Shannon entropy of its characters. A random
    ``secrets.token_urlsafe(32)`` scores about 200; ``dev-admin-key`` 40; a repeated character 0."""
    if not key:
        return 0.0
    counts = Counter(key)
    return -len(key) * sum(c / len(key) * math.log2(c / len(key)) for c in counts.values())


def weak_admin_key(key: str) -> str | None:
    """Why a key is too weak to guard the admin API, or ``None``."""
    if key == DEV_ADMIN_KEY:
        return "it is the default development key"
    if len(key) < MIN_ADMIN_KEY_CHARS:
        return f"it is shorter than {MIN_ADMIN_KEY_CHARS} characters"
    if estimated_bits(key) < MIN_ADMIN_KEY_BITS:
        return f"it has less than {MIN_ADMIN_KEY_BITS} bits of entropy (estimated)"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = Field(
        "production",
        description="`production` (the default) refuses to serve with a weak admin key or without secret keys; "
        "`development` (`make run`, the tests) accepts the public development keys.",
    )
    runtime: Literal["embedded", "kafka"] = Field(
        "embedded",
        description="Ingest runtime. `embedded`: in-process queue and workers. `kafka`: requests to Kafka, "
        "fetched by the Flink job, applied from the `product_updates` changelog.",
    )
    node_id: str = Field(
        "",
        description="This node's stable name: its Kafka consumer group is `catalog-node-<id>` (default id: host-port) "
        "and it is the source PostgreSQL knows its changes by (default: host:SQLite path).",
    )
    db_path: Path = Field(Path("var/catalog.db"), description="SQLite file of this node (created if missing).")
    db_max_mb: int | None = Field(
        None, ge=1, description="Size cap of the SQLite file in MB (writes past it fail and /ready says so)."
    )
    db_min_free_mb: int = Field(64, ge=0, description="Free space under which the store counts as full (/ready 503).")
    matching: bool = Field(
        True,
        description="Unify offers with the matcher (issue 10); false: only GTINs, brand + SKU and overrides decide. "
        "Every node of a kafka deployment must have the same value.",
    )
    admin_key: str = Field(
        DEV_ADMIN_KEY,
        repr=False,
        description="Value the `X-API-Key` header must carry on admin calls; outside development at least "
        f"{MIN_ADMIN_KEY_CHARS} characters and {MIN_ADMIN_KEY_BITS} bits (e.g. `python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))'`).",
    )
    secret_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="Comma-separated Fernet keys sealing vendor credentials (SQLite, PostgreSQL, Kafka); the first "
        "seals, all open (rotation: `catalog secrets`). Required outside development.",
    )
    host: str = Field("127.0.0.1", description="Address `catalog serve` listens on.")
    port: int = Field(8000, description="Port `catalog serve` listens on.")
    log_level: str = Field("info", description="Python log level.")

    workers: int = Field(4, ge=1, le=64, description="Embedded bulk-lane workers (concurrent catalog syncs).")
    interactive_workers: int = Field(
        8, ge=1, le=256, description="Embedded interactive-lane workers (misses, refreshes): never behind a sync."
    )
    bulk_workers_per_vendor: int | None = Field(
        None, ge=1, description="Most bulk workers one vendor may hold at once (default: half of `workers`)."
    )
    interactive_workers_per_vendor: int | None = Field(
        None, ge=1, description="Most interactive workers one vendor may hold (default: half of `interactive_workers`)."
    )
    bulk_write_slice_ms: float = Field(
        10.0,
        gt=0,
        description="Longest an interactive write should wait behind a bulk (sync) one: a sync's batch is written in "
        "parts of about this time, and when an interactive write is waiting the bulk transaction commits between two "
        "parts and lets it in (an idle service still writes the batch in one transaction).",
    )
    miss_commit_within_ms: float = Field(
        500.0,
        ge=0,
        description="A shopper's miss (embedded) or a node's product outcome (kafka) that arrives while a sync holds "
        "SQLite's writer is written inside the sync's transaction and answered at once (its product read back from the "
        "writer), instead of making the sync commit for it; the sync then commits within this time. 0: at its next "
        "part (a commit per miss).",
    )
    queue_size: int = Field(1000, ge=1, description="Pending requests before misses answer 503.")
    wait_ms_default: int = Field(1500, ge=0, description="How long a miss waits for the vendor by default.")
    wait_ms_max: int = Field(10_000, ge=0, description="Upper bound of the `wait_ms` query parameter.")
    request_keep_s: float = Field(900, description="How long finished requests stay visible at /requests/{id}.")
    not_found_ttl_s: float = Field(
        60,
        ge=0,
        description="How long a product the vendor answered 404 for is answered 404 without asking it again (0: off).",
    )
    request_lookup_wait_ms: int = Field(
        1000,
        ge=0,
        description="runtime=kafka: how long `GET /requests/{id}` of an id this node has not heard of waits for the "
        "changelog to bring it (the client may follow a 202 to another node faster than the changelog).",
    )

    vendor_timeout_s: float = Field(10.0, gt=0, description="Per-attempt timeout of a vendor HTTP call.")
    vendor_max_attempts: int = Field(4, ge=1, description="Attempts per vendor call (5xx, timeouts, 429).")
    vendor_backoff_base_s: float = Field(0.2, ge=0, description="First retry back-off (exponential, jittered).")
    vendor_backoff_max_s: float = Field(5.0, ge=0, description="Largest back-off between retries.")
    vendor_max_retry_after_s: float = Field(30.0, ge=0, description="Longest `Retry-After` waited out in place.")
    vendor_concurrency: int = Field(4, ge=1, description="Concurrent HTTP calls per vendor.")
    vendor_max_response_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Largest vendor answer accepted, counted as sent and unpacked (over it the page fails).",
    )
    vendor_max_items_per_page: int = Field(5000, ge=1, description="Most items a vendor page may carry.")
    outbound_allow_private: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks vendor URLs may resolve to although not public (`127.0.0.1/32,"
        "10.0.0.0/8`). Link-local and metadata addresses (169.254.0.0/16, fd00:ec2::254...) stay refused.",
    )
    page_attempts: int = Field(3, ge=1, description="Tries per catalog page after the HTTP retries.")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failed vendor calls that open its breaker.")
    breaker_open_s: float = Field(30.0, gt=0, description="First cool-down of an open breaker (doubles on re-open).")
    breaker_open_max_s: float = Field(600.0, gt=0, description="Longest cool-down of an open breaker.")

    scheduler_tick_s: float = Field(5.0, gt=0, description="How often vendors are checked for a due refresh.")
    scheduler_enabled: bool = Field(True, description="Re-sync vendors on their refresh interval.")
    full_sync_every_s: float = Field(86_400, gt=0, description="Longest time between full (not incremental) syncs.")
    retry_failed_sync_s: float = Field(60, gt=0, description="Wait before retrying a vendor whose sync failed.")
    default_refresh_interval_s: int = Field(3600, ge=1, description="Refresh interval of a vendor added without one.")

    webhook_deliveries_keep_s: float = Field(
        7 * 86_400, gt=0, description="How long a webhook delivery id is remembered (a redelivery changes nothing)."
    )
    rate_limit_misses_per_min: float = Field(
        60, ge=0, description="Misses (listings not stored: a vendor call) one client may cause per minute (0: off)."
    )
    rate_limit_miss_burst: int = Field(20, ge=1, description="Misses one client may cause at once.")
    rate_limit_thumbnails_per_min: float = Field(
        600,
        ge=0,
        description="Thumbnails not cached yet (a download and a render each) one client may cause per minute "
        "(0: off); cached ones are not limited.",
    )
    rate_limit_thumbnail_burst: int = Field(100, ge=1, description="Uncached thumbnails one client may cause at once.")
    rate_limit_admin_failures_per_min: float = Field(
        6, ge=0, description="Admin calls with a missing or wrong key one client may make per minute (0: off)."
    )
    rate_limit_admin_burst: int = Field(5, ge=1, description="Admin key failures one client may make at once.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated proxy networks whose `X-Forwarded-For` names the client (rate limits); "
        "from anyone else the header is ignored.",
    )
    demo_vendors: bool = Field(False, description="Register the demo vendors (local simulators) at start-up.")
    demo_host: str = Field("127.0.0.1", description="Where the demo simulators listen.")
    list_cache_pages: int = Field(256, ge=0, description="List pages cached until the next write (0: off).")
    malloc_arenas: int = Field(
        2, ge=0, le=64, description="glibc malloc arenas of the process (0: glibc's default): fewer keep RSS down."
    )
    search_index_dir: Path | None = Field(
        None, description="Directory of the search index (Tantivy); default `<db_path>.search` beside the file."
    )
    search_max_lag_s: float = Field(
        30.0, gt=0, description="/ready fails when a committed write is not searchable after this long."
    )
    search_catch_up_s: float = Field(
        1.0, gt=0, description="How often the index looks for writes of other processes (the CLI)."
    )
    read_threads: int | None = Field(
        None, ge=1, le=64, description="Threads for store reads, and as many for searches (default: the cores)."
    )
    gzip_min_bytes: int = Field(1024, ge=0, description="Responses at least this large are gzipped when asked.")
    bench_routes: bool = Field(False, description="Expose `/_bench/*` (benchmark baseline routes).")
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="Where clients reach this API: the OpenAPI `servers` entry generated clients default to.",
    )
    cursor_key: str | None = Field(
        None,
        repr=False,
        description="Key that signs pagination cursors and change-feed tokens (HMAC-SHA256, 16+ characters; the same "
        "on every node). Unset: derived from `CATALOG_ADMIN_KEY`.",
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest request body accepted (webhooks included); larger ones answer 413 before being read.",
    )
    changes_retention_s: float = Field(
        30 * 86_400,
        gt=0,
        description="How long deletions stay in the change feed; an older `since` token answers 410 (resync).",
    )
    changes_stream_max_s: float = Field(
        300.0,
        gt=0,
        description="How long one `/changes/stream` connection lasts before the server closes it (the client "
        "reconnects with `Last-Event-ID`).",
    )
    changes_poll_s: float = Field(0.25, gt=0, description="How often an open change stream looks for new changes.")
    images_cache_dir: Path | None = Field(
        None, description="Folder of the thumbnail cache, one per node (default: `images/` beside `CATALOG_DB_PATH`)."
    )
    images_cache_mb: int = Field(
        256, ge=1, description="Size cap of the thumbnail cache in MB; least recently used out first."
    )
    images_max_bytes: int = Field(
        15 * 1024 * 1024, ge=1024, description="Largest vendor image downloaded for a thumbnail (over it: 502)."
    )
    images_max_pixels: int = Field(
        40_000_000,
        ge=1,
        description="Most pixels a vendor image may declare before it is decoded (decompression bombs; Pillow's "
        "`MAX_IMAGE_PIXELS`); over it: 502.",
    )
    images_timeout_s: float = Field(10.0, gt=0, description="Time limit of one vendor image download, whole.")
    images_concurrency: int = Field(2, ge=1, description="Thumbnails rendered at once (CPU-bound, in threads).")
    images_max_age_s: int = Field(
        31_536_000, ge=0, description="`Cache-Control: max-age` of thumbnails (they are immutable: one URL, one image)."
    )
    rates_file: Path | None = Field(
        None,
        description="JSON exchange rates for `?currency=` and cross-currency price sorts "
        "(default: the packaged demo rates, `app/data/rates.json`).",
    )

    # --- distributed runtime (Kafka + Flink) ---
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (`host:port,...`).")
    kafka_topic_vendor_requests: str = Field("vendor_requests", description="Topic of vendor catalog requests.")
    kafka_topic_product_requests: str = Field("product_requests", description="Topic of product requests.")
    kafka_topic_updates: str = Field("product_updates", description="Changelog topic every node applies.")
    kafka_topic_interactive_updates: str = Field(
        "product_interactive",
        description="Changelog topic of the job's product outcomes (misses): every node applies it on a "
        "consumer of its own, never behind a catalog sync's pages.",
    )
    kafka_topic_vendors: str = Field("catalog_vendors", description="Compacted topic of vendor definitions.")
    kafka_topic_dead_letters: str = Field("catalog_dead_letters", description="Where unreadable messages go.")
    kafka_topic_scheduler: str = Field(
        "catalog_scheduler", description="One-partition topic whose owner in the scheduler group plans refreshes."
    )
    kafka_scheduler_group: str = Field(
        "catalog-scheduler", description="Consumer group of the nodes that may run the refresh scheduler."
    )
    kafka_partitions: int = Field(3, ge=1, description="Partitions of topics the service creates.")
    kafka_replication_factor: int = Field(1, ge=1, description="Replication factor of topics the service creates.")
    kafka_session_timeout_ms: int = Field(
        6000, ge=1000, description="Consumer session timeout (short: the first group join takes about half of it)."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka `security.protocol`."
    )
    kafka_sasl_mechanism: str | None = Field(None, description="Kafka `sasl.mechanism` (PLAIN, SCRAM-SHA-512...).")
    kafka_sasl_username: str | None = Field(None, description="Kafka SASL user name.")
    kafka_sasl_password: str | None = Field(None, repr=False, description="Kafka SASL password.")
    kafka_ssl_ca_location: Path | None = Field(None, description="CA certificate file for Kafka TLS.")
    flink_parallelism: int = Field(1, ge=1, description="Parallelism of the Flink job.")
    flink_checkpoint_ms: int = Field(1000, ge=100, description="Flink checkpoint interval (offsets commit on it).")
    flink_buffer_timeout_ms: int = Field(1, ge=0, description="Flink network buffer timeout (low latency).")
    flink_bundle_time_ms: int = Field(1, ge=1, description="PyFlink `python.fn-execution.bundle.time`.")
    flink_jars_dir: Path = Field(Path("var/flink-jars"), description="Where `make install` puts the connector jars.")

    # --- PostgreSQL replication ---
    database_url: str | None = Field(
        None,
        repr=False,
        validation_alias=AliasChoices("DATABASE_URL", "CATALOG_DATABASE_URL", "database_url"),
        description="PostgreSQL (`postgresql://user@host/db`), also read from plain `DATABASE_URL`. Set: this "
        "node's SQLite changes are pushed there (long-term store, analytics), and an empty node loads from it.",
    )
    database_schema: str = Field("public", description="PostgreSQL schema of the replicated tables.")
    replication_push: bool = Field(
        True,
        description="This node pushes its changes to PostgreSQL. One designated node per SQLite file: set false on an "
        "API whose file `catalog sync run` pushes, and on all but one node of the distributed runtime.",
    )
    replication_initial_load: bool = Field(True, description="An empty SQLite is filled from PostgreSQL at start-up.")
    replication_poll_s: float = Field(0.2, gt=0, description="How often the pusher looks for new changes when idle.")
    replication_batch_size: int = Field(5000, ge=1, description="Changes per PostgreSQL transaction at most.")
    replication_backoff_max_s: float = Field(10.0, gt=0, description="Longest wait between failed push attempts.")
    replication_backlog_max: int = Field(
        1_000_000, ge=1, description="Unsent changes above which the node is not ready (the outbox alarm)."
    )

    @field_validator("outbound_allow_private", "secret_keys", "trusted_proxies", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("outbound_allow_private")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        from app.sources.safety import OutboundPolicy  # the one parser of the networks

        OutboundPolicy.parse(value)  # a typo must stop the service, not open or close the wrong network
        return value

    @field_validator("secret_keys")
    @classmethod
    def _fernet_keys(cls, value: list[str]) -> list[str]:
        from app.secrets import valid_key

        if not all(valid_key(k) for k in value):
            raise ValueError("CATALOG_SECRET_KEYS: every key must be a Fernet key (`catalog secrets new-key`)")
        return value

    def deployment_problems(self) -> list[str]:
        """What stops this configuration from serving: nothing in development, weak or public secrets otherwise.
        Checked when the API starts (not here: the CLI's store commands need no admin key)."""
        if self.env == "development":
            return []
        problems = []
        if (why := weak_admin_key(self.admin_key)) is not None:
            problems.append(f"CATALOG_ADMIN_KEY is too weak: {why}")
        if not self.secret_keys:
            problems.append(
                "CATALOG_SECRET_KEYS is not set (vendor credentials must not be sealed with the public key)"
            )
        return problems

    def check_deployment(self) -> None:
        if problems := self.deployment_problems():
            raise ValueError(f"refusing to start (CATALOG_ENV={self.env}): " + "; ".join(problems))

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.cursor_key is not None and len(self.cursor_key) < 16:
            raise ValueError("CATALOG_CURSOR_KEY needs at least 16 characters")
        if self.wait_ms_default > self.wait_ms_max:
            raise ValueError("CATALOG_WAIT_MS_DEFAULT cannot exceed CATALOG_WAIT_MS_MAX")
        return self

    def token_key(self) -> bytes:
        """The cursor/token signing key: set explicitly, or derived from the admin key every node shares."""
        if self.cursor_key:
            return self.cursor_key.encode()
        return hashlib.sha256(b"catalog-token-key:" + self.admin_key.encode()).digest()
