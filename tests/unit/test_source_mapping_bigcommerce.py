"""BigCommerce mapping: a payload captured from our simulator, and one written to the public v3 docs' shape."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.domain.models import Availability, SkippedItem, Vendor, VendorKind
from app.sources import MappingError, map_bigcommerce_product

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor_samples" / "bigcommerce"
FETCHED = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
BC = Vendor(
    "bc",
    "BC",
    VendorKind.BIGCOMMERCE,
    "https://api.bigcommerce.com",
    "GBP",
    {"store_hash": "abc123", "access_token": "bc_demo"},
)
# The simulator's brand and category ids for the captured items (its /brands and /categories lists).
SIM_BRANDS = {"55": "Essence", "69": "Glamour Beauty", "97": "Velvet Touch", "45": "Chanel"}
SIM_CATEGORIES = {"18": "Beauty", "19": "Fragrances"}


def captured() -> dict[int, dict[str, Any]]:
    body = json.loads((SAMPLES / "products_simulator.json").read_text(encoding="utf-8"))
    return {item["id"]: item for item in body["data"]}


# A product as the public API reference documents it (GET /v3/catalog/products?include=variants,images),
# trimmed to the fields that matter and with two option variants.
DOCUMENTED: dict[str, Any] = {
    "id": 174,
    "name": "1L Le Parfait Jar",
    "type": "physical",
    "sku": "LPJ-1L",
    "description": "<p><span>When translated Le Parfait means &quot;the perfect one&quot;</span></p>"
    "<ul><li>Glass</li><li>1 litre</li></ul>",
    "weight": 1,
    "price": 7.95,
    "cost_price": 0,
    "retail_price": 10,
    "sale_price": 0,
    "map_price": 0,
    "calculated_price": 7.95,
    "categories": [23, 21],
    "brand_id": 36,
    "inventory_level": 0,
    "inventory_tracking": "variant",
    "is_visible": True,
    "upc": "",
    "mpn": "LP-1000",
    "gtin": "",
    "availability": "available",
    "date_created": "2018-08-15T14:48:46+00:00",
    "date_modified": "2018-09-05T20:42:07+00:00",
    "custom_url": {"url": "/all/1l-le-parfait-jar/", "is_customized": False},
    "variants": [
        {
            "id": 382,
            "product_id": 174,
            "sku": "LPJ-1L-CLEAR",
            "price": None,
            "calculated_price": None,
            "sale_price": None,
            "upc": "012345678905",
            "gtin": "",
            "inventory_level": 12,
            "purchasing_disabled": False,
            "image_url": "",
            "option_values": [{"id": 68, "label": "Clear", "option_id": 108, "option_display_name": "Colour"}],
        },
        {
            "id": 383,
            "product_id": 174,
            "sku": "LPJ-1L-AMBER",
            "price": 9.5,
            "calculated_price": 9.5,
            "sale_price": None,
            "upc": "012345678901",
            "gtin": "",
            "inventory_level": 3,
            "purchasing_disabled": True,
            "image_url": "https://cdn11.bigcommerce.com/s-abc123/products/174/images/445/amber.jpg?c=2",
            "option_values": [{"id": 69, "label": "Amber", "option_id": 108, "option_display_name": "Colour"}],
        },
    ],
    "images": [
        {
            "id": 444,
            "product_id": 174,
            "is_thumbnail": False,
            "sort_order": 1,
            "url_zoom": "https://cdn11.bigcommerce.com/s-abc123/images/stencil/1280x1280/products/174/444/side.jpg",
            "url_standard": "https://cdn11.bigcommerce.com/s-abc123/images/stencil/386x513/products/174/444/side.jpg",
        },
        {
            "id": 443,
            "product_id": 174,
            "is_thumbnail": True,
            "sort_order": 2,
            "url_zoom": "https://cdn11.bigcommerce.com/s-abc123/images/stencil/1280x1280/products/174/443/main.jpg",
            "url_standard": "https://cdn11.bigcommerce.com/s-abc123/images/stencil/386x513/products/174/443/main.jpg",
        },
    ],
}


def documented() -> dict[str, Any]:
    return copy.deepcopy(DOCUMENTED)


# --- the documented shape -------------------------------------------------------------------------------


def test_options_make_one_offer_per_variant_with_the_product_as_parent() -> None:
    offers = map_bigcommerce_product(BC, documented(), FETCHED, brands={"36": "Le Parfait"}, categories={"21": "Jars"})
    assert [o.vendor_product_id for o in offers] == ["382", "383"]
    assert all(o.parent_id == "174" for o in offers)
    assert [o.title for o in offers] == ["1L Le Parfait Jar - Clear", "1L Le Parfait Jar - Amber"]
    assert [o.sku for o in offers] == ["LPJ-1L-CLEAR", "LPJ-1L-AMBER"]
    assert all(o.currency == "GBP" and o.brand == "Le Parfait" for o in offers)
    # The first category id has no name in the list; the next one that does is used.
    assert all(o.category == "Jars" for o in offers)
    assert all(o.url is None for o in offers)
    assert all(o.vendor_updated_at == datetime(2018, 9, 5, 20, 42, 7, tzinfo=UTC) for o in offers)


def test_a_null_variant_price_is_the_product_price() -> None:
    clear, amber = map_bigcommerce_product(BC, documented(), FETCHED)
    assert clear.price == Decimal("7.95")
    assert amber.price == Decimal("9.5")


def test_a_positive_sale_price_wins_when_nothing_is_calculated() -> None:
    product = documented()
    product["calculated_price"] = None
    product["sale_price"] = 6.5
    clear, _ = map_bigcommerce_product(BC, product, FETCHED)
    assert clear.price == Decimal("6.5")


def test_invalid_upc_is_dropped_and_valid_one_kept() -> None:
    clear, amber = map_bigcommerce_product(BC, documented(), FETCHED)
    assert clear.gtin == "00012345678905"
    assert amber.gtin is None  # wrong check digit: never repaired


def test_purchasing_disabled_variant_is_out_of_stock() -> None:
    clear, amber = map_bigcommerce_product(BC, documented(), FETCHED)
    assert (clear.availability, clear.stock) == (Availability.IN_STOCK, 12)
    assert amber.availability is Availability.OUT_OF_STOCK


def test_html_description_is_cleaned() -> None:
    offer = map_bigcommerce_product(BC, documented(), FETCHED)[0]
    assert "<" not in offer.description and "&quot;" not in offer.description
    assert 'Le Parfait means "the perfect one"' in offer.description
    assert "Glass" in offer.description and "1 litre" in offer.description


def test_images_put_the_thumbnail_first_and_the_variant_image_before_all() -> None:
    clear, amber = map_bigcommerce_product(BC, documented(), FETCHED)
    assert [i.rsplit("/", 1)[-1] for i in clear.images] == ["main.jpg", "side.jpg"]
    assert amber.images[0].endswith("amber.jpg?c=2")
    assert "/1280x1280/" in clear.images[0]


def test_preorder_product() -> None:
    product = documented()
    product["availability"] = "preorder"
    clear, amber = map_bigcommerce_product(BC, product, FETCHED)
    assert (clear.availability, clear.stock) == (Availability.PREORDER, None)
    assert amber.availability is Availability.OUT_OF_STOCK  # purchasing disabled beats preorder


def test_disabled_availability_is_out_of_stock() -> None:
    product = documented()
    product["availability"] = "disabled"
    assert {o.availability for o in map_bigcommerce_product(BC, product, FETCHED)} == {Availability.OUT_OF_STOCK}


def test_only_the_base_variant_makes_one_offer_for_the_product() -> None:
    product = documented()
    base = product["variants"][0]
    base["option_values"] = []
    product["variants"] = [base]
    product["inventory_tracking"] = "product"
    product["inventory_level"] = 0
    product["gtin"] = "4006381333931"
    (offer,) = map_bigcommerce_product(BC, product, FETCHED)
    assert offer.vendor_product_id == "174" and offer.parent_id is None
    assert offer.title == "1L Le Parfait Jar" and offer.sku == "LPJ-1L"
    assert (offer.availability, offer.stock) == (Availability.OUT_OF_STOCK, 0)
    assert offer.gtin == "04006381333931"
    assert offer.price == Decimal("7.95")


def test_untracked_inventory_is_in_stock_without_a_count() -> None:
    product = documented()
    product["inventory_tracking"] = "none"
    assert {(o.availability, o.stock) for o in map_bigcommerce_product(BC, product, FETCHED)} == {
        (Availability.IN_STOCK, None),
        (Availability.OUT_OF_STOCK, None),  # the purchasing-disabled variant
    }


def test_brand_without_a_brand_list_comes_only_from_brand_name() -> None:
    assert {o.brand for o in map_bigcommerce_product(BC, documented(), FETCHED)} == {None}
    product = documented()
    product["brand_name"] = "Le Parfait"
    assert {o.brand for o in map_bigcommerce_product(BC, product, FETCHED)} == {"Le Parfait"}


def test_invisible_product_is_refused() -> None:
    product = documented()
    product["is_visible"] = False
    with pytest.raises(MappingError, match="not visible"):
        map_bigcommerce_product(BC, product, FETCHED)


@pytest.mark.parametrize(("field", "reason"), [("name", "missing title"), ("id", "missing id")])
def test_missing_required_fields_are_refused(field: str, reason: str) -> None:
    product = documented()
    del product[field]
    with pytest.raises(MappingError, match=reason):
        map_bigcommerce_product(BC, product, FETCHED)


def test_a_bad_variant_is_skipped_and_the_others_kept() -> None:
    product = documented()
    product["variants"][1]["price"] = "N/A"
    product["variants"][1]["calculated_price"] = None
    skipped: list[SkippedItem] = []
    offers = map_bigcommerce_product(BC, product, FETCHED, skipped)
    assert [o.vendor_product_id for o in offers] == ["382"]
    assert skipped and skipped[0].vendor_product_id == "383" and "variant of product 174" in skipped[0].reason
    with pytest.raises(MappingError):
        map_bigcommerce_product(BC, product, FETCHED)


# --- captured from the simulator -----------------------------------------------------------------------


def test_simulator_single_variant_products() -> None:
    items = captured()
    (untracked,) = map_bigcommerce_product(BC, items[111], FETCHED, brands=SIM_BRANDS, categories=SIM_CATEGORIES)
    assert untracked.vendor_product_id == "111" and untracked.parent_id is None
    assert (untracked.title, untracked.brand, untracked.category) == (
        "Essence Mascara Lash Princess",
        "Essence",
        "Beauty",
    )
    assert (untracked.availability, untracked.stock, untracked.gtin) == (Availability.IN_STOCK, None, None)
    assert untracked.price == Decimal("7.89") and untracked.sku == "BEA-ESS-ESS-001"

    (tracked,) = map_bigcommerce_product(BC, items[112], FETCHED)
    assert (tracked.availability, tracked.stock) == (Availability.IN_STOCK, 34)
    assert tracked.gtin == "09170275171413"

    (preorder,) = map_bigcommerce_product(BC, items[113], FETCHED)
    assert preorder.availability is Availability.PREORDER
    assert preorder.price == Decimal("10.67")  # on sale: calculated_price, not price


def test_simulator_product_with_options() -> None:
    offers = map_bigcommerce_product(BC, captured()[117], FETCHED, brands=SIM_BRANDS, categories=SIM_CATEGORIES)
    assert [o.vendor_product_id for o in offers] == ["100000012", "100000013"]
    assert [o.price for o in offers] == [Decimal("102.69"), Decimal("123.23")]
    assert [o.stock for o in offers] == [29, 29]
    assert {o.parent_id for o in offers} == {"117"}
    assert {(o.brand, o.category) for o in offers} == {("Chanel", "Fragrances")}
    # The product's `upc` is a barcode typed in as printed, with a wrong check digit: neither offer gets it.
    assert {o.gtin for o in offers} == {None}
    assert all(len(o.images) == 3 for o in offers)
