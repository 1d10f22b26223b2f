"""Readiness: is this node fit to serve, and if not, why, in words an operator can act on.

Every check and its reason come from one read of each dependency, so ``/ready`` shows the replication status it
decided on, not a second read that may disagree; ``/metrics`` reports the same checks and the gauges of that read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.ingest.port import RequestQueue
from app.observability import Metric
from app.replication.monitor import ReplicationMonitor
from app.store.port import CatalogStore


class Running(Protocol):
    """A background component (the refresh scheduler, the changelog consumer)."""

    @property
    def running(self) -> bool: ...


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, bool]
    #: ``ReplicationState.status()`` when DATABASE_URL is set
    replication: dict[str, Any] | None
    #: why each failing check fails
    reasons: list[str]
    #: the gauges of the same reads (replication), so /metrics shows what decided ``catalog_ready``
    metrics: list[Metric] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(self.checks.values())


class HealthService:
    def __init__(
        self,
        store: CatalogStore,
        queue: RequestQueue,
        scheduler: Running,
        *,
        db_path: Path,
        scheduler_enabled: bool,
        changelog: Running | None = None,
        replication: ReplicationMonitor | None = None,
        writable: Callable[[], str | None] | None = None,
        search: Callable[[], str | None] | None = None,
    ) -> None:
        """``writable``: why the store's last write failed (disk full, size cap, read-only), None when it did not."""
        self._writable = writable
        # why searches cannot trust the index (missing, rebuilding, failing, behind), None when they can
        self._search = search
        """``changelog``: the kafka runtime's consumer; then the queue is the broker, not the embedded workers."""
        self._store = store
        self._queue = queue
        self._scheduler = scheduler
        self._db_path = db_path
        self._scheduler_enabled = scheduler_enabled
        self._changelog = changelog
        self.replication = replication

    def readiness(self) -> Readiness:
        replication = self.replication.read() if self.replication is not None else None
        write_problem = self._writable() if self._writable is not None else None
        # The store check covers both: it answers reads, and its last write did not fail for want of room.
        checks = {"store": self._store.ping() and write_problem is None}
        if self._changelog is None:
            checks["workers"] = self._queue.healthy
        else:
            checks["broker"] = self._queue.healthy
            checks["changelog"] = self._changelog.running
        checks["scheduler"] = self._scheduler.running or not self._scheduler_enabled
        search_problem = self._search() if self._search is not None else None
        if self._search is not None:
            checks["search"] = search_problem is None
        if replication is not None:
            checks["replication"] = replication.ok
        # No paths, hosts or users in these: /ready is public (the log names them).
        reasons = {
            "store": "the SQLite store does not answer"
            if write_problem is None
            else "the SQLite store cannot write (disk full, size cap CATALOG_DB_MAX_MB, or read-only)",
            "workers": "the request workers are not running",
            "broker": "the Kafka broker is unreachable",
            "changelog": "the changelog consumer is not running",
            "scheduler": "the refresh scheduler is not running",
            "replication": replication.reason if replication is not None else "",
            "search": search_problem or "",
        }
        failing = [reasons.get(name, name) for name, ok in checks.items() if not ok]
        if replication is None:
            return Readiness(checks, None, failing)
        return Readiness(checks, replication.status(), failing, replication.metrics())
