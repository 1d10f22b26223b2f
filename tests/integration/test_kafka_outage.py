"""A broker outage under a running API node: reads go on, misses say 503 + Retry-After, /ready says why, and it
all recovers when the broker returns, without restarting the node. A broker of its own (the restart wipes Tansu's
memory storage, which would disturb the tests sharing the session broker)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.bootstrap import make_source_factory
from app.domain.models import Vendor, VendorKind
from app.domain.wire import request_from_dict
from tests.kafka_support import Broker, consume, produce, product_update, start_broker
from tests.support import ApiServer, Sim, admin, assert_error, fast_settings, running_sims, sim_config, wait_until

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    own = start_broker()
    yield own
    own.stop()


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with running_sims(sim_config(VendorKind.DUMMYJSON, size=30)) as (sim,):
        yield sim


def ready(client: httpx.Client) -> httpx.Response:
    return client.get("/ready")


async def answer(sim: Sim, tmp: Path, request: dict[str, Any]) -> dict[str, Any]:
    """The Flink job's part: fetch with the shared function, build the update."""
    vendor = Vendor("dj", "DummyJSON", VendorKind.DUMMYJSON, sim.base_url, "USD")
    source = make_source_factory(fast_settings(tmp / "unused.db"))(vendor)
    try:
        return await product_update(source, request_from_dict(request))
    finally:
        await source.aclose()


def serve_request(broker: Broker, sim: Sim, tmp: Path, vpid: str) -> str:
    """Find the node's request for ``vpid`` on the topic, answer it, return its id."""
    records = consume(
        broker.bootstrap,
        "product_requests",
        count=100,
        timeout=10,
        until=lambda rs: any(r["vendor_product_id"] == vpid for _, r in rs),
    )
    request = next(r for _, r in records if r["vendor_product_id"] == vpid)
    produce(broker.bootstrap, "product_updates", [("dj", asyncio.run(answer(sim, tmp, request)))])
    return str(request["id"])


@pytest.mark.slow
def test_a_broker_outage_degrades_the_node_and_it_recovers_without_a_restart(
    broker: Broker, sim: Sim, tmp_path: Path
) -> None:
    settings = fast_settings(tmp_path / "node.db", runtime="kafka", kafka_bootstrap=broker.bootstrap, node_id="outage")
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(ApiServer(settings))
        client = stack.enter_context(httpx.Client(base_url=api.base_url, timeout=15))
        assert client.post("/vendors", json=sim.vendor_body("dj"), headers=admin()).status_code == 201
        # One product stored through the changelog, the normal way.
        first = client.get("/vendors/dj/products/1", params={"wait_ms": 0})
        assert first.status_code == 202, first.text
        serve_request(broker, sim, tmp_path, "1")
        wait_until(lambda: client.get("/vendors/dj/products/1").status_code == 200, timeout=20, what="product 1")
        stored = client.get("/vendors/dj/products/1").json()

        broker.stop()
        down = wait_until(lambda: (r := ready(client)).status_code == 503 and r, timeout=10, what="/ready to say 503")
        error = assert_error(down, 503, "unavailable")
        assert "Kafka broker" in error["message"] and "unreachable" in error["message"], error
        assert error["details"]["checks"]["broker"] is False
        assert broker.bootstrap not in down.text  # /ready is public: no hosts (issue 11); the log names the broker

        # Reads are served from SQLite as before.
        assert client.get("/vendors/dj/products/1").json() == stored
        assert client.get(f"/products/{stored['id']}").status_code == 200
        assert client.get("/products").status_code == 200
        # Misses and admin sync requests cannot be queued: 503 with a retry hint, in the one error shape.
        for response in (
            client.get("/vendors/dj/products/2", params={"wait_ms": 3000}),
            client.post("/vendors/dj/sync", headers=admin()),
        ):
            assert_error(response, 503, "unavailable")
            assert float(response.headers["retry-after"]) >= 1
        assert client.get("/health").status_code == 200

        broker.restart()  # same port, empty storage
        wait_until(lambda: ready(client).status_code == 200, timeout=20, what="/ready to recover")
        # The topics are back (created again by the node) and the vendor definition was published again.
        vendors = consume(broker.bootstrap, "catalog_vendors", count=1, timeout=10)
        assert [key for key, _ in vendors] == ["dj"]

        # A miss goes through again, and the node's consumer applies what comes back.
        response = client.get("/vendors/dj/products/2", params={"wait_ms": 0})
        assert response.status_code == 202, response.text
        request_id = serve_request(broker, sim, tmp_path, "2")
        assert response.headers["location"] == f"/requests/{request_id}"
        done = wait_until(
            lambda: (r := client.get(f"/requests/{request_id}").json())["status"] != "pending" and r,
            timeout=25,
            what="the request after the outage",
        )
        assert done["status"] == "done", done
        assert client.get("/vendors/dj/products/2").status_code == 200
