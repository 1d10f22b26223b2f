"""Each source against its platform simulator over real HTTP: paging, lookups, auth, failures, changes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.domain.models import Offer, Page, Vendor, VendorKind
from app.errors import VendorAuthError, VendorNotFound, VendorTimeout
from app.ingest.pages import walk_pages
from app.sources import (
    DummyJsonSource,
    HttpPolicy,
    ShopifySource,
    VendorHttp,
    WooCommerceSource,
    build_source,
)
from app.sources.port import VendorSource
from app.sources.safety import OutboundPolicy
from simulators.config import SimConfig
from simulators.server import SimulatorServer

# Fast but real: retries happen, their waits are milliseconds.
LOOPBACK_ONLY = OutboundPolicy.parse(["127.0.0.0/8"])  # the simulators listen on loopback
FAST = HttpPolicy(timeout_s=5.0, max_attempts=6, backoff_base_s=0.001, backoff_max_s=0.01)

CREDENTIALS: dict[VendorKind, dict[str, str]] = {
    VendorKind.DUMMYJSON: {},
    VendorKind.SHOPIFY: {"access_token": "shpat_demo"},
    VendorKind.WOOCOMMERCE: {"consumer_key": "ck_demo", "consumer_secret": "cs_demo"},
}

Source = DummyJsonSource | ShopifySource | WooCommerceSource


class Sim:
    """A running simulator plus the vendor record pointing at it."""

    def __init__(self, server: Any, config: SimConfig) -> None:
        self.server = server
        self.config = config
        self.base_url: str = str(server.base_url).rstrip("/")

    def vendor(self, credentials: dict[str, str] | None = None) -> Vendor:
        kind = self.config.kind
        return Vendor(
            id=f"sim-{kind}",
            name=self.config.name,
            kind=kind,
            base_url=self.base_url,
            currency=self.config.currency,
            credentials=CREDENTIALS[kind] if credentials is None else credentials,
        )

    def control(self, method: str, path: str, json: Any = None) -> Any:
        response = httpx.request(method, f"{self.base_url}{path}", json=json, timeout=5)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "/_sim/stats")
        return result


@pytest.fixture
def simulator() -> Iterator[Callable[..., Sim]]:
    with contextlib.ExitStack() as stack:

        def start(kind: str, **overrides: Any) -> Sim:
            config = SimConfig.model_validate({"kind": kind, "seed": 2, **overrides})
            server = stack.enter_context(SimulatorServer(config))
            return Sim(server, config)

        yield start


@pytest.fixture
async def sources() -> AsyncIterator[Callable[..., Source]]:
    made: list[Source] = []

    def make(sim: Sim, *, policy: HttpPolicy = FAST, page_size: int | None = None, **vendor_kw: Any) -> Source:
        vendor = sim.vendor(**vendor_kw)
        http = VendorHttp(vendor.base_url, policy=policy, vendor_id=vendor.id, outbound=LOOPBACK_ONLY)
        classes: dict[VendorKind, type[Source]] = {
            VendorKind.DUMMYJSON: DummyJsonSource,
            VendorKind.SHOPIFY: ShopifySource,
            VendorKind.WOOCOMMERCE: WooCommerceSource,
        }
        cls = classes[vendor.kind]
        source: Source = cls(vendor, http) if page_size is None else cls(vendor, http, page_size=page_size)
        made.append(source)
        return source

    yield make
    for source in made:
        await source.aclose()


async def walk(source: VendorSource, since: datetime | None = None) -> list[Page]:
    """Every page, first to last, through the walk the syncs use (a repeated cursor is a ``VendorBadResponse``)."""
    async with walk_pages(source, since=since, attempts=1) as pages:
        return [outcome.page async for outcome in pages]


def offers_of(pages: list[Page]) -> list[Offer]:
    return [offer for page in pages for offer in page.offers]


def assert_unique(offers: list[Offer]) -> None:
    keys = [o.key for o in offers]
    assert len(keys) == len(set(keys))


# --- full walks ---------------------------------------------------------------------------------------------


async def test_dummyjson_full_walk(simulator: Callable[..., Sim], sources: Callable[..., Source]) -> None:
    sim = simulator("dummyjson")
    pages = await walk(sources(sim, page_size=50))
    offers = offers_of(pages)
    carried = sim.stats()["items"]
    assert carried == 194
    assert len(pages) == 4
    assert all(page.total == carried for page in pages)
    assert not any(page.skipped for page in pages)
    assert len(offers) == carried
    assert_unique(offers)
    assert {o.vendor_product_id for o in offers} == {str(i) for i in range(1, 195)}
    assert all(o.currency == "USD" for o in offers)


async def test_shopify_full_walk_by_link_cursor(simulator: Callable[..., Sim], sources: Callable[..., Source]) -> None:
    sim = simulator("shopify")
    source = sources(sim, page_size=40)
    pages = await walk(source)
    offers = offers_of(pages)
    carried = sim.stats()["items"]
    assert len(pages) == -(-carried // 40)  # ceil: one request per page, the last without a next link
    cursors = [p.next_cursor for p in pages]
    assert cursors[-1] is None
    assert all(cursors[:-1]) and len(set(cursors[:-1])) == len(cursors) - 1
    assert not any(page.skipped for page in pages)
    assert_unique(offers)
    # one offer per variant: every carried product appears as a parent, some with two variants
    parents = {o.parent_id for o in offers}
    assert len(parents) == carried
    assert len(offers) > carried
    assert all(o.currency == "EUR" for o in offers)
    assert all(o.url and o.url.startswith(f"{sim.base_url}/products/") for o in offers)
    assert any(o.gtin for o in offers)


async def test_woocommerce_full_walk_by_page(simulator: Callable[..., Sim], sources: Callable[..., Source]) -> None:
    sim = simulator("woocommerce")
    pages = await walk(sources(sim, page_size=25))
    offers = offers_of(pages)
    carried = sim.stats()["items"]
    assert len(pages) == -(-carried // 25)
    assert [p.next_cursor for p in pages] == [*(str(n) for n in range(2, len(pages) + 1)), None]
    assert all(page.total == carried for page in pages)
    assert not any(page.skipped for page in pages)
    assert len(offers) == carried
    assert_unique(offers)
    assert all(o.currency == "TRY" for o in offers)


async def test_build_source_walks_each_kind(simulator: Callable[..., Sim]) -> None:
    for kind in ("dummyjson", "shopify", "woocommerce"):
        sim = simulator(kind, size=30)
        vendor = sim.vendor()
        source = build_source(
            vendor, VendorHttp(vendor.base_url, policy=FAST, vendor_id=vendor.id, outbound=LOOPBACK_ONLY)
        )
        try:
            assert source.supports_changes_since is (kind != "dummyjson")
            offers = offers_of(await walk(source))
        finally:
            await source.aclose()
        assert len({o.parent_id or o.vendor_product_id for o in offers}) == sim.stats()["items"]


async def test_bad_items_are_skipped_not_fatal(simulator: Callable[..., Sim], sources: Callable[..., Source]) -> None:
    for kind in ("dummyjson", "woocommerce"):
        sim = simulator(kind, bad_item_rate=0.1)
        pages = await walk(sources(sim, page_size=50))
        skipped = [s for p in pages for s in p.skipped]
        assert skipped
        assert all(s.vendor_product_id and s.reason for s in skipped)
        assert len(offers_of(pages)) + len(skipped) == sim.stats()["items"]


# --- single products ----------------------------------------------------------------------------------------


async def test_fetch_product_by_id(simulator: Callable[..., Sim], sources: Callable[..., Source]) -> None:
    for kind in ("dummyjson", "woocommerce"):
        sim = simulator(kind)
        source = sources(sim)
        first = await source.fetch_page()
        wanted = first.offers[3]
        [offer] = await source.fetch_product(wanted.vendor_product_id)
        assert offer.key == wanted.key
        assert offer.price == wanted.price
        assert offer.title == wanted.title


async def test_shopify_fetch_product_by_product_and_by_variant_id(
    simulator: Callable[..., Sim], sources: Callable[..., Source]
) -> None:
    sim = simulator("shopify")
    source = sources(sim)
    offers = offers_of(await walk(source))
    by_parent: dict[str | None, list[Offer]] = {}
    for offer in offers:
        by_parent.setdefault(offer.parent_id, []).append(offer)
    parent, family = next((p, f) for p, f in by_parent.items() if len(f) == 2)
    assert parent is not None
    expected = sorted(o.vendor_product_id for o in family)

    by_product = await source.fetch_product(parent)
    assert sorted(o.vendor_product_id for o in by_product) == expected
    by_variant = await source.fetch_product(family[1].vendor_product_id)
    assert sorted(o.vendor_product_id for o in by_variant) == expected
    assert all(o.parent_id == parent for o in by_variant)
    assert {o.vendor_product_id: o.price for o in by_variant} == {o.vendor_product_id: o.price for o in family}


async def test_unknown_product_is_vendor_not_found(
    simulator: Callable[..., Sim], sources: Callable[..., Source]
) -> None:
    for kind, missing in (("dummyjson", "99999"), ("shopify", "123456789"), ("woocommerce", "99999")):
        source = sources(simulator(kind))
        with pytest.raises(VendorNotFound):
            await source.fetch_product(missing)
        assert source.http.stats.retries == 0


# --- credentials --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "credentials"),
    [
        ("shopify", {"access_token": "shpat_wrong"}),
        ("woocommerce", {"consumer_key": "ck_demo", "consumer_secret": "cs_wrong"}),
    ],
)
async def test_wrong_credentials_are_vendor_auth_error(
    simulator: Callable[..., Sim], sources: Callable[..., Source], kind: str, credentials: dict[str, str]
) -> None:
    sim = simulator(kind)
    source = sources(sim, credentials=credentials)
    with pytest.raises(VendorAuthError):
        await source.fetch_page()
    assert source.http.stats.attempts == 1  # refused credentials are not retried


@pytest.mark.parametrize("kind", ["shopify", "woocommerce"])
async def test_missing_credentials_fail_before_any_request(
    simulator: Callable[..., Sim], sources: Callable[..., Source], kind: str
) -> None:
    sim = simulator(kind)
    source = sources(sim, credentials={})
    with pytest.raises(VendorAuthError):
        await source.fetch_page()
    with pytest.raises(VendorAuthError):
        await source.fetch_product("1")
    assert sim.stats()["requests"] == 0


# --- a misbehaving vendor -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dummyjson", "shopify", "woocommerce"])
async def test_flaky_vendor_still_yields_the_complete_catalog(
    simulator: Callable[..., Sim], sources: Callable[..., Source], kind: str
) -> None:
    sim = simulator(kind, error_rate=0.2, failure_modes=("500", "429"), retry_after_s=0.0)
    source = sources(sim, page_size=20)
    offers = offers_of(await walk(source))
    stats = sim.stats()
    assert stats["failures"]["500"] + stats["failures"]["429"] > 0
    assert source.http.stats.retries > 0
    assert_unique(offers)
    assert len({o.parent_id or o.vendor_product_id for o in offers}) == stats["items"]


async def test_malformed_pages_are_retried(simulator: Callable[..., Sim], sources: Callable[..., Source]) -> None:
    sim = simulator("woocommerce", error_rate=0.3, failure_modes=("malformed",))
    source = sources(sim, page_size=20)
    offers = offers_of(await walk(source))
    assert sim.stats()["failures"]["malformed"] > 0
    assert source.http.stats.bad_responses > 0
    assert len(offers) == sim.stats()["items"]


async def test_hanging_vendor_times_out_after_retries(
    simulator: Callable[..., Sim], sources: Callable[..., Source]
) -> None:
    sim = simulator("shopify", error_rate=1.0, failure_modes=("hang",), hang_s=10.0)
    policy = HttpPolicy(timeout_s=0.5, max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.01)
    source = sources(sim, policy=policy)
    started = time.monotonic()
    with pytest.raises(VendorTimeout):
        await source.fetch_page()
    assert time.monotonic() - started < 3.0
    assert source.http.stats.attempts == 2
    assert source.http.stats.timeouts == 2


# --- incremental --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["shopify", "woocommerce"])
async def test_since_returns_only_changed_items(
    simulator: Callable[..., Sim], sources: Callable[..., Source], kind: str
) -> None:
    sim = simulator(kind)
    source = sources(sim, page_size=10)
    before = {o.key: o for o in offers_of(await walk(source))}
    since = datetime.now(UTC)
    await asyncio.sleep(0)
    tick = sim.control("POST", "/_sim/tick")
    changed_ids = {str(i) for i in tick["ids"]}
    assert tick["changed"] == len(changed_ids) > 0

    pages = await walk(source, since=since)
    offers = offers_of(pages)
    assert {o.parent_id or o.vendor_product_id for o in offers} == changed_ids
    assert all(o.vendor_updated_at and o.vendor_updated_at >= since - timedelta(seconds=1) for o in offers)
    assert all(o.key in before for o in offers)

    # Nothing changed since "later": an empty incremental sync, not the whole catalog again.
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert offers_of(await walk(source, since=later)) == []
