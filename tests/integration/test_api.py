"""The API in-process over real HTTP: the app under uvicorn in a thread, vendors served by simulators.

One module-wide service with three synced vendors serves the read-only tests (listing, filters, pagination,
validation, auth); tests that change data or vendor behaviour start their own service (a second or so each).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import itertools
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.bootstrap import load_rates
from app.domain.models import VendorKind
from app.settings import Settings
from simulators.catalog import load_base_items
from simulators.server import SimulatorServer
from tests.support import (
    ADMIN_KEY,
    SECRETS,
    SHOPIFY_TOKEN,
    WOO_KEY,
    WOO_SECRET,
    ApiServer,
    Sim,
    admin,
    all_products,
    assert_error,
    fast_settings,
    register,
    running_sims,
    sim_config,
    vendor_state,
    wait_request,
    wait_synced,
    wait_until,
)

SIZE = 40  # catalog positions per simulator: small, but the three stores still share products

VENDOR_IDS = {VendorKind.DUMMYJSON: "dj", VendorKind.SHOPIFY: "shop", VendorKind.WOOCOMMERCE: "woo"}


def stored_product_ids(db_path: Path) -> set[str]:
    """The truth, read from the SQLite file itself rather than through the API under test."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM products")}


def register_unsynced(client: httpx.Client, sim: Sim, vendor_id: str) -> None:
    """A vendor that is enabled but was never synced: added disabled (no sync is requested), then enabled."""
    register(client, sim, vendor_id, enabled=False)
    response = client.patch(f"/vendors/{vendor_id}", json={"enabled": True}, headers=admin())
    assert response.status_code == 200, response.text
    assert response.json()["enabled"] is True
    state = vendor_state(client, vendor_id)
    assert state["sync"]["state"] == "never" and state["offers"] == 0


def offer_keys(product: dict[str, Any]) -> set[tuple[str, str]]:
    return {(o["vendor_id"], o["vendor_product_id"]) for o in product["offers"]}


# -- fixtures -------------------------------------------------------------------------------------------------


@dataclass
class Shared:
    client: httpx.Client
    db_path: Path
    sims: dict[str, Sim]
    created: dict[str, httpx.Response]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    db_path = tmp_path_factory.mktemp("api") / "catalog.db"
    configs = [sim_config(kind, size=SIZE) for kind in VENDOR_IDS]
    with (
        running_sims(*configs) as sims,
        ApiServer(fast_settings(db_path)) as api,
        httpx.Client(base_url=api.base_url, timeout=15) as client,
    ):
        by_id = {VENDOR_IDS[sim.kind]: sim for sim in sims}
        created = {vid: register(client, sim, vid) for vid, sim in by_id.items()}
        for vid in by_id:
            wait_synced(client, vid)
        yield Shared(client, db_path, by_id, created)


@pytest.fixture
def sims() -> Iterator[Callable[..., Sim]]:
    """Start simulators for one test: ``sims("dummyjson", size=20, latency_ms=...)``."""
    with contextlib.ExitStack() as stack:

        def start(kind: str, **overrides: Any) -> Sim:
            overrides.setdefault("size", SIZE)
            return Sim(stack.enter_context(SimulatorServer(sim_config(kind, **overrides))))

        yield start


# -- admin auth -----------------------------------------------------------------------------------------------

