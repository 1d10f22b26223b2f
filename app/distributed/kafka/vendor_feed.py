"""Vendor definitions to the compacted ``catalog_vendors`` topic (key = vendor id, tombstone on delete).

The Flink job needs them to call vendors, and every node applies them to its own SQLite so nodes agree. A change
made while the broker is away is kept and published when it returns: the local write has already happened, and
failing the admin call would leave the node and the topic disagreeing anyway.

Whenever the broker becomes reachable (start-up included) the node publishes only the vendors it holds that the
topic has no record of at all, neither a definition nor a tombstone: all of them into a topic just (re)created (a new
broker, or one that lost its storage, as the memory-only Tansu does on a restart; whoever created it), the vendors
registered before the kafka runtime was switched on, the demo vendors. A vendor the topic knows is never published
again on a reconnect: a node that missed a deletion while it was away would bring the deleted vendor back for
everyone. The topic is read with keys only, from the start, until nothing more arrives for a short quiet period (not
up to the high watermark: Tansu gets it wrong); if it cannot be read, nothing is published (the safe side).
Limit: once compaction has removed a tombstone (``delete.retention.ms``, a day by default), a node down for longer
than that would publish the deleted vendor again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from app.distributed.kafka.config import ADMIN_TIMEOUT_S, consumer_config, group_id
from app.distributed.kafka.queue import KafkaRequestQueue
from app.domain.models import Vendor
from app.domain.wire import encode, vendor_to_dict
from app.errors import ServiceUnavailable
from app.secrets import Secrets
from app.settings import Settings

log = logging.getLogger(__name__)


def topic_keys(settings: Settings, topic: str, *, quiet_s: float = 0.5, timeout_s: float = 30.0) -> set[str]:
    """The keys of every record of ``topic``, all partitions from the beginning, without joining a group.

    Reading ends when every partition has answered (a record or an end-of-partition event; Tansu may report the end
    early, hence not relied upon as "the end") and then nothing more arrived for ``quiet_s``. Raises
    ``KafkaException`` or ``TimeoutError`` when that cannot be established: a partial answer must not be taken
    for the whole topic.
    """
    config = {
        **consumer_config(settings, f"{group_id(settings)}-vendor-keys"),
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    }
    consumer = Consumer(config)
    try:
        meta = consumer.list_topics(topic, timeout=ADMIN_TIMEOUT_S).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaException(meta.error if meta is not None and meta.error else f"topic {topic} not found")
        waiting = set(meta.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in waiting])
        keys: set[str] = set()
        deadline = time.monotonic() + timeout_s
        quiet_until: float | None = None
        while quiet_until is None or time.monotonic() < quiet_until:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read within {timeout_s:g}s")
            msg = consumer.poll(0.05)
            if msg is None:
                continue
            err = msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(err)
            waiting.discard(msg.partition() or 0)
            key = msg.key() if err is None else None
            if key:
                keys.add(key.decode(errors="replace"))
            if not waiting:
                quiet_until = time.monotonic() + quiet_s
        return keys
    finally:
        consumer.close()


class KafkaVendorFeed:
    def __init__(
        self,
        queue: KafkaRequestQueue,
        topic: str,
        vendors: Callable[[], list[Vendor]],
        *,
        keys_on_topic: Callable[[], set[str]] | None = None,
        secrets: Secrets,
    ) -> None:
        """``secrets`` seal the credentials of every definition published (``app.secrets``)."""
        self._secrets = secrets
        self._queue = queue
        self._topic = topic
        self._vendors = vendors
        self._keys_on_topic = keys_on_topic or (lambda: topic_keys(queue.settings, topic))
        # vendor id -> definition still to publish (None: a tombstone)
        self._pending: dict[str, Vendor | None] = {}
        queue.on_reconnect(self.reconnected)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def saved(self, vendor: Vendor) -> None:
        self._pending[vendor.id] = vendor
        await self.flush()

    async def deleted(self, vendor_id: str) -> None:
        self._pending[vendor_id] = None
        await self.flush()

    async def reconnected(self, created: Collection[str]) -> None:
        """Changes kept while the broker was away go out, and the vendors the topic has no record of."""
        if self._topic in created:
            missing = self._vendors()  # created just now by this node: empty
        else:
            try:
                known = await asyncio.to_thread(self._keys_on_topic)
            except (KafkaException, TimeoutError) as exc:
                log.warning("%s could not be read, no vendor definition published again: %s", self._topic, exc)
                known = None
            missing = [] if known is None else [v for v in self._vendors() if v.id not in known]
        if missing:
            log.info("publishing %d vendor definitions %s has no record of", len(missing), self._topic)
        for vendor in missing:
            self._pending.setdefault(vendor.id, vendor)
        await self.flush()

    async def flush(self) -> None:
        for vendor_id, vendor in list(self._pending.items()):
            value = None if vendor is None else encode(vendor_to_dict(vendor, secrets=self._secrets))
            try:
                await self._queue.send(self._topic, vendor_id, value)
            except ServiceUnavailable as exc:
                log.info("vendor definition %s kept for later: %s", vendor_id, exc.message)
                return
            if self._pending.get(vendor_id) is vendor:  # not changed again while it was being sent
                del self._pending[vendor_id]
