"""The changelog consumer keeps a refused message until the broker has its dead letter (at-least-once)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from confluent_kafka import KafkaError, Message, Producer

from app.distributed.kafka.consumer import KafkaChangelog
from app.settings import Settings
from tests.fakes import FakeCatalogStore


class _Message:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def topic(self) -> str:
        return "updates"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"dj"

    def value(self) -> bytes:
        return b"{not json"


class _Broker:
    """A producer whose broker refuses the first ``refusals`` deliveries (a leader moving, a full disk)."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.pending: list[tuple[bytes, Callable[[KafkaError | None, Any], None]]] = []
        self.stored: list[bytes] = []

    def produce(self, topic: str, *, key: bytes, value: bytes, on_delivery: Callable[..., None]) -> None:
        self.pending.append((value, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        pending, self.pending = self.pending, []
        for value, report in pending:
            if self.refusals > 0:
                self.refusals -= 1
                report(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION), None)
            else:
                self.stored.append(value)
                report(None, None)
        return 0


def _consumer() -> KafkaChangelog:
    return KafkaChangelog(Settings(runtime="kafka", kafka_bootstrap="127.0.0.1:1"), FakeCatalogStore())  # type: ignore[arg-type]


def test_a_refused_dead_letter_is_produced_again_until_the_broker_has_it() -> None:
    changelog = _consumer()
    broker = _Broker(refusals=3)
    producer = cast(Producer, broker)
    for offset in (26, 27):
        changelog._dead_letter(cast(Message, _Message(offset)), "unreadable")
    assert changelog._deliver_dead_letters(producer)
    assert len(broker.stored) == 2 and all(b'"{not json"' in v for v in broker.stored)
    assert changelog._deliver_dead_letters(producer) and len(broker.stored) == 2  # nothing twice once acknowledged


def test_a_consumer_stopping_with_an_unacknowledged_letter_does_not_go_on() -> None:
    changelog = _consumer()
    broker = _Broker(refusals=10**6)
    producer = cast(Producer, broker)
    changelog._dead_letter(cast(Message, _Message(26)), "unreadable")
    changelog._stopping.set()
    assert not changelog._deliver_dead_letters(producer)  # so the batch's offsets stay
    assert broker.stored == []
