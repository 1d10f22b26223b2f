"""Broken and hostile vendors over real HTTP (issue 11): the service neither follows them elsewhere, nor reads them
without limit, nor stores what it cannot serve, nor fails a sync on an auxiliary look-up.

Each vendor is a real HTTP server (``tests.hostile.HostileVendor``) and the API runs for real (``ApiServer``).
"""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hostile import HostileVendor, Seen
from tests.support import ApiServer, admin, all_products, assert_error, fast_settings, vendor_state, wait_until

TOKEN = "tok_never_shown_3c9a"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Callable[..., httpx.Client]]:
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> httpx.Client:
            server = stack.enter_context(ApiServer(fast_settings(tmp_path / "catalog.db", **overrides)))
            return stack.enter_context(httpx.Client(base_url=server.base_url, timeout=20))

        yield start


@pytest.fixture
def vendor() -> Iterator[HostileVendor]:
    with HostileVendor() as v:
        yield v


def item(n: int, **fields: Any) -> dict[str, Any]:
    return {"id": str(n), "title": f"Thing {n}", "price": "9.99", **fields}


def generic(vendor_id: str, base_url: str, **mapping: Any) -> dict[str, Any]:
    return {
        "id": vendor_id,
        "name": vendor_id,
        "kind": "generic",
        "base_url": base_url,
        "currency": "EUR",
        "credentials": {"token": TOKEN},
        "mapping": {
            "path": "/products",
            "items": "products",
            "fields": {"id": "id", "title": "title", "price": "price", "url": "url"},
            "auth_header": "X-Token",
            "pagination": {"style": "link"},  # one page unless the vendor sends a Link
            **mapping,
        },
    }


def sync_done(client: httpx.Client, vendor_id: str, *, runs: int = 1) -> dict[str, Any]:
    """The vendor's state once ``runs`` syncs have finished, successfully or not."""

    def check() -> dict[str, Any] | None:
        body = vendor_state(client, vendor_id)
        sync = body["sync"]
        done = sync["syncs_ok"] + sync["syncs_failed"] >= runs and sync["state"] in ("ok", "failed")
        return body if done else None

    return wait_until(check, timeout=20, what=f"sync {runs} of {vendor_id}")


def resync(client: httpx.Client, vendor_id: str, runs: int) -> dict[str, Any]:
    assert client.post(f"/vendors/{vendor_id}/sync?full=true", headers=admin()).status_code == 202
    return sync_done(client, vendor_id, runs=runs)


# -- outbound safety -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("http://169.254.169.254", "never allowed"),  # cloud metadata
        ("http://[fd00:ec2::254]", "never allowed"),
        ("http://169.254.170.2:80", "never allowed"),
        ("http://10.0.0.7", "private address"),  # the tests admit loopback only
    ],
)
def test_a_vendor_at_a_metadata_or_private_address_is_refused(
    api: Callable[..., httpx.Client], base_url: str, reason: str
) -> None:
    client = api()
    body = {"id": "meta", "name": "Meta", "kind": "dummyjson", "base_url": base_url, "currency": "USD"}
    response = client.post("/vendors", json=body, headers=admin())
    error = assert_error(response, 422, "invalid_input")
    assert error["details"]["path"] == "base_url"
    assert reason in error["details"]["reason"]
    assert client.get("/vendors/meta").status_code == 404


def test_user_info_in_a_base_url_is_refused_and_never_shown(api: Callable[..., httpx.Client], tmp_path: Path) -> None:
    client = api()
    body = {
        "id": "u",
        "name": "U",
        "kind": "dummyjson",
        "base_url": "http://user:hunter2@127.0.0.1:9",
        "currency": "USD",
    }
    error = assert_error(client.post("/vendors", json=body, headers=admin()), 422)
    assert "hunter2" not in str(error)
    assert client.post("/vendors", json={**body, "base_url": "http://127.0.0.1:9"}, headers=admin()).status_code == 201
    response = client.patch("/vendors/u", json={"base_url": "http://a:hunter2@127.0.0.1:9"}, headers=admin())
    assert_error(response, 422)
    assert "hunter2" not in client.get("/vendors").text


