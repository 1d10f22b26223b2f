"""What /ready and /metrics show of replication, read through the store from a real SQLite file (no PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from app.domain.models import Availability, Offer, Vendor, VendorKind
from app.replication.capture import SqliteOutbox
from app.replication.monitor import ReplicationMonitor
from app.store.sqlite.catalog import SqliteCatalog


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteCatalog]:
    store = SqliteCatalog(tmp_path / "m.db")
    store.open()
    offers = [
        Offer(
            vendor_id="v1",
            vendor_product_id=str(i),
            title=f"Thing {i}",
            price=Decimal("1.50"),
            currency="EUR",
            availability=Availability.IN_STOCK,
        )
        for i in range(5)
    ]
    asyncio.run(store.add_vendor(Vendor("v1", "V1", VendorKind.DUMMYJSON, "http://x", "EUR")))
    asyncio.run(store.upsert_offers(offers))
    yield store
    store.close()


@pytest.fixture
def outbox(store: SqliteCatalog) -> Iterator[SqliteOutbox]:
    box = SqliteOutbox(store.path)
    box.open()
    box.install_capture()  # queues every existing row
    yield box
    box.close()


def values(monitor: ReplicationMonitor) -> dict[str, float]:
    return {m.name: m.value for m in monitor.read().metrics()}


def test_the_files_push_total_is_shown_and_survives_the_pushing_process(
    store: SqliteCatalog, outbox: SqliteOutbox
) -> None:
    monitor = ReplicationMonitor(store, pusher=None)
    queued = monitor.read().status()["backlog"]
    assert queued > 0 and values(monitor)["catalog_replication_file_pushed_changes_total"] == 0
    rows = outbox.read(0, 1000)
    outbox.acknowledge(rows[2].seq, pushed=3)
    outbox.close()  # the pushing process goes away; the file keeps its count
    outbox.open()
    outbox.acknowledge(rows[-1].seq, pushed=len(rows) - 3)
    state = monitor.read()
    assert state.status()["backlog"] == 0 and state.status()["watermark"] == rows[-1].seq
    shown = {m.name: m for m in state.metrics()}
    assert shown["catalog_replication_file_pushed_changes_total"].value == len(rows) == queued
    assert shown["catalog_replication_file_pushed_changes_total"].type == "counter"
    # No pusher in this process: none of its counters are shown.
    assert "catalog_replication_pushed_changes_total" not in shown


def test_a_rejected_row_makes_the_node_unready_with_the_row_as_reason(
    store: SqliteCatalog, outbox: SqliteOutbox
) -> None:
    monitor = ReplicationMonitor(store, pusher=None)
    assert monitor.read().ok
    outbox.record_error("PostgreSQL unavailable", None)
    down = monitor.read()
    assert down.ok and down.status()["last_error"] == "PostgreSQL unavailable"  # the outbox keeps everything
    outbox.record_error("rejected", {"table": "offers", "pk": '["v1","3"]'})
    blocked = monitor.read()
    assert not blocked.ok and "rejected row" in blocked.reason and '["v1","3"]' in blocked.reason
    assert values(monitor)["catalog_replication_blocked"] == 1
    assert values(monitor)["catalog_replication_last_error_timestamp_seconds"] > 0
    outbox.clear_error()
    assert monitor.read().ok and values(monitor)["catalog_replication_blocked"] == 0
