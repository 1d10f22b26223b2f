"""One refresh scheduler for all the nodes: the member of a consumer group that owns a one-partition topic plans.

Every node whose scheduler is enabled joins the group ``kafka_scheduler_group`` on the topic
``kafka_topic_scheduler`` (one partition, nothing is ever written to it). The broker's group coordinator gives that
partition to exactly one live member: that node runs the ``RefreshScheduler``, the others wait. When the owner
leaves (stopped: at once) or dies (kill -9, a network split: when its session times out, ``session.timeout.ms``,
6 s by default, plus the rebalance, about half a session timeout more on Tansu), the coordinator gives the
partition to another member, which starts its scheduler. The sticky cooperative assignor keeps the partition where
it is when nodes join, so adding a node does not move the scheduler. Kafka is there whenever this runtime runs,
which PostgreSQL (an advisory lock) is not.

The schedule itself needs no hand-over: it is computed from each vendor's sync status, which every node holds from
the changelog, so the next owner sees the syncs the last one asked for (running ones are not asked again). Within
a split longer than the session timeout two nodes may briefly both plan; the cost is one extra sync, applied
idempotently.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from app.distributed.kafka.config import consumer_config, node_id
from app.observability import Metric
from app.settings import Settings

log = logging.getLogger(__name__)


class KafkaLeadership:
    """Runs ``on_lead`` when this node becomes the scheduler's owner and ``on_follow`` when it stops being it."""

    def __init__(
        self,
        settings: Settings,
        on_lead: Callable[[], Awaitable[None]],
        on_follow: Callable[[], Awaitable[None]],
        *,
        poll_timeout_s: float = 0.2,
    ) -> None:
        self._settings = settings
        self._on_lead = on_lead
        self._on_follow = on_follow
        self._poll_timeout_s = poll_timeout_s
        self.group = settings.kafka_scheduler_group
        self.topic = settings.kafka_topic_scheduler
        self.node = node_id(settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.leading = False
        #: Times this node became the owner.
        self.terms = 0

    @property
    def running(self) -> bool:
        """Taking part in the election (owner or not): what readiness asks of a node's scheduler."""
        return self._thread is not None and self._thread.is_alive()

    def metrics(self) -> list[Metric]:
        return [
            Metric(
                "catalog_scheduler_leader",
                "1 while this node runs the refresh scheduler for all nodes (Kafka group membership).",
                "gauge",
                int(self.leading),
            ),
            Metric(
                "catalog_scheduler_terms_total", "Times this node became the scheduler's owner.", "counter", self.terms
            ),
        ]

    async def start(self) -> None:
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        consumer = Consumer(
            {
                **consumer_config(self._settings, self.group),
                "client.id": f"catalog-scheduler-{self.node}",
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)
        self._thread = threading.Thread(target=self._run, args=(consumer,), name="scheduler-election", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Leave the group (another node takes over at once), then stop this node's scheduler."""
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 15)
            self._thread = None
        if self.leading:
            self.leading = False
            await self._on_follow()

    def _run(self, consumer: Consumer) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    consumer.poll(self._poll_timeout_s)  # serves the group protocol and the callbacks below
                except KafkaException as exc:  # librdkafka retries by itself; this only reports
                    log.warning("scheduler election: %s", exc)
                    self._stopping.wait(1.0)
        except Exception:
            log.exception("the scheduler election stopped unexpectedly")
            raise
        finally:
            consumer.close()  # leaves the group: the partition moves to another member now
            self._lost("left the group")

    def _assigned(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if any(p.topic == self.topic for p in partitions) and not self.leading:
            self.leading = True
            self.terms += 1
            log.info("node %s runs the refresh scheduler now (group %s)", self.node, self.group)
            self._call(self._on_lead)

    def _revoked(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if any(p.topic == self.topic for p in partitions):
            self._lost("its partition went to another node")

    def _lost(self, why: str) -> None:
        if self.leading:
            self.leading = False
            log.info("node %s no longer runs the refresh scheduler: %s", self.node, why)
            self._call(self._on_follow)

    def _call(self, hook: Callable[[], Awaitable[None]]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        async def run() -> None:
            await hook()

        future: Future[None] = asyncio.run_coroutine_threadsafe(run(), loop)
        future.add_done_callback(_log_failure)


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("scheduler hand-over failed", exc_info=future.exception())
