"""Thrifty with vendors over real HTTP (issue 11): a public miss costs at most one vendor call per (vendor, id) per
not-found period, however many clients ask and however often, and the vendor's 404s and timeouts feed its breaker
as they should. The vendor is a real simulator whose own request counter is the figure checked.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.server import SimulatorServer
from tests.support import (
    ApiServer,
    Sim,
    admin,
    assert_error,
    fast_settings,
    sim_config,
    wait_request,
    wait_synced,
    wait_until,
)

UNKNOWN = ("900001", "900002", "900003")  # the simulator carries ids 1..size


@pytest.fixture
def sim() -> Iterator[Sim]:
    with SimulatorServer(sim_config("dummyjson", size=10)) as server:
        yield Sim(server)


@pytest.fixture
def service(sim: Sim, tmp_path: Path) -> Iterator[Callable[..., httpx.Client]]:
    """The API with ``overrides``, the simulator registered as ``dj`` and synced once (its calls not counted)."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> httpx.Client:
            api = stack.enter_context(ApiServer(fast_settings(tmp_path / "catalog.db", **overrides)))
            client = stack.enter_context(httpx.Client(base_url=api.base_url, timeout=20))
            response = client.post("/vendors", json=sim.vendor_body("dj"), headers=admin())
            assert response.status_code == 201, response.text
            assert client.post("/vendors/dj/sync", headers=admin()).status_code == 202
            wait_synced(client, "dj")
            return client

        yield start


def miss(client: httpx.Client, vpid: str, wait_ms: int = 5000) -> httpx.Response:
    return client.get(f"/vendors/dj/products/{vpid}", params={"wait_ms": wait_ms})


def breaker(client: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/vendors/dj").json()["breaker"]
    return body


def test_sixty_anonymous_misses_for_three_unknown_ids_cost_at_most_three_vendor_calls(
    sim: Sim, service: Callable[..., httpx.Client]
) -> None:
    """The finding: 60 misses for 3 unknown ids cost the vendor 61 calls (a 404 was never remembered). With the
    default per-client miss limit (60/min, burst 20) on: the remembered answers spend none of it, so none is a 429."""
    client = service(not_found_ttl_s=600, rate_limit_misses_per_min=60, rate_limit_miss_burst=20)
    before = sim.requests()
    request_ids = set()
    for n in range(60):
        error = assert_error(miss(client, UNKNOWN[n % 3]), 404, "not_found")
        request_ids.add(error["details"]["request_id"])
    assert sim.requests() - before == 3
    assert len(request_ids) == 3  # each later miss answered by the request that asked the vendor
    assert breaker(client)["state"] == "closed"


def test_concurrent_misses_for_one_id_share_one_vendor_call(sim: Sim, service: Callable[..., httpx.Client]) -> None:
    client = service(vendor_timeout_s=30)
    before = sim.requests()
    # The vendor holds every answer until the test lets go: all the misses below arrive while the first is in flight.
    sim.configure(error_rate=1.0, failure_modes=["hang"], hang_s=60)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: miss(client, UNKNOWN[0], wait_ms=0), range(24)))
    assert {a.status_code for a in answers} == {202}
    locations = {a.headers["location"] for a in answers}
    assert len(locations) == 1  # one request for all of them
    sim.configure(error_rate=0.0)
    sim.server.simulator.release_hangs_threadsafe()
    (location,) = locations
    assert wait_request(client, location)["status"] == "not_found"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        again = list(pool.map(lambda _: miss(client, UNKNOWN[0]), range(24)))
    assert {a.status_code for a in again} == {404}
    assert sim.requests() - before == 1


def test_a_remembered_not_found_is_asked_again_once_its_time_is_up(
    sim: Sim, service: Callable[..., httpx.Client]
) -> None:
    client = service(not_found_ttl_s=0.5)
    before = sim.requests()
    assert_error(miss(client, UNKNOWN[0]), 404, "not_found")
    assert sim.requests() - before == 1

    def asked_again() -> bool:
        assert_error(miss(client, UNKNOWN[0]), 404, "not_found")
        return sim.requests() - before >= 2

    # Polled until the vendor is asked again (that the answers in between cost nothing is the 60-miss test's
    # point): then exactly once, and the period restarts with that answer.
    wait_until(asked_again, timeout=20, what="the not-found period to end")
    assert sim.requests() - before == 2


def timed_out(response: httpx.Response) -> None:
    assert assert_error(response, 502, "vendor_error")["details"]["vendor_error"] == "vendor_timeout"


def test_timeouts_open_the_breaker_and_404s_neither_fail_nor_reset_it(
    sim: Sim, service: Callable[..., httpx.Client]
) -> None:
    client = service(vendor_timeout_s=0.3, vendor_max_attempts=1, breaker_failures=3, not_found_ttl_s=0)
    sim.configure(error_rate=1.0, failure_modes=["hang"], hang_s=30)
    for vpid in ("800001", "800002"):  # not stored: each miss asks the vendor, which hangs
        timed_out(miss(client, vpid))
    assert breaker(client) | {"opened_at": None} == {
        "state": "closed",
        "consecutive_failures": 2,
        "opened_at": None,
        "retry_at": None,
    }
    # The vendor answers again, but only 404s: any client can cause those, so they must not reset the count.
    sim.configure(error_rate=0.0)
    for n in range(10):
        assert_error(miss(client, UNKNOWN[n % 3]), 404, "not_found")
    assert breaker(client)["consecutive_failures"] == 2
    sim.configure(error_rate=1.0)
    timed_out(miss(client, "800003"))
    assert breaker(client)["state"] == "open"
    before = sim.requests()
    assert_error(miss(client, "800004"), 503, "vendor_unavailable")
    assert sim.requests() == before
