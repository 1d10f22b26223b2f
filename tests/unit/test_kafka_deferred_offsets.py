"""The interactive consumer's offsets wait for the commit that makes what their messages wrote durable
(``app.distributed.kafka.consumer.DeferredOffsets``)."""

from __future__ import annotations

from typing import Any, cast

from confluent_kafka import Message

from app.distributed.kafka.consumer import DeferredOffsets


def messages(*names: str) -> list[Message]:
    return cast(list[Message], list(names))


def names(out: list[Message]) -> list[Any]:
    return list(cast(list[Any], out))


def test_a_batchs_offsets_are_due_once_the_store_has_committed_it() -> None:
    deferred = DeferredOffsets()
    deferred.add(3, messages("m1"))
    deferred.add(3, messages("m2"))
    deferred.add(5, messages("m3", "m4"))
    assert names(deferred.due(2)) == []  # the sync holding them has not committed yet
    assert names(deferred.due(3)) == ["m1", "m2"]
    assert names(deferred.due(4)) == [] and len(deferred) == 1
    assert names(deferred.due(9)) == ["m3", "m4"] and len(deferred) == 0


def test_a_later_batch_never_has_its_offsets_stored_before_an_earlier_one() -> None:
    """Kafka stores one offset per partition: storing the later one would say the earlier one was done too."""
    deferred = DeferredOffsets()
    deferred.add(5, messages("nested, waits for the sync's commit"))
    deferred.add(4, messages("committed on its own"))
    assert names(deferred.due(4)) == []
    assert names(deferred.due(5)) == ["nested, waits for the sync's commit", "committed on its own"]
