"""The refresh scheduler with the real container, store and a simulator: who is synced, when, and how."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest

from app.bootstrap import Container, build_container
from app.domain.models import Vendor, VendorKind
from app.domain.queries import VendorSyncStatus
from simulators.config import SimConfig
from simulators.server import SimulatorServer
from tests.support import fast_settings


@pytest.fixture
async def container(tmp_path: Path) -> AsyncIterator[Container]:
    settings = fast_settings(
        tmp_path / "catalog.db", scheduler_enabled=True, scheduler_tick_s=0.1, retry_failed_sync_s=30
    )
    built = build_container(settings)
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


async def until(check: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def shop(base_url: str, **kw: object) -> Vendor:
    values: dict[str, object] = {
        "id": "shop",
        "name": "Shop",
        "kind": VendorKind.SHOPIFY,
        "base_url": base_url,
        "currency": "EUR",
        "credentials": {"access_token": "shpat_demo"},
        "refresh_interval_s": 1,
    }
    values.update(kw)
    return Vendor(**values)  # type: ignore[arg-type]


async def test_due_vendors_are_synced_full_first_then_incrementally(container: Container) -> None:
    with SimulatorServer(SimConfig(kind="shopify", seed=2, size=60)) as sim:
        await container.store.add_vendor(shop(sim.base_url))
        status: Callable[[], VendorSyncStatus] = lambda: container.store.vendor_status("shop")  # noqa: E731
        await until(lambda: status().syncs_ok >= 1, "the first sync")
        first = status()
        assert first.last_full_sync_at is not None
        assert first.offers == first.progress.items_seen > 0

        async with httpx.AsyncClient(base_url=sim.base_url) as http:
            changed = (await http.post("/_sim/tick")).json()["ids"]
        assert changed
        await until(lambda: status().syncs_ok >= first.syncs_ok + 2, "two more scheduled syncs")
        later = status()
        # incremental: the full sync time did not move and the last sync read only what changed
        assert later.last_full_sync_at == first.last_full_sync_at
        assert later.progress.items_seen < first.offers

        async with httpx.AsyncClient(base_url=sim.base_url) as http:
            answer = await http.get(
                f"/admin/api/2024-01/products/{changed[0]}.json", headers={"X-Shopify-Access-Token": "shpat_demo"}
            )
        product = answer.json()["product"]
        variant = product["variants"][0]
        ref = container.store.find_offer("shop", str(variant["id"]))
        assert ref is not None
        stored = container.store.get_product(ref.product_id)
        assert stored is not None
        offers = {o["vendor_product_id"]: o for o in orjson.loads(stored.doc)["offers"]}
        assert Decimal(offers[str(variant["id"])]["price"]) == Decimal(variant["price"])


async def test_a_failed_vendor_waits_before_it_is_retried(container: Container) -> None:
    # The retry waits min(refresh interval, retry_failed_sync_s=30): a long interval leaves the 30 s in force.
    await container.store.add_vendor(shop("http://127.0.0.1:9", id="dead", refresh_interval_s=3600))
    await until(lambda: container.store.vendor_status("dead").syncs_failed == 1, "the first failure")
    await asyncio.sleep(1.0)  # ten scheduler ticks: none may retry
    status = container.store.vendor_status("dead")
    assert (status.state, status.syncs_failed, status.syncs_ok) == ("failed", 1, 0)
    assert status.last_error


async def test_disabled_vendors_are_never_synced(container: Container) -> None:
    with SimulatorServer(SimConfig(kind="shopify", seed=2, size=10)) as sim:
        await container.store.add_vendor(shop(sim.base_url, id="off", enabled=False))
        await asyncio.sleep(0.6)
        assert container.store.vendor_status("off").state == "never"
        async with httpx.AsyncClient(base_url=sim.base_url) as http:
            assert (await http.get("/_sim/stats")).json()["requests"] == 0
