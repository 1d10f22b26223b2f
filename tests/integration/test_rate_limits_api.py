"""Per-client rate limits over real HTTP (issue 11): anonymous misses that cost vendor calls, and admin key
guesses, answer 429 with Retry-After in the error shape; clients behind a trusted proxy are told apart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.models import VendorKind
from tests.support import ApiServer, Sim, admin, assert_error, fast_settings, running_sims, sim_config, wait_synced


@pytest.fixture(scope="module")
def shop() -> Iterator[Sim]:
    with running_sims(sim_config(VendorKind.DUMMYJSON, size=10)) as (sim,):
        yield sim


def serve(tmp_path: Path, shop: Sim, **overrides: Any) -> Iterator[httpx.Client]:
    settings = fast_settings(tmp_path / "limits.db", **overrides)
    with ApiServer(settings) as api, httpx.Client(base_url=api.base_url, timeout=15) as client:
        assert client.post("/vendors", json=shop.vendor_body("dj"), headers=admin()).status_code == 201
        wait_synced(client, "dj")
        yield client


@pytest.fixture
def client(tmp_path: Path, shop: Sim) -> Iterator[httpx.Client]:
    yield from serve(
        tmp_path,
        shop,
        rate_limit_misses_per_min=1,
        rate_limit_miss_burst=3,
        rate_limit_admin_failures_per_min=1,
        rate_limit_admin_burst=2,
        trusted_proxies=["127.0.0.1"],
    )


def miss(client: httpx.Client, n: int, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.get(f"/vendors/dj/products/nope-{n}", params={"wait_ms": 2000}, headers=headers)


def test_anonymous_misses_are_limited_per_client_and_stored_reads_are_not(client: httpx.Client) -> None:
    for n in range(3):
        assert miss(client, n, "203.0.113.7").status_code == 404
    limited = miss(client, 3, "203.0.113.7")
    error = assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1 and "retry later" in error["message"]
    # Another client (another address behind the trusted proxy) has its own bucket.
    assert miss(client, 4, "198.51.100.2").status_code == 404
    # A listing the store holds costs no vendor call: never limited.
    stored = client.get("/products", params={"vendor": "dj", "limit": 1}).json()["items"][0]
    offer = client.get(f"/products/{stored['id']}").json()["offers"][0]["vendor_product_id"]
    for _ in range(10):
        response = client.get(f"/vendors/dj/products/{offer}", headers={"X-Forwarded-For": "203.0.113.7"})
        assert response.status_code == 200


def test_admin_key_guesses_are_cut_off_for_that_client(client: httpx.Client) -> None:
    guesser = {"X-Forwarded-For": "192.0.2.66"}
    assert client.post("/vendors/dj/sync", headers={**admin("guess-1"), **guesser}).status_code == 403
    assert client.post("/vendors/dj/sync", headers=guesser).status_code == 401
    limited = client.post("/vendors/dj/sync", headers={**admin(), **guesser})  # even the right key, for a while
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    # Someone else with the right key is not affected.
    assert client.post("/vendors/dj/sync", headers={**admin(), "X-Forwarded-For": "192.0.2.1"}).status_code == 202


def test_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path, shop: Sim) -> None:
    for client in serve(tmp_path, shop, rate_limit_misses_per_min=1, rate_limit_miss_burst=2):
        # No trusted proxies: every request is the peer's (127.0.0.1), whatever the header claims.
        assert miss(client, 0, "203.0.113.1").status_code == 404
        assert miss(client, 1, "203.0.113.2").status_code == 404
        assert_error(miss(client, 2, "203.0.113.3"), 429, "rate_limited")
