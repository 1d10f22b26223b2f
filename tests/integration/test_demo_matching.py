"""The demo catalog, scored against the simulators' truth (issue 10): the real demo vendors over HTTP, synced by
the API, then every product's offers compared with the item each listing is."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Iterator

import httpx
import pytest

from app.domain.models import Vendor
from simulators.demo import demo_vendors
from simulators.server import DEMO_SIMULATORS, SimulatorServer
from tests.support import ApiServer, admin, all_products, fast_settings, wait_synced

Pair = frozenset[tuple[str, str]]


def vendor_body(vendor: Vendor, base_url: str) -> dict[str, object]:
    return {
        "id": vendor.id,
        "name": vendor.name,
        "kind": str(vendor.kind),
        "base_url": base_url,
        "credentials": dict(vendor.credentials),
        "currency": vendor.currency,
    }


@dataclasses.dataclass
class Scored:
    true_pairs: set[Pair]
    merged_pairs: set[Pair]
    offers: int
    items: int
    products: int

    @property
    def recall(self) -> float:
        return len(self.true_pairs & self.merged_pairs) / len(self.true_pairs)

    @property
    def precision(self) -> float:
        return len(self.true_pairs & self.merged_pairs) / max(1, len(self.merged_pairs))


def pairs(groups: dict[str, list[tuple[str, str]]]) -> set[Pair]:
    return {frozenset(p) for members in groups.values() for p in itertools.combinations(sorted(members), 2)}


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Scored:
    return score_demo(tmp_path_factory, matching=True)


def score_demo(tmp_path_factory: pytest.TempPathFactory, *, matching: bool) -> Scored:
    vendors = demo_vendors()
    with demo_servers() as sims:
        truth: dict[tuple[str, str], str] = {}
        for vendor, sim in zip(vendors, sims, strict=True):
            truth.update({(vendor.id, vpid): item for vpid, item in sim.simulator.truth().items()})
        db = tmp_path_factory.mktemp("demo") / "catalog.db"
        settings = fast_settings(db, matching=matching)
        with ApiServer(settings) as api, httpx.Client(base_url=api.base_url, timeout=30) as client:
            for vendor, sim in zip(vendors, sims, strict=True):
                response = client.post("/vendors", json=vendor_body(vendor, sim.base_url), headers=admin())
                assert response.status_code == 201, response.text
            for vendor in vendors:
                wait_synced(client, vendor.id, timeout=60)
            products: dict[str, list[tuple[str, str]]] = {}
            for item in all_products(client, limit=100):
                detail = client.get(f"/products/{item['id']}").json()
                products[item["id"]] = [(o["vendor_id"], o["vendor_product_id"]) for o in detail["offers"]]
    listed = {key for members in products.values() for key in members}
    assert listed == set(truth), "every listing is an offer, and the truth names every offer"
    by_item: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key, item_id in truth.items():
        by_item[item_id].append(key)
    return Scored(pairs(by_item), pairs(products), len(listed), len(by_item), len(products))


@contextlib.contextmanager
def demo_servers() -> Iterator[list[SimulatorServer]]:
    """The demo simulators, each on a free port (the demo's own ports may be taken here)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(SimulatorServer(config)) for config, _ in DEMO_SIMULATORS]


def test_demo_catalog_recall_and_precision_against_the_simulators_truth(scored: Scored) -> None:
    print(
        f"\ndemo catalog: {scored.offers} offers, {scored.items} items, {scored.products} products; "
        f"true pairs {len(scored.true_pairs)}, merged pairs {len(scored.merged_pairs)}, "
        f"recall {scored.recall:.3f}, precision {scored.precision:.3f}"
    )
    assert scored.recall >= 0.95
    assert scored.precision >= 0.99


def test_identifiers_alone_merge_far_less(scored: Scored, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same catalog with ``CATALOG_MATCHING=false``: what GTINs and brand + SKU find on their own."""
    plain = score_demo(tmp_path_factory, matching=False)
    print(f"\nidentifiers only: {plain.products} products; recall {plain.recall:.3f}, precision {plain.precision:.3f}")
    assert plain.recall < scored.recall - 0.2
    assert plain.products > scored.products


def test_every_demo_item_is_one_product_at_most_once_per_vendor(scored: Scored) -> None:
    # A product never holds two listings of one vendor that are different items (the store never compares them).
    wrong_same_vendor = [p for p in scored.merged_pairs - scored.true_pairs if len({k[0] for k in p}) == 1]
    assert wrong_same_vendor == []