ADMIN_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/vendors", {"id": "x", "name": "X", "kind": "dummyjson", "base_url": "http://h", "currency": "USD"}),
    ("POST", "/vendors", {}),
    ("PATCH", "/vendors/dj", {"name": "renamed"}),
    ("DELETE", "/vendors/dj", None),
    ("POST", "/vendors/dj/sync", None),
    ("POST", "/vendors/dj/sync?full=true", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_calls_need_the_right_key(shared: Shared, method: str, path: str, body: dict[str, Any] | None) -> None:
    client = shared.client
    before = vendor_state(client, "dj")

    missing = client.request(method, path, json=body)
    assert missing.json() == {
        "error": {"code": "unauthorized", "message": "this call needs the X-API-Key header", "details": {}}
    }
    assert_error(missing, 401, "unauthorized")
    assert_error(client.request(method, path, json=body, headers={"X-API-Key": ""}), 401, "unauthorized")

    wrong = client.request(method, path, json=body, headers=admin(ADMIN_KEY + "x"))
    assert wrong.json() == {"error": {"code": "forbidden", "message": "the X-API-Key is not valid", "details": {}}}
    assert_error(wrong, 403, "forbidden")

    # nothing happened: no vendor created, dj neither renamed, deleted nor re-synced
    assert_error(client.get("/vendors/x"), 404, "not_found")
    after = vendor_state(client, "dj")
    assert after["name"] == before["name"]
    assert after["sync"]["syncs_ok"] == before["sync"]["syncs_ok"]


# -- registering vendors --------------------------------------------------------------------------------------


def test_each_kind_registers_syncs_and_never_shows_credentials(shared: Shared) -> None:
    client = shared.client
    for vid, response in shared.created.items():
        sim = shared.sims[vid]
        assert response.headers["location"] == f"/vendors/{vid}"
        body = response.json()
        assert body["id"] == vid and body["kind"] == str(sim.kind) and body["enabled"] is True
        assert body["has_credentials"] is (sim.kind is not VendorKind.DUMMYJSON)
        assert "credentials" not in body

        shown = vendor_state(client, vid)
        assert "credentials" not in shown
        assert shown["has_credentials"] is body["has_credentials"]
        assert shown["base_url"] == sim.base_url
        sync = shown["sync"]
        assert sync["state"] == "ok" and sync["last_error"] is None
        assert sync["last_success_at"] and sync["last_full_sync_at"]
        carried = sim.items()
        if sim.kind is VendorKind.SHOPIFY:
            # one offer per variant: every carried product, some with a second size
            assert shown["offers"] == sync["items_seen"] >= carried
        else:
            assert shown["offers"] == carried == sync["items_seen"]
        assert shown["products"] > 0

    listing = client.get("/vendors")
    assert listing.status_code == 200
    assert [v["id"] for v in listing.json()["items"]] == sorted(shared.created)
    texts = [listing.text, *(r.text for r in shared.created.values())]
    texts += [client.get(f"/vendors/{vid}").text for vid in shared.created]
    for text in texts:
        assert '"credentials"' not in text
        for secret in SECRETS:
            assert secret not in text


def test_products_unify_offers_from_several_vendors(shared: Shared) -> None:
    client = shared.client
    products = all_products(client, limit=100)
    assert {p["id"] for p in products} == stored_product_ids(shared.db_path)

    # every stored offer is in exactly one product
    offers_total = sum(vendor_state(client, vid)["offers"] for vid in shared.sims)
    assert sum(p["offer_count"] for p in products) == offers_total

    shared_products = [p for p in products if len(p["vendors"]) >= 2]
    assert len(shared_products) >= 3, "the three stores carry the same items: some must unify"
    assert any(len(p["vendors"]) == 3 for p in products)
    for summary in shared_products:
        response = client.get(f"/products/{summary['id']}")
        assert response.status_code == 200
        detail = response.json()
        assert detail["id"] == summary["id"]
        assert len(detail["offers"]) == summary["offer_count"] >= 2
        assert sorted({o["vendor_id"] for o in detail["offers"]}) == summary["vendors"]
        currencies = {o["currency"] for o in detail["offers"]}
        assert {p["currency"] for p in detail["prices"]} == currencies
        assert detail["currency"] in currencies
        main = [Decimal(o["price"]) for o in detail["offers"] if o["currency"] == detail["currency"]]
        assert (Decimal(detail["min_price"]), Decimal(detail["max_price"])) == (min(main), max(main))
        gtins = {o["gtin"] for o in detail["offers"] if o["gtin"]}
        assert len(gtins) <= 1, "offers with different GTINs are never one product"
        if gtins:
            assert detail["gtin"] == gtins.pop()


def test_unknown_product_is_404(shared: Shared) -> None:
    error = assert_error(shared.client.get("/products/p_doesnotexist0000"), 404, "not_found")
    assert error["details"] == {"product_id": "p_doesnotexist0000"}


# -- validation -----------------------------------------------------------------------------------------------


def _vendor_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "newshop",
        "name": "New Shop",
        "kind": "dummyjson",
        "base_url": "http://127.0.0.1:9",
        "currency": "USD",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(
    ("overrides", "location"),
    [
        ({"kind": "prestashop"}, "body.kind"),
        ({"currency": "XYZ"}, "body.currency"),
        ({"id": "Bad Id!"}, "body.id"),
        ({"id": "-starts-with-dash"}, "body.id"),
        ({"surprise": True}, "body.surprise"),
        ({"base_url": "not a url"}, "body.base_url"),
        ({"base_url": "ftp://example.com"}, "body.base_url"),
        ({"refresh_interval_s": 5}, "body.refresh_interval_s"),
        ({"name": ""}, "body.name"),
        ({"currency": None}, "body.currency"),
    ],
)
def test_invalid_vendor_is_422(shared: Shared, overrides: dict[str, Any], location: str) -> None:
    response = shared.client.post("/vendors", json=_vendor_body(**overrides), headers=admin())
    error = assert_error(response, 422, "invalid_input")
    assert location in [p["location"] for p in error["details"]["problems"]], error
    assert_error(shared.client.get(f"/vendors/{_vendor_body(**overrides).get('id', 'newshop')}"), 404)


def test_malformed_json_body_is_422(shared: Shared) -> None:
    response = shared.client.post(
        "/vendors", content=b'{"id": "x",', headers={**admin(), "Content-Type": "application/json"}
    )
    assert_error(response, 422, "invalid_input")


@pytest.mark.parametrize(
    "patch",
    [{"currency": "XYZ"}, {"base_url": "nope"}, {"credentials": "secret"}, {"kind": "shopify"}, {"id": "other"}],
)
def test_invalid_patch_is_422(shared: Shared, patch: dict[str, Any]) -> None:
    before = vendor_state(shared.client, "dj")
    assert_error(shared.client.patch("/vendors/dj", json=patch, headers=admin()), 422, "invalid_input")
    assert vendor_state(shared.client, "dj")["currency"] == before["currency"]


def test_duplicate_vendor_is_409(shared: Shared) -> None:
    sim = shared.sims["dj"]
    response = shared.client.post("/vendors", json=sim.vendor_body("dj", name="Another"), headers=admin())
    error = assert_error(response, 409, "conflict")
    assert error["details"] == {"vendor_id": "dj"}
    assert vendor_state(shared.client, "dj")["name"] != "Another"


@pytest.mark.parametrize(
    ("method", "path", "needs_admin"),
    [
        ("GET", "/vendors/nope", False),
        ("GET", "/vendors/nope/products", False),
        ("GET", "/vendors/nope/products/1", False),
        ("PATCH", "/vendors/nope", True),
        ("DELETE", "/vendors/nope", True),
        ("POST", "/vendors/nope/sync", True),
    ],
)
def test_unknown_vendor_is_404(shared: Shared, method: str, path: str, needs_admin: bool) -> None:
    body = {"name": "x"} if method == "PATCH" else None
    response = shared.client.request(method, path, json=body, headers=admin() if needs_admin else {})
    error = assert_error(response, 404, "not_found")
    assert error["details"] == {"vendor_id": "nope"}


def test_unknown_route_and_method_use_the_error_shape(shared: Shared) -> None:
    assert_error(shared.client.get("/nothing/here"), 404, "not_found")
    assert_error(shared.client.get("/requests/r_unknown"), 404, "not_found")
    response = shared.client.put("/vendors")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


# -- listing: bounds, cursors, sorts, filters -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 101}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"sort": "cheapest"}, "query.sort"),
        ({"min_price": -1}, "query.min_price"),
        ({"in_stock": "maybe"}, "query.in_stock"),
        ({"q": "x" * 201}, "query.q"),
    ],
)
def test_bad_list_parameters_are_422(shared: Shared, params: dict[str, Any], parameter: str) -> None:
    for path in ("/products", "/vendors/dj/products"):
        error = assert_error(shared.client.get(path, params=params), 422, "invalid_input")
        assert parameter in [p["location"] for p in error["details"]["problems"]]


