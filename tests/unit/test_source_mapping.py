"""Each platform's mapping against the real vendor payloads in tests/fixtures/vendor_samples."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.domain.models import Availability, Offer, SkippedItem, Vendor, VendorKind
from app.sources import (
    MappingError,
    map_dummyjson_item,
    map_shopify_product,
    map_woocommerce_product,
)
from app.sources.base import map_items

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor_samples"
FETCHED = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)

DUMMY = Vendor("dj", "DummyJSON", VendorKind.DUMMYJSON, "https://dummyjson.com", "USD")
SHOP = Vendor("shop", "Shop", VendorKind.SHOPIFY, "https://shop.example.com", "USD", {"access_token": "shpat_demo"})
WOO = Vendor(
    "woo",
    "Woo",
    VendorKind.WOOCOMMERCE,
    "https://example.com",
    "EUR",
    {"consumer_key": "ck_demo", "consumer_secret": "cs_demo"},
)


def load(name: str) -> list[dict[str, Any]]:
    data = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    assert isinstance(data, list)
    return data


def gtin_check_ok(digits: str) -> bool:
    """Independent GTIN check-digit test, so the expectation does not come from the code under test."""
    if not digits.isdigit() or len(digits) not in (8, 12, 13, 14):
        return False
    body, check = [int(c) for c in digits[:-1]], int(digits[-1])
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


# --- DummyJSON ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dummy_items() -> list[dict[str, Any]]:
    return load("dummyjson/products_database.json")


def dj_mapper(item: Any, _skipped: list[SkippedItem]) -> list[Offer]:
    return [map_dummyjson_item(DUMMY, item, FETCHED)]


def test_dummyjson_every_item_maps_or_is_skipped_with_reason(dummy_items: list[dict[str, Any]]) -> None:
    offers, skipped = map_items(DUMMY, dummy_items, dj_mapper)
    assert len(dummy_items) == 194
    assert len(offers) + len(skipped) == 194
    assert all(s.reason for s in skipped)
    assert len({o.key for o in offers}) == len(offers)
    for offer in offers:
        assert offer.vendor_id == "dj"
        assert offer.currency == "USD"
        assert offer.price > 0
        assert offer.url is None
        assert offer.fetched_at == FETCHED
        assert offer.availability in (Availability.IN_STOCK, Availability.OUT_OF_STOCK)
        assert offer.gtin is None or (len(offer.gtin) == 14 and gtin_check_ok(offer.gtin))


def test_dummyjson_first_item_values(dummy_items: list[dict[str, Any]]) -> None:
    offer = map_dummyjson_item(DUMMY, dummy_items[0], FETCHED)
    assert offer.vendor_product_id == "1"
    assert offer.title == "Essence Mascara Lash Princess"
    assert offer.price == Decimal("9.99")
    assert str(offer.price) == "9.99"
    assert offer.currency == "USD"
    assert offer.sku == "BEA-ESS-ESS-001"
    assert offer.brand == "Essence"
    assert offer.category == "beauty"
    assert offer.stock == 99
    assert offer.availability is Availability.IN_STOCK
    # 5784719087687 fails its check digit: dropped, not passed on as a fake GTIN.
    assert not gtin_check_ok(dummy_items[0]["meta"]["barcode"])
    assert offer.gtin is None
    assert offer.vendor_updated_at == datetime(2025, 4, 30, 9, 41, 2, 53000, tzinfo=UTC)
    assert offer.images == (
        "https://cdn.dummyjson.com/product-images/beauty/essence-mascara-lash-princess/1.webp",
        "https://cdn.dummyjson.com/product-images/beauty/essence-mascara-lash-princess/thumbnail.webp",
    )
    assert offer.description.startswith("The Essence Mascara Lash Princess is a popular mascara")


def test_dummyjson_gtin_kept_exactly_for_valid_barcodes(dummy_items: list[dict[str, Any]]) -> None:
    valid = {str(i["id"]): i["meta"]["barcode"] for i in dummy_items if gtin_check_ok(i["meta"]["barcode"])}
    assert len(valid) == 16  # the other 178 sample barcodes have a wrong check digit
    offers = {o.vendor_product_id: o for o in (map_dummyjson_item(DUMMY, i, FETCHED) for i in dummy_items)}
    assert {vid for vid, o in offers.items() if o.gtin} == set(valid)
    for vid, barcode in valid.items():
        assert offers[vid].gtin == barcode.zfill(14)
    assert offers["2"].gtin == "09170275171413"
    assert offers["2"].brand == "Glamour Beauty"


def test_dummyjson_price_is_exact_for_every_float(dummy_items: list[dict[str, Any]]) -> None:
    for item in dummy_items:
        offer = map_dummyjson_item(DUMMY, item, FETCHED)
        assert offer.price == Decimal(repr(item["price"])), item["id"]


def test_dummyjson_availability_and_missing_brand(dummy_items: list[dict[str, Any]]) -> None:
    by_status = {"In Stock": Availability.IN_STOCK, "Low Stock": Availability.IN_STOCK}
    by_status["Out of Stock"] = Availability.OUT_OF_STOCK
    for item in dummy_items:
        offer = map_dummyjson_item(DUMMY, item, FETCHED)
        assert offer.availability is by_status[item["availabilityStatus"]]
        assert offer.stock == item["stock"]
        if "brand" not in item:
            assert offer.brand is None


def test_dummyjson_images_deduplicated(dummy_items: list[dict[str, Any]]) -> None:
    item = copy.deepcopy(dummy_items[0])
    item["images"] = [item["thumbnail"], *item["images"], item["images"][0]]
    offer = map_dummyjson_item(DUMMY, item, FETCHED)
    assert len(offer.images) == len(set(offer.images)) == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"title": None}, "missing title"),
        ({"title": "   "}, "missing title"),
        ({"price": "N/A"}, "unparseable price"),
        ({"price": None}, "missing price"),
        ({"id": None}, "missing id"),
    ],
)
def test_dummyjson_malformed_item_is_skipped_with_reason(
    dummy_items: list[dict[str, Any]], change: dict[str, Any], reason: str
) -> None:
    bad = {**copy.deepcopy(dummy_items[0]), **change}
    with pytest.raises(MappingError) as info:
        map_dummyjson_item(DUMMY, bad, FETCHED)
    assert reason in info.value.reason
    offers, skipped = map_items(DUMMY, [bad, dummy_items[1], "not an object"], dj_mapper)
    assert [o.vendor_product_id for o in offers] == ["2"]
    assert len(skipped) == 2
    assert reason in skipped[0].reason
    assert skipped[0].vendor_product_id == (None if change.get("id", 1) is None else "1")
    assert "not an object" in skipped[1].reason


# --- Shopify ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shopify_products() -> list[dict[str, Any]]:
    return load("shopify/admin_rest_products_list.json")


def test_shopify_every_variant_becomes_an_offer(shopify_products: list[dict[str, Any]]) -> None:
    for product in shopify_products:
        offers = map_shopify_product(SHOP, product, FETCHED)
        assert [o.vendor_product_id for o in offers] == [str(v["id"]) for v in product["variants"]]
        for offer, variant in zip(offers, product["variants"], strict=True):
            assert offer.parent_id == str(product["id"])
            assert offer.price == Decimal(variant["price"])
            assert offer.currency == "USD"
            assert offer.sku == variant["sku"]


def test_shopify_first_product_values(shopify_products: list[dict[str, Any]]) -> None:
    [offer] = map_shopify_product(SHOP, shopify_products[0], FETCHED)
    assert offer.vendor_product_id == "808950810"
    assert offer.parent_id == "1"
    assert offer.title == "IPod Nano - 8GB - Pink"
    assert offer.price == Decimal("199.00")
    assert str(offer.price) == "199.00"
    assert offer.brand == "Apple"
    assert offer.category == "Cult Products"
    assert offer.sku == "IPOD2008PINK"
    assert offer.gtin is None  # the old fixture has no barcode
    # tracked, 10 in stock
    assert offer.availability is Availability.IN_STOCK
    assert offer.stock == 10
    assert offer.url == "https://shop.example.com/products/ipod-nano"
    assert offer.images == ("http://static.shopify.com/s/files/1/6909/3384/products/ipod-nano.png?0",)
    assert offer.description.startswith("It's the small iPod with one very big idea: Video.")
    assert "<p>" not in offer.description
    assert offer.vendor_updated_at == datetime(2011, 10, 20, 18, 5, 13, tzinfo=UTC)


def test_shopify_parent_is_the_product_not_the_variants_stale_product_id(
    shopify_products: list[dict[str, Any]],
) -> None:
    # Product 3's variant claims product_id 2 in the fixture; the offer belongs to the product it came in.
    [offer] = map_shopify_product(SHOP, shopify_products[2], FETCHED)
    assert offer.parent_id == "3"


def _variant(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 11,
        "title": "Default Title",
        "price": "10.50",
        "sku": "S-1",
        "barcode": "4006381333931",
        "inventory_quantity": 3,
        "inventory_management": "shopify",
        "inventory_policy": "deny",
        "image_id": None,
        "updated_at": "2024-03-01T10:00:00Z",
    }
    return {**base, **overrides}


def _product(variants: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 7,
        "title": "Widget",
        "handle": "widget",
        "body_html": "<p>A <b>fine</b> widget</p>",
        "vendor": "Acme",
        "product_type": "Tools",
        "status": "active",
        "updated_at": "2024-02-01T10:00:00Z",
        "images": [
            {"id": 100, "position": 1, "src": "https://cdn.example.com/a.png"},
            {"id": 200, "position": 2, "src": "https://cdn.example.com/b.png"},
        ],
        "variants": variants,
    }
    return {**base, **overrides}


def test_shopify_default_title_variant_images_gtin_and_updated_at() -> None:
    [offer] = map_shopify_product(SHOP, _product([_variant(image_id=200)]), FETCHED)
    assert offer.title == "Widget"
    assert offer.images == ("https://cdn.example.com/b.png", "https://cdn.example.com/a.png")
    assert offer.gtin == "04006381333931"
    # the variant changed after the product: the later of the two counts
    assert offer.vendor_updated_at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("variant", "availability", "stock"),
    [
        (_variant(inventory_quantity=5), Availability.IN_STOCK, 5),
        (_variant(inventory_quantity=0, inventory_policy="deny"), Availability.OUT_OF_STOCK, 0),
        (_variant(inventory_quantity=0, inventory_policy="continue"), Availability.BACKORDER, 0),
        (_variant(inventory_quantity=-2, inventory_policy="continue"), Availability.BACKORDER, 0),
        (_variant(inventory_quantity=0, inventory_management=None), Availability.IN_STOCK, None),
        (_variant(inventory_quantity=None), Availability.UNKNOWN, None),
    ],
)
def test_shopify_availability(variant: dict[str, Any], availability: Availability, stock: int | None) -> None:
    [offer] = map_shopify_product(SHOP, _product([variant]), FETCHED)
    assert offer.availability is availability
    assert offer.stock == stock


def test_shopify_bad_variant_is_skipped_the_rest_kept() -> None:
    product = _product([_variant(id=1, title="S"), _variant(id=2, title="M", price="N/A")])
    with pytest.raises(MappingError):
        map_shopify_product(SHOP, product, FETCHED)
    skipped: list[SkippedItem] = []
    offers = map_shopify_product(SHOP, product, FETCHED, skipped)
    assert [(o.vendor_product_id, o.title) for o in offers] == [("1", "Widget - S")]
    assert len(skipped) == 1
    assert skipped[0].vendor_product_id == "2"
    assert "unparseable price" in skipped[0].reason


@pytest.mark.parametrize(
    ("product", "reason"),
    [
        (_product([_variant()], title=""), "missing title"),
        (_product([_variant()], id=None), "missing id"),
        (_product([]), "no variants"),
        (_product([_variant()], status="draft"), "not active"),
        (_product([_variant(price="N/A")]), "no usable variants"),
    ],
)
def test_shopify_malformed_product_is_skipped(product: dict[str, Any], reason: str) -> None:
    mapper = lambda item, skipped: map_shopify_product(SHOP, item, FETCHED, skipped)  # noqa: E731
    offers, skipped = map_items(SHOP, [product, _product([_variant(id=99)], id=8)], mapper)
    assert [o.vendor_product_id for o in offers] == ["99"]
    assert any(reason in s.reason for s in skipped)


# --- WooCommerce --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def woo_products() -> list[dict[str, Any]]:
    return load("woocommerce/products_list_wc_v3.json")


def woo_mapper(item: Any, _skipped: list[SkippedItem]) -> list[Offer]:
    return map_woocommerce_product(WOO, item, FETCHED)


def test_woocommerce_list_example(woo_products: list[dict[str, Any]]) -> None:
    offers, skipped = map_items(WOO, woo_products, woo_mapper)
    assert skipped == [SkippedItem("799", "no price (variable product)")]
    [offer] = offers
    assert offer.vendor_product_id == "794"
    assert offer.title == "Premium Quality"
    assert offer.price == Decimal("21.99")
    assert str(offer.price) == "21.99"
    assert offer.currency == "EUR"  # the vendor's currency: Woo payloads do not carry one
    assert offer.sku is None  # "" in the payload
    assert offer.category == "Clothing"
    assert offer.brand is None
    assert offer.availability is Availability.IN_STOCK
    assert offer.stock is None
    assert offer.url == "https://example.com/product/premium-quality-19/"
    assert offer.description.startswith("Pellentesque habitant morbi tristique")
    assert "<p>" not in offer.description
    assert offer.images == (
        "https://example.com/wp-content/uploads/2017/03/T_2_front-4.jpg",
        "https://example.com/wp-content/uploads/2017/03/T_2_back-2.jpg",
    )
    assert offer.vendor_updated_at == datetime(2017, 3, 23, 20, 1, 14, tzinfo=UTC)
    assert offer.parent_id is None


def test_woocommerce_variable_product_raises_with_reason(woo_products: list[dict[str, Any]]) -> None:
    with pytest.raises(MappingError) as info:
        map_woocommerce_product(WOO, woo_products[0], FETCHED)
    assert info.value.reason == "no price (variable product)"


def test_woocommerce_brand_gtin_stock_fallbacks(woo_products: list[dict[str, Any]]) -> None:
    product = {
        **copy.deepcopy(woo_products[1]),
        "price": "",
        "regular_price": "1.495,00",
        "global_unique_id": "4006381333931",
        "brands": [{"id": 3, "name": "Acme"}],
        "stock_status": "onbackorder",
        "stock_quantity": 0,
        "description": "",
        "sku": "PQ-1",
    }
    [offer] = map_woocommerce_product(WOO, product, FETCHED)
    assert offer.price == Decimal("1495.00")
    assert offer.gtin == "04006381333931"
    assert offer.brand == "Acme"
    assert offer.sku == "PQ-1"
    assert offer.availability is Availability.BACKORDER
    assert offer.stock == 0
    assert offer.description == (
        "Pellentesque habitant morbi tristique senectus et netus et malesuada fames ac turpis egestas."
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": None}, "missing title"),
        ({"price": "N/A"}, "unparseable price"),
        ({"price": "", "regular_price": ""}, "missing price"),
        ({"status": "draft"}, "not published"),
    ],
)
def test_woocommerce_malformed_product_is_skipped(
    woo_products: list[dict[str, Any]], change: dict[str, Any], reason: str
) -> None:
    bad = {**copy.deepcopy(woo_products[1]), **change}
    offers, skipped = map_items(WOO, [bad, woo_products[1]], woo_mapper)
    assert len(offers) == 1
    assert len(skipped) == 1
    assert skipped[0].vendor_product_id == "794"
    assert reason in skipped[0].reason


def test_woocommerce_stock_status_mapping(woo_products: list[dict[str, Any]]) -> None:
    expected = {
        "instock": Availability.IN_STOCK,
        "outofstock": Availability.OUT_OF_STOCK,
        "onbackorder": Availability.BACKORDER,
        "weird": Availability.UNKNOWN,
    }
    for status, availability in expected.items():
        [offer] = map_woocommerce_product(WOO, {**woo_products[1], "stock_status": status}, FETCHED)
        assert offer.availability is availability
