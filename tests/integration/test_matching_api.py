"""Split and pin over the API (admin): the product detail changes at once and stays so through a full re-sync."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import (
    ApiServer,
    Sim,
    admin,
    all_products,
    assert_error,
    fast_settings,
    running_sims,
    sim_config,
    wait_synced,
)

VENDORS = {"dummyjson": "dj", "shopify": "shop", "woocommerce": "woo"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    configs = [sim_config(kind, size=60) for kind in VENDORS]
    db = tmp_path_factory.mktemp("matching") / "catalog.db"
    with (
        running_sims(*configs) as sims,
        ApiServer(fast_settings(db)) as api,
        httpx.Client(base_url=api.base_url, timeout=30) as http,
    ):
        by_id: dict[str, Sim] = {VENDORS[str(sim.kind)]: sim for sim in sims}
        for vid, sim in by_id.items():
            assert http.post("/vendors", json=sim.vendor_body(vid), headers=admin()).status_code == 201
        for vid in by_id:
            wait_synced(http, vid)
        yield http


def details(client: httpx.Client) -> list[dict[str, Any]]:
    return [client.get(f"/products/{p['id']}").json() for p in all_products(client, limit=100)]


def ref(offer: dict[str, Any]) -> dict[str, str]:
    return {"vendor_id": offer["vendor_id"], "vendor_product_id": offer["vendor_product_id"]}


def product_of(client: httpx.Client, offer: dict[str, str]) -> dict[str, Any]:
    for product in details(client):
        if any(ref(o) == offer for o in product["offers"]):
            return product
    raise AssertionError(f"no product holds {offer}")


def resync(client: httpx.Client) -> None:
    for vid in VENDORS.values():
        assert client.post(f"/vendors/{vid}/sync", params={"full": "true"}, headers=admin()).status_code == 202
    for vid in VENDORS.values():
        wait_synced(client, vid, syncs_ok=2)


def test_split_and_pin_hold_through_a_full_resync(client: httpx.Client) -> None:
    products = details(client)
    shared = next(p for p in products if len({o["vendor_id"] for o in p["offers"]}) >= 2)
    leaving = ref(shared["offers"][-1])
    answer = client.post("/matching/split", json={"offer": leaving}, headers=admin())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["kind"] == "split" and body["applied"] is True and body["product_id"] != shared["id"]
    alone = client.get(f"/products/{body['product_id']}").json()
    assert [ref(o) for o in alone["offers"]] == [leaving]
    assert alone["offers"][0]["match"] == {"by": "split"}
    rest = client.get(f"/products/{shared['id']}")
    if rest.status_code == 200:  # the product keeps its id when the offer that named it stays
        assert leaving not in [ref(o) for o in rest.json()["offers"]]

    # Two offers of different vendors in different products, pinned together.
    singles = [p for p in products if len(p["offers"]) == 1 and p["id"] != shared["id"]]
    a, b = next(
        (x["offers"][0], y["offers"][0])
        for x, y in itertools.combinations(singles, 2)
        if x["offers"][0]["vendor_id"] != y["offers"][0]["vendor_id"]
    )
    answer = client.post("/matching/pin", json={"offers": [ref(a), ref(b)]}, headers=admin())
    assert answer.status_code == 200, answer.text
    pinned = client.get(f"/products/{answer.json()['product_id']}").json()
    assert sorted(map(str, (ref(o) for o in pinned["offers"]))) == sorted(map(str, (ref(a), ref(b))))
    assert {o["match"]["by"] for o in pinned["offers"]} == {"key", "pin"}

    resync(client)
    assert [ref(o) for o in product_of(client, leaving)["offers"]] == [leaving]
    assert product_of(client, ref(a))["id"] == product_of(client, ref(b))["id"]

    # Cleared, identifiers and the matcher decide again.
    assert client.post("/matching/clear", json={"offer": leaving}, headers=admin()).status_code == 200
    assert client.post("/matching/clear", json={"offer": ref(a)}, headers=admin()).status_code == 200
    assert product_of(client, leaving)["id"] == shared["id"]
    assert product_of(client, ref(a))["id"] != product_of(client, ref(b))["id"]


def test_overrides_need_the_admin_key_and_known_offers(client: httpx.Client) -> None:
    offer = ref(details(client)[0]["offers"][0])
    assert_error(client.post("/matching/split", json={"offer": offer}), 401)
    assert_error(client.post("/matching/split", json={"offer": offer}, headers=admin("wrong-key-wrong-key")), 403)
    nope = {"vendor_id": "dj", "vendor_product_id": "no-such-offer"}
    assert_error(client.post("/matching/split", json={"offer": nope}, headers=admin()), 404)
    assert_error(client.post("/matching/pin", json={"offers": [offer, nope]}, headers=admin()), 404)
    assert_error(client.post("/matching/pin", json={"offers": [offer, offer]}, headers=admin()), 409)
    assert_error(client.post("/matching/pin", json={"offers": [offer]}, headers=admin()), 422)
