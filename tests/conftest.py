from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kafka_support import Broker, start_broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """One Tansu broker for the whole run (tests use their own topic/group names or tolerate a restart)."""
    broker = start_broker()
    try:
        yield broker
    finally:
        broker.stop()
