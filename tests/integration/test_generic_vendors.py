"""Declarative vendors over real HTTP: shapes no adapter was written for, registered with a mapping only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.normalize import normalize_gtin
from app.serving import ThreadedServer
from simulators import openfoodfacts, platzi
from simulators.catalog import build_catalog
from simulators.openfoodfacts import create_openfoodfacts_app
from simulators.platzi import create_platzi_app
from tests.support import ApiServer, admin, all_products, assert_error, fast_settings, vendor_state, wait_synced

SIZE = 37  # not a multiple of either page size, so the last page is a short one

OFF_MAPPING: dict[str, Any] = {
    "path": "/api/v2/search",
    "items": "products",
    "fields": {
        "id": "code",
        "title": "product_name",
        "price": {"path": "price_cents", "transforms": ["minor_units"]},
        "gtin": "code",
        "brand": {"path": "brands", "transforms": ["comma_list"]},
        "category": {"path": "categories", "transforms": ["comma_list"]},
        "images": "image_front_url",
        "description": "generic_name",
        "updated_at": {"path": "last_modified_t", "transforms": ["epoch"]},
    },
    "pagination": {"style": "page", "page_param": "page", "size_param": "page_size", "size": 10, "start": 1},
}

PLATZI_MAPPING: dict[str, Any] = {
    "path": "/api/v1/products",
    "items": "@",
    "fields": {
        "id": "id",
        "title": "title",
        "price": "price",
        "description": "description",
        "images": "images",
        "category": "category.name",
        "updated_at": "updatedAt",
    },
    "pagination": {"style": "offset", "offset_param": "offset", "limit_param": "limit", "size": 8},
    "item_path": "/api/v1/products/{id}",
}


@pytest.fixture
def vendors() -> Iterator[dict[str, str]]:
    with contextlib.ExitStack() as stack:
        off = stack.enter_context(ThreadedServer(create_openfoodfacts_app(SIZE), name="off"))
        pl = stack.enter_context(ThreadedServer(create_platzi_app(SIZE), name="platzi"))
        yield {"off": off.base_url, "platzi": pl.base_url}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    with ApiServer(fast_settings(tmp_path / "catalog.db")) as api, httpx.Client(base_url=api.base_url, timeout=15) as c:
        yield c


def body(vendor_id: str, base_url: str, mapping: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "id": vendor_id,
        "name": vendor_id,
        "kind": "generic",
        "base_url": base_url,
        "currency": "USD",
        "mapping": mapping,
        **overrides,
    }


def offers(client: httpx.Client, vendor_id: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for product in all_products(client, f"/vendors/{vendor_id}/products"):
        detail = client.get(f"/products/{product['id']}").json()
        for offer in detail["offers"]:
            if offer["vendor_id"] == vendor_id:
                found[offer["vendor_product_id"]] = offer
    return found


def test_open_food_facts_shape_syncs_from_a_mapping(vendors: dict[str, str], client: httpx.Client) -> None:
    response = client.post("/vendors", json=body("off", vendors["off"], OFF_MAPPING), headers=admin())
    assert response.status_code == 201, response.text
    assert response.json()["mapping"] == OFF_MAPPING and response.json()["kind"] == "generic"
    state = wait_synced(client, "off")
    assert state["offers"] == SIZE and state["sync"]["items_skipped"] == 0

    served = offers(client, "off")
    assert len(served) == SIZE
    for item in build_catalog(SIZE):
        offer = served[openfoodfacts.ean13(item)]
        assert Decimal(offer["price"]) == Decimal(openfoodfacts.price_cents(item)) / 100
        assert offer["gtin"] == normalize_gtin(openfoodfacts.ean13(item)) is not None
        assert offer["images"] == [item.thumbnail]
        assert offer["brand"] == item.brand and offer["category"] == item.category


def test_platzi_shape_syncs_and_serves_a_miss(vendors: dict[str, str], client: httpx.Client) -> None:
    response = client.post("/vendors", json=body("pl", vendors["platzi"], PLATZI_MAPPING), headers=admin())
    assert response.status_code == 201, response.text
    state = wait_synced(client, "pl")
    assert state["offers"] == SIZE
    served = offers(client, "pl")
    for item in build_catalog(SIZE):
        offer = served[str(item.id)]
        assert Decimal(offer["price"]) == platzi.price(item)
        assert offer["images"] == list(item.images) and offer["category"] == item.category

    # The miss path, through item_path: a second vendor on the same API that was never synced.
    created = client.post(
        "/vendors", json=body("pl2", vendors["platzi"], PLATZI_MAPPING, enabled=False), headers=admin()
    )
    assert created.status_code == 201, created.text
    assert client.patch("/vendors/pl2", json={"enabled": True}, headers=admin()).status_code == 200
    product = client.get("/vendors/pl2/products/5")
    assert product.status_code == 200, product.text
    assert ("pl2", "5") in {(o["vendor_id"], o["vendor_product_id"]) for o in product.json()["offers"]}
    assert_error(client.get("/vendors/pl2/products/999"), 404, "not_found")


def test_a_wrong_items_path_is_refused_and_not_stored(vendors: dict[str, str], client: httpx.Client) -> None:
    response = client.post(
        "/vendors", json=body("off", vendors["off"], {**OFF_MAPPING, "items": "hits"}), headers=admin()
    )
    error = assert_error(response, 422, "invalid_input")
    assert error["details"]["path"] == "hits" and error["details"]["reason"]
    assert_error(client.get("/vendors/off"), 404, "not_found")


def test_a_wrong_field_path_is_refused_naming_it(vendors: dict[str, str], client: httpx.Client) -> None:
    mapping = {**PLATZI_MAPPING, "fields": {**PLATZI_MAPPING["fields"], "price": "cost"}}
    error = assert_error(
        client.post("/vendors", json=body("pl", vendors["platzi"], mapping), headers=admin()), 422, "invalid_input"
    )
    assert error["details"]["path"] == "cost" and error["details"]["field"] == "price"
    assert_error(client.get("/vendors/pl"), 404, "not_found")


def test_a_patched_mapping_is_checked_too(vendors: dict[str, str], client: httpx.Client) -> None:
    created = client.post(
        "/vendors", json=body("pl", vendors["platzi"], PLATZI_MAPPING, enabled=False), headers=admin()
    )
    assert created.status_code == 201, created.text
    bad = {**PLATZI_MAPPING, "items": "data"}
    error = assert_error(client.patch("/vendors/pl", json={"mapping": bad}, headers=admin()), 422, "invalid_input")
    assert error["details"]["path"] == "data"
    assert vendor_state(client, "pl")["mapping"] == PLATZI_MAPPING


def test_mapping_is_required_for_generic_and_refused_for_others(vendors: dict[str, str], client: httpx.Client) -> None:
    missing = body("g", vendors["off"], OFF_MAPPING)
    del missing["mapping"]
    assert_error(client.post("/vendors", json=missing, headers=admin()), 422, "invalid_input")
    other = body("d", vendors["off"], OFF_MAPPING, kind="dummyjson")
    assert_error(client.post("/vendors", json=other, headers=admin()), 422, "invalid_input")
    no_price = {**OFF_MAPPING, "fields": {"id": "code", "title": "product_name"}}
    error = assert_error(client.post("/vendors", json=body("g", vendors["off"], no_price), headers=admin()), 422)
    assert "fields.price" in str(error["details"])
