"""Currencies over real HTTP: display conversion, per-currency ETags, and price order across vendor currencies.

Two simulators list in different currencies (DummyJSON in USD, WooCommerce in TRY), so a price sort that
compared raw numbers would put every lira price after every dollar price; the expected order is computed here
with the same rates file the service loads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.bootstrap import load_rates
from app.domain.models import VendorKind
from app.domain.money import Rates, convert, parse_rates
from app.domain.queries import ProductQuery, Sort
from app.store.sqlite.catalog import SqliteCatalog
from tests.integration.test_sqlite_catalog import offer, with_vendors
from tests.support import (
    ApiServer,
    admin,
    all_products,
    assert_error,
    fast_settings,
    running_sims,
    sim_config,
    wait_synced,
)

SIZE = 30
VENDORS = {VendorKind.DUMMYJSON: ("dj", "USD"), VendorKind.WOOCOMMERCE: ("woo", "TRY")}


@dataclass
class Shop:
    client: httpx.Client
    rates: Rates


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    settings = fast_settings(tmp_path_factory.mktemp("currencies") / "catalog.db")
    configs = [sim_config(kind, size=SIZE, currency=cur) for kind, (_, cur) in VENDORS.items()]
    with (
        running_sims(*configs) as sims,
        ApiServer(settings) as api,
        httpx.Client(base_url=api.base_url, timeout=15) as client,
    ):
        for sim in sims:
            vid = VENDORS[sim.kind][0]
            response = client.post("/vendors", json=sim.vendor_body(vid), headers=admin())
            assert response.status_code == 201, response.text
        for vid, _ in VENDORS.values():
            wait_synced(client, vid)
        yield Shop(client, load_rates(settings))


def base_value(rates: Rates, item: dict[str, Any]) -> Decimal:
    """What the service should sort by: the lowest offer price in the base currency, over every currency."""
    return min(rates.exact(Decimal(p["min"]), p["currency"], rates.base) for p in item["prices"])


def expected_display(rates: Rates, item: dict[str, Any], currency: str) -> dict[str, Any]:
    return {
        "currency": currency,
        "min_price": str(min(convert(rates, Decimal(p["min"]), p["currency"], currency) for p in item["prices"])),
        "max_price": str(max(convert(rates, Decimal(p["max"]), p["currency"], currency) for p in item["prices"])),
        "rates_date": rates.date.isoformat(),
    }


def test_list_adds_converted_prices_and_keeps_the_originals(shop: Shop) -> None:
    plain = {i["id"]: i for i in all_products(shop.client)}
    converted = all_products(shop.client, currency="EUR")
    assert {i["id"] for i in converted} == set(plain)
    assert {i["currency"] for i in converted} == {"USD", "TRY"}
    for item in converted:
        display = item.pop("display")
        assert item == plain[item["id"]]  # originals untouched
        assert display == expected_display(shop.rates, item, "EUR")
        if len(item["prices"]) == 1:
            assert display["min_price"] == str(convert(shop.rates, Decimal(item["min_price"]), item["currency"], "EUR"))
    assert all("display" not in i for i in plain.values())


def test_detail_converts_every_offer(shop: Shop) -> None:
    items = all_products(shop.client, vendor="woo", limit=5)
    for item in items[:5]:
        plain = shop.client.get(f"/products/{item['id']}").json()
        body = shop.client.get(f"/products/{item['id']}", params={"currency": "GBP"}).json()
        assert body["display"] == expected_display(shop.rates, plain, "GBP")
        for before, after in zip(plain["offers"], body["offers"], strict=True):
            shown = after.pop("display_price")
            assert after == before
            assert shown == str(convert(shop.rates, Decimal(before["price"]), before["currency"], "GBP"))

    listing = shop.client.get("/vendors/dj/products", params={"currency": "JPY", "limit": 3}).json()
    for item in listing["items"]:
        assert item["display"] == expected_display(shop.rates, item, "JPY")
        assert "." not in item["display"]["min_price"]  # yen have no minor units
    one = shop.client.get("/vendors/dj/products/1", params={"currency": "EUR"})
    assert one.status_code == 200, one.text
    offers = one.json()["offers"]
    assert all(
        o["display_price"] == str(convert(shop.rates, Decimal(o["price"]), o["currency"], "EUR")) for o in offers
    )


def test_etag_differs_per_currency(shop: Shop) -> None:
    pid = all_products(shop.client, limit=5)[0]["id"]
    for path in (f"/products/{pid}", "/products", "/vendors/woo/products"):
        tags = {
            cur: shop.client.get(path, params={"currency": cur} if cur else {}).headers["etag"]
            for cur in ("", "EUR", "USD")
        }
        assert len(set(tags.values())) == 3, tags
        again = shop.client.get(path, params={"currency": "EUR"}, headers={"If-None-Match": tags["EUR"]})
        assert again.status_code == 304
        other = shop.client.get(path, params={"currency": "USD"}, headers={"If-None-Match": tags["EUR"]})
        assert other.status_code == 200 and "display" in other.text


@pytest.mark.parametrize("code", ["XYZ", "EURO", "12", "", "eu"])
def test_invalid_currency_is_422(shop: Shop, code: str) -> None:
    for path in ("/products", "/products/p_0000000000000000", "/vendors/dj/products", "/vendors/dj/products/1"):
        error = assert_error(shop.client.get(path, params={"currency": code}), 422, "invalid_input")
        assert "currency" in str(error)


def test_valid_currency_without_a_rate_is_422(shop: Shop) -> None:
    assert not shop.rates.knows("ZAR")
    error = assert_error(shop.client.get("/products", params={"currency": "ZAR"}), 422, "invalid_input")
    assert "ZAR" in error["message"] and "rate" in error["message"]
    assert error["details"] == {"parameter": "currency", "rates_date": shop.rates.date.isoformat()}


@pytest.mark.parametrize("sort", ["price", "-price"])
def test_price_sort_orders_across_currencies(shop: Shop, sort: str) -> None:
    items = all_products(shop.client, sort=sort, limit=7)
    assert {i["currency"] for i in items} == {"USD", "TRY"}
    values = [base_value(shop.rates, i) for i in items]
    assert values == sorted(values, reverse=sort == "-price")
    # Raw numbers would order differently: the test would not notice a sort on unconverted prices otherwise.
    raw = [Decimal(i["min_price"]) for i in items]
    assert raw != sorted(raw, reverse=sort == "-price")


def test_price_filters_are_in_the_asked_currency_or_else_the_base(shop: Shop) -> None:
    everything = all_products(shop.client)
    values = {i["id"]: base_value(shop.rates, i) for i in everything}
    low, high = sorted(values.values())[len(values) // 4], sorted(values.values())[3 * len(values) // 4]
    low_usd = shop.rates.convert(low, "EUR", "USD") + Decimal("0.003")
    high_usd = shop.rates.convert(high, "EUR", "USD") + Decimal("0.003")

    in_usd = all_products(shop.client, currency="USD", min_price=str(low_usd), max_price=str(high_usd), sort="price")
    lo, hi = (shop.rates.exact(b, "USD", "EUR") for b in (low_usd, high_usd))
    assert [i["id"] for i in in_usd] == [
        i["id"] for i in sorted(everything, key=lambda i: (values[i["id"]], i["id"])) if lo <= values[i["id"]] <= hi
    ]
    assert {i["currency"] for i in in_usd} == {"USD", "TRY"}
    assert all(i["display"]["currency"] == "USD" for i in in_usd)

    low_eur, high_eur = low + Decimal("0.001"), high + Decimal("0.001")
    in_base = all_products(shop.client, min_price=str(low_eur), max_price=str(high_eur))
    assert {i["id"] for i in in_base} == {pid for pid, v in values.items() if low_eur <= v <= high_eur}


async def test_existing_rows_get_base_prices_and_follow_changed_rates(tmp_path: Path) -> None:
    rates = parse_rates(b'{"base": "EUR", "date": "2026-01-01", "rates": {"USD": "2", "TRY": "40"}}')
    store = SqliteCatalog(tmp_path / "c.db", rates=rates)
    store.open()
    await with_vendors(store, "a", "b")
    await store.upsert_offers(
        [
            offer("a", "1", price=Decimal("30"), brand="X", sku="s1"),
            offer("b", "2", price=Decimal("400"), currency="TRY"),
        ]
    )
    store.close()

    def base_prices() -> dict[str, float | None]:
        conn = sqlite3.connect(tmp_path / "c.db")
        try:
            return {str(r[0]): r[1] for r in conn.execute("SELECT currency, min_price_base FROM products")}
        finally:
            conn.close()

    assert base_prices() == {"USD": 15.0, "TRY": 10.0}
    conn = sqlite3.connect(tmp_path / "c.db")
    conn.execute("UPDATE products SET min_price_base = NULL")  # as the migration leaves existing rows
    conn.commit()
    conn.close()
    for usd, expected in (("2", {"USD": 15.0, "TRY": 10.0}), ("1", {"USD": 30.0, "TRY": 10.0})):
        raw = f'{{"base": "EUR", "date": "2026-01-02", "rates": {{"USD": "{usd}", "TRY": "40"}}}}'
        store = SqliteCatalog(tmp_path / "c.db", rates=parse_rates(raw))
        store.open()
        try:
            assert base_prices() == expected
            page = store.list_products(ProductQuery(sort=Sort.PRICE))
            assert [b'"TRY"' in item for item in page.items] == [True, False]
        finally:
            store.close()