def test_limit_bounds_are_inclusive(shared: Shared) -> None:
    assert len(shared.client.get("/products", params={"limit": 1}).json()["items"]) == 1
    assert len(shared.client.get("/products", params={"limit": 100}).json()["items"]) == min(
        100, len(stored_product_ids(shared.db_path))
    )


def test_min_price_above_max_price_is_an_empty_page(shared: Shared) -> None:
    # No price lies between them: nothing matches (a request the schema allows is never refused).
    assert shared.client.get("/products", params={"min_price": 10, "max_price": 5}).json() == {
        "items": [],
        "next_cursor": None,
    }
    assert shared.client.get("/products", params={"min_price": 5, "max_price": 5}).status_code == 200


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "W10", "WzEsInByaWNlIiwiYSJd"])
def test_a_cursor_of_another_shape_is_422(shared: Shared, cursor: str) -> None:
    error = assert_error(shared.client.get("/products", params={"cursor": cursor}), 422, "invalid_input")
    assert "query.cursor" in [p["location"] for p in error["details"]["problems"]]


def test_a_tampered_or_unsigned_cursor_is_400(shared: Shared) -> None:
    cursor = shared.client.get("/products", params={"sort": "price", "limit": 2}).json()["next_cursor"]
    payload, mac = cursor.rsplit(".", 1)
    # the finding of issue 11: the right shape with a position of the wrong types (an object where a price was)
    forged = base64.urlsafe_b64encode(b'[1,"price",[{"a":1},"p"],"x"]').rstrip(b"=").decode()
    for token in (f"{forged}.{mac}", f"{payload}.{'A' * 22}", f"{payload[:-2]}.{mac}"):
        error = assert_error(shared.client.get("/products", params={"sort": "price", "cursor": token}), 400)
        assert error["code"] == "invalid_token" and error["details"] == {"parameter": "cursor"}
    assert shared.client.get("/products", params={"sort": "price", "limit": 2, "cursor": cursor}).status_code == 200


@pytest.mark.parametrize(
    "changed",
    [{"sort": "-price"}, {"in_stock": "true"}, {"vendor": "dj"}, {"min_price": "1"}, {"brand": "x"}],
)
def test_cursor_reused_with_other_query_is_400(shared: Shared, changed: dict[str, str]) -> None:
    first = shared.client.get("/products", params={"sort": "price", "limit": 5}).json()
    cursor = first["next_cursor"]
    assert cursor
    assert shared.client.get("/products", params={"sort": "price", "limit": 5, "cursor": cursor}).status_code == 200
    # a different limit is fine: it is not a filter
    assert shared.client.get("/products", params={"sort": "price", "limit": 9, "cursor": cursor}).status_code == 200
    response = shared.client.get("/products", params={"sort": "price", "limit": 5, "cursor": cursor, **changed})
    error = assert_error(response, 400, "invalid_token")
    assert error["details"] == {"parameter": "cursor"}


RATES = load_rates(Settings())


def _price(p: dict[str, Any]) -> Decimal:
    """What price sorts and filters compare: the lowest offer price in the rates' base currency (the stores list
    in USD, EUR and TRY, so raw numbers would not do)."""
    return min(RATES.exact(Decimal(r["min"]), r["currency"], RATES.base) for r in p["prices"])


@pytest.mark.parametrize(
    ("params", "in_order"),
    [
        ({"sort": "updated"}, lambda a, b: (a["updated_at"], a["id"]) >= (b["updated_at"], b["id"])),
        ({}, lambda a, b: (a["updated_at"], a["id"]) >= (b["updated_at"], b["id"])),
        ({"sort": "price"}, lambda a, b: _price(a) <= _price(b)),
        ({"sort": "-price"}, lambda a, b: _price(a) >= _price(b)),
        ({"sort": "price", "vendor": "woo"}, lambda a, b: _price(a) <= _price(b)),
    ],
)
def test_cursor_walk_returns_every_product_once(
    shared: Shared, params: dict[str, Any], in_order: Callable[[dict[str, Any], dict[str, Any]], bool]
) -> None:
    walked = all_products(shared.client, limit=7, **params)  # fails on a repeat
    expected = stored_product_ids(shared.db_path)
    if "vendor" in params:
        expected = {p["id"] for p in all_products(shared.client, limit=100) if params["vendor"] in p["vendors"]}
        assert 7 < len(expected) < len(stored_product_ids(shared.db_path))
    assert {p["id"] for p in walked} == expected
    assert len(walked) == len(expected)
    assert all(in_order(a, b) for a, b in itertools.pairwise(walked))


def test_relevance_walk_with_q_returns_every_match_once(shared: Shared) -> None:
    one_page = shared.client.get("/products", params={"q": "with", "sort": "relevance", "limit": 100}).json()
    assert one_page["next_cursor"] is None
    expected = [p["id"] for p in one_page["items"]]
    assert len(expected) > 8
    walked = all_products(shared.client, q="with", sort="relevance", limit=4)
    assert [p["id"] for p in walked] == expected


