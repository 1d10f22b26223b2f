"""VendorHttp follows the platforms' own rate-limit signals, pausing only that vendor's next requests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from app.sources.http import HttpPolicy, Sleep, VendorHttp, rate_limit_pause


class World:
    """A fake clock and a sleep that advances it, shared by every client of a test."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: dict[str, list[float]] = {}

    def sleeper(self, name: str) -> Sleep:
        delays = self.sleeps.setdefault(name, [])

        async def sleep(delay: float) -> None:
            delays.append(delay)
            self.now += delay

        return sleep


def answer(headers: dict[str, str], status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json={"ok": True}, headers=headers)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., tuple[VendorHttp, World]]]:
    clients: list[httpx.AsyncClient] = []
    world = World()

    def factory(name: str, handler: Callable[[httpx.Request], httpx.Response]) -> tuple[VendorHttp, World]:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clients.append(client)
        policy = HttpPolicy(max_retry_after_s=30.0, backoff_base_s=0.1)
        http = VendorHttp(
            "https://vendor.example",
            policy=policy,
            client=client,
            vendor_id=name,
            sleep=world.sleeper(name),
            random=lambda: 0.5,
            clock=lambda: world.now,
        )
        return http, world

    yield factory
    for client in clients:
        await client.aclose()


def test_pause_from_headers() -> None:
    assert rate_limit_pause({"X-Shopify-Shop-Api-Call-Limit": "10/40"}) is None
    assert rate_limit_pause({"X-Shopify-Shop-Api-Call-Limit": "32/40"}) == pytest.approx(6.0)
    assert rate_limit_pause({"X-Shopify-Shop-Api-Call-Limit": "40/40"}) == pytest.approx(10.0)
    assert rate_limit_pause({"X-Shopify-Shop-Api-Call-Limit": "junk"}) is None
    assert rate_limit_pause({"X-Rate-Limit-Requests-Left": "20", "X-Rate-Limit-Time-Reset-Ms": "900"}) is None
    assert rate_limit_pause({"X-Rate-Limit-Requests-Left": "1", "X-Rate-Limit-Time-Reset-Ms": "900"}) == 0.9
    assert rate_limit_pause({"X-Rate-Limit-Requests-Left": "0"}) is None  # no reset given: nothing to wait for


async def test_shopify_bucket_near_the_limit_slows_the_next_call(make: Callable[..., tuple[VendorHttp, World]]) -> None:
    http, world = make("shop", answer({"X-Shopify-Shop-Api-Call-Limit": "36/40"}))
    await http.get_json("/a")
    assert world.sleeps["shop"] == []  # the first call goes at once
    await http.get_json("/b")
    assert world.sleeps["shop"] == [pytest.approx(8.0)]  # (36 - 20) / 2 per second
    assert http.stats.throttled_s == pytest.approx(8.0)


async def test_shopify_bucket_with_room_does_not_wait(make: Callable[..., tuple[VendorHttp, World]]) -> None:
    http, world = make("shop", answer({"X-Shopify-Shop-Api-Call-Limit": "31/40"}))
    for path in ("/a", "/b", "/c"):
        await http.get_json(path)
    assert world.sleeps["shop"] == []


async def test_bigcommerce_last_request_waits_for_the_reset(make: Callable[..., tuple[VendorHttp, World]]) -> None:
    http, world = make("bc", answer({"X-Rate-Limit-Requests-Left": "1", "X-Rate-Limit-Time-Reset-Ms": "2500"}))
    await http.get_json("/a")
    await http.get_json("/b")
    assert world.sleeps["bc"] == [pytest.approx(2.5)]


async def test_bigcommerce_429_honours_the_reset_header(make: Callable[..., tuple[VendorHttp, World]]) -> None:
    responses = [
        httpx.Response(429, headers={"X-Rate-Limit-Requests-Left": "0", "X-Rate-Limit-Time-Reset-Ms": "1500"}),
        httpx.Response(200, json={"ok": True}),
    ]
    http, world = make("bc", lambda request: responses.pop(0))
    body, _ = await http.get_json("/a")
    assert body == {"ok": True}
    assert world.sleeps["bc"] == [pytest.approx(1.5)]  # once, not once for the retry and again for the hold


async def test_pause_is_capped(make: Callable[..., tuple[VendorHttp, World]]) -> None:
    http, world = make("bc", answer({"X-Rate-Limit-Requests-Left": "0", "X-Rate-Limit-Time-Reset-Ms": "90000"}))
    await http.get_json("/a")
    await http.get_json("/b")
    assert world.sleeps["bc"] == [pytest.approx(30.0)]


async def test_pause_holds_only_that_vendor(make: Callable[..., tuple[VendorHttp, World]]) -> None:
    busy, world = make("busy", answer({"X-Shopify-Shop-Api-Call-Limit": "40/40"}))
    calm, _ = make("calm", answer({"X-Shopify-Shop-Api-Call-Limit": "1/40"}))
    await busy.get_json("/a")
    await calm.get_json("/a")
    await calm.get_json("/b")
    assert world.sleeps["calm"] == []
    await busy.get_json("/b")
    assert world.sleeps["busy"] == [pytest.approx(10.0)]
