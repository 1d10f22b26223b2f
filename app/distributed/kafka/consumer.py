"""The node's changelog consumer: ``product_updates`` and ``catalog_vendors`` into its own store.

confluent-kafka is blocking, so a thread polls; it decodes and checks messages there and hands each batch to the
event loop, which applies it (``ChangelogApplier``) while the thread waits. Only then are the batch's offsets
stored for the background commit: at-least-once, made harmless by idempotent applying. Each node has its own group
(``catalog-node-<node id>``) so every node receives every update; a new group starts from the earliest offset,
because a node must hold the whole catalog (the cost: a new node re-applies the topic's whole retention once).

A message that cannot be understood, or whose applying fails, is logged, counted and sent to the dead-letter topic
(``app.domain.wire.dead_letter``: the message, the reason, where it was read); the consumer goes on with the next.
A batch's offsets are stored only once the broker has acknowledged its dead letters (as Kafka Connect waits for its
dead-letter reporter before committing): a letter the broker refused is produced again, so a refused message is
never lost between the topic it came from and the dead-letter topic.

A vendor's definition is on ``catalog_vendors`` before the job can produce any update of it, but one consumer reading
both topics may still meet the update first (the two topics are fetched independently; a node joining with a long
vendors topic behind it). So an update of a vendor this node does not know makes it catch up first: the updates
partitions are paused and ``catalog_vendors`` is read until nothing more arrives for ``vendor_quiet_s`` (the high
watermark cannot say "read to the end": Tansu gets it wrong), its definitions applied, then the batch. Only a vendor
still unknown after that (deleted meanwhile) has its updates skipped and counted. A vendor not found that way is not
looked for again for ``unknown_retry_s``, so the trailing pages of a deleted vendor's sync cost one catch-up only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from app.distributed.kafka.config import DELIVERY_TIMEOUT_S, consumer_config, group_id, producer_config
from app.domain.changes import FeedPosition
from app.domain.lanes import Lane, in_lane, interactive_work
from app.domain.models import Vendor
from app.domain.wire import ChangelogError, Update, dead_letter, encode, loads, parse_update, parse_vendor
from app.observability import Metric
from app.secrets import Secrets, load_secrets
from app.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
APPLYING = "applying a changelog batch"


class Applier(Protocol):
    """What the consumer hands each batch to, on the event loop (``ChangelogApplier``), and the counts it shows."""

    applied: int
    offers_applied: int
    batches: int
    unknown_vendor: int

    async def apply(
        self, updates: Sequence[Update], positions: Sequence[FeedPosition] | None = None, *, refetchable: bool = False
    ) -> None: ...
    def durable_at(self) -> int: ...
    def commits(self) -> int: ...
    async def apply_vendor(
        self, vendor_id: str, vendor: Vendor | None, position: FeedPosition | None = None
    ) -> bool: ...
    async def unknown_vendors(self, vendor_ids: Iterable[str]) -> set[str]: ...


class DeferredOffsets:
    """Offsets stored only once what their messages wrote is on disk.

    The interactive consumer's outcomes may be written inside the node's running sync transaction and answered
    before it commits (``SqliteCatalog.upsert_positioned(refetchable=True)``); storing their offsets at once would
    let a crash in between lose them on this node alone. So each applied batch waits here with the commit count
    that makes it durable (``durable_at``), and is stored, in order, once the store's ``commits`` reach it.
    """

    def __init__(self) -> None:
        self._waiting: collections.deque[tuple[int, Sequence[Message]]] = collections.deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, durable_at: int, messages: Sequence[Message]) -> None:
        self._waiting.append((durable_at, messages))

    def due(self, commits: int) -> list[Message]:
        """The messages now durable, oldest first (a later batch never goes before an earlier one)."""
        out: list[Message] = []
        while self._waiting and self._waiting[0][0] <= commits:
            out.extend(self._waiting.popleft()[1])
        return out


def feed_position(msg: Message, prefix: str) -> FeedPosition:
    """Where a message is in the changelog, as the change feed names it: the same on every node that reads it
    (partition, offset, and the timestamp the producer gave it)."""
    _, timestamp_ms = msg.timestamp()
    return FeedPosition(f"{prefix}{msg.partition()}", int(msg.offset() or 0) + 1, max(0, timestamp_ms) / 1000)


@dataclass(frozen=True, slots=True)
class _VendorDef:
    vendor_id: str
    vendor: Vendor | None


@dataclass(slots=True)
class _Letter:
    """A dead letter on its way: the delivery report says whether the broker has it."""

    key: bytes | None
    value: bytes
    origin: str
    acknowledged: bool = False
    error: str | None = None

    def delivered(self, err: KafkaError | None, _msg: Message) -> None:
        self.acknowledged = err is None
        self.error = None if err is None else str(err)


class KafkaChangelog:
    def __init__(
        self,
        settings: Settings,
        applier: Applier,
        *,
        batch_size: int = 1000,
        poll_timeout_s: float = 0.1,
        group: str | None = None,
        vendor_quiet_s: float = 0.5,
        vendor_catch_up_max_s: float = 30.0,
        unknown_retry_s: float = 10.0,
        secrets: Secrets | None = None,
        lane: Lane = Lane.BULK,
    ) -> None:
        """``secrets`` open the credentials of ``catalog_vendors`` definitions (default: from ``settings``).

        ``lane``: bulk reads ``product_updates`` (catalog pages, sync records, webhooks); interactive reads the
        interactive topic (the job's product outcomes) on a consumer, a group and a thread of its own, so a
        shopper's answer never waits behind a batch of pages, and its writes go before theirs
        (``app.domain.lanes``). Only the bulk one reads ``catalog_vendors`` (see ``_await_vendors``)."""
        self.lane = lane
        self._secrets = secrets or load_secrets(settings)
        self._settings = settings
        self._applier = applier
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._vendor_quiet_s = vendor_quiet_s
        self._vendor_catch_up_max_s = vendor_catch_up_max_s
        self._unknown_retry_s = unknown_retry_s
        # vendor id -> monotonic time of the catch-up that did not find it
        self._not_found: dict[str, float] = {}
        self.vendor_catch_ups = 0
        interactive = lane is Lane.INTERACTIVE
        self.group = group or (f"{group_id(settings)}-interactive" if interactive else group_id(settings))
        self._updates_topic = settings.kafka_topic_interactive_updates if interactive else settings.kafka_topic_updates
        #: How the change feed names this topic's partitions (the same on every node).
        self._prefix = "i" if interactive else "u"
        self._vendors_topic = settings.kafka_topic_vendors
        self._dead_topic = settings.kafka_topic_dead_letters
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._deferred = DeferredOffsets()  # the interactive lane's (its outcomes may be answered uncommitted)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.messages = 0
        self.dead_letters = 0
        #: Letters of the batch being handled, until the broker acknowledges them (``_deliver_dead_letters``).
        self._letters: list[_Letter] = []
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def metrics(self) -> list[Metric]:
        applier = self._applier
        if self.lane is Lane.INTERACTIVE:  # the applier's counters are the bulk consumer's to show
            return [
                Metric(
                    "catalog_changelog_interactive_running",
                    "1 while the interactive changelog consumer runs.",
                    "gauge",
                    int(self.running),
                ),
                Metric(
                    "catalog_changelog_interactive_messages_total",
                    "Interactive changelog messages read.",
                    "counter",
                    self.messages,
                ),
                Metric(
                    "catalog_lane_wait_seconds_total",
                    "Time requests waited for a worker (kafka: before the job took them), summed, per lane.",
                    "counter",
                    getattr(applier, "queued_s_total", 0.0),
                    {"lane": "interactive"},
                ),
                Metric(
                    "catalog_lane_taken_total",
                    "Requests a worker (kafka: the job) took, per lane.",
                    "counter",
                    getattr(applier, "queued", 0),
                    {"lane": "interactive"},
                ),
            ]
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
                "catalog_changelog_batches_total",
                "Batches of updates applied (both lanes): offers per batch bounds the offers per write transaction.",
                "counter",
                applier.batches,
            ),
            Metric(
                "catalog_changelog_unknown_vendor_total",
                "Updates of vendors this node does not hold (not stored).",
                "counter",
                applier.unknown_vendor,
            ),
            Metric(
                "catalog_changelog_vendor_catch_ups_total",
                "Times catalog_vendors was read to its end because an update named an unknown vendor.",
                "counter",
                self.vendor_catch_ups,
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
        interactive = self.lane is Lane.INTERACTIVE
        consumer.subscribe([self._updates_topic] if interactive else [self._vendors_topic, self._updates_topic])
        dead = Producer(producer_config(self._settings))
        name = f"kafka-changelog-{self.lane.value}"
        self._thread = threading.Thread(target=self._run, args=(consumer, dead), name=name, daemon=True)
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
                if len(self._deferred):
                    self._store_offsets(consumer, self._deferred.due(self._applier.commits()))
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
        vendors, updates = self._decode(messages)
        self._apply_vendors(vendors)
        if self._wants_catch_up({u.vendor_id for _, u in updates}):
            more = self._await_vendors(updates) if self.lane is Lane.INTERACTIVE else self._catch_up(consumer)
            more_vendors, more_updates = self._decode(more)
            self._apply_vendors(more_vendors)
            updates += more_updates  # read after the batch's own: partition order is kept
            messages = [*messages, *more]
            _, still = self._on_loop(
                self._applier.unknown_vendors({u.vendor_id for _, u in updates}), "reading the store"
            )
            now = time.monotonic()
            for vendor_id in still or ():
                self._not_found[vendor_id] = now
        refetchable = self.lane is Lane.INTERACTIVE  # its offsets wait for the commit (``DeferredOffsets``)
        if (
            updates
            and not self._on_loop(
                self._applier.apply(
                    [u for _, u in updates],
                    [feed_position(m, self._prefix) for m, _ in updates],
                    refetchable=refetchable,
                ),
                APPLYING,
            )[0]
        ):
            for msg, update in updates:  # find the one that fails; the others are applied (idempotently)
                applying = self._applier.apply([update], [feed_position(msg, self._prefix)], refetchable=refetchable)
                if not self._on_loop(applying, APPLYING)[0]:
                    self._dead_letter(msg, f"not applied: {self.last_error}")
        if not self._deliver_dead_letters(dead):
            return  # stopping with a letter not acknowledged: the batch is read again after the restart
        if refetchable:
            self._deferred.add(self._applier.durable_at(), messages)
            self._store_offsets(consumer, self._deferred.due(self._applier.commits()))
        else:
            self._store_offsets(consumer, messages)

    @staticmethod
    def _store_offsets(consumer: Consumer, messages: Sequence[Message]) -> None:
        for msg in messages:
            if msg.error() is None:
                try:
                    consumer.store_offsets(message=msg)
                except KafkaException as exc:  # the partition was revoked meanwhile: its new owner re-reads it
                    log.info("offset of %s[%s] not stored: %s", msg.topic(), msg.partition(), exc)

    def _decode(
        self, messages: Sequence[Message]
    ) -> tuple[list[tuple[Message, _VendorDef]], list[tuple[Message, Update]]]:
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
                    updates.append((msg, parse_update(loads(msg.value(), "update"))))
            except ChangelogError as exc:
                self._dead_letter(msg, f"unreadable: {exc}")
        return vendors, updates

    def _apply_vendors(self, vendors: Sequence[tuple[Message, _VendorDef]]) -> None:
        """Before the updates read with them: updates of a vendor defined in the same batch then find it."""
        for msg, definition in vendors:
            if definition.vendor is not None:
                self._not_found.pop(definition.vendor_id, None)
            applying = self._applier.apply_vendor(definition.vendor_id, definition.vendor, feed_position(msg, "v"))
            if not self._on_loop(applying, APPLYING)[0]:
                self._dead_letter(msg, f"not applied: {self.last_error}")

    def _wants_catch_up(self, vendor_ids: set[str]) -> bool:
        if not vendor_ids:
            return False
        _, unknown = self._on_loop(self._applier.unknown_vendors(vendor_ids), "reading the store")
        now = time.monotonic()
        return any(now - self._not_found.get(v, -1e18) >= self._unknown_retry_s for v in unknown or ())

    def _await_vendors(self, updates: Sequence[tuple[Message, Update]]) -> list[Message]:
        """The interactive consumer leaves ``catalog_vendors`` to the bulk one (two consumers applying the same
        definitions would move the change feed's vendor positions back and forth): an update of a vendor this node
        does not know yet waits, bounded, for the bulk consumer to apply its definition."""
        self.vendor_catch_ups += 1
        deadline = time.monotonic() + min(5.0, self._vendor_catch_up_max_s)
        wanted = {u.vendor_id for _, u in updates}
        while not self._stopping.is_set() and time.monotonic() < deadline:
            _, unknown = self._on_loop(self._applier.unknown_vendors(wanted), "reading the store")
            if not unknown:
                break
            self._stopping.wait(0.05)
        return []

    def _catch_up(self, consumer: Consumer) -> list[Message]:
        """Read ``catalog_vendors`` until it stays quiet, the updates partitions paused meanwhile; returns what was
        read (updates already on their way when the pause began included, to be applied after the batch)."""
        self.vendor_catch_ups += 1
        started = time.monotonic()
        paused = [tp for tp in consumer.assignment() if tp.topic == self._updates_topic]
        if paused:
            try:
                consumer.pause(paused)
            except KafkaException as exc:  # a rebalance in between: read on unpaused, updates are kept in order
                log.info("updates not paused for the vendor catch-up: %s", exc)
                paused = []
        read: list[Message] = []
        try:
            quiet_until = started + self._vendor_quiet_s
            while not self._stopping.is_set():
                now = time.monotonic()
                if now >= quiet_until or now - started >= self._vendor_catch_up_max_s:
                    break
                msg = consumer.poll(min(0.05, quiet_until - now))
                if msg is None or msg.error() is not None:
                    continue
                read.append(msg)
                if msg.topic() == self._vendors_topic:
                    quiet_until = time.monotonic() + self._vendor_quiet_s
        finally:
            if paused:
                try:
                    consumer.resume(paused)
                except KafkaException as exc:  # revoked meanwhile: their next owner (this node, again) reads them
                    log.info("updates not resumed after the vendor catch-up: %s", exc)
        log.info(
            "caught up on %s for an unknown vendor: %d messages in %.2fs",
            self._vendors_topic,
            len(read),
            time.monotonic() - started,
        )
        return read

    def _vendor_def(self, msg: Message) -> _VendorDef:
        key = msg.key()
        if not key:
            raise ChangelogError("vendor definition without a key")
        vendor_id = key.decode(errors="replace")
        value = msg.value()
        return _VendorDef(vendor_id, None if value is None else parse_vendor(value, secrets=self._secrets))

    def _on_loop(self, coro: Coroutine[Any, Any, T], doing: str) -> tuple[bool, T | None]:
        """Run a coroutine on the event loop and wait: (True, its result), or (False, None) and ``last_error``."""
        assert self._loop is not None

        async def in_its_lane() -> T:
            # The interactive consumer applies shoppers' misses: the node's bulk applying steps aside meanwhile.
            counted = interactive_work.running() if self.lane is Lane.INTERACTIVE else contextlib.nullcontext()
            with in_lane(self.lane), counted:
                return await coro

        future = asyncio.run_coroutine_threadsafe(in_its_lane(), self._loop)
        try:
            return True, future.result()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("%s failed", doing)
            return False, None

    def _dead_letter(self, msg: Message, reason: str) -> None:
        """Keep a letter for ``_deliver_dead_letters``, which the batch's end calls."""
        self.dead_letters += 1
        log.warning("dead letter from %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), reason[:500])
        letter = dead_letter(
            source=msg.topic() or "",
            error=reason[:2000],
            raw=msg.value(),
            key=msg.key(),
            partition=msg.partition(),
            offset=msg.offset(),
            by=self.group,
        )
        self._letters.append(_Letter(msg.key(), encode(letter), f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"))

    def _deliver_dead_letters(self, dead: Producer) -> bool:
        """Produce the batch's letters and wait for the broker's acknowledgement, producing refused ones again
        (with a growing pause) until all are in or the consumer stops; False if it stopped first."""
        pause = 0.2
        while self._letters:
            for letter in self._letters:
                try:
                    dead.produce(self._dead_topic, key=letter.key, value=letter.value, on_delivery=letter.delivered)
                except BufferError:  # not produced, so not acknowledged: the next round tries it again
                    dead.poll(0.1)
            dead.flush(DELIVERY_TIMEOUT_S + 2)
            failed = self._letters = [x for x in self._letters if not x.acknowledged]
            if not failed:
                break
            log.error(
                "%d dead letters not acknowledged (first: %s, %s); producing them again",
                len(failed),
                failed[0].origin,
                failed[0].error,
            )
            if self._stopping.wait(pause):
                return False
            pause = min(pause * 2, 5.0)
        return True
