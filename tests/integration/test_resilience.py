"""Staying up when vendors fail, over real HTTP: the circuit breaker, and unlisted items marked discontinued."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.support import (
    Sim,
    admin,
    all_products,
    assert_error,
    register,
    vendor_state,
    wait_synced,
    wait_until,
)


def sync_failed(client: httpx.Client, vendor_id: str, syncs_failed: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = vendor_state(client, vendor_id)
        return body if body["sync"]["syncs_failed"] >= syncs_failed and body["sync"]["state"] == "failed" else None

    return wait_until(check, timeout=20, what=f"sync {syncs_failed} of {vendor_id} to fail")


def test_breaker_opens_on_a_dying_vendor_and_a_probe_closes_it(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    sim = sims("woocommerce", size=500, latency_ms=300)
    client = service(breaker_failures=2, breaker_open_s=1.5, vendor_max_attempts=1)
    register(client, sim, "woo")
    # The vendor dies after the first pages of its first sync.
    wait_until(lambda: vendor_state(client, "woo")["offers"] > 0, timeout=20, what="the first pages")
    sim.configure(error_rate=1.0, failure_modes=["500"], latency_ms=0)
    first = sync_failed(client, "woo", 1)
    kept = first["offers"]
    assert kept > 0
    assert first["breaker"]["state"] == "closed"
    assert first["breaker"]["consecutive_failures"] == 1

    response = client.post("/vendors/woo/sync", headers=admin())
    assert response.status_code == 202, response.text
    state = sync_failed(client, "woo", 2)
    breaker = state["breaker"]
    assert breaker["state"] == "open", breaker
    assert breaker["consecutive_failures"] == 2
    assert breaker["opened_at"] and breaker["retry_at"] > breaker["opened_at"]
    listed = next(v for v in client.get("/vendors").json()["items"] if v["id"] == "woo")
    assert listed["breaker"]["state"] == "open"

    # Stored data stays and is served; a miss is refused at once instead of waiting.
    assert state["offers"] == kept
    stored = all_products(client, "/vendors/woo/products")
    assert stored
    detail = client.get(f"/products/{stored[0]['id']}").json()
    offer = next(o for o in detail["offers"] if o["vendor_id"] == "woo")
    assert client.get(f"/vendors/woo/products/{offer['vendor_product_id']}").status_code == 200
    requests_before = sim.requests()
    miss = client.get("/vendors/woo/products/999999", params={"wait_ms": 3000})
    assert_error(miss, 503, "vendor_unavailable")
    assert int(miss.headers["Retry-After"]) >= 1
    assert miss.elapsed.total_seconds() < 1.0
    assert_error(client.post("/vendors/woo/sync", headers=admin()), 503, "vendor_unavailable")
    assert sim.requests() == requests_before  # nothing reached the dead vendor

    # The vendor recovers; after the cool-down the next call is the probe, and its success closes the breaker.
    sim.configure(error_rate=0.0)
    response = wait_until(
        lambda: (
            (r := client.post("/vendors/woo/sync", params={"full": "true"}, headers=admin())).status_code == 202 and r
        ),
        timeout=10,
        what="the cool-down to end",
    )
    assert response
    body = wait_until(
        lambda: (b := vendor_state(client, "woo"))["sync"]["syncs_ok"] >= 1 and b, timeout=30, what="the probe sync"
    )
    assert body["breaker"] == {"state": "closed", "consecutive_failures": 0, "opened_at": None, "retry_at": None}
    assert body["offers"] > kept


def hide(sim: Sim, item_ids: set[int]) -> None:
    """The store stops listing these items (test-only: swaps the simulator's carried list in place)."""
    state = sim.server.simulator.state
    for item_id in item_ids:
        state._carries[item_id - 1] = 0
    state.carried = [pos for pos in state.carried if pos + 1 not in item_ids]


def test_full_sync_marks_unlisted_offers_discontinued(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    sim = sims("dummyjson", size=40)
    client = service()
    register(client, sim, "dj")
    first = wait_synced(client, "dj")
    assert first["offers"] == 40
    hidden = {3, 17, 28}
    hide(sim, hidden)

    response = client.post("/vendors/dj/sync", params={"full": "true"}, headers=admin())
    assert response.status_code == 202, response.text
    wait_synced(client, "dj", syncs_ok=2)

    availability: dict[str, tuple[str, bool]] = {}
    for summary in all_products(client, "/vendors/dj/products"):
        product = client.get(f"/products/{summary['id']}").json()
        for offer in product["offers"]:
            if offer["vendor_id"] == "dj":
                availability[offer["vendor_product_id"]] = (offer["availability"], product["in_stock"])
    assert len(availability) == 40
    discontinued = {vpid for vpid, (avail, _) in availability.items() if avail == "discontinued"}
    assert discontinued == {str(i) for i in hidden}
    for vpid in discontinued:
        assert availability[vpid][1] is False
        detail = client.get(f"/vendors/dj/products/{vpid}").json()
        assert detail["in_stock"] is False
    # Discontinued products are not in stock for the in-stock filter either.
    in_stock = {p["id"] for p in all_products(client, "/products", in_stock="true")}
    gone = {client.get(f"/vendors/dj/products/{vpid}").json()["id"] for vpid in discontinued}
    assert not in_stock & gone
