"""Magento mapping: a payload captured from our simulator, and one written to the public REST docs' shape."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.domain.models import Availability, Vendor, VendorKind
from app.sources import MappingError, map_magento_product
from app.sources.magento import custom_attributes

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor_samples" / "magento"
FETCHED = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
MG = Vendor("mg", "MG", VendorKind.MAGENTO, "https://magento.example.com", "EUR", {"access_token": "mg_demo"})
# The simulator's manufacturer options and category tree for the captured items.
SIM_BRANDS = {"219": "Essence", "233": "Glamour Beauty", "226": "Brown"}
SIM_CATEGORIES = {"3": "Beauty", "6": "Groceries", "7": "Home Decoration"}


def captured() -> dict[str, dict[str, Any]]:
    body = json.loads((SAMPLES / "products_simulator.json").read_text(encoding="utf-8"))
    assert body["total_count"] == len(body["items"])
    return {item["sku"]: item for item in body["items"]}


# A product as the Magento 2 REST reference documents GET /rest/V1/products/{sku} (Luma sample data's MB01).
DOCUMENTED: dict[str, Any] = {
    "id": 1,
    "sku": "24-MB01",
    "name": "Joust Duffle Bag",
    "attribute_set_id": 15,
    "price": 34,
    "status": 1,
    "visibility": 4,
    "type_id": "simple",
    "created_at": "2023-11-17 19:57:33",
    "updated_at": "2024-02-03 08:15:27",
    "extension_attributes": {
        "website_ids": [1],
        "category_links": [{"position": 0, "category_id": "3"}, {"position": 0, "category_id": "4"}],
        "stock_item": {
            "item_id": 1,
            "product_id": 1,
            "stock_id": 1,
            "qty": 100,
            "is_in_stock": True,
            "is_qty_decimal": False,
            "manage_stock": True,
            "backorders": 0,
        },
    },
    "product_links": [],
    "options": [],
    "media_gallery_entries": [
        {
            "id": 2,
            "media_type": "image",
            "label": "",
            "position": 2,
            "disabled": False,
            "types": [],
            "file": "/m/b/mb01-blue-0-back.jpg",
        },
        {
            "id": 1,
            "media_type": "image",
            "label": "Image",
            "position": 1,
            "disabled": False,
            "types": ["image", "small_image", "thumbnail"],
            "file": "/m/b/mb01-blue-0.jpg",
        },
        {
            "id": 3,
            "media_type": "image",
            "label": "",
            "position": 3,
            "disabled": True,
            "types": [],
            "file": "/m/b/mb01-hidden.jpg",
        },
    ],
    "tier_prices": [],
    "custom_attributes": [
        {
            "attribute_code": "description",
            "value": "<p>The sporty Joust Duffle Bag can&#39;t be beat.</p>\n<ul>\n<li>Dual top handles.</li>\n"
            "<li>Adjustable shoulder strap.</li>\n</ul>",
        },
        {"attribute_code": "url_key", "value": "joust-duffle-bag"},
        {"attribute_code": "category_ids", "value": ["3", "4"]},
        {"attribute_code": "manufacturer", "value": "211"},
        {"attribute_code": "ean", "value": "4006381333931"},
        {"attribute_code": "options_container", "value": "container2"},
        {"attribute_code": "required_options", "value": "0"},
        {"attribute_code": "has_options", "value": "0"},
        {"attribute_code": "tax_class_id", "value": "2"},
    ],
}


def documented() -> dict[str, Any]:
    return copy.deepcopy(DOCUMENTED)


def set_attribute(product: dict[str, Any], code: str, value: Any) -> None:
    attrs = [a for a in product["custom_attributes"] if a["attribute_code"] != code]
    product["custom_attributes"] = [*attrs, {"attribute_code": code, "value": value}]


def test_documented_product() -> None:
    (offer,) = map_magento_product(MG, documented(), FETCHED, brands={"211": "Joust"}, categories={"4": "Bags"})
    assert (offer.vendor_product_id, offer.sku, offer.parent_id) == ("24-MB01", "24-MB01", None)
    assert offer.title == "Joust Duffle Bag"
    assert (offer.price, offer.currency) == (Decimal("34"), "EUR")
    assert (offer.brand, offer.category) == ("Joust", "Bags")
    assert (offer.availability, offer.stock) == (Availability.IN_STOCK, 100)
    assert offer.gtin == "04006381333931"
    assert offer.url == "https://magento.example.com/joust-duffle-bag.html"
    assert offer.vendor_updated_at == datetime(2024, 2, 3, 8, 15, 27, tzinfo=UTC)


def test_description_comes_from_custom_attributes_as_text() -> None:
    (offer,) = map_magento_product(MG, documented(), FETCHED)
    assert offer.description.startswith("The sporty Joust Duffle Bag can't be beat.")
    assert "Dual top handles." in offer.description and "<" not in offer.description


def test_images_are_media_paths_main_image_first_and_disabled_ones_left_out() -> None:
    (offer,) = map_magento_product(MG, documented(), FETCHED)
    assert offer.images == (
        "https://magento.example.com/media/catalog/product/m/b/mb01-blue-0.jpg",
        "https://magento.example.com/media/catalog/product/m/b/mb01-blue-0-back.jpg",
    )


def test_invalid_barcode_is_dropped() -> None:
    product = documented()
    set_attribute(product, "ean", "4006381333932")
    assert map_magento_product(MG, product, FETCHED)[0].gtin is None


@pytest.mark.parametrize(
    ("stock_item", "expected"),
    [
        ({"qty": 0, "is_in_stock": False, "manage_stock": True, "backorders": 0}, (Availability.OUT_OF_STOCK, 0)),
        ({"qty": 0, "is_in_stock": True, "manage_stock": True, "backorders": 1}, (Availability.BACKORDER, 0)),
        ({"qty": 0, "is_in_stock": True, "manage_stock": False, "backorders": 0}, (Availability.IN_STOCK, None)),
        ({"qty": 5, "is_in_stock": False, "manage_stock": True, "backorders": 0}, (Availability.OUT_OF_STOCK, 5)),
        (None, (Availability.UNKNOWN, None)),
    ],
)
def test_stock_item(stock_item: dict[str, Any] | None, expected: tuple[Availability, int | None]) -> None:
    product = documented()
    if stock_item is None:
        del product["extension_attributes"]["stock_item"]
    else:
        product["extension_attributes"]["stock_item"] = stock_item
    (offer,) = map_magento_product(MG, product, FETCHED)
    assert (offer.availability, offer.stock) == expected


def test_special_price_applies_only_within_its_dates() -> None:
    product = documented()
    set_attribute(product, "special_price", "29.990000")
    assert map_magento_product(MG, product, FETCHED)[0].price == Decimal("29.99")
    set_attribute(product, "special_from_date", "2025-05-02 00:00:00")
    assert map_magento_product(MG, product, FETCHED)[0].price == Decimal("34")
    set_attribute(product, "special_from_date", "2025-04-01 00:00:00")
    set_attribute(product, "special_to_date", "2025-05-01 00:00:00")  # the whole end day counts
    assert map_magento_product(MG, product, FETCHED)[0].price == Decimal("29.99")
    set_attribute(product, "special_to_date", "2025-04-30 00:00:00")
    assert map_magento_product(MG, product, FETCHED)[0].price == Decimal("34")


def test_disabled_and_configurable_products_are_refused() -> None:
    product = documented()
    product["status"] = 2
    with pytest.raises(MappingError, match="not enabled"):
        map_magento_product(MG, product, FETCHED)
    product = documented()
    product["type_id"] = "configurable"
    with pytest.raises(MappingError, match="configurable"):
        map_magento_product(MG, product, FETCHED)


@pytest.mark.parametrize(("field", "reason"), [("name", "missing title"), ("sku", "missing sku"), ("price", "price")])
def test_missing_required_fields_are_refused(field: str, reason: str) -> None:
    product = documented()
    del product[field]
    with pytest.raises(MappingError, match=reason):
        map_magento_product(MG, product, FETCHED)


def test_custom_attributes_flatten_and_ignore_junk() -> None:
    assert custom_attributes({"custom_attributes": [{"attribute_code": "a", "value": 1}, "junk", {"value": 2}]}) == {
        "a": 1
    }
    assert custom_attributes({"custom_attributes": None}) == {}


def test_simulator_products() -> None:
    items = captured()

    def one(sku: str) -> Any:
        (offer,) = map_magento_product(MG, items[sku], FETCHED, brands=SIM_BRANDS, categories=SIM_CATEGORIES)
        return offer

    plain = one("BEA-ESS-ESS-001")
    assert (plain.title, plain.brand, plain.category, plain.gtin) == (
        "Essence Mascara Lash Princess",
        "Essence",
        "Beauty",
        None,
    )
    assert (plain.price, plain.availability, plain.stock) == (Decimal("9.19"), Availability.IN_STOCK, 99)
    assert plain.images == (
        "https://magento.example.com/media/catalog/product/e/s/essence-mascara-lash-princess-1.webp",
    )
    unmanaged = one("BEA-GLA-EYE-002")
    assert (unmanaged.gtin, unmanaged.availability, unmanaged.stock) == ("09170275171413", Availability.IN_STOCK, None)
    assert one("GRO-BRD-APP-016").brand is None
    assert one("HOM-BRD-FAM-044").price == Decimal("23.49")
    with pytest.raises(MappingError, match="not enabled"):
        one("MEN-FAS-BRO-093")