def test_a_pagination_link_to_another_origin_is_not_followed(
    api: Callable[..., httpx.Client], vendor: HostileVendor
) -> None:
    """Blind SSRF: the generic vendor's ``Link: rel=next`` points at another server; it never gets a request (and
    so never the vendor's token), the sync fails saying why, and the first page's offers are kept."""
    with HostileVendor() as elsewhere:
        elsewhere.json("/steal", {"products": [item(99)]})
        link = f'<{elsewhere.base_url}/steal?page=2>; rel="next"'
        vendor.json("/products", {"products": [item(1), item(2)]}, headers={"Link": link})
        client = api()
        response = client.post("/vendors", json=generic("g", vendor.base_url), headers=admin())
        assert response.status_code == 201, response.text
        state = sync_done(client, "g")
        assert elsewhere.seen == []
    assert state["sync"]["state"] == "failed"
    assert "leaves the vendor's origin" in state["sync"]["last_error"]
    assert elsewhere.base_url not in str(state)
    assert {p["name"] for p in all_products(client)} == {"Thing 1", "Thing 2"}
    assert all(s.headers.get("x-token") == TOKEN for s in vendor.seen)


def test_a_redirect_to_the_metadata_address_is_not_followed(
    api: Callable[..., httpx.Client], vendor: HostileVendor
) -> None:
    vendor.json("/products", {"products": [item(1)]})
    client = api()
    assert client.post("/vendors", json=generic("r", vendor.base_url), headers=admin()).status_code == 201
    assert sync_done(client, "r")["sync"]["state"] == "ok"
    location = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    vendor.routes["/products"] = lambda _s: (302, {"Location": location}, b"<html>moved: SECRET-BODY</html>")
    state = resync(client, "r", 2)
    assert state["sync"]["state"] == "failed"
    assert "302" in state["sync"]["last_error"]
    assert "169.254" not in str(state) and "SECRET-BODY" not in str(state)
    assert state["offers"] == 1  # nothing stored is lost
    assert [s.path for s in vendor.seen].count("/products") == 3  # probe, first sync, resync: none elsewhere
    # Registering another vendor there now: the probe's 502 names neither the redirect nor the body.
    probe = client.post("/vendors", json=generic("r2", vendor.base_url), headers=admin())
    assert probe.status_code == 502
    assert "169.254" not in probe.text and "SECRET-BODY" not in probe.text and "127.0.0.1" not in probe.text


def test_failed_calls_echo_neither_the_vendor_body_nor_its_url(
    api: Callable[..., httpx.Client], vendor: HostileVendor
) -> None:
    vendor.json("/products", {"products": [item(1)]})
    client = api()
    mapping = {"item_path": "/products/{id}", "item": "@"}
    assert client.post("/vendors", json=generic("e", vendor.base_url, **mapping), headers=admin()).status_code == 201
    sync_done(client, "e")
    vendor.routes["/products"] = lambda _s: (500, {}, b"Traceback: SECRET-BODY at /srv/app.py")
    vendor.routes["/products/7"] = lambda _s: (400, {}, b"SECRET-BODY: bad request")
    state = resync(client, "e", 2)
    miss = client.get("/vendors/e/products/7", params={"wait_ms": 5000})
    for text in (str(state["sync"]), miss.text):
        assert "SECRET-BODY" not in text and "127.0.0.1" not in text and "/srv/app.py" not in text
    assert state["sync"]["state"] == "failed" and "500" in state["sync"]["last_error"]
    assert miss.status_code >= 400
    # A vendor registered while it fails: the mapping probe's 502 carries the path and status only.
    probe = client.post("/vendors", json=generic("e2", vendor.base_url), headers=admin())
    error = assert_error(probe, 502)
    assert error["details"].get("path") == "/products" and error["details"].get("status") == 500
    assert "SECRET-BODY" not in probe.text and "127.0.0.1" not in probe.text and TOKEN not in probe.text


