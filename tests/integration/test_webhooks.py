"""Signed webhooks over real HTTP: the simulators sign and send them the platform's way, the API applies them.

No sync runs after registration (the scheduler is off), so any change a test sees came from the webhook.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from app.domain.models import VendorKind
from app.domain.webhooks import sign
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

SIZE = 40
SECRET = "whsec_test_4b1f"


@dataclass
class Env:
    client: httpx.Client
    api_url: str
    db_path: Path
    shop: Sim
    woo: Sim

    def change_seq(self) -> int:
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT value FROM meta WHERE key = 'change_seq'").fetchone()[0])

    def send(self, sim: Sim, vendor_id: str, topic: str, item: int, **extra: Any) -> dict[str, Any]:
        """Have the simulator sign and deliver a webhook; returns how the API answered."""
        platform = "shopify" if sim.kind is VendorKind.SHOPIFY else "woocommerce"
        order = {"url": f"{self.api_url}/webhooks/{platform}/{vendor_id}", "secret": SECRET, "topic": topic}
        response = httpx.post(f"{sim.base_url}/_sim/webhook", json={**order, "item": item, **extra}, timeout=10)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    db_path = tmp_path / "catalog.db"
    configs = (sim_config(VendorKind.SHOPIFY, size=SIZE), sim_config(VendorKind.WOOCOMMERCE, size=SIZE))
    with (
        running_sims(*configs) as (shop, woo),
        ApiServer(fast_settings(db_path)) as api,
        httpx.Client(base_url=api.base_url, timeout=10) as client,
    ):
        for sim, vendor_id in ((shop, "shop"), (woo, "woo")):
            body = sim.vendor_body(vendor_id)
            body["credentials"]["webhook_secret"] = SECRET
            assert client.post("/vendors", json=body, headers=admin()).status_code == 201
        for vendor_id in ("shop", "woo"):
            wait_synced(client, vendor_id)
        yield Env(client, api.base_url, db_path, shop, woo)


def product_of(env: Env, vendor_id: str, item: int) -> dict[str, Any]:
    response = env.client.get(f"/vendors/{vendor_id}/products/{item}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def offers_of(product: dict[str, Any], vendor_id: str, item: int) -> list[dict[str, Any]]:
    return [
        o
        for o in product["offers"]
        if o["vendor_id"] == vendor_id and str(item) in (o["vendor_product_id"], o["parent_id"])
    ]


def vendor_price(sim: Sim, item: int) -> Decimal:
    """The price the vendor shows now, read from its own API."""
    if sim.kind is VendorKind.SHOPIFY:
        response = httpx.get(
            f"{sim.base_url}/admin/api/2024-01/products/{item}.json",
            headers={"X-Shopify-Access-Token": sim.vendor_body("x")["credentials"]["access_token"]},
        )
        assert response.status_code == 200, response.text
        return Decimal(response.json()["product"]["variants"][0]["price"])
    creds = sim.vendor_body("x")["credentials"]
    response = httpx.get(
        f"{sim.base_url}/wp-json/wc/v3/products/{item}", auth=(creds["consumer_key"], creds["consumer_secret"])
    )
    assert response.status_code == 200, response.text
    return Decimal(response.json()["price"])


def repriced_item(env: Env, sim: Sim, vendor_id: str) -> int:
    """An item the vendor repriced after our sync, so the stored price is now out of date."""
    for _ in range(20):
        for item in sim.tick():
            stored = offers_of(product_of(env, vendor_id, item), vendor_id, item)[0]
            if Decimal(stored["price"]) != vendor_price(sim, item):
                return item
    raise AssertionError("no tick changed a price")


def only_offer_item(env: Env, vendor_id: str) -> tuple[str, int]:
    """A product whose only offers are this vendor's listing of one item, and all of that listing's offers (a
    Shopify product of two variants is two products): deleting it deletes the product."""
    details = [env.client.get(f"/products/{s['id']}").json() for s in all_products(env.client, vendor=vendor_id)]
    listed: dict[str, int] = {}
    for product in details:
        for o in product["offers"]:
            if o["vendor_id"] == vendor_id:
                parent = o["parent_id"] or o["vendor_product_id"]
                listed[parent] = listed.get(parent, 0) + 1
    for product in details:
        parents = {o["parent_id"] or o["vendor_product_id"] for o in product["offers"]}
        only = {o["vendor_id"] for o in product["offers"]} == {vendor_id} and len(parents) == 1
        if only and listed[next(iter(parents))] == len(product["offers"]):
            return product["id"], int(parents.pop())
    raise AssertionError(f"no product of {vendor_id} alone")


@pytest.mark.parametrize(("vendor_id", "topic"), [("shop", "products/update"), ("woo", "product.updated")])
def test_signed_update_changes_the_offer_at_once(env: Env, vendor_id: str, topic: str) -> None:
    sim = env.shop if vendor_id == "shop" else env.woo
    item = repriced_item(env, sim, vendor_id)
    answer = env.send(sim, vendor_id, topic, item)
    assert answer["status"] == 200, answer
    assert answer["body"]["applied"] == "updated" and answer["body"]["offers"] >= 1
    product = product_of(env, vendor_id, item)
    assert Decimal(offers_of(product, vendor_id, item)[0]["price"]) == vendor_price(sim, item)
    detail = env.client.get(f"/products/{product['id']}")
    assert Decimal(offers_of(detail.json(), vendor_id, item)[0]["price"]) == vendor_price(sim, item)


@pytest.mark.parametrize(("vendor_id", "topic"), [("shop", "products/delete"), ("woo", "product.deleted")])
def test_signed_delete_removes_the_offer_and_its_lone_product(env: Env, vendor_id: str, topic: str) -> None:
    sim = env.shop if vendor_id == "shop" else env.woo
    pid, item = only_offer_item(env, vendor_id)
    offers = len(env.client.get(f"/products/{pid}").json()["offers"])
    answer = env.send(sim, vendor_id, topic, item)
    assert answer["status"] == 200, answer
    assert answer["body"] == {"applied": "deleted", "offers": offers}
    assert_error(env.client.get(f"/products/{pid}"), 404)
    assert pid not in {p["id"] for p in all_products(env.client, vendor=vendor_id)}


def test_delete_of_a_shared_product_keeps_the_other_vendors_offers(env: Env) -> None:
    details = (env.client.get(f"/products/{p['id']}").json() for p in all_products(env.client, vendor="shop"))
    shared = next(p for p in details if {o["vendor_id"] for o in p["offers"]} == {"shop", "woo"})
    item = int(next(o["parent_id"] for o in shared["offers"] if o["vendor_id"] == "shop"))
    assert env.send(env.shop, "shop", "products/delete", item)["body"]["applied"] == "deleted"
    # The product may be re-keyed (the deleted offer could have carried its GTIN); the Woo offers stay listed.
    for offer in (o for o in shared["offers"] if o["vendor_id"] == "woo"):
        left = product_of(env, "woo", int(offer["vendor_product_id"]))["offers"]
        assert not [o for o in left if o["vendor_id"] == "shop" and o["parent_id"] == str(item)]


def test_replayed_deliveries_change_nothing(env: Env) -> None:
    item = repriced_item(env, env.shop, "shop")
    first = env.send(env.shop, "shop", "products/update", item, delivery_id="d-update-1")
    assert first["body"]["applied"] == "updated"
    pid = product_of(env, "shop", item)["id"]
    etag, seq = env.client.get(f"/products/{pid}").headers["etag"], env.change_seq()
    env.shop.tick()  # even if the item changed again, a replay of the old delivery must not apply anything
    again = env.send(env.shop, "shop", "products/update", item, delivery_id="d-update-1")
    assert again["status"] == 200 and again["body"] == first["body"]
    assert env.change_seq() == seq
    assert env.client.get(f"/products/{pid}").headers["etag"] == etag

    deleted = env.send(env.shop, "shop", "products/delete", item, delivery_id="d-delete-1")
    assert deleted["body"]["applied"] == "deleted" and deleted["body"]["offers"] >= 1
    seq = env.change_seq()
    replayed = env.send(env.shop, "shop", "products/delete", item, delivery_id="d-delete-1")
    assert replayed["status"] == 200 and replayed["body"] == deleted["body"]
    fresh = env.send(env.shop, "shop", "products/delete", item)  # a new delivery about what is already gone
    assert fresh["status"] == 200 and fresh["body"] == {"applied": "deleted", "offers": 0}
    assert env.change_seq() == seq


def _vendor_product_json(sim: Sim, item: int) -> bytes:
    creds = sim.vendor_body("x")["credentials"]
    if sim.kind is VendorKind.SHOPIFY:
        response = httpx.get(
            f"{sim.base_url}/admin/api/2024-01/products/{item}.json",
            headers={"X-Shopify-Access-Token": creds["access_token"]},
        )
        product = response.json()["product"]
        for variant in product["variants"]:
            variant["price"] = "0.01"
    else:
        response = httpx.get(
            f"{sim.base_url}/wp-json/wc/v3/products/{item}", auth=(creds["consumer_key"], creds["consumer_secret"])
        )
        product = response.json()
        product["price"] = product["regular_price"] = "0.01"
    return orjson.dumps(product)


PLATFORMS = {
    "shop": ("shopify", "X-Shopify-Hmac-Sha256", {"X-Shopify-Topic": "products/update"}),
    "woo": ("woocommerce", "X-WC-Webhook-Signature", {"X-WC-Webhook-Topic": "product.updated"}),
}


@pytest.mark.parametrize("vendor_id", ["shop", "woo"])
@pytest.mark.parametrize("signature", ["bad", "missing", "other-secret", "other-body"])
def test_bad_or_missing_signature_is_401_and_stores_nothing(env: Env, vendor_id: str, signature: str) -> None:
    sim = env.shop if vendor_id == "shop" else env.woo
    platform, header, topic = PLATFORMS[vendor_id]
    item = env.shop.tick()[0] if vendor_id == "shop" else env.woo.tick()[0]
    body = _vendor_product_json(sim, item)
    headers = {**topic, "Content-Type": "application/json", "X-Shopify-Webhook-Id": str(uuid.uuid4())}
    if signature == "bad":
        headers[header] = "AAAA" + sign(body, SECRET)[4:]
    elif signature == "other-secret":
        headers[header] = sign(body, "not-the-secret")
    elif signature == "other-body":
        headers[header] = sign(body + b" ", SECRET)
    product = product_of(env, vendor_id, item)
    etag, seq = env.client.get(f"/products/{product['id']}").headers["etag"], env.change_seq()
    response = env.client.post(f"/webhooks/{platform}/{vendor_id}", content=body, headers=headers)
    assert_error(response, 401, "unauthorized")
    assert env.change_seq() == seq
    assert env.client.get(f"/products/{product['id']}").headers["etag"] == etag
    assert all(
        Decimal(o["price"]) != Decimal("0.01") for o in offers_of(product_of(env, vendor_id, item), vendor_id, item)
    )


def test_vendor_without_webhook_secret_is_401(env: Env) -> None:
    body = env.shop.vendor_body("plain")
    assert env.client.post("/vendors", json=body, headers=admin()).status_code == 201
    payload = b'{"id": 1}'
    response = env.client.post(
        "/webhooks/shopify/plain",
        content=payload,
        headers={"X-Shopify-Topic": "products/delete", "X-Shopify-Hmac-Sha256": sign(payload, "")},
    )
    error = assert_error(response, 401, "unauthorized")
    assert "not configured" in error["message"]


def test_unknown_vendor_or_wrong_kind_is_404(env: Env) -> None:
    payload = b'{"id": 1}'
    headers = {"X-Shopify-Topic": "products/delete", "X-Shopify-Hmac-Sha256": sign(payload, SECRET)}
    assert_error(env.client.post("/webhooks/shopify/nobody", content=payload, headers=headers), 404, "not_found")
    woo_headers = {"X-WC-Webhook-Topic": "product.deleted", "X-WC-Webhook-Signature": sign(payload, SECRET)}
    seq = env.change_seq()
    assert_error(env.client.post("/webhooks/woocommerce/shop", content=payload, headers=woo_headers), 404)
    assert_error(env.client.post("/webhooks/shopify/woo", content=payload, headers=headers), 404)
    assert env.change_seq() == seq


@pytest.mark.parametrize("payload", [b'{"id": 1', b"", b"[1, 2]", b'{"title": "no id"}'])
def test_signed_but_malformed_body_is_422(env: Env, payload: bytes) -> None:
    seq = env.change_seq()
    headers = {"X-Shopify-Topic": "products/delete", "X-Shopify-Hmac-Sha256": sign(payload, SECRET)}
    assert_error(env.client.post("/webhooks/shopify/shop", content=payload, headers=headers), 422, "invalid_input")
    woo_headers = {"X-WC-Webhook-Topic": "product.updated", "X-WC-Webhook-Signature": sign(payload, SECRET)}
    if payload != b'{"title": "no id"}':  # an update without an id is an unusable product: ignored, not invalid
        assert_error(env.client.post("/webhooks/woocommerce/woo", content=payload, headers=woo_headers), 422)
    assert env.change_seq() == seq


def test_webhook_routes_are_documented(env: Env) -> None:
    spec = env.client.get("/openapi.json").json()
    for path in ("/webhooks/shopify/{vendor_id}", "/webhooks/woocommerce/{vendor_id}"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"200", "401", "404", "422"} <= set(responses)
