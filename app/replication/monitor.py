"""What /ready and /metrics show of replication, read from the SQLite file the pusher records into (whichever
process pushes: this API's background task or ``catalog sync run``), plus this process's push counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.observability import Metric
from app.replication.capture import OutboxStats, outbox_stats
from app.replication.pusher import Pusher
from app.store.sqlite.catalog import SqliteCatalog


@dataclass(frozen=True)
class ReplicationState:
    """One read of the outbox status: /ready's body, its verdict and /metrics of one request all come from it, so
    they cannot disagree (and the outbox is read once per request)."""

    stats: OutboxStats | None  # None before the SQLite migration that creates the outbox ran
    pusher: Pusher | None  # None when another process pushes
    #: The outbox's alarm bound: above it the node is not ready (PostgreSQL away too long, or a push too slow).
    backlog_max: int = 1_000_000

    @property
    def over_limit(self) -> bool:
        return self.stats is not None and self.stats.backlog > self.backlog_max

    def status(self) -> dict[str, Any]:
        stats, pusher = self.stats, self.pusher
        body: dict[str, Any] = {
            "pushing": pusher is not None,
            "backlog": stats.backlog if stats else 0,
            "lag_s": round(stats.lag_s(), 3) if stats else 0.0,
            "watermark": stats.watermark if stats else 0,
            "last_push_at": stats.last_push_at if stats else None,
            "last_error": stats.last_error if stats else None,
            "blocked": stats.blocked if stats else None,
        }
        if pusher is not None:
            body["connected"] = pusher.counters.connected
            body["schema_ok"] = pusher.counters.schema_ok
        return body

    @property
    def ok(self) -> bool:
        """Not ready only when a person must act (a rejected row, different columns); PostgreSQL being down is not
        a reason to take the API out of service: the outbox keeps everything."""
        blocked = self.stats is not None and self.stats.blocked is not None
        schema_differs = self.pusher is not None and self.pusher.counters.schema_ok is False
        return not blocked and not schema_differs and not self.over_limit

    @property
    def reason(self) -> str:
        """When not ``ok``: what the operator has to act on."""
        if self.stats is not None and self.stats.blocked:
            return f"replication to PostgreSQL is stopped on a rejected row: {self.stats.blocked}"
        if self.stats is not None and self.over_limit:
            return (
                f"replication backlog of {self.stats.backlog} changes is above the limit of {self.backlog_max}"
                " (CATALOG_REPLICATION_BACKLOG_MAX): PostgreSQL has been away or slow for too long"
            )
        return f"replication to PostgreSQL cannot run: {self.stats.last_error if self.stats else None}"

    def metrics(self) -> list[Metric]:
        stats = self.stats
        metrics = [
            Metric(
                "catalog_replication_backlog",
                "Captured changes not yet acknowledged by PostgreSQL.",
                "gauge",
                stats.backlog if stats else 0,
            ),
            Metric(
                "catalog_replication_lag_seconds",
                "Age of the oldest unsent change.",
                "gauge",
                stats.lag_s() if stats else 0.0,
            ),
            Metric(
                "catalog_replication_backlog_limit",
                "The backlog above which this node is not ready (CATALOG_REPLICATION_BACKLOG_MAX).",
                "gauge",
                self.backlog_max,
            ),
            Metric(
                "catalog_replication_backlog_over_limit",
                "1 while the backlog is above its limit (the outbox alarm).",
                "gauge",
                int(self.over_limit),
            ),
            Metric(
                "catalog_replication_blocked",
                "1 while the push is stopped on a rejected row.",
                "gauge",
                int(bool(stats and stats.blocked)),
            ),
            Metric(
                "catalog_replication_last_error_timestamp_seconds",
                "When the push last failed (0: never).",
                "gauge",
                (stats.last_error_at or 0.0) if stats else 0.0,
            ),
            Metric(
                "catalog_replication_file_pushed_changes_total",
                "Changes PostgreSQL acknowledged from this SQLite file, by whichever process pushed, over its life.",
                "counter",
                stats.pushed_total if stats else 0,
            ),
        ]
        if self.pusher is not None:
            metrics.extend(_push_metrics(self.pusher))
        return metrics


def _push_metrics(pusher: Pusher) -> list[Metric]:
    """This process's push loop, since it started."""
    c = pusher.counters
    return [
        Metric("catalog_replication_pushed_changes_total", "Changes PostgreSQL acknowledged.", "counter", c.changes),
        Metric("catalog_replication_pushed_batches_total", "Batches PostgreSQL acknowledged.", "counter", c.batches),
        Metric("catalog_replication_errors_total", "Failed push attempts.", "counter", c.errors),
        Metric("catalog_replication_rejected_batches_total", "Batches PostgreSQL refused.", "counter", c.rejected),
        Metric(
            "catalog_replication_superseded_images_total",
            "Rejected row images dropped because a newer image of the same row followed.",
            "counter",
            c.superseded,
        ),
        Metric("catalog_replication_connected", "1 while connected to PostgreSQL.", "gauge", int(c.connected)),
        Metric("catalog_replication_watermark", "Last outbox sequence PostgreSQL holds.", "gauge", pusher.watermark),
        Metric(
            "catalog_replication_last_batch_lag_seconds",
            "Capture to PostgreSQL commit, oldest change of the last batch.",
            "gauge",
            c.last_batch_lag_s,
        ),
    ]


class ReplicationMonitor:
    """Reads the outbox status through the store's read-only connection of the calling thread (no connection of
    its own): three primary-key lookups, cheap enough for every /ready and /metrics."""

    def __init__(self, store: SqliteCatalog, pusher: Pusher | None, *, backlog_max: int = 1_000_000) -> None:
        self.store = store
        self.pusher = pusher
        self.backlog_max = backlog_max

    def read(self) -> ReplicationState:
        return ReplicationState(self.store.read(outbox_stats), self.pusher, self.backlog_max)