# -- answers bounded -------------------------------------------------------------------------------------------


def padded_page(mb: int) -> Callable[[Seen], tuple[int, dict[str, str], Any]]:
    """A valid JSON page of two items, padded to ``mb`` megabytes, streamed."""

    def route(_seen: Seen) -> tuple[int, dict[str, str], Any]:
        def chunks() -> Iterator[bytes]:
            yield b'{"products": [{"id": "1", "title": "Big 1", "price": 1}, {"id": "2", "title": "Big 2", "price": 2}]'
            yield b', "pad": "'
            for _ in range(mb * 16):
                yield b"x" * 65536
            yield b'"}'

        return 200, {"Content-Type": "application/json"}, chunks()

    return route


def test_an_oversized_answer_fails_the_page_without_reading_it(
    api: Callable[..., httpx.Client], vendor: HostileVendor
) -> None:
    vendor.json("/products", {"products": [item(1)]})
    client = api(vendor_max_response_bytes=1024 * 1024)
    assert client.post("/vendors", json=generic("big", vendor.base_url), headers=admin()).status_code == 201
    assert sync_done(client, "big")["sync"]["state"] == "ok"
    vendor.routes["/products"] = padded_page(200)
    state = resync(client, "big", 2)
    assert state["sync"]["state"] == "failed"
    assert "exceeds the 1048576 byte limit" in state["sync"]["last_error"]
    assert state["offers"] == 1  # what was stored stays
    assert vendor.sent["/products"] < 50 * 1024 * 1024  # the client hung up long before 200 MB


def test_a_compressed_bomb_is_refused_while_unpacking(api: Callable[..., httpx.Client], vendor: HostileVendor) -> None:
    body = b'{"products": [{"id": "1", "title": "Bomb", "price": 1}], "pad": "' + b" " * (64 * 1024 * 1024) + b'"}'
    bomb = gzip.compress(body, compresslevel=9)
    assert len(bomb) < 1024 * 1024 < len(body)
    vendor.routes["/products"] = lambda _s: (
        200,
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        bomb,
    )
    client = api(vendor_max_response_bytes=4 * 1024 * 1024)
    response = client.post("/vendors", json=generic("gz", vendor.base_url), headers=admin())
    error = assert_error(response, 502, "vendor_bad_response")  # the mapping probe reads the first page
    assert "byte limit" in error["message"]


def test_a_page_with_too_many_items_fails_and_keeps_what_was_stored(
    api: Callable[..., httpx.Client], vendor: HostileVendor
) -> None:
    vendor.json("/products", {"products": [item(n) for n in range(5)]})
    client = api(vendor_max_items_per_page=10)
    assert client.post("/vendors", json=generic("many", vendor.base_url), headers=admin()).status_code == 201
    assert sync_done(client, "many")["offers"] == 5
    vendor.json("/products", {"products": [item(n) for n in range(11)]})
    state = resync(client, "many", 2)
    assert state["sync"]["state"] == "failed"
    assert "11 items, more than the limit of 10" in state["sync"]["last_error"]
    assert state["offers"] == 5


# -- values cleaned at the edge --------------------------------------------------------------------------------


def test_hostile_values_are_cleaned_or_skipped_and_every_page_still_serves(
    api: Callable[..., httpx.Client], vendor: HostileVendor
) -> None:
    vendor.json(
        "/products",
        {
            "products": [
                # the mapping probe reads the first five: they fit the mapping
                item(1, title="Nul\u0000 byte\u0007 title", url="javascript:alert(document.cookie)"),
                item(5, url="https://shop.example/p/5"),
                *(item(n) for n in (10, 11, 12)),
                item(2, price="1" * 70),
                item(3, price=10**70),
                item(4, title="T" * 5000),
            ]
        },
    )
    client = api()
    assert client.post("/vendors", json=generic("dirty", vendor.base_url), headers=admin()).status_code == 201
    state = sync_done(client, "dirty")
    assert state["sync"]["state"] == "ok"
    assert state["offers"] == 5
    reasons = state["sync"]["skip_reasons"]
    assert reasons.get("price", 0) + reasons.get("unparseable price", 0) == 2, reasons
    assert reasons.get("field too long") == 1, reasons
    for params in ({}, {"currency": "EUR"}, {"currency": "USD", "sort": "price"}, {"q": "byte"}):
        response = client.get("/products", params=params)
        assert response.status_code == 200, (params, response.text)
    products = {p["name"]: p for p in all_products(client, currency="EUR")}
    assert set(products) == {"Nul byte title", "Thing 5", "Thing 10", "Thing 11", "Thing 12"}
    detail = client.get(f"/products/{products['Nul byte title']['id']}", params={"currency": "GBP"})
    assert detail.status_code == 200
    assert detail.json()["offers"][0]["url"] is None
    other = client.get(f"/products/{products['Thing 5']['id']}").json()
    assert other["offers"][0]["url"] == "https://shop.example/p/5"


