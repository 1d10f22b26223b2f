"""The BigCommerce source against its simulator over real HTTP, and the simulator's own wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.models import Availability, Offer, Page, Vendor, VendorKind
from app.errors import VendorAuthError, VendorNotFound
from app.ingest.pages import walk_pages
from app.sources import BigCommerceSource, HttpPolicy, VendorHttp, build_source
from app.sources.port import VendorSource
from app.sources.safety import OutboundPolicy
from simulators.bigcommerce import ERROR_TYPE, BigCommerceSimulator
from simulators.config import SimConfig
from simulators.server import SimulatorServer
from tests.support import SECRETS, ApiServer, admin, fast_settings, running_sims, sim_config, wait_synced

LOOPBACK_ONLY = OutboundPolicy.parse(["127.0.0.0/8"])  # the simulators listen on loopback
FAST = HttpPolicy(timeout_s=5.0, max_attempts=6, backoff_base_s=0.001, backoff_max_s=0.01)
CREDENTIALS = {"store_hash": "abc123", "access_token": "bc_demo"}
TOKEN = {"X-Auth-Token": "bc_demo"}


class Sim:
    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.base_url = server.base_url.rstrip("/")
        simulator = server.simulator
        assert isinstance(simulator, BigCommerceSimulator)
        self.simulator = simulator

    @property
    def api(self) -> str:
        return f"{self.base_url}/stores/abc123/v3/catalog"

    def vendor(self, credentials: dict[str, str] | None = None) -> Vendor:
        return Vendor(
            "bc",
            "BC",
            VendorKind.BIGCOMMERCE,
            self.base_url,
            "GBP",
            CREDENTIALS if credentials is None else credentials,
        )

    def control(self, method: str, path: str, json: Any = None) -> Any:
        response = httpx.request(method, f"{self.base_url}{path}", json=json, timeout=5)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    """One store for the read-only tests; tests that turn knobs start their own."""
    with SimulatorServer(SimConfig(kind=VendorKind.BIGCOMMERCE, seed=4)) as server:
        yield Sim(server)


@pytest.fixture
def fresh() -> Iterator[Sim]:
    with SimulatorServer(SimConfig(kind=VendorKind.BIGCOMMERCE, seed=4)) as server:
        yield Sim(server)


@pytest.fixture
async def sources() -> AsyncIterator[Callable[..., BigCommerceSource]]:
    made: list[BigCommerceSource] = []

    def make(sim: Sim, *, page_size: int = 50, credentials: dict[str, str] | None = None) -> BigCommerceSource:
        vendor = sim.vendor(credentials)
        source = BigCommerceSource(
            vendor, VendorHttp(vendor.base_url, policy=FAST, vendor_id=vendor.id, outbound=LOOPBACK_ONLY), page_size
        )
        made.append(source)
        return source

    yield make
    for source in made:
        await source.aclose()


async def walk(source: BigCommerceSource, since: datetime | None = None) -> list[Offer]:
    return [offer for page in await catalog_pages(source, since) for offer in page.offers]


async def catalog_pages(source: VendorSource, since: datetime | None = None) -> list[Page]:
    """Every page, first to last, through the walk the syncs use (a repeated cursor is a ``VendorBadResponse``)."""
    async with walk_pages(source, since=since, attempts=1) as pages:
        return [outcome.page async for outcome in pages]


# --- the source ---------------------------------------------------------------------------------------------


async def test_full_walk_is_every_variant_of_every_carried_product(
    sim: Sim, sources: Callable[..., BigCommerceSource]
) -> None:
    carried = len(sim.simulator.state.carried)
    assert 0.55 * 194 < carried < 0.75 * 194
    pages = await catalog_pages(sources(sim))
    offers = [o for page in pages for o in page.offers]
    assert len(pages) == -(-carried // 50)
    assert all(page.total == carried for page in pages)
    assert not any(page.skipped for page in pages)
    assert len(offers) == sim.simulator.offer_count() > carried
    assert len({o.key for o in offers}) == len(offers)
    assert len({o.parent_id or o.vendor_product_id for o in offers}) == carried
    assert {o.currency for o in offers} == {"GBP"}
    # Names come from the brand and category lists, not from the products.
    assert all(o.category for o in offers)
    catalog = sim.simulator.state.catalog
    branded = {str(sim.simulator.public_id(pos)) for pos in sim.simulator.state.carried if catalog[pos].brand}
    assert {o.parent_id or o.vendor_product_id for o in offers if o.brand} == branded
    assert 0.4 < sum(o.gtin is not None for o in offers) / len(offers) < 0.8
    assert Availability.PREORDER in {o.availability for o in offers}


async def test_brand_and_category_lists_are_read_once_per_walk(
    fresh: Sim, sources: Callable[..., BigCommerceSource]
) -> None:
    source = sources(fresh, page_size=250)
    await walk(source)
    assert fresh.control("GET", "/_sim/stats")["requests"] == 3  # brands, categories, one product page
    await source.fetch_product("111")
    assert fresh.control("GET", "/_sim/stats")["requests"] == 4


async def test_build_source_dispatches_bigcommerce(sim: Sim) -> None:
    vendor = sim.vendor()
    source = build_source(vendor, VendorHttp(vendor.base_url, policy=FAST, outbound=LOOPBACK_ONLY))
    try:
        assert isinstance(source, BigCommerceSource)
        assert source.supports_changes_since
    finally:
        await source.aclose()


async def test_fetch_product_by_id_and_not_by_variant_id(sim: Sim, sources: Callable[..., BigCommerceSource]) -> None:
    source = sources(sim)
    simulator = sim.simulator
    with_options = next(pos for pos in simulator.state.carried if simulator.has_options(pos))
    pid = str(simulator.public_id(with_options))
    offers = await source.fetch_product(pid)
    assert len(offers) == 2 and {o.parent_id for o in offers} == {pid}
    assert all(o.brand and o.category for o in offers)
    with pytest.raises(VendorNotFound):
        await source.fetch_product(offers[0].vendor_product_id)
    with pytest.raises(VendorNotFound):
        await source.fetch_product("99999999")
    with pytest.raises(VendorNotFound):
        await source.fetch_product("../brands")


@pytest.mark.parametrize(
    "credentials",
    [
        {"store_hash": "abc123", "access_token": "wrong"},
        {"store_hash": "other", "access_token": "bc_demo"},
        {"access_token": "bc_demo"},
    ],
)
async def test_refused_credentials_are_an_auth_error(
    sim: Sim, sources: Callable[..., BigCommerceSource], credentials: dict[str, str]
) -> None:
    with pytest.raises(VendorAuthError):
        await sources(sim, credentials=credentials).fetch_page()


async def test_since_after_a_tick_returns_only_changed_products(
    fresh: Sim, sources: Callable[..., BigCommerceSource]
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    changed = {str(i) for i in fresh.control("POST", "/_sim/tick")["ids"]}
    assert changed
    offers = await walk(sources(fresh), since=before)
    assert {o.parent_id or o.vendor_product_id for o in offers} == changed
    assert all(o.vendor_updated_at is not None and o.vendor_updated_at >= before - timedelta(seconds=1) for o in offers)
    assert await walk(sources(fresh), since=datetime.now(UTC) + timedelta(seconds=5)) == []


async def test_flaky_store_still_yields_the_complete_catalog(
    fresh: Sim, sources: Callable[..., BigCommerceSource]
) -> None:
    fresh.control("PATCH", "/_sim/config", {"error_rate": 0.2, "failure_modes": ["500", "429"], "retry_after_s": 0})
    source = sources(fresh, page_size=20)
    offers = await walk(source)
    assert len(offers) == fresh.simulator.offer_count()
    assert len({o.key for o in offers}) == len(offers)
    failures = fresh.control("GET", "/_sim/stats")["failures"]
    assert failures["500"] + failures["429"] > 0
    assert source.http.stats.retries > 0


# --- the simulator's wire format ---------------------------------------------------------------------------


async def test_pagination_meta_and_include(sim: Sim) -> None:
    async with httpx.AsyncClient(headers=TOKEN) as client:
        first = (await client.get(f"{sim.api}/products", params={"limit": 2})).json()
        pagination = first["meta"]["pagination"]
        carried = len(sim.simulator.state.carried)
        assert pagination == {
            "total": carried,
            "count": 2,
            "per_page": 2,
            "current_page": 1,
            "total_pages": -(-carried // 2),
            "links": {"current": "?page=1&limit=2", "next": "?page=2&limit=2"},
        }
        assert [p["id"] for p in first["data"]] == [sim.simulator.public_id(p) for p in sim.simulator.state.carried[:2]]
        assert "variants" not in first["data"][0] and "images" not in first["data"][0]
        default = (await client.get(f"{sim.api}/products")).json()["meta"]["pagination"]
        assert default["per_page"] == 50
        last = await client.get(f"{sim.api}/products", params={"page": pagination["total_pages"] + 1, "limit": 2})
        assert last.status_code == 200 and last.json()["data"] == []
        assert "previous" in last.json()["meta"]["pagination"]["links"]
        full = (await client.get(f"{sim.api}/products", params={"limit": 1, "include": "variants,images"})).json()
        assert full["data"][0]["variants"] and full["data"][0]["images"]
        too_many = await client.get(f"{sim.api}/products", params={"limit": 251})
        assert too_many.status_code == 422 and too_many.json()["status"] == 422
        brands = (await client.get(f"{sim.api}/brands")).json()
        assert brands["data"] and {"id", "name"} <= set(brands["data"][0])


async def test_auth_and_not_found_bodies(sim: Sim) -> None:
    async with httpx.AsyncClient() as client:
        for url, headers in [
            (f"{sim.api}/products", {}),
            (f"{sim.api}/products", {"X-Auth-Token": "nope"}),
            (f"{sim.base_url}/stores/other/v3/catalog/products", TOKEN),
        ]:
            response = await client.get(url, headers=headers)
            assert response.status_code == 401
            body = response.json()
            assert body["status"] == 401 and body["type"] == ERROR_TYPE and body["title"]
        missing = await client.get(f"{sim.api}/products/5", headers=TOKEN)
        assert missing.status_code == 404
        assert missing.json() == {"status": 404, "title": "The requested resource was not found.", "type": ERROR_TYPE}
        found = await client.get(f"{sim.api}/products/111", headers=TOKEN)
        assert found.status_code == 200 and set(found.json()) == {"data", "meta"}


async def test_date_modified_min_is_inclusive(fresh: Sim) -> None:
    changed = fresh.control("POST", "/_sim/tick")["ids"]
    stamp = fresh.simulator.render(fresh.simulator.state.carried[0])["date_modified"]  # an unchanged item's
    async with httpx.AsyncClient(headers=TOKEN) as client:
        response = await client.get(f"{fresh.api}/products", params={"date_modified:min": stamp, "limit": 250})
        ids = [p["id"] for p in response.json()["data"]]
        assert set(changed) <= set(ids) and fresh.simulator.public_id(fresh.simulator.state.carried[0]) in ids
        bad = await client.get(f"{fresh.api}/products", params={"date_modified:min": "yesterday"})
        assert bad.status_code == 422


# --- through the API ----------------------------------------------------------------------------------------


def test_registered_through_the_api_and_synced(tmp_path: Path) -> None:
    with (
        running_sims(sim_config("bigcommerce", size=60)) as sims,
        ApiServer(fast_settings(tmp_path / "catalog.db")) as api,
        httpx.Client(base_url=api.base_url, timeout=15) as client,
    ):
        simulator = sims[0].server.simulator
        assert isinstance(simulator, BigCommerceSimulator)
        expected = simulator.offer_count()
        response = client.post("/vendors", json=sims[0].vendor_body("v1"), headers=admin())
        assert response.status_code == 201, response.text
        assert response.json()["kind"] == "bigcommerce"
        body = wait_synced(client, "v1")
        assert body["offers"] == expected
        assert not any(secret in response.text + str(body) for secret in SECRETS)