def test_filters_select_exactly_the_matching_products(shared: Shared) -> None:
    client = shared.client
    everything = all_products(client, limit=100)
    assert {p["id"] for p in everything} == stored_product_ids(shared.db_path)

    def ids(**params: Any) -> set[str]:
        return {p["id"] for p in all_products(client, limit=100, **params)}

    def where(predicate: Callable[[dict[str, Any]], bool]) -> set[str]:
        return {p["id"] for p in everything if predicate(p)}

    # vendor
    for vid in shared.sims:
        expected = {p["id"] for p in everything if vid in p["vendors"]}
        assert ids(vendor=vid) == expected
        assert len(expected) == vendor_state(client, vid)["products"]
    assert ids(vendor="nobody") == set()

    # brand and category: case-insensitive
    brand = Counter(p["brand"] for p in everything if p["brand"]).most_common(1)[0][0]
    expected = where(lambda p: (p["brand"] or "").casefold() == brand.casefold())
    assert len(expected) >= 2
    assert ids(brand=brand) == ids(brand=brand.upper()) == expected
    category = Counter((p["category"] or "").casefold() for p in everything).most_common(1)[0][0]
    expected = where(lambda p: (p["category"] or "").casefold() == category)
    assert 2 <= len(expected) < len(everything)
    assert ids(category=category) == ids(category=category.title()) == expected

    # price range, inclusive, on the product's lowest price in the base currency (no `currency` given)
    prices = sorted({_price(p) for p in everything})
    low, high = prices[len(prices) // 4], prices[3 * len(prices) // 4]
    expected = where(lambda p: low <= _price(p) <= high)
    assert 2 <= len(expected) < len(everything)
    assert ids(min_price=str(low), max_price=str(high)) == expected
    assert ids(min_price=str(low)) == where(lambda p: _price(p) >= low)
    assert ids(max_price=str(high)) == where(lambda p: _price(p) <= high)

    # stock
    assert ids(in_stock="true") == where(lambda p: p["in_stock"])
    assert ids(in_stock="false") == where(lambda p: not p["in_stock"])

    # full text: every hit mentions the word (name, description or brand); every name with it is a hit
    hits = ids(q="mirror")
    assert hits
    for pid in hits:
        detail = client.get(f"/products/{pid}").json()
        text = " ".join([detail["name"], detail["description"], detail["brand"] or ""]).casefold()
        assert re.search(r"\bmirror", text), detail["name"]
    assert where(lambda p: "mirror" in p["name"].casefold()) <= hits
    assert ids(q="zzzzqqqq") == set()
    assert ids(q="***") == set()

    # combined
    combined = all_products(client, limit=3, vendor="woo", min_price=str(low), sort="-price")
    assert {p["id"] for p in combined} == where(lambda p: "woo" in p["vendors"] and _price(p) >= low)
    assert [_price(p) for p in combined] == sorted((_price(p) for p in combined), reverse=True)


def test_vendor_products_lists_that_vendor_only(shared: Shared) -> None:
    walked = all_products(shared.client, "/vendors/woo/products", limit=10, sort="price")
    assert {p["id"] for p in walked} == {p["id"] for p in all_products(shared.client, vendor="woo", limit=100)}
    assert all("woo" in p["vendors"] for p in walked)


# -- ETag, 304, gzip ------------------------------------------------------------------------------------------


def test_etag_and_if_none_match(shared: Shared) -> None:
    client = shared.client
    listing = client.get("/products", params={"limit": 20})
    etag = listing.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]+"', etag)
    assert client.get("/products", params={"limit": 20}).headers["etag"] == etag  # stable
    assert client.get("/products", params={"limit": 19}).headers["etag"] != etag  # another page, another tag

    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        not_modified = client.get("/products", params={"limit": 20}, headers={"If-None-Match": value})
        assert not_modified.status_code == 304, value
        assert not_modified.content == b""
        assert not_modified.headers["etag"] == etag
    assert client.get("/products", params={"limit": 20}, headers={"If-None-Match": '"other"'}).status_code == 200

    pid = listing.json()["items"][0]["id"]
    detail = client.get(f"/products/{pid}")
    tag = detail.headers["etag"]
    assert tag != etag
    again = client.get(f"/products/{pid}", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag

    # the vendor listing's product answers with the same document and tag
    offer = detail.json()["offers"][0]
    via_vendor = client.get(f"/vendors/{offer['vendor_id']}/products/{offer['vendor_product_id']}")
    assert via_vendor.status_code == 200
    assert via_vendor.headers["etag"] == tag and via_vendor.json() == detail.json()
    assert (
        client.get(
            f"/vendors/{offer['vendor_id']}/products/{offer['vendor_product_id']}", headers={"If-None-Match": tag}
        ).status_code
        == 304
    )


def test_large_responses_are_gzipped_when_accepted(shared: Shared) -> None:
    url = f"{shared.client.base_url}/products?limit=100"
    with httpx.Client(timeout=10) as raw:  # a client that does not add its own Accept-Encoding
        zipped = raw.get(url, headers={"Accept-Encoding": "gzip"})
        plain = raw.get(url, headers={"Accept-Encoding": "identity"})
        small = raw.get(f"{shared.client.base_url}/health", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert len(plain.content) > 1024
    assert zipped.json() == plain.json()  # httpx decodes it...
    assert zipped.headers["etag"] == plain.headers["etag"]
    with httpx.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as streamed:
        compressed = b"".join(streamed.iter_raw())  # ...and on the wire it is really gzip
    assert gzip.decompress(compressed) == plain.content
    assert len(compressed) < len(plain.content)
    assert "content-encoding" not in small.headers


# -- health ---------------------------------------------------------------------------------------------------


def test_health_and_ready(shared: Shared) -> None:
    assert shared.client.get("/health").json() == {"status": "ok"}
    ready = shared.client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["checks"] == {"store": True, "workers": True, "scheduler": True, "search": True}
    assert body["runtime"] == "embedded"
    assert body["queue_depth"] >= 0 and body["pending_requests"] >= 0


# -- admin writes ---------------------------------------------------------------------------------------------


def test_patch_changes_only_what_is_sent(sims: Callable[..., Sim], service: Callable[..., httpx.Client]) -> None:
    shop = sims("shopify")
    client = service()
    register(client, shop, "shop", refresh_interval_s=600)
    wait_synced(client, "shop")
    response = client.patch(
        "/vendors/shop", json={"name": "Renamed", "refresh_interval_s": 300, "currency": "EUR"}, headers=admin()
    )
    assert response.status_code == 200, response.text
    body = vendor_state(client, "shop")
    assert (body["name"], body["refresh_interval_s"], body["currency"]) == ("Renamed", 300, "EUR")
    assert (body["kind"], body["base_url"], body["enabled"], body["has_credentials"]) == (
        "shopify",
        shop.base_url,
        True,
        True,
    )

    # new credentials are used (and never shown): a wrong token makes the next sync fail with an auth error
    response = client.patch("/vendors/shop", json={"credentials": {"access_token": "shpat_wrong"}}, headers=admin())
    assert response.status_code == 200 and "shpat_wrong" not in response.text
    sync = client.post("/vendors/shop/sync", headers=admin())
    assert sync.status_code == 202
    failed = wait_request(client, sync.headers["location"])
    assert failed["status"] == "failed" and failed["error_code"] == "vendor_auth_failed"
    state = vendor_state(client, "shop")
    assert state["sync"]["state"] == "failed" and "vendor_auth_failed" in state["sync"]["last_error"]
    assert "shpat_wrong" not in client.get("/vendors").text


def test_sync_request_and_disabled_vendor(sims: Callable[..., Sim], service: Callable[..., httpx.Client]) -> None:
    dj = sims("dummyjson")
    client = service()
    register(client, dj, "dj")
    wait_synced(client, "dj")

    response = client.post("/vendors/dj/sync", params={"full": "true"}, headers=admin())
    assert response.status_code == 202
    body = response.json()
    assert re.fullmatch(r"/requests/r_[0-9a-f]{32}", response.headers["location"])
    assert response.headers["location"] == body["location"] == f"/requests/{body['id']}"
    assert int(response.headers["retry-after"]) >= 1
    assert body["kind"] == "catalog" and body["vendor_id"] == "dj" and body["status"] in ("pending", "done")
    done = wait_request(client, response.headers["location"])
    assert done["status"] == "done" and done["finished_at"]
    assert vendor_state(client, "dj")["sync"]["syncs_ok"] == 2

    assert client.patch("/vendors/dj", json={"enabled": False}, headers=admin()).status_code == 200
    error = assert_error(client.post("/vendors/dj/sync", headers=admin()), 409, "conflict")
    assert error["details"] == {"vendor_id": "dj"}
    assert_error(client.get("/vendors/dj/products/999"), 409, "conflict")  # a miss needs the vendor
    assert client.get("/vendors/dj/products/1").status_code == 200  # stored data is still served


def test_full_sync_is_not_swallowed_by_a_pending_incremental_one(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    shop = sims("shopify")
    client = service()
    register(client, shop, "shop")
    first = wait_synced(client, "shop")["sync"]["last_full_sync_at"]
    shop.configure(latency_ms=600)
    incremental = client.post("/vendors/shop/sync", headers=admin()).json()
    full = client.post("/vendors/shop/sync", params={"full": "true"}, headers=admin()).json()
    assert incremental["status"] == full["status"] == "pending"
    wait_request(client, incremental["location"])
    wait_request(client, full["location"])
    wait_until(lambda: vendor_state(client, "shop")["sync"]["state"] == "ok", what="syncs to finish")
    assert vendor_state(client, "shop")["sync"]["last_full_sync_at"] > first


def test_delete_vendor_removes_its_offers_only(sims: Callable[..., Sim], service: Callable[..., httpx.Client]) -> None:
    started = {vid: sims(str(kind)) for kind, vid in VENDOR_IDS.items()}
    client = service()
    for vid, sim in started.items():
        register(client, sim, vid)
    for vid in started:
        wait_synced(client, vid)
    before = all_products(client, limit=100)
    mixed = [p for p in before if "shop" in p["vendors"] and len(p["vendors"]) >= 2]
    only_shop = [p for p in before if p["vendors"] == ["shop"]]
    assert mixed and only_shop
    details = {p["id"]: client.get(f"/products/{p['id']}").json() for p in mixed}
    requests_before = {vid: sim.requests() for vid, sim in started.items()}

    response = client.delete("/vendors/shop", headers=admin())
    assert response.status_code == 204 and response.content == b""

    assert_error(client.get("/vendors/shop"), 404, "not_found")
    assert_error(client.delete("/vendors/shop", headers=admin()), 404, "not_found")
    assert [v["id"] for v in client.get("/vendors").json()["items"]] == ["dj", "woo"]
    assert client.get("/products", params={"vendor": "shop"}).json()["items"] == []
    after = all_products(client, limit=100)
    assert all("shop" not in p["vendors"] for p in after)
    assert sum(p["offer_count"] for p in after) == sum(vendor_state(client, v)["offers"] for v in ("dj", "woo"))
    for p in only_shop:
        assert_error(client.get(f"/products/{p['id']}"), 404, "not_found")
    for detail in details.values():
        # every other vendor's offer of a shared product is still served, from the store
        for vendor_id, vpid in offer_keys(detail) - {k for k in offer_keys(detail) if k[0] == "shop"}:
            response = client.get(f"/vendors/{vendor_id}/products/{vpid}")
            assert response.status_code == 200
            product = response.json()
            assert (vendor_id, vpid) in offer_keys(product)
            assert all(o["vendor_id"] != "shop" for o in product["offers"])
    assert {vid: started[vid].requests() for vid in ("dj", "woo")} == {
        vid: requests_before[vid] for vid in ("dj", "woo")
    }
    # the id can be registered again afterwards
    register(client, started["shop"], "shop")
    wait_synced(client, "shop")
    assert {p["id"] for p in all_products(client, limit=100)} == {p["id"] for p in before}


# -- data changes: ETags follow -------------------------------------------------------------------------------


def test_etags_change_when_vendor_data_changes(sims: Callable[..., Sim], service: Callable[..., httpx.Client]) -> None:
    dj = sims("dummyjson")
    client = service()
    register(client, dj, "dj")
    wait_synced(client, "dj")
    list_tag = client.get("/products", params={"limit": 100}).headers["etag"]

    changed = dj.tick()
    assert changed
    vpid = str(changed[0])
    old = client.get(f"/vendors/dj/products/{vpid}")
    pid, old_tag = old.json()["id"], old.headers["etag"]
    assert client.get(f"/products/{pid}", headers={"If-None-Match": old_tag}).status_code == 304

    sync = client.post("/vendors/dj/sync", headers=admin())
    assert wait_request(client, sync.headers["location"])["status"] == "done"

    listing = client.get("/products", params={"limit": 100}, headers={"If-None-Match": list_tag})
    assert listing.status_code == 200 and listing.headers["etag"] != list_tag
    fresh = client.get(f"/products/{pid}", headers={"If-None-Match": old_tag})
    assert fresh.status_code == 200 and fresh.headers["etag"] != old_tag
    vendor_item = httpx.get(f"{dj.base_url}/products/{vpid}").json()
    offer = next(o for o in fresh.json()["offers"] if o["vendor_product_id"] == vpid)
    assert Decimal(offer["price"]) == Decimal(str(vendor_item["price"]))
    assert offer["stock"] == vendor_item["stock"]
    again = client.get(f"/products/{pid}", headers={"If-None-Match": fresh.headers["etag"]})
    assert again.status_code == 304


# -- the miss path --------------------------------------------------------------------------------------------


def test_miss_fetches_from_the_vendor_once(sims: Callable[..., Sim], service: Callable[..., httpx.Client]) -> None:
    dj = sims("dummyjson")
    client = service()
    register(client, dj, "dj", enabled=False)
    assert_error(client.get("/vendors/dj/products/5"), 409, "conflict")  # disabled: the vendor is not asked
    assert client.patch("/vendors/dj", json={"enabled": True}, headers=admin()).status_code == 200
    assert dj.requests() == 0

    response = client.get("/vendors/dj/products/5")
    assert response.status_code == 200, response.text
    product = response.json()
    assert ("dj", "5") in offer_keys(product)
    assert product["name"] == load_base_items()[4].title
    assert response.headers["x-data-age"] == "0" and "x-data-stale" not in response.headers
    assert response.headers["etag"]
    assert dj.requests() == 1

    again = client.get("/vendors/dj/products/5")
    assert again.status_code == 200 and again.json() == product
    detail = client.get(f"/products/{product['id']}")
    assert detail.status_code == 200 and detail.json() == product
    assert dj.requests() == 1  # served from the store
    assert vendor_state(client, "dj")["offers"] == 1

    missing = client.get("/vendors/dj/products/999")
    error = assert_error(missing, 404, "not_found")
    assert error["details"]["vendor_id"] == "dj" and error["details"]["vendor_product_id"] == "999"
    assert error["details"]["request_id"].startswith("r_")
    assert dj.requests() == 2


def test_slow_vendor_answers_202_then_the_request_completes(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    dj = sims("dummyjson", latency_ms=1500)
    client = service()
    register_unsynced(client, dj, "dj")

    started = time.monotonic()
    response = client.get("/vendors/dj/products/7", params={"wait_ms": 100})
    assert time.monotonic() - started < 1.0
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending" and body["kind"] == "product"
    assert (body["vendor_id"], body["vendor_product_id"]) == ("dj", "7")
    location = response.headers["location"]
    assert location == f"/requests/{body['id']}" == body["location"]
    assert int(response.headers["retry-after"]) >= 1

    done = wait_request(client, location)
    assert done["status"] == "done" and done["product_id"]
    product = client.get(f"/products/{done['product_id']}")
    assert product.status_code == 200
    assert ("dj", "7") in offer_keys(product.json())
    assert client.get(location).json()["status"] == "done"  # still visible after completion
    assert dj.requests() == 1


async def test_concurrent_identical_misses_share_one_vendor_call(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    dj = sims("dummyjson", latency_ms=400)
    client = service()
    register_unsynced(client, dj, "dj")
    before = dj.requests()

    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=15) as aclient:
        responses = await asyncio.gather(
            *(aclient.get("/vendors/dj/products/12", params={"wait_ms": 5000}) for _ in range(10))
        )
        other = await aclient.get("/vendors/dj/products/13", params={"wait_ms": 5000})
    assert [r.status_code for r in responses] == [200] * 10
    assert len({r.content for r in responses}) == 1
    assert len({r.headers["etag"] for r in responses}) == 1
    assert ("dj", "12") in offer_keys(responses[0].json())
    assert other.status_code == 200 and other.json()["id"] != responses[0].json()["id"]
    assert dj.requests() - before == 2  # one call for item 12, one for item 13


def test_wait_ms_above_the_maximum_is_clamped(sims: Callable[..., Sim], service: Callable[..., httpx.Client]) -> None:
    dj = sims("dummyjson", latency_ms=2000)
    client = service(wait_ms_default=100, wait_ms_max=300)
    register_unsynced(client, dj, "dj")

    started = time.monotonic()
    response = client.get("/vendors/dj/products/3", params={"wait_ms": 600_000})
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert 0.25 < elapsed < 1.5
    started = time.monotonic()
    assert client.get("/vendors/dj/products/4").status_code == 202  # the default wait
    assert time.monotonic() - started < 1.0
    assert_error(client.get("/vendors/dj/products/3", params={"wait_ms": -1}), 422, "invalid_input")
    assert wait_request(client, response.headers["location"])["status"] == "done"


def test_vendor_products_of_a_never_synced_vendor(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    woo = sims("woocommerce")
    client = service()
    register_unsynced(client, woo, "woo")

    response = client.get("/vendors/woo/products")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "catalog" and body["vendor_id"] == "woo"
    assert response.headers["location"] == body["location"]
    assert wait_request(client, response.headers["location"])["status"] == "done"

    listing = client.get("/vendors/woo/products", params={"limit": 100})
    assert listing.status_code == 200
    items = listing.json()["items"]
    assert items and all("woo" in p["vendors"] for p in items)
    assert sum(p["offer_count"] for p in items) == woo.items() == vendor_state(client, "woo")["offers"]


def test_stale_data_is_served_at_once_and_refreshed(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    dj = sims("dummyjson", size=10)
    client = service(default_refresh_interval_s=2)  # the API refuses intervals under 10 s
    register(client, dj, "dj")
    assert wait_synced(client, "dj")["refresh_interval_s"] == 2
    product = client.get("/vendors/dj/products/2")
    pid = product.json()["id"]
    assert "x-data-stale" not in product.headers
    time.sleep(2.2)

    dj.configure(latency_ms=800)
    before = dj.requests()
    started = time.monotonic()
    stale = client.get(f"/products/{pid}")
    assert time.monotonic() - started < 0.5  # not waiting for the (slow) vendor
    assert stale.status_code == 200
    assert stale.headers["x-data-stale"] == "true"
    assert int(stale.headers["x-data-age"]) >= 2
    assert stale.json() == product.json()
    via_vendor = client.get("/vendors/dj/products/2")
    assert via_vendor.status_code == 200 and via_vendor.headers["x-data-stale"] == "true"

    wait_until(lambda: dj.requests() > before, timeout=5, what="the refresh to reach the vendor")

    def refreshed() -> httpx.Response | None:
        response = client.get(f"/products/{pid}")
        return response if "x-data-stale" not in response.headers else None

    fresh = wait_until(refreshed, timeout=5, what="the refreshed data")
    assert int(fresh.headers["x-data-age"]) < 2
    # concurrent stale reads of one item cause one refresh call, not one per read
    assert dj.requests() - before == 1


# -- a failing vendor -----------------------------------------------------------------------------------------


def test_failing_vendor_does_not_take_the_service_down(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    dj = sims("dummyjson")
    bad = sims("woocommerce", error_rate=1.0, failure_modes=["500"])
    client = service()
    register(client, dj, "dj")
    wait_synced(client, "dj")
    good_products = all_products(client, limit=100)

    register(client, bad, "bad")
    state = wait_until(
        lambda: (s := vendor_state(client, "bad"))["sync"]["state"] == "failed" and s,
        what="the failing vendor's sync to fail",
    )
    assert "500" in state["sync"]["last_error"]
    assert state["sync"]["last_error_at"] and state["sync"]["syncs_failed"] == 1
    assert state["sync"]["last_success_at"] is None and state["offers"] == 0

    assert client.get("/health").status_code == 200
    assert client.get("/ready").json()["ready"] is True
    assert all_products(client, limit=100) == good_products

    response = client.get("/vendors/bad/products/100", params={"wait_ms": 5000})
    error = assert_error(response, 502, "vendor_error")
    assert error["details"]["vendor_id"] == "bad" and error["details"]["vendor_product_id"] == "100"
    assert error["details"]["request_id"].startswith("r_")
    assert client.get("/vendors/dj/products/1").status_code == 200

    # a vendor that fails after a good sync keeps everything it had
    dj.configure(error_rate=1.0, failure_modes=["500", "malformed"])
    sync = client.post("/vendors/dj/sync", headers=admin())
    failed = wait_request(client, sync.headers["location"])
    assert failed["status"] == "failed" and failed["error"]
    state = vendor_state(client, "dj")
    assert state["sync"]["state"] == "failed" and state["sync"]["last_success_at"]
    assert state["offers"] == dj.items()
    assert all_products(client, limit=100) == good_products

    # and recovers on the next sync
    dj.configure(error_rate=0.0)
    sync = client.post("/vendors/dj/sync", headers=admin())
    assert wait_request(client, sync.headers["location"])["status"] == "done"
    assert vendor_state(client, "dj")["sync"]["state"] == "ok"


def test_failing_vendor_miss_may_answer_202_then_failed(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    bad = sims("dummyjson", error_rate=1.0, failure_modes=["500"], latency_ms=300)
    client = service()
    register_unsynced(client, bad, "bad")
    response = client.get("/vendors/bad/products/1", params={"wait_ms": 50})
    assert response.status_code == 202
    failed = wait_request(client, response.headers["location"])
    assert failed["status"] == "failed" and failed["error_code"] == "vendor_error"
    assert "500" in failed["error"] and failed["product_id"] is None


def test_miss_path_resolves_shopify_and_woocommerce_ids(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    shop, woo = sims("shopify"), sims("woocommerce")
    client = service()
    register_unsynced(client, shop, "shop")
    register_unsynced(client, woo, "woo")
    listing = httpx.get(
        f"{shop.base_url}/admin/api/2024-01/products.json",
        params={"limit": 250},
        headers={"X-Shopify-Access-Token": SHOPIFY_TOKEN},
    ).json()["products"]
    two = [p for p in listing if len(p["variants"]) >= 2]
    assert len(two) >= 2
    before = shop.requests()

    # by product id: the product's first variant answers, and all its variants are stored
    parent = two[0]
    response = client.get(f"/vendors/shop/products/{parent['id']}")
    assert response.status_code == 200, response.text
    assert any(o["parent_id"] == str(parent["id"]) for o in response.json()["offers"] if o["vendor_id"] == "shop")
    second = str(parent["variants"][1]["id"])
    stored = client.get(f"/vendors/shop/products/{second}")
    assert stored.status_code == 200 and ("shop", second) in offer_keys(stored.json())
    assert shop.requests() - before == 1

    # by variant id of a product never seen: resolved through the variant
    variant = str(two[1]["variants"][1]["id"])
    response = client.get(f"/vendors/shop/products/{variant}")
    assert response.status_code == 200, response.text
    assert ("shop", variant) in offer_keys(response.json())

    # non-numeric ids cannot exist on either platform: 404 without asking
    asked = shop.requests(), woo.requests()
    assert_error(client.get("/vendors/shop/products/abc"), 404, "not_found")
    assert_error(client.get("/vendors/woo/products/abc"), 404, "not_found")
    assert (shop.requests(), woo.requests()) == asked

    woo_items = httpx.get(
        f"{woo.base_url}/wp-json/wc/v3/products", params={"consumer_key": WOO_KEY, "consumer_secret": WOO_SECRET}
    ).json()
    woo_id = str(woo_items[0]["id"])
    response = client.get(f"/vendors/woo/products/{woo_id}")
    assert response.status_code == 200, response.text
    assert ("woo", woo_id) in offer_keys(response.json())
    assert_error(client.get("/vendors/woo/products/99999999"), 404, "not_found")


def test_full_queue_answers_503_with_retry_after(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    dj = sims("dummyjson", latency_ms=800)
    client = service(workers=1, interactive_workers=1, queue_size=1)  # misses are the interactive lane's work
    register_unsynced(client, dj, "dj")

    first = client.get("/vendors/dj/products/1", params={"wait_ms": 0})
    assert first.status_code == 202
    wait_until(lambda: dj.requests() == 1, what="the worker to take the first request")
    second = client.get("/vendors/dj/products/2", params={"wait_ms": 0})
    assert second.status_code == 202  # waits in the queue
    third = client.get("/vendors/dj/products/3", params={"wait_ms": 0})
    error = assert_error(third, 503, "unavailable")
    assert int(third.headers["retry-after"]) >= 1
    assert error["details"] == {"queue_size": 1, "lane": "interactive"}
    # an identical request joins the queued one instead of needing a slot
    joined = client.get("/vendors/dj/products/2", params={"wait_ms": 0})
    assert joined.status_code == 202 and joined.json()["id"] == second.json()["id"]
    assert client.get("/ready").json()["queue_depth"] == 1

    assert wait_request(client, first.headers["location"])["status"] == "done"
    assert wait_request(client, second.headers["location"])["status"] == "done"
    # the refused request was not left behind: asking again fetches it
    assert client.get("/vendors/dj/products/3", params={"wait_ms": 3000}).status_code == 200
    assert dj.requests() == 3


def test_register_with_a_full_queue_is_all_or_nothing(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    dj, other = sims("dummyjson", latency_ms=800), sims("woocommerce")
    client = service(workers=1, queue_size=1)
    register_unsynced(client, dj, "dj")
    client.get("/vendors/dj/products/1", params={"wait_ms": 0})
    wait_until(lambda: dj.requests() == 1, what="the worker to take the first request")
    assert client.get("/vendors/dj/products/2", params={"wait_ms": 0}).status_code == 202
    response = client.post("/vendors", json=other.vendor_body("woo"), headers=admin())
    created = client.get("/vendors/woo").status_code == 200
    # either it was registered (201, its sync left to the scheduler), or refused and not registered
    assert (response.status_code, created) in {(201, True), (503, False)}, (response.status_code, created)


def test_shutdown_during_a_sync_leaves_it_interrupted(sims: Callable[..., Sim], tmp_path: Path) -> None:
    # Pages are read ahead in parallel (the vendor's concurrency): 4,000 items keep the sync running for seconds
    # after its first page is stored (400 could all be in before the shutdown).
    slow = sims("dummyjson", size=4000, latency_ms=400)
    db_path = tmp_path / "catalog.db"
    with ApiServer(fast_settings(db_path)) as api, httpx.Client(base_url=api.base_url, timeout=15) as client:
        register(client, slow, "dj")
        wait_until(lambda: vendor_state(client, "dj")["offers"] > 0, what="the first page to be stored")
        assert vendor_state(client, "dj")["sync"]["state"] == "running"
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        state, failed, error = conn.execute(
            "SELECT state, syncs_failed, last_error FROM vendor_sync WHERE vendor_id = 'dj'"
        ).fetchone()
    # "interrupted" is what the scheduler resumes at once on the next start; "failed" waits retry_failed_sync_s
    assert (state, failed) == ("interrupted", 0), (state, failed, error)


def test_delete_vendor_during_its_sync(sims: Callable[..., Sim], service: Callable[..., httpx.Client]) -> None:
    slow = sims("dummyjson", size=400, latency_ms=400)
    client = service()
    register(client, slow, "dj")
    wait_until(lambda: vendor_state(client, "dj")["offers"] > 0, what="the first page to be stored")
    assert vendor_state(client, "dj")["sync"]["state"] == "running"

    assert client.delete("/vendors/dj", headers=admin()).status_code == 204
    assert_error(client.get("/vendors/dj"), 404, "not_found")
    time.sleep(1.0)  # what the interrupted sync still had in flight
    assert client.get("/products").json()["items"] == []
    assert client.get("/ready").json()["ready"] is True

    fast = sims("dummyjson", size=30)
    register(client, fast, "dj")
    assert wait_synced(client, "dj")["offers"] == 30
    time.sleep(0.5)
    state = vendor_state(client, "dj")
    assert state["offers"] == 30 and state["sync"]["state"] == "ok"
    assert sum(p["offer_count"] for p in all_products(client, limit=100)) == 30


def test_openapi_documents_every_query_parameter_and_all_refs_resolve(tmp_path: Path) -> None:
    from app.main import create_app

    spec = create_app(fast_settings(tmp_path / "spec.db")).openapi()
    names = [p["name"] for p in spec["paths"]["/products"]["get"]["parameters"]]
    assert names == [
        "q",
        "brand",
        "category",
        "min_price",
        "max_price",
        "currency",
        "in_stock",
        "sort",
        "limit",
        "cursor",
        "fields",
        "vendor",
        "facets",
        "facet_size",
    ]
    facets = next(p for p in spec["paths"]["/products"]["get"]["parameters"] if p["name"] == "facets")
    assert facets["schema"]["items"]["enum"] == ["brand", "category", "vendor", "price", "in_stock"]
    assert "facets" in spec["components"]["schemas"]["ProductList"]["properties"]
    sort = next(p for p in spec["paths"]["/products"]["get"]["parameters"] if p["name"] == "sort")
    assert sort["schema"]["enum"] == ["relevance", "price", "-price", "updated"]

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    components = spec["components"]["schemas"]
    missing = {r for r in refs(spec) if r.removeprefix("#/components/schemas/") not in components}
    assert missing == set()
    assert {"201", "401", "403", "409", "422"} <= set(spec["paths"]["/vendors"]["post"]["responses"])


def test_bad_items_are_skipped_counted_by_reason_and_lose_nothing(
    sims: Callable[..., Sim], service: Callable[..., httpx.Client]
) -> None:
    shop = sims("shopify")
    client = service()
    register(client, shop, "shop")
    clean = wait_synced(client, "shop")
    assert clean["sync"]["items_skipped"] == 0
    products_before = {p["id"] for p in all_products(client, vendor="shop")}

    shop.configure(bad_item_rate=0.3)
    assert client.post("/vendors/shop/sync", params={"full": "true"}, headers=admin()).status_code == 202
    state = wait_synced(client, "shop", syncs_ok=2)
    sync = state["sync"]
    assert sync["items_skipped"] > 0
    assert sum(sync["skip_reasons"].values()) == sync["items_skipped"]
    assert all(reason and count > 0 for reason, count in sync["skip_reasons"].items())
    # a sync that skips items keeps what was stored before: every earlier product is still there
    assert products_before <= {p["id"] for p in all_products(client, vendor="shop")}
    assert state["offers"] == clean["offers"]
