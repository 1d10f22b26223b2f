from __future__ import annotations

import os
from collections.abc import Iterator

# The tests run as development (the public development keys are accepted; `production` is the default and refuses
# them): every Settings() a test builds sees this, subprocesses get it from service_env/job_env.
os.environ["CATALOG_ENV"] = "development"

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
