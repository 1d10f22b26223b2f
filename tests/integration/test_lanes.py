"""Two lanes in the embedded runtime, over real HTTP: a shopper's miss never waits behind a catalog sync, and one slow
vendor cannot hold every worker of a lane."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support import Sim, register, vendor_state, wait_until


def test_misses_are_served_while_the_same_vendors_full_sync_runs(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    # 20 slow pages: the sync runs for seconds. One bulk worker, which the sync holds: a miss in the same queue
    # would wait for the whole sync and answer 202.
    sim = sims("dummyjson", size=5000, latency_ms=400)
    client = service(workers=1, vendor_timeout_s=5.0)
    register(client, sim, "dj")
    wait_until(lambda: vendor_state(client, "dj")["sync"]["state"] == "running", timeout=20, what="the sync to run")

    for vpid in ("4990", "4991", "4992"):  # on the sync's last page: not stored yet
        miss = client.get(f"/vendors/dj/products/{vpid}", params={"wait_ms": 5000})
        assert miss.status_code == 200, miss.text
        assert any(o["vendor_product_id"] == vpid for o in miss.json()["offers"])
        timing = miss.headers["Server-Timing"]
        assert timing.startswith("miss;dur=") and "queue;dur=" in timing
        # The detail the app opens next, and the request's status, find it at once (were the write still inside
        # the sync's transaction, read back from the writer: app/store/sqlite/unsettled.py).
        detail = client.get(f"/products/{miss.json()['id']}")
        assert detail.status_code == 200 and detail.json()["offers"] == miss.json()["offers"]

    state = vendor_state(client, "dj")
    assert state["sync"]["state"] == "running", "the misses were served only after the sync"
    assert state["offers"] < 5000
    metrics = client.get("/metrics").text
    assert 'catalog_lane_taken_total{lane="interactive"} 3' in metrics
    assert 'catalog_lane_busy{lane="bulk"} 1' in metrics
    assert "catalog_bulk_paused_seconds_total " in metrics  # what the misses cost the sync
    # Where the CPU went, by thread: the writer wrote the sync's pages, the loop served the misses.
    cpu = _thread_cpu(metrics)
    assert cpu["sqlite-writer"] > 0 and cpu["MainThread"] > 0
    assert abs(sum(cpu.values()) - _sample(metrics, "process_cpu_seconds_total")) < 1e-6


def _sample(metrics: str, name: str) -> float:
    [value] = [float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(f"{name} ")]
    return value


def _thread_cpu(metrics: str) -> dict[str, float]:
    prefix = 'catalog_thread_cpu_seconds_total{thread="'
    return {
        line[len(prefix) :].split('"', 1)[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith(prefix)
    }


def test_one_slow_vendor_holds_no_more_than_its_share_of_a_lane(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    slow = sims("dummyjson", size=50, latency_ms=4000)
    fast = sims("woocommerce", size=50)
    # Two interactive workers, at most one per vendor: the slow vendor's misses leave the other worker free.
    client = service(interactive_workers=2, interactive_workers_per_vendor=1, vendor_timeout_s=10.0)
    register(client, slow, "slow")
    register(client, fast, "fast")
    wait_until(lambda: vendor_state(client, "fast")["sync"]["syncs_ok"] >= 1, timeout=20, what="the fast sync")
    wait_until(lambda: vendor_state(client, "slow")["sync"]["state"] != "running", timeout=30, what="the slow sync")

    for vpid in ("9001", "9002", "9003"):  # not in the catalog: each is a vendor call of 4 s
        assert client.get(f"/vendors/slow/products/{vpid}", params={"wait_ms": 0}).status_code == 202
    miss = client.get("/vendors/fast/products/999999", params={"wait_ms": 3000})
    # Answered (the vendor says it has no such item) instead of waiting behind the slow vendor's three calls.
    assert miss.status_code == 404, miss.text
    metrics = client.get("/metrics").text
    assert 'catalog_lane_depth{lane="interactive"} 2' in metrics  # the slow vendor's other two wait their turn
