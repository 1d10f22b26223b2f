"""The node's changelog consumer: ``product_updates`` and ``catalog_vendors`` into its own store.

confluent-kafka is blocking, so a thread polls; it decodes and checks messages there and hands each batch to the
event loop, which applies it (``ChangelogApplier``) while the thread waits. Only then are the batch's offsets
stored for the background commit: at-least-once, made harmless by idempotent applying. Each node has its own group
(``catalog-node-<node id>``) so every node receives every update; a new group starts from the earliest offset,
because a node must hold the whole catalog (the cost: a new node re-applies the topic's whole retention once).

A message that cannot be understood, or whose applying fails, is logged, counted and copied to the dead-letter
topic with the reason in its headers; the consumer goes on with the next one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from app.adapters.kafka.config import consumer_config, group_id, producer_config
from app.domain.changelog import ChangelogError, Update, parse_update, vendor_from_dict
from app.domain.models import Vendor
from app.services.changelog import ChangelogApplier, check
from app.services.metrics import Metric
from app.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _VendorDef:
    vendor_id: str
    vendor: Vendor | None


class KafkaChangelog:
    def __init__(
        self,
        settings: Settings,
        applier: ChangelogApplier,
        *,
        batch_size: int = 1000,
        poll_timeout_s: float = 0.1,
        group: str | None = None,
    ) -> None:
        self._settings = settings
        self._applier = applier
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self.group = group or group_id(settings)
        self._updates_topic = settings.kafka_topic_updates
        self._vendors_topic = settings.kafka_topic_vendors
        self._dead_topic = settings.kafka_topic_dead_letters
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.messages = 0
        self.dead_letters = 0
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def metrics(self) -> list[Metric]:
        applier = self._applier
        return [
            Metric("catalog_changelog_running", "1 while the changelog consumer runs.", "gauge", int(self.running)),
            Metric("catalog_changelog_messages_total", "Changelog and vendor messages read.", "counter", self.messages),
            Metric(
                "catalog_changelog_updates_total",
                "Updates applied (redeliveries included).",
                "counter",
                applier.applied,
            ),
            Metric(
                "catalog_changelog_offers_total",
                "Offers upserted from the changelog.",
                "counter",
                applier.offers_applied,
            ),
            Metric(
                "catalog_changelog_unknown_vendor_total",
                "Updates of vendors this node does not hold (not stored).",
                "counter",
                applier.unknown_vendor,
            ),
            Metric(
                "catalog_changelog_dead_letters_total",
                "Messages sent to the dead-letter topic.",
                "counter",
                self.dead_letters,
            ),
        ]

    async def start(self) -> None:
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        consumer = Consumer(consumer_config(self._settings, self.group))
        consumer.subscribe([self._vendors_topic, self._updates_topic])
        dead = Producer(producer_config(self._settings))
        self._thread = threading.Thread(target=self._run, args=(consumer, dead), name="kafka-changelog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            # The loop keeps running while we wait, so a batch being applied can finish.
            await asyncio.to_thread(self._thread.join, 15)
            self._thread = None

    # -- the consumer thread -------------------------------------------------------------------------------

    def _run(self, consumer: Consumer, dead: Producer) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    messages = self._next_batch(consumer)
                except KafkaException as exc:  # librdkafka retries by itself; this only reports
                    log.warning("changelog consumer: %s", exc)
                    self._stopping.wait(1.0)
                    continue
                dead.poll(0)
                if messages:
                    self._handle(consumer, dead, messages)
        except Exception:
            log.exception("the changelog consumer stopped unexpectedly")
            raise
        finally:
            consumer.close()
            dead.flush(2)

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        """What has arrived, without waiting for a full batch (``consume(n, timeout)`` waits for n or the timeout,
        which would add the timeout to every miss); waits up to the poll timeout only when nothing is there."""
        messages = consumer.consume(self._batch_size, 0)
        if messages:
            return messages
        first = consumer.poll(self._poll_timeout_s)
        if first is None:
            return []
        return [first, *consumer.consume(self._batch_size - 1, 0)]

    def _handle(self, consumer: Consumer, dead: Producer, messages: Sequence[Message]) -> None:
        vendors: list[tuple[Message, _VendorDef]] = []
        updates: list[tuple[Message, Update]] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.debug("consumer: %s", err)
                continue
            self.messages += 1
            try:
                if msg.topic() == self._vendors_topic:
                    vendors.append((msg, self._vendor_def(msg)))
                else:
                    update = parse_update(orjson.loads(msg.value() or b"null"))
                    check(update)
                    updates.append((msg, update))
            except (ChangelogError, orjson.JSONDecodeError) as exc:
                self._dead_letter(dead, msg, f"unreadable: {exc}")
        # Vendor definitions first: updates of a vendor read in the same batch then find it.
        for msg, definition in vendors:
            if not self._call(self._applier.apply_vendor(definition.vendor_id, definition.vendor)):
                self._dead_letter(dead, msg, f"not applied: {self.last_error}")
        if updates and not self._call(self._applier.apply([u for _, u in updates])):
            for msg, update in updates:  # find the one that fails; the others are applied (idempotently)
                if not self._call(self._applier.apply([update])):
                    self._dead_letter(dead, msg, f"not applied: {self.last_error}")
        for msg in messages:
            if msg.error() is None:
                try:
                    consumer.store_offsets(message=msg)
                except KafkaException as exc:  # the partition was revoked meanwhile: its new owner re-reads it
                    log.info("offset of %s[%s] not stored: %s", msg.topic(), msg.partition(), exc)

    def _vendor_def(self, msg: Message) -> _VendorDef:
        key = msg.key()
        if not key:
            raise ChangelogError("vendor definition without a key")
        vendor_id = key.decode(errors="replace")
        value = msg.value()
        if value is None:
            return _VendorDef(vendor_id, None)
        data = orjson.loads(value)
        if not isinstance(data, dict):
            raise ChangelogError("vendor definition must be a JSON object")
        return _VendorDef(vendor_id, vendor_from_dict(data))

    def _call(self, coro: Coroutine[Any, Any, Any]) -> bool:
        """Run a coroutine on the loop and wait; False (and ``last_error``) when it raised."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            future.result()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("applying a changelog batch failed")
            return False
        return True

    def _dead_letter(self, dead: Producer, msg: Message, reason: str) -> None:
        self.dead_letters += 1
        log.warning("dead letter from %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), reason[:500])
        headers: list[tuple[str, str | bytes | None]] = [
            ("error", reason[:2000].encode()),
            ("source_topic", (msg.topic() or "").encode()),
            ("source_partition", str(msg.partition()).encode()),
            ("source_offset", str(msg.offset()).encode()),
            ("node_group", self.group.encode()),
        ]
        try:
            dead.produce(self._dead_topic, key=msg.key(), value=msg.value(), headers=headers)
        except BufferError:
            log.error("dead-letter queue full: message %s[%s]@%s dropped", msg.topic(), msg.partition(), msg.offset())
