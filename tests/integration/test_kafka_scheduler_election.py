"""One refresh scheduler for all nodes: Kafka group membership on a real broker (Tansu) picks exactly one owner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.distributed.kafka.admin import ensure_topics
from app.distributed.kafka.leader import KafkaLeadership
from app.settings import Settings
from tests.kafka_support import Broker, unique

pytestmark = [pytest.mark.kafka]


class Node:
    def __init__(self, settings: Settings, name: str) -> None:
        self.scheduling = False
        self.leadership = KafkaLeadership(settings.model_copy(update={"node_id": name}), self._lead, self._follow)

    async def _lead(self) -> None:
        self.scheduling = True

    async def _follow(self) -> None:
        self.scheduling = False


async def until(check: Callable[[], bool]) -> None:
    """Poll: the hand-over happens on the election's own thread."""
    async with asyncio.timeout(30):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_exactly_one_node_schedules_and_another_takes_over_when_it_leaves(kafka_broker: Broker) -> None:
    settings = Settings(
        kafka_bootstrap=kafka_broker.bootstrap,
        kafka_topic_scheduler=unique("scheduler"),
        kafka_scheduler_group=unique("scheduler"),
        kafka_partitions=3,
    )
    await asyncio.to_thread(ensure_topics, settings)
    nodes = [Node(settings, f"n{i}") for i in range(3)]
    try:
        for node in nodes:
            await node.leadership.start()
        await until(lambda: sum(n.scheduling for n in nodes) == 1)
        await asyncio.sleep(4)  # the other members' joins (and their rebalances) have happened by now
        owners = [n for n in nodes if n.scheduling]
        assert len(owners) == 1 and owners[0].leadership.leading and owners[0].leadership.terms == 1
        assert all(n.leadership.running for n in nodes)  # every member is ready: it takes part

        await owners[0].leadership.stop()  # leaves the group: another member gets the partition
        assert not owners[0].scheduling
        rest = [n for n in nodes if n is not owners[0]]
        await until(lambda: sum(n.scheduling for n in rest) == 1)
        assert sum(n.leadership.leading for n in rest) == 1
    finally:
        for node in nodes:
            await node.leadership.stop()
    assert not any(n.scheduling for n in nodes)