# -- degrade, don't fail ---------------------------------------------------------------------------------------


def magento_product(sku: str) -> dict[str, Any]:
    return {
        "id": int(sku[1:]),
        "sku": sku,
        "name": f"Magento {sku}",
        "price": 12.5,
        "status": 1,
        "type_id": "simple",
        "custom_attributes": [{"attribute_code": "manufacturer", "value": "7"}],
        "extension_attributes": {"category_links": [{"category_id": "3"}]},
    }


def test_a_magento_store_without_manufacturer_or_category_access_still_syncs(
    api: Callable[..., httpx.Client], vendor: HostileVendor
) -> None:
    vendor.json("/rest/V1/products/attributes/manufacturer/options", {"message": "attribute not found"}, status=404)
    vendor.json("/rest/V1/categories", {"message": "not authorized for Magento_Catalog::categories"}, status=401)
    vendor.json("/rest/V1/products", {"items": [magento_product("m1"), magento_product("m2")], "total_count": 2})
    client = api()
    body = {
        "id": "mage",
        "name": "Mage",
        "kind": "magento",
        "base_url": vendor.base_url,
        "currency": "EUR",
        "credentials": {"access_token": TOKEN},
    }
    assert client.post("/vendors", json=body, headers=admin()).status_code == 201
    state = sync_done(client, "mage")
    assert state["sync"]["state"] == "ok", state["sync"]
    assert state["offers"] == 2
    assert state["sync"]["warnings"] == [
        "brand names (manufacturer options) unavailable (vendor_item_not_found, HTTP 404)",
        "category names unavailable (vendor_auth_failed, HTTP 401)",
    ]
    assert state["sync"]["skip_reasons"] == {}
    assert all(p["brand"] is None and p["category"] is None for p in all_products(client))


def test_a_bigcommerce_store_whose_brand_list_fails_still_syncs(
    api: Callable[..., httpx.Client], vendor: HostileVendor
) -> None:
    prefix = "/stores/abc/v3/catalog"
    vendor.json(f"{prefix}/brands", {"title": "boom"}, status=500)
    vendor.json(
        f"{prefix}/categories", {"data": [{"id": 3, "name": "Tools"}], "meta": {"pagination": {"total_pages": 1}}}
    )
    product = {"id": 1, "name": "Hammer", "price": 5, "brand_id": 2, "categories": [3], "variants": []}
    vendor.json(f"{prefix}/products", {"data": [product], "meta": {"pagination": {"total_pages": 1, "total": 1}}})
    client = api()
    body = {
        "id": "bc",
        "name": "BC",
        "kind": "bigcommerce",
        "base_url": vendor.base_url,
        "currency": "USD",
        "credentials": {"store_hash": "abc", "access_token": TOKEN},
    }
    assert client.post("/vendors", json=body, headers=admin()).status_code == 201
    state = sync_done(client, "bc")
    assert state["sync"]["state"] == "ok", state["sync"]
    assert state["sync"]["warnings"] == ["brand names unavailable (vendor_error, HTTP 500)"]
    [hammer] = all_products(client)
    assert hammer["category"] == "Tools" and hammer["brand"] is None
