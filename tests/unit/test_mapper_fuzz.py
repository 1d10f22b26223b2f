"""Every vendor mapper against arbitrary JSON (hypothesis, 10,000 cases each): an item either becomes offers that
every later step can store, convert, serialise and replicate, or it is refused with ``MappingError`` (the counted
skip reason); nothing else may escape. The items are built from each platform's own keys, with arbitrary JSON (and
hostile values: control characters, 70-digit prices, ``javascript:`` URLs) under them, so the mappers' deep paths
are reached rather than only their first ``missing id``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bootstrap import load_rates
from app.domain import documents
from app.domain.models import Offer, SkippedItem, Vendor, VendorKind
from app.domain.normalize import MAX_PRICE, parse_currency
from app.domain.wire import offer_from_dict, offer_to_dict
from app.settings import Settings
from app.sources import (
    map_bigcommerce_product,
    map_dummyjson_item,
    map_magento_product,
    map_shopify_product,
    map_woocommerce_product,
    parse_mapping,
)
from app.sources.base import MAX_DESCRIPTION_CHARS, MAX_ID_CHARS, MAX_IMAGES, MAX_TEXT_CHARS, MappingError
from app.sources.generic import map_generic_item

# Six mappers x 10,000 cases: about a minute each on a quiet 2-core machine, several when it is shared.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

#: `make test` runs 1,500 derandomized cases per mapper: the same cases on every run (a check that cannot fail at
#: random in CI) in about 10 s each. `make fuzz` explores: FUZZ_CASES=10000 (the issue's bar), new cases every run;
#: what it finds becomes a test case of its own (see test_normalize's clean_text cases).
FUZZ_CASES = os.environ.get("FUZZ_CASES")
CASES = settings(
    max_examples=int(FUZZ_CASES or "1500"),
    derandomize=FUZZ_CASES is None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RATES = load_rates(Settings())

HOSTILE = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "nul\x00byte",
        "\u202eevil",
        "1" * 70,
        "9" * 20 + ".99",
        "1e400",
        "-5",
        "NaN",
        "12,5",
        "€ 12",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "//cdn.example/x.jpg",
        "https://u:p@shop.example/x",
        "http://shop.example/a b",
        "x" * 3000,
        "2026-02-30T00:00:00",
        "0000000000000",
        "4006381333931",
        "<p>a<script>b</script></p>",
    ]
)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    HOSTILE,
)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6,
)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with any subset of these keys (each value arbitrary unless given), and a few unknown keys."""
    extra = st.dictionaries(st.text(max_size=6), SCALAR, max_size=2)
    known = st.fixed_dictionaries({}, optional=dict(fields))
    return st.tuples(extra, known).map(lambda parts: {**parts[0], **parts[1]})


def keys(*names: str) -> st.SearchStrategy[dict[str, Any]]:
    return obj(**dict.fromkeys(names, JSON))


