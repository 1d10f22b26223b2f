"""Readiness checks and their reasons, per runtime, from in-memory fakes of the components."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.health.service import HealthService
from tests.fakes import FakeCatalogStore, FakeRequestQueue


@dataclass
class Component:
    """A background task's stand-in (the refresh scheduler, the changelog consumer)."""

    running: bool = True


class Broker(FakeRequestQueue):
    """The Kafka queue's own reason, which /ready repeats."""

    @property
    def reason(self) -> str | None:
        return None if self.healthy else "Kafka broker h:1 unreachable"


def service(store: FakeCatalogStore, queue: FakeRequestQueue, scheduler: Component, **kw: Any) -> HealthService:
    return HealthService(store, queue, scheduler, db_path=Path("var/x.db"), scheduler_enabled=True, **kw)


def test_embedded_checks_the_workers_and_names_what_fails() -> None:
    store, queue = FakeCatalogStore(), FakeRequestQueue()
    store.up = queue.healthy = False
    state = service(store, queue, Component(running=False)).readiness()
    assert state.checks == {"store": False, "workers": False, "scheduler": False} and not state.ready
    assert state.reasons == [
        "the SQLite store does not answer",  # no path: /ready is public
        "the request workers are not running",
        "the refresh scheduler is not running",
    ]
    assert state.replication is None


def test_kafka_checks_the_broker_and_the_changelog_without_naming_the_broker() -> None:
    broker, changelog = Broker(), Component(running=False)
    broker.healthy = False
    state = service(FakeCatalogStore(), broker, Component(), changelog=changelog).readiness()
    assert state.checks == {"store": True, "broker": False, "changelog": False, "scheduler": True}
    assert state.reasons == ["the Kafka broker is unreachable", "the changelog consumer is not running"]
    broker.healthy = changelog.running = True
    assert service(FakeCatalogStore(), broker, Component(), changelog=changelog).readiness().ready


def test_a_disabled_scheduler_is_not_a_reason_to_leave_service() -> None:
    health = HealthService(
        FakeCatalogStore(), FakeRequestQueue(), Component(running=False), db_path=Path("x"), scheduler_enabled=False
    )
    assert health.readiness().ready
