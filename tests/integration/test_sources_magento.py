"""The Magento source against its simulator over real HTTP, and the simulator's own wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.models import Offer, Page, Vendor, VendorKind
from app.errors import VendorAuthError, VendorNotFound
from app.ingest.pages import walk_pages
from app.sources import HttpPolicy, MagentoSource, VendorHttp, build_source
from app.sources.port import VendorSource
from app.sources.safety import OutboundPolicy
from simulators.config import SimConfig
from simulators.magento import NOT_FOUND, MagentoSimulator
from simulators.server import SimulatorServer
from tests.support import SECRETS, ApiServer, admin, fast_settings, running_sims, sim_config, wait_synced

LOOPBACK_ONLY = OutboundPolicy.parse(["127.0.0.0/8"])  # the simulators listen on loopback
FAST = HttpPolicy(timeout_s=5.0, max_attempts=6, backoff_base_s=0.001, backoff_max_s=0.01)
BEARER = {"Authorization": "Bearer mg_demo"}


class Sim:
    def __init__(self, server: SimulatorServer) -> None:
        self.base_url = server.base_url.rstrip("/")
        simulator = server.simulator
        assert isinstance(simulator, MagentoSimulator)
        self.simulator = simulator

    @property
    def enabled(self) -> list[int]:
        return [pos for pos in self.simulator.state.carried if self.simulator.enabled(pos)]

    def vendor(self, credentials: dict[str, str] | None = None) -> Vendor:
        creds = {"access_token": "mg_demo"} if credentials is None else credentials
        return Vendor("mg", "MG", VendorKind.MAGENTO, self.base_url, "EUR", creds)

    def control(self, method: str, path: str, json: Any = None) -> Any:
        response = httpx.request(method, f"{self.base_url}{path}", json=json, timeout=5)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    """One store for the read-only tests; tests that turn knobs start their own."""
    with SimulatorServer(SimConfig(kind=VendorKind.MAGENTO, seed=5)) as server:
        yield Sim(server)


@pytest.fixture
def fresh() -> Iterator[Sim]:
    with SimulatorServer(SimConfig(kind=VendorKind.MAGENTO, seed=5)) as server:
        yield Sim(server)


@pytest.fixture
async def sources() -> AsyncIterator[Callable[..., MagentoSource]]:
    made: list[MagentoSource] = []

    def make(sim: Sim, *, page_size: int = 50, credentials: dict[str, str] | None = None) -> MagentoSource:
        vendor = sim.vendor(credentials)
        source = MagentoSource(
            vendor, VendorHttp(vendor.base_url, policy=FAST, vendor_id=vendor.id, outbound=LOOPBACK_ONLY), page_size
        )
        made.append(source)
        return source

    yield make
    for source in made:
        await source.aclose()


async def walk(source: MagentoSource, since: datetime | None = None) -> list[Offer]:
    return [offer for page in await catalog_pages(source, since) for offer in page.offers]


async def catalog_pages(source: VendorSource, since: datetime | None = None) -> list[Page]:
    """Every page, first to last, through the walk the syncs use (a repeated cursor is a ``VendorBadResponse``)."""
    async with walk_pages(source, since=since, attempts=1) as pages:
        return [outcome.page async for outcome in pages]


# --- the source ---------------------------------------------------------------------------------------------


async def test_full_walk_is_every_enabled_carried_product(sim: Sim, sources: Callable[..., MagentoSource]) -> None:
    carried = len(sim.simulator.state.carried)
    assert 0.6 * 194 < carried < 0.8 * 194
    pages = await catalog_pages(sources(sim))
    offers = [o for page in pages for o in page.offers]
    skipped = [s for page in pages for s in page.skipped]
    # The last page is not followed by a request for a page past the end (which Magento would answer with
    # the last page again).
    assert len(pages) == -(-carried // 50)
    assert all(page.total == carried for page in pages)
    assert len(offers) == len(sim.enabled) and len(skipped) == carried - len(sim.enabled) > 0
    assert all("not enabled" in s.reason for s in skipped)
    assert {o.vendor_product_id for o in offers} == {sim.simulator.sku(pos) for pos in sim.enabled}
    assert len({o.key for o in offers}) == len(offers)
    assert {o.currency for o in offers} == {"EUR"}
    assert all(o.category and o.url and o.images for o in offers)
    catalog = sim.simulator.state.catalog
    assert sum(o.brand is not None for o in offers) == sum(catalog[pos].brand is not None for pos in sim.enabled)
    assert 0.4 < sum(o.gtin is not None for o in offers) / len(offers) < 0.8


async def test_names_are_read_once_per_walk(fresh: Sim, sources: Callable[..., MagentoSource]) -> None:
    source = sources(fresh, page_size=300)
    await walk(source)
    assert fresh.control("GET", "/_sim/stats")["requests"] == 3  # manufacturer options, categories, one page
    await source.fetch_product(fresh.simulator.sku(fresh.enabled[0]))
    assert fresh.control("GET", "/_sim/stats")["requests"] == 4


async def test_build_source_dispatches_magento(sim: Sim) -> None:
    vendor = sim.vendor()
    source = build_source(vendor, VendorHttp(vendor.base_url, policy=FAST, outbound=LOOPBACK_ONLY))
    try:
        assert isinstance(source, MagentoSource) and source.supports_changes_since
    finally:
        await source.aclose()


async def test_fetch_product_by_sku(sim: Sim, sources: Callable[..., MagentoSource]) -> None:
    source = sources(sim)
    sku = sim.simulator.sku(sim.enabled[0])
    (offer,) = await source.fetch_product(sku)
    assert offer.vendor_product_id == sku and offer.brand and offer.category
    with pytest.raises(VendorNotFound):
        await source.fetch_product("NO-SUCH-SKU")
    with pytest.raises(VendorNotFound):
        await source.fetch_product("a/../../V1/categories")
    disabled = next(pos for pos in sim.simulator.state.carried if not sim.simulator.enabled(pos))
    with pytest.raises(VendorNotFound):
        await source.fetch_product(sim.simulator.sku(disabled))


@pytest.mark.parametrize("credentials", [{"access_token": "wrong"}, {}])
async def test_refused_credentials_are_an_auth_error(
    sim: Sim, sources: Callable[..., MagentoSource], credentials: dict[str, str]
) -> None:
    with pytest.raises(VendorAuthError):
        await sources(sim, credentials=credentials).fetch_page()


async def test_since_after_a_tick_returns_only_changed_products(
    fresh: Sim, sources: Callable[..., MagentoSource]
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    changed = {fresh.simulator.sku(i - 1) for i in fresh.control("POST", "/_sim/tick")["ids"]}
    assert changed
    source = sources(fresh)
    pages = await catalog_pages(source, since=before)
    seen: set[str | None] = {o.vendor_product_id for page in pages for o in page.offers}
    seen |= {s.vendor_product_id for page in pages for s in page.skipped}
    assert seen == changed
    assert await walk(sources(fresh), since=datetime.now(UTC) + timedelta(seconds=5)) == []


async def test_flaky_store_still_yields_the_complete_catalog(fresh: Sim, sources: Callable[..., MagentoSource]) -> None:
    fresh.control("PATCH", "/_sim/config", {"error_rate": 0.2, "failure_modes": ["500", "429"], "retry_after_s": 0})
    source = sources(fresh, page_size=20)
    offers = await walk(source)
    assert len(offers) == len(fresh.enabled) == len({o.key for o in offers})
    failures = fresh.control("GET", "/_sim/stats")["failures"]
    assert failures["500"] + failures["429"] > 0
    assert source.http.stats.retries > 0


# --- the simulator's wire format ---------------------------------------------------------------------------


async def test_search_criteria_paging(sim: Sim) -> None:
    carried = sim.simulator.state.carried
    async with httpx.AsyncClient(headers=BEARER) as client:
        url = f"{sim.base_url}/rest/V1/products"
        first = (await client.get(url, params={"searchCriteria[pageSize]": 2})).json()
        assert set(first) == {"items", "search_criteria", "total_count"}
        assert first["total_count"] == len(carried)
        assert [i["id"] for i in first["items"]] == [pos + 1 for pos in carried[:2]]
        assert first["search_criteria"] == {"filter_groups": [], "page_size": 2, "current_page": 1}
        past = (
            await client.get(url, params={"searchCriteria[pageSize]": 2, "searchCriteria[currentPage]": 999})
        ).json()
        last = -(-len(carried) // 2)
        again = (
            await client.get(url, params={"searchCriteria[pageSize]": 2, "searchCriteria[currentPage]": last})
        ).json()
        assert past["items"] == again["items"] != []
        everything = (await client.get(url)).json()
        assert len(everything["items"]) == len(carried)
        bad = await client.get(url, params={"searchCriteria[pageSize]": "x"})
        assert bad.status_code == 400 and "message" in bad.json()
        prefix = "searchCriteria[filter_groups][0][filters][0]"
        unknown = await client.get(url, params={f"{prefix}[field]": "color", f"{prefix}[value]": "red"})
        assert unknown.status_code == 400


async def test_updated_at_filter(fresh: Sim) -> None:
    changed = fresh.control("POST", "/_sim/tick")["ids"]
    stamp = fresh.simulator.render(changed[0] - 1)["updated_at"]
    prefix = "searchCriteria[filter_groups][0][filters][0]"
    async with httpx.AsyncClient(headers=BEARER) as client:

        async def ids(condition: str) -> list[int]:
            params = {
                f"{prefix}[field]": "updated_at",
                f"{prefix}[value]": stamp,
                f"{prefix}[condition_type]": condition,
            }
            body = (await client.get(f"{fresh.base_url}/rest/V1/products", params=params)).json()
            assert body["search_criteria"]["filter_groups"][0]["filters"][0]["condition_type"] == condition
            return [item["id"] for item in body["items"]]

        assert await ids("gteq") == changed
        assert await ids("gt") == []
        assert len(await ids("lt")) == len(fresh.simulator.state.carried) - len(changed)


async def test_auth_and_not_found_bodies(sim: Sim) -> None:
    async with httpx.AsyncClient() as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "mg_demo"}):
            response = await client.get(f"{sim.base_url}/rest/V1/products", headers=headers)
            assert response.status_code == 401
            assert response.json() == {
                "message": "The consumer isn't authorized to access %resources.",
                "parameters": {"resources": "Magento_Catalog::products"},
            }
        missing = await client.get(f"{sim.base_url}/rest/V1/products/NOPE", headers=BEARER)
        assert missing.status_code == 404 and missing.json() == {"message": NOT_FOUND}
        options = (
            await client.get(f"{sim.base_url}/rest/V1/products/attributes/manufacturer/options", headers=BEARER)
        ).json()
        assert options[0] == {"label": " ", "value": ""} and len(options) > 1
        tree = (await client.get(f"{sim.base_url}/rest/V1/categories", headers=BEARER)).json()
        assert tree["children_data"][0]["name"] == "Default Category"


# --- through the API ----------------------------------------------------------------------------------------


def test_registered_through_the_api_and_synced(tmp_path: Path) -> None:
    with (
        running_sims(sim_config("magento", size=60)) as sims,
        ApiServer(fast_settings(tmp_path / "catalog.db")) as api,
        httpx.Client(base_url=api.base_url, timeout=15) as client,
    ):
        simulator = sims[0].server.simulator
        assert isinstance(simulator, MagentoSimulator)
        expected = sum(1 for pos in simulator.state.carried if simulator.enabled(pos))
        response = client.post("/vendors", json=sims[0].vendor_body("v1"), headers=admin())
        assert response.status_code == 201, response.text
        assert response.json()["kind"] == "magento"
        body = wait_synced(client, "v1")
        assert body["offers"] == expected
        assert not any(secret in response.text + str(body) for secret in SECRETS)
