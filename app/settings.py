"""All configuration, from ``CATALOG_*`` environment variables (or a ``.env`` file).

The README's settings table is generated from this class (``catalog settings``), so it cannot drift.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ADMIN_KEY = "dev-admin-key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = Field(
        "development", description="`production` refuses the default admin key."
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
    admin_key: str = Field(DEV_ADMIN_KEY, description="Value the `X-API-Key` header must carry on admin calls.")
    host: str = Field("127.0.0.1", description="Address `catalog serve` listens on.")
    port: int = Field(8000, description="Port `catalog serve` listens on.")
    log_level: str = Field("info", description="Python log level.")

    workers: int = Field(4, ge=1, le=64, description="Embedded request workers (concurrent vendor jobs).")
    queue_size: int = Field(1000, ge=1, description="Pending requests before misses answer 503.")
    wait_ms_default: int = Field(1500, ge=0, description="How long a miss waits for the vendor by default.")
    wait_ms_max: int = Field(10_000, ge=0, description="Upper bound of the `wait_ms` query parameter.")
    request_keep_s: float = Field(900, description="How long finished requests stay visible at /requests/{id}.")
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
    page_attempts: int = Field(3, ge=1, description="Tries per catalog page after the HTTP retries.")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failed vendor calls that open its breaker.")
    breaker_open_s: float = Field(30.0, gt=0, description="First cool-down of an open breaker (doubles on re-open).")
    breaker_open_max_s: float = Field(600.0, gt=0, description="Longest cool-down of an open breaker.")

    scheduler_tick_s: float = Field(5.0, gt=0, description="How often vendors are checked for a due refresh.")
    scheduler_enabled: bool = Field(True, description="Re-sync vendors on their refresh interval.")
    full_sync_every_s: float = Field(86_400, gt=0, description="Longest time between full (not incremental) syncs.")
    retry_failed_sync_s: float = Field(60, gt=0, description="Wait before retrying a vendor whose sync failed.")
    default_refresh_interval_s: int = Field(3600, ge=1, description="Refresh interval of a vendor added without one.")

    demo_vendors: bool = Field(False, description="Register the demo vendors (local simulators) at start-up.")
    demo_host: str = Field("127.0.0.1", description="Where the demo simulators listen.")
    list_cache_pages: int = Field(256, ge=0, description="List pages cached until the next write (0: off).")
    gzip_min_bytes: int = Field(1024, ge=0, description="Responses at least this large are gzipped when asked.")
    bench_routes: bool = Field(False, description="Expose `/_bench/*` (benchmark baseline routes).")
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="Where clients reach this API: the OpenAPI `servers` entry generated clients default to.",
    )
    cursor_key: str | None = Field(
        None,
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
    kafka_sasl_password: str | None = Field(None, description="Kafka SASL password.")
    kafka_ssl_ca_location: Path | None = Field(None, description="CA certificate file for Kafka TLS.")
    flink_parallelism: int = Field(1, ge=1, description="Parallelism of the Flink job.")
    flink_checkpoint_ms: int = Field(1000, ge=100, description="Flink checkpoint interval (offsets commit on it).")
    flink_buffer_timeout_ms: int = Field(1, ge=0, description="Flink network buffer timeout (low latency).")
    flink_bundle_time_ms: int = Field(1, ge=1, description="PyFlink `python.fn-execution.bundle.time`.")
    flink_jars_dir: Path = Field(Path("var/flink-jars"), description="Where `make install` puts the connector jars.")

    # --- PostgreSQL replication ---
    database_url: str | None = Field(
        None,
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

    @model_validator(mode="after")
    def _no_default_secret_in_production(self) -> Settings:
        if self.env == "production" and self.admin_key == DEV_ADMIN_KEY:
            raise ValueError("CATALOG_ADMIN_KEY must be set to a secret of your own in production")
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
