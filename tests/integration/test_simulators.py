"""The vendor simulators over real HTTP: what a vendor client will meet, platform by platform.

Each test starts its own server (cheap: the catalog is cached per size) so ticks and config patches never
leak between tests.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import orjson
import pytest

from simulators.catalog import build_catalog
from simulators.config import SimConfig
from simulators.server import DEMO_SIMULATORS, SimulatorServer

SHOPIFY_TOKEN = {"X-Shopify-Access-Token": "shpat_demo"}
WOO_KEYS = {"consumer_key": "ck_demo", "consumer_secret": "cs_demo"}
PRODUCTS_JSON = "/admin/api/2024-01/products.json"
WOO_PRODUCTS = "/wp-json/wc/v3/products"


def dummyjson(**overrides: Any) -> SimConfig:
    return SimConfig.model_validate({"kind": "dummyjson", "seed": 1, **overrides})


def shopify(**overrides: Any) -> SimConfig:
    return SimConfig.model_validate({"kind": "shopify", "name": "Northwind Outfitters", "seed": 2, **overrides})


def woocommerce(**overrides: Any) -> SimConfig:
    return SimConfig.model_validate({"kind": "woocommerce", "name": "Bazaar Istanbul", "seed": 3, **overrides})


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[SimulatorServer] = []
    clients: list[httpx.Client] = []

    def start(config: SimConfig) -> tuple[SimulatorServer, httpx.Client]:
        server = SimulatorServer(config).start()
        servers.append(server)
        client = httpx.Client(base_url=server.base_url, timeout=5)
        clients.append(client)
        return server, client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def is_gtin13(code: str) -> bool:
    if len(code) != 13 or not code.isdigit():
        return False
    return sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(code)) % 10 == 0


def walk_shopify(client: httpx.Client, url: str, **params: Any) -> list[dict[str, Any]]:
    products: list[dict[str, Any]] = []
    response = client.get(url, params=params, headers=SHOPIFY_TOKEN)
    while True:
        assert response.status_code == 200, response.text
        products += response.json()["products"]
        next_url = response.links.get("next", {}).get("url")
        if not next_url:
            return products
        response = client.get(next_url, headers=SHOPIFY_TOKEN)


def walk_woo(client: httpx.Client, **params: Any) -> tuple[list[dict[str, Any]], int, int]:
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        response = client.get(WOO_PRODUCTS, params={**WOO_KEYS, **params, "page": page})
        assert response.status_code == 200, response.text
        items += response.json()
        total, pages = int(response.headers["X-WP-Total"]), int(response.headers["X-WP-TotalPages"])
        if page >= pages:
            return items, total, pages
        assert "next" in response.links
        page += 1


def stats(client: httpx.Client) -> dict[str, Any]:
    data: dict[str, Any] = client.get("/_sim/stats").json()
    return data


# -- catalog --------------------------------------------------------------------------------------------------


def test_catalog_starts_with_the_real_items_and_clones_deterministically() -> None:
    small = build_catalog(194)
    assert [item.id for item in small] == list(range(1, 195))
    assert small[0].title == "Essence Mascara Lash Princess"
    big = build_catalog(2_000)
    assert big[:194] == small
    assert big == build_catalog(2_000)
    assert big[194].title == "Essence Mascara Lash Princess #1"
    assert len({i.id for i in big}) == len({i.sku for i in big}) == len({i.barcode for i in big}) == 2_000


# -- DummyJSON ------------------------------------------------------------------------------------------------


def test_dummyjson_pagination_total_skip_limit(serve: Any) -> None:
    _, client = serve(dummyjson())
    first = client.get("/products").json()
    assert (first["total"], first["skip"], first["limit"], len(first["products"])) == (194, 0, 30, 30)
    seen: list[int] = []
    skip = 0
    while True:
        page = client.get("/products", params={"limit": 50, "skip": skip}).json()
        assert page["skip"] == skip and page["limit"] == len(page["products"])
        if not page["products"]:
            break
        seen += [p["id"] for p in page["products"]]
        skip += 50
    assert seen == list(range(1, 195))
    everything = client.get("/products", params={"limit": 0}).json()
    assert everything["limit"] == 194 and len(everything["products"]) == 194
    selected = client.get("/products", params={"limit": 2, "select": "title,price"}).json()["products"]
    assert selected == [
        {"id": 1, "title": "Essence Mascara Lash Princess", "price": 9.99},
        {"id": 2, "title": "Eyeshadow Palette with Mirror", "price": 19.99},
    ]
    item = client.get("/products/1").json()
    assert item["sku"] == "BEA-ESS-ESS-001" and item["meta"]["barcode"] == "5784719087687"
    missing = client.get("/products/999")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Product with id '999' not found"}
    assert client.get("/products", params={"limit": "x"}).status_code == 400


# -- Shopify --------------------------------------------------------------------------------------------------


def test_shopify_link_cursor_walks_every_carried_product_once(serve: Any) -> None:
    _, client = serve(shopify())
    carried = stats(client)["items"]
    assert 0.6 * 194 < carried < 0.8 * 194
    products = walk_shopify(client, PRODUCTS_JSON, limit=25)
    ids = [p["id"] for p in products]
    assert len(ids) == carried == len(set(ids))
    assert ids == sorted(ids) and min(ids) > 10**12
    count = client.get("/admin/api/2024-01/products/count.json", headers=SHOPIFY_TOKEN).json()
    assert count == {"count": carried}

    # The default page size, the Link format and the way back.
    first = client.get(PRODUCTS_JSON, headers=SHOPIFY_TOKEN)
    assert len(first.json()["products"]) == 50 and "previous" not in first.links
    assert first.headers["X-Shopify-Shop-Api-Call-Limit"].endswith("/40")
    assert first.headers["Link"].startswith(f"<{client.base_url}{PRODUCTS_JSON}?limit=50&page_info=")
    second = client.get(first.links["next"]["url"], headers=SHOPIFY_TOKEN)
    assert second.headers["Link"].count('rel="previous"') == 1
    back = client.get(second.links["previous"]["url"], headers=SHOPIFY_TOKEN)
    assert back.json() == first.json()


def test_shopify_refuses_what_shopify_refuses(serve: Any) -> None:
    _, client = serve(shopify())
    unauthorized = client.get(PRODUCTS_JSON, headers={"X-Shopify-Access-Token": "wrong"})
    assert unauthorized.status_code == 401
    assert unauthorized.json() == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }
    assert client.get(PRODUCTS_JSON).status_code == 401
    too_many = client.get(PRODUCTS_JSON, params={"limit": 251}, headers=SHOPIFY_TOKEN)
    assert too_many.status_code == 400 and "limit" in too_many.json()["errors"]
    next_url = client.get(PRODUCTS_JSON, headers=SHOPIFY_TOKEN).links["next"]["url"]
    mixed = client.get(f"{next_url}&updated_at_min=2020-01-01T00:00:00Z", headers=SHOPIFY_TOKEN)
    assert mixed.status_code == 400 and "updated_at_min" in mixed.json()["errors"]
    bad_cursor = client.get(PRODUCTS_JSON, params={"page_info": "garbage"}, headers=SHOPIFY_TOKEN)
    assert bad_cursor.status_code == 400
    missing = client.get("/admin/api/2024-01/products/123.json", headers=SHOPIFY_TOKEN)
    assert missing.status_code == 404 and missing.json() == {"errors": "Not Found"}


def test_shopify_products_look_like_a_real_store(serve: Any) -> None:
    _, client = serve(shopify())
    products = walk_shopify(client, PRODUCTS_JSON, limit=250)
    base = {item.sku: item for item in build_catalog(194)}
    two_variants = 0
    barcodes: list[str] = []
    for product in products:
        assert product["status"] == "active" and product["body_html"].startswith("<p>")
        assert isinstance(product["tags"], str)
        first, *rest = product["variants"]
        two_variants += bool(rest)
        # A product of two variants suffixes each variant's SKU with it ("-M", "-128GB"): items of their own.
        sku = first["sku"].rsplit("-", 1)[0] if rest else first["sku"]
        normalised = sku.upper().replace(" ", "").replace("-", "")
        original = next(i for s, i in base.items() if s.replace("-", "") == normalised)
        assert product["vendor"] == (original.brand or "Northwind Outfitters")
        assert product["product_type"] == original.category
        # Prices are the USD ones converted to EUR at 0.92, as strings with two decimals.
        assert first["price"] == str((original.price * Decimal("0.92")).quantize(Decimal("0.01"), ROUND_HALF_UP))
        if rest:
            assert rest[0]["sku"] == f"{sku}-{rest[0]['title'].replace(' ', '')}" and not rest[0]["barcode"]
            assert not first["barcode"]
        if first["barcode"]:
            barcodes.append(first["barcode"])
            assert first["barcode"][:12] == original.barcode[:12]
        assert product["updated_at"].endswith("+01:00")
    assert 0.15 < two_variants / len(products) < 0.45
    assert 0.2 < len(barcodes) / len(products) < 0.5
    assert all(is_gtin13(code) for code in barcodes)

    one = products[0]
    single = client.get(f"/admin/api/2024-01/products/{one['id']}.json", headers=SHOPIFY_TOKEN).json()
    assert single == {"product": one}
    variant_id = one["variants"][0]["id"]
    variant = client.get(f"/admin/api/2024-01/variants/{variant_id}.json", headers=SHOPIFY_TOKEN).json()
    assert variant == {"variant": one["variants"][0]}
    fields = client.get(PRODUCTS_JSON, params={"limit": 1, "fields": "id,title"}, headers=SHOPIFY_TOKEN).json()
    assert fields == {"products": [{"id": one["id"], "title": one["title"]}]}


# -- WooCommerce ----------------------------------------------------------------------------------------------


def test_woocommerce_pages_and_totals(serve: Any) -> None:
    _, client = serve(woocommerce())
    carried = stats(client)["items"]
    items, total, pages = walk_woo(client, per_page=20)
    ids = [item["id"] for item in items]
    assert len(ids) == total == carried == len(set(ids))
    assert pages == -(-carried // 20)
    assert ids == sorted(ids, reverse=True)  # date ID desc: the default order
    default = client.get(WOO_PRODUCTS, params=WOO_KEYS)
    assert len(default.json()) == 10 and default.headers["X-WP-TotalPages"] == str(-(-carried // 10))
    past_end = client.get(WOO_PRODUCTS, params={**WOO_KEYS, "page": pages + 1, "per_page": 20})
    assert past_end.status_code == 200 and past_end.json() == []
    assert past_end.headers["X-WP-Total"] == str(carried) and "prev" in past_end.links
    too_many = client.get(WOO_PRODUCTS, params={**WOO_KEYS, "per_page": 101})
    assert too_many.status_code == 400 and too_many.json()["code"] == "rest_invalid_param"

    item = items[0]
    assert item["type"] == "simple" and item["status"] == "publish"
    assert item["price"].replace(".", "").isdigit() and "&#8378;" in item["price_html"]
    assert "T" in item["date_modified"] and "+" not in item["date_modified"]
    gtins = [i["global_unique_id"] for i in items if i["global_unique_id"]]
    assert 0.15 < len(gtins) / len(items) < 0.45 and all(is_gtin13(g) for g in gtins)
    assert {i["stock_status"] for i in items} <= {"instock", "outofstock", "onbackorder"}
    single = client.get(f"{WOO_PRODUCTS}/{item['id']}", params=WOO_KEYS)
    assert single.json() == item
    missing = client.get(f"{WOO_PRODUCTS}/5", params=WOO_KEYS)
    assert missing.status_code == 404
    assert missing.json() == {
        "code": "woocommerce_rest_product_invalid_id",
        "message": "Invalid ID.",
        "data": {"status": 404},
    }


def test_woocommerce_price_html_uses_turkish_formatting(serve: Any) -> None:
    _, client = serve(woocommerce())
    items, _, _ = walk_woo(client, per_page=100)
    plain = next(i for i in items if not i["on_sale"] and float(i["price"]) >= 1000)
    whole, cents = plain["price"].split(".")
    expected = f"{int(whole):,}".replace(",", ".") + "," + cents
    assert plain["price_html"] == (
        '<span class="woocommerce-Price-amount amount"><bdi><span class="woocommerce-Price-currencySymbol">'
        f"&#8378;</span>{expected}</bdi></span>"
    )


def test_woocommerce_auth(serve: Any) -> None:
    _, client = serve(woocommerce())
    anonymous = client.get(WOO_PRODUCTS)
    assert anonymous.status_code == 401
    assert anonymous.json() == {
        "code": "woocommerce_rest_cannot_view",
        "message": "Sorry, you cannot list resources.",
        "data": {"status": 401},
    }
    wrong_key = client.get(WOO_PRODUCTS, params={"consumer_key": "ck_x", "consumer_secret": "cs_demo"})
    assert wrong_key.status_code == 401 and wrong_key.json()["message"] == "Consumer key is invalid."
    wrong_secret = client.get(WOO_PRODUCTS, auth=("ck_demo", "nope"))
    assert wrong_secret.status_code == 401 and wrong_secret.json()["message"] == "Consumer secret is invalid."
    basic = "Basic " + base64.b64encode(b"ck_demo:cs_demo").decode()
    assert client.get(WOO_PRODUCTS, headers={"Authorization": basic}).status_code == 200


# -- changes over time ----------------------------------------------------------------------------------------


def test_updated_filters_return_only_what_a_tick_changed(serve: Any) -> None:
    _, shop = serve(shopify())
    _, woo = serve(woocommerce())
    _, dj = serve(dummyjson())
    since = datetime.now(UTC).replace(microsecond=0)
    shop_changed = shop.post("/_sim/tick").json()
    woo_changed = woo.post("/_sim/tick").json()
    dj_changed = dj.post("/_sim/tick").json()
    for changed in (shop_changed, woo_changed, dj_changed):
        assert changed["changed"] == len(changed["ids"]) > 0

    fresh = walk_shopify(shop, PRODUCTS_JSON, limit=2, updated_at_min=since.isoformat())
    assert sorted(p["id"] for p in fresh) == sorted(shop_changed["ids"])
    count = shop.get(
        "/admin/api/2024-01/products/count.json", params={"updated_at_min": since.isoformat()}, headers=SHOPIFY_TOKEN
    )
    assert count.json() == {"count": shop_changed["changed"]}
    assert all(datetime.fromisoformat(p["updated_at"]) >= since for p in fresh)

    # modified_after is exclusive and, without an offset, read in the shop's own time zone (UTC+3).
    before = since - timedelta(seconds=1)
    fresh_woo, total, _ = walk_woo(woo, per_page=3, modified_after=before.isoformat())
    assert total == woo_changed["changed"]
    assert sorted(i["id"] for i in fresh_woo) == sorted(woo_changed["ids"])
    local = (before + timedelta(hours=3)).replace(tzinfo=None).isoformat()
    assert walk_woo(woo, per_page=100, modified_after=local)[1] == total
    gmt = before.replace(tzinfo=None).isoformat()
    assert walk_woo(woo, per_page=100, modified_after=gmt, dates_are_gmt="true")[1] == total

    changed_id = dj_changed["ids"][0]
    item = dj.get(f"/products/{changed_id}").json()
    assert datetime.fromisoformat(item["meta"]["updatedAt"].replace("Z", "+00:00")) >= since


def test_the_clock_ticks_on_its_own_and_stops_when_told(serve: Any) -> None:
    _, client = serve(dummyjson())
    client.patch("/_sim/config", json={"change_interval_s": 0.1})
    deadline = time.monotonic() + 5
    while stats(client)["ticks"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(client)["ticks"] >= 2 and stats(client)["changed_items"] >= 10
    client.patch("/_sim/config", json={"change_interval_s": 0})
    ticks = stats(client)["ticks"]
    time.sleep(0.3)
    assert stats(client)["ticks"] == ticks


def test_bad_items_are_served_broken(serve: Any) -> None:
    _, client = serve(dummyjson())
    assert client.patch("/_sim/config", json={"bad_item_rate": 0.2}).status_code == 200
    products = client.get("/products", params={"limit": 0}).json()["products"]
    broken = [p for p in products if "title" not in p or not isinstance(p["price"], float | int)]
    assert 0.1 * 194 < len(broken) < 0.3 * 194
    again = client.get("/products", params={"limit": 0}).json()["products"]
    assert again == products


# -- failure modes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [dummyjson(), shopify(), woocommerce()], ids=lambda c: str(c.kind))
def test_injected_500_429_and_malformed(serve: Any, config: SimConfig) -> None:
    _, client = serve(config)
    url = {"dummyjson": "/products", "shopify": PRODUCTS_JSON, "woocommerce": WOO_PRODUCTS}[config.kind]
    kwargs: dict[str, Any] = {"headers": SHOPIFY_TOKEN, "params": WOO_KEYS}

    client.patch("/_sim/config", json={"error_rate": 1, "failure_modes": ["500"]})
    assert client.get(url, **kwargs).status_code == 500

    client.patch("/_sim/config", json={"failure_modes": ["429"], "retry_after_s": 2})
    limited = client.get(url, **kwargs)
    assert limited.status_code == 429
    assert float(limited.headers["Retry-After"]) == 2

    client.patch("/_sim/config", json={"failure_modes": ["malformed"]})
    malformed = client.get(url, **kwargs)
    assert malformed.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(malformed.content)

    client.patch("/_sim/config", json={"error_rate": 0})
    assert client.get(url, **kwargs).status_code == 200
    failures = stats(client)["failures"]
    assert (failures["500"], failures["429"], failures["malformed"]) == (1, 1, 1)
    assert client.get("/_sim/config").json()["error_rate"] == 0


def test_hang_times_out_the_client_and_does_not_block_shutdown() -> None:
    server = SimulatorServer(woocommerce(error_rate=1, failure_modes=["hang"], hang_s=0.2)).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=5) as client:
            started = time.monotonic()
            assert client.get(WOO_PRODUCTS, params=WOO_KEYS).status_code == 200
            assert time.monotonic() - started >= 0.2
            client.patch("/_sim/config", json={"hang_s": 30})
            with pytest.raises(httpx.ReadTimeout):
                client.get(WOO_PRODUCTS, params=WOO_KEYS, timeout=0.3)
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 3


def test_latency_is_added_to_catalog_requests_only(serve: Any) -> None:
    _, client = serve(dummyjson(latency_ms=400))
    started = time.monotonic()
    client.get("/_sim/stats")
    assert time.monotonic() - started < 0.4
    started = time.monotonic()
    client.get("/products/1")
    assert time.monotonic() - started >= 0.4


def test_config_patch_rejects_fields_that_cannot_change(serve: Any) -> None:
    _, client = serve(shopify())
    assert client.patch("/_sim/config", json={"seed": 9}).status_code == 422
    assert client.patch("/_sim/config", json={"error_rate": 2}).status_code == 422
    config = client.get("/_sim/config").json()
    assert (config["kind"], config["name"], config["currency"], config["seed"]) == (
        "shopify",
        "Northwind Outfitters",
        "EUR",
        2,
    )


# -- scale ----------------------------------------------------------------------------------------------------


async def test_100k_catalog_serves_deep_pages() -> None:
    size = 100_000
    async with (
        SimulatorServer(dummyjson(size=size)) as dj_server,
        SimulatorServer(woocommerce(size=size)) as woo_server,
        SimulatorServer(shopify(size=size)) as shop_server,
        httpx.AsyncClient(timeout=10) as client,
    ):
        page = (await client.get(f"{dj_server.base_url}/products", params={"limit": 50, "skip": 99_950})).json()
        assert page["total"] == size and [p["id"] for p in page["products"]] == list(range(99_951, 100_001))
        assert page["products"][-1]["title"].endswith(f" #{(size - 1) // 194}")

        woo_total = (await client.get(f"{woo_server.base_url}/_sim/stats")).json()["items"]
        deep = await client.get(
            f"{woo_server.base_url}{WOO_PRODUCTS}", params={**WOO_KEYS, "per_page": 100, "page": 500}
        )
        assert deep.headers["X-WP-Total"] == str(woo_total) and len(deep.json()) == 100
        assert len({i["id"] for i in deep.json()}) == 100

        count = await client.get(f"{shop_server.base_url}/admin/api/2024-01/products/count.json", headers=SHOPIFY_TOKEN)
        assert count.json()["count"] > 65_000
        first = await client.get(f"{shop_server.base_url}{PRODUCTS_JSON}", params={"limit": 250}, headers=SHOPIFY_TOKEN)
        last_id = first.json()["products"][-1]["id"]
        tail = await client.get(
            f"{shop_server.base_url}{PRODUCTS_JSON}", params={"limit": 250, "since_id": last_id}, headers=SHOPIFY_TOKEN
        )
        tail_ids = [p["id"] for p in tail.json()["products"]]
        assert len(tail_ids) == 250 and min(tail_ids) > last_id


def test_demo_set_matches_the_demo_vendors() -> None:
    kinds = {(str(config.kind), config.name, port) for config, port in DEMO_SIMULATORS}
    assert kinds == {
        ("dummyjson", "DummyJSON", 9101),
        ("shopify", "Northwind Outfitters", 9102),
        ("woocommerce", "Bazaar Istanbul", 9103),
    }
    assert all(config.change_interval_s == 60 for config, _ in DEMO_SIMULATORS)