def some(item: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A list of ``item``s, or any JSON at all (vendors send objects where lists belong)."""
    return st.lists(item, max_size=4) | JSON


DUMMYJSON = obj(
    **dict.fromkeys(("id", "title", "price", "description", "thumbnail", "sku", "brand", "category"), JSON),
    stock=JSON,
    availabilityStatus=JSON,
    images=some(JSON),
    meta=keys("barcode", "updatedAt") | JSON,
)
SHOPIFY_VARIANT = keys(
    "id", "price", "title", "sku", "barcode", "inventory_quantity", "inventory_management", "updated_at", "image_id"
)
SHOPIFY = obj(
    **dict.fromkeys(("id", "title", "status", "handle", "body_html", "vendor", "product_type", "updated_at"), JSON),
    variants=some(SHOPIFY_VARIANT),
    images=some(keys("id", "src", "variant_ids", "position")),
    image=keys("src") | JSON,
)
WOOCOMMERCE = obj(
    **dict.fromkeys(
        (
            "id",
            "name",
            "status",
            "price",
            "regular_price",
            "type",
            "parent_id",
            "description",
            "short_description",
            "stock_status",
            "stock_quantity",
            "sku",
            "global_unique_id",
            "permalink",
            "date_modified_gmt",
        ),
        JSON,
    ),
    brands=some(keys("name")),
    categories=some(keys("name")),
    images=some(keys("src")),
)
BIGCOMMERCE_VARIANT = obj(
    **dict.fromkeys(
        ("id", "price", "sale_price", "calculated_price", "sku", "gtin", "upc", "inventory_level", "image_url"), JSON
    ),
    purchasing_disabled=JSON,
    date_modified=JSON,
    option_values=some(keys("label")),
)
BIGCOMMERCE = obj(
    **dict.fromkeys(
        (
            "id",
            "name",
            "is_visible",
            "brand_id",
            "brand_name",
            "description",
            "date_modified",
            "price",
            "sale_price",
            "calculated_price",
            "availability",
            "inventory_tracking",
            "inventory_level",
            "sku",
            "gtin",
            "upc",
        ),
        JSON,
    ),
    categories=some(JSON),
    variants=some(BIGCOMMERCE_VARIANT),
    images=some(keys("url_zoom", "url_standard", "is_thumbnail", "sort_order")),
)
MAGENTO_ATTRIBUTE = obj(
    attribute_code=st.sampled_from(
        [
            "special_price",
            "special_from_date",
            "special_to_date",
            "manufacturer",
            "brand",
            "url_key",
            "description",
            "short_description",
            "gtin",
            "ean",
            "category_ids",
        ]
    )
    | JSON,
    value=JSON,
)
MAGENTO = obj(
    **dict.fromkeys(("id", "sku", "name", "status", "type_id", "price", "updated_at"), JSON),
    custom_attributes=some(MAGENTO_ATTRIBUTE),
    extension_attributes=obj(
        stock_item=keys("manage_stock", "qty", "is_in_stock", "backorders") | JSON,
        category_links=some(keys("category_id")),
    )
    | JSON,
    media_gallery_entries=some(keys("file", "disabled", "media_type", "types", "position")),
)
GENERIC_KEYS = ("code", "name", "cents", "cur", "text", "pics", "ref", "ean", "maker", "kind", "qty", "avail", "link")
GENERIC = obj(**dict.fromkeys(GENERIC_KEYS, JSON), ts=JSON)
GENERIC_MAPPING = parse_mapping(
    {
        "items": "@",
        "fields": {
            "id": "code",
            "title": "name",
            "price": {"path": "cents", "transforms": ["minor_units"]},
            "currency": "cur",
            "description": {"path": "text", "transforms": ["html"]},
            "images": {"path": "pics", "transforms": ["prefix:https://img.example/"]},
            "sku": "ref",
            "gtin": "ean",
            "brand": {"path": "maker", "transforms": ["comma_list"]},
            "category": "kind",
            "stock": "qty",
            "availability": {"path": "avail", "transforms": ["bool_in_stock"]},
            "url": "link",
            "updated_at": {"path": "ts", "transforms": ["epoch"]},
        },
    }
)


def vendor(kind: VendorKind) -> Vendor:
    return Vendor("fuzz", "Fuzz", kind, "https://shop.example", "EUR", {"access_token": "t"})


def assert_storable(offer: Offer) -> None:
    """What the store, the documents, the currency conversion, the wire and PostgreSQL's columns rely on."""
    assert offer.title and offer.title.isprintable()
    assert offer.vendor_product_id.isprintable() and len(offer.vendor_product_id) <= MAX_ID_CHARS
    for text, limit in ((offer.title, MAX_TEXT_CHARS), (offer.brand, MAX_TEXT_CHARS), (offer.sku, MAX_ID_CHARS)):
        assert text is None or (len(text) <= limit and "\x00" not in text)
    assert len(offer.description) <= MAX_DESCRIPTION_CHARS
    assert all(c.isprintable() or c in "\n\t" for c in offer.description)
    assert isinstance(offer.price, Decimal) and offer.price.is_finite() and 0 <= offer.price < MAX_PRICE
    assert parse_currency(offer.currency) == offer.currency
    assert offer.url is None or offer.url.startswith(("http://", "https://"))
    assert len(offer.images) <= MAX_IMAGES and all(i.startswith(("http://", "https://")) for i in offer.images)
    assert offer.gtin is None or (len(offer.gtin) == 14 and offer.gtin.isdigit())
    orjson.dumps(documents.offer_dict(offer))  # what the store and the API serialise
    assert offer_from_dict(orjson.loads(orjson.dumps(offer_to_dict(offer)))).price == offer.price  # the changelog
    if RATES.knows(offer.currency):
        RATES.convert(offer.price, offer.currency, "EUR")  # ?currency= on every list page


def check(mapper: Callable[[Mapping[str, Any]], list[Offer]], item: dict[str, Any]) -> None:
    try:
        offers = mapper(item)
    except MappingError as exc:
        assert exc.reason  # a counted skip, with its reason
        return
    assert offers
    for offer in offers:
        assert_storable(offer)


@CASES
@given(DUMMYJSON)
def test_dummyjson_mapper(item: dict[str, Any]) -> None:
    check(lambda i: [map_dummyjson_item(vendor(VendorKind.DUMMYJSON), i, NOW)], item)


@CASES
@given(SHOPIFY)
def test_shopify_mapper(item: dict[str, Any]) -> None:
    skipped: list[SkippedItem] = []
    check(lambda i: map_shopify_product(vendor(VendorKind.SHOPIFY), i, NOW, skipped), item)
    assert all(s.reason for s in skipped)


@CASES
@given(WOOCOMMERCE)
def test_woocommerce_mapper(item: dict[str, Any]) -> None:
    check(lambda i: map_woocommerce_product(vendor(VendorKind.WOOCOMMERCE), i, NOW), item)


@CASES
@given(BIGCOMMERCE, st.dictionaries(st.text(max_size=4), st.text(max_size=20), max_size=3))
def test_bigcommerce_mapper(item: dict[str, Any], names: dict[str, str]) -> None:
    skipped: list[SkippedItem] = []
    v = vendor(VendorKind.BIGCOMMERCE)
    check(lambda i: map_bigcommerce_product(v, i, NOW, skipped, brands=names, categories=names), item)


@CASES
@given(MAGENTO, st.dictionaries(st.text(max_size=4), st.text(max_size=20), max_size=3))
def test_magento_mapper(item: dict[str, Any], names: dict[str, str]) -> None:
    v = vendor(VendorKind.MAGENTO)
    check(lambda i: map_magento_product(v, i, NOW, brands=names, categories=names), item)


@CASES
@given(GENERIC)
def test_generic_mapper(item: dict[str, Any]) -> None:
    check(lambda i: [map_generic_item(vendor(VendorKind.GENERIC), GENERIC_MAPPING, i, NOW)], item)
