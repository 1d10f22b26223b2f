"""Everything PostgreSQL does for one API node, wired from the settings: initial load, the optional push task,
status, analytics. The push loop is in ``pusher.py``, /ready and /metrics in ``monitor.py``, the SQL in the
adapters (``capture.py`` for SQLite, ``postgres/`` for PostgreSQL)."""

from __future__ import annotations

import logging
import socket

from app.analytics.service import AnalyticsService
from app.replication.capture import SqliteOutbox
from app.replication.initial_load import initial_load
from app.replication.monitor import ReplicationMonitor
from app.replication.postgres.analytics import PostgresAnalytics
from app.replication.postgres.replica import LOAD_ERRORS, PostgresReplica
from app.replication.pusher import BackgroundPusher, Pusher
from app.settings import Settings
from app.store.sqlite.catalog import SqliteCatalog

log = logging.getLogger(__name__)


def replication_node(settings: Settings) -> str:
    """The source name this SQLite file pushes under: stable across restarts of the same node."""
    return settings.node_id or f"{socket.gethostname()}:{settings.db_path.resolve()}"


class Replication:
    def __init__(self, settings: Settings, store: SqliteCatalog) -> None:
        url = settings.database_url
        if not url:
            raise ValueError("replication needs DATABASE_URL")
        self.settings = settings
        self.url = url
        self.store = store
        self.background: BackgroundPusher | None = None
        pusher = build_pusher(settings) if settings.replication_push else None
        if pusher is not None:
            self.background = BackgroundPusher(pusher)
        self.monitor = ReplicationMonitor(store, pusher, backlog_max=settings.replication_backlog_max)
        self._analytics_db = PostgresAnalytics(url, schema=settings.database_schema)
        self.analytics = AnalyticsService(self._analytics_db)

    async def start(self) -> None:
        if self.settings.replication_initial_load:
            replica = PostgresReplica(
                self.url, schema=self.settings.database_schema, node_id=replication_node(self.settings)
            )
            try:
                await initial_load(self.store, replica, install_capture=self.settings.replication_push)
            except LOAD_ERRORS as exc:
                log.warning(
                    "replication: no initial load from PostgreSQL (%s); starting with this SQLite as it is", exc
                )
        if self.background is not None:
            await self.background.start()
        await self._analytics_db.open()

    async def stop(self) -> None:
        if self.background is not None:
            await self.background.stop()
        await self._analytics_db.close()


def build_pusher(settings: Settings) -> Pusher:
    if not settings.database_url:
        raise ValueError("DATABASE_URL is not set: nothing to push to")
    return Pusher(
        SqliteOutbox(settings.db_path),
        PostgresReplica(settings.database_url, schema=settings.database_schema, node_id=replication_node(settings)),
        batch_size=settings.replication_batch_size,
        poll_s=settings.replication_poll_s,
        backoff_max_s=settings.replication_backoff_max_s,
    )
