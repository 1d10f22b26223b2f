"""The generic mapping engine: its shape checks, each transform, and each pagination style's next request."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.domain.models import Availability, Vendor, VendorKind
from app.sources.generic import (
    FieldError,
    MappingSpecError,
    apply_transform,
    map_generic_item,
    parse_mapping,
)

BASE: dict[str, Any] = {"items": "products", "fields": {"id": "code", "title": "name", "price": "price"}}


def mapping(**overrides: Any) -> dict[str, Any]:
    return {**BASE, **overrides}


def vendor(raw: dict[str, Any]) -> Vendor:
    return Vendor("g", "G", VendorKind.GENERIC, "https://shop.example", "EUR", mapping=raw)


# -- shape ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"items": "products", "fields": {"id": "code", "title": "name"}}, "fields.price"),
        (mapping(items="products[?"), "items"),
        (mapping(fields={**BASE["fields"], "colour": "c"}), "fields.colour"),
        (
            mapping(fields={**BASE["fields"], "price": {"path": "p", "transforms": ["shout"]}}),
            "fields.price.transforms",
        ),
        (mapping(pagination={"style": "pigeon"}), "pagination.style"),
        (mapping(pagination={"style": "cursor"}), "pagination.next_path"),
        (mapping(pagination={"style": "page", "size": 0}), "pagination.size"),
        (mapping(item_path="/products/"), "item_path"),
        (mapping(extra=1), "extra"),
    ],
)
def test_a_bad_mapping_names_its_path(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(MappingSpecError) as caught:
        parse_mapping(raw)
    assert caught.value.path == path


def test_a_field_error_names_the_fields_jmespath() -> None:
    raw = mapping(fields={**BASE["fields"], "price": "cost.amount"})
    with pytest.raises(FieldError) as caught:
        map_generic_item(vendor(raw), parse_mapping(raw), {"code": "1", "name": "Tea", "price": "2"})
    assert (caught.value.field_name, caught.value.path) == ("price", "cost.amount")
    assert caught.value.vendor_product_id == "1"


# -- transforms -----------------------------------------------------------------------------------------------


def test_minor_units() -> None:
    assert apply_transform("minor_units", 1999) == Decimal("19.99")
    assert apply_transform("minor_units", "250") == Decimal("2.5")
    with pytest.raises(ValueError):
        apply_transform("minor_units", "lots")


def test_comma_list() -> None:
    assert apply_transform("comma_list", "a, b,,c ") == ["a", "b", "c"]
    assert apply_transform("comma_list", ["x"]) == ["x"]


def test_html() -> None:
    assert apply_transform("html", "<p>Hot <b>tea</b></p>") == "Hot tea"


def test_bool_in_stock() -> None:
    assert apply_transform("bool_in_stock", True) is Availability.IN_STOCK
    assert apply_transform("bool_in_stock", False) is Availability.OUT_OF_STOCK


def test_epoch() -> None:
    assert apply_transform("epoch", 1_700_000_000) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_prefix() -> None:
    assert apply_transform("prefix:https://cdn.example/", "a.jpg") == "https://cdn.example/a.jpg"
    assert apply_transform("prefix:https://cdn.example/", ["https://x/b.jpg"]) == ["https://x/b.jpg"]


def test_a_whole_item_goes_through_the_normalisers() -> None:
    raw = mapping(
        fields={
            "id": "code",
            "title": "name",
            "price": {"path": "cents", "transforms": ["minor_units"]},
            "gtin": "code",
            "brand": {"path": "brands", "transforms": ["comma_list"]},
            "category": "category",
            "images": {"path": "pics", "transforms": ["prefix:https://cdn.example/"]},
            "availability": {"path": "in_stock", "transforms": ["bool_in_stock"]},
            "description": {"path": "body", "transforms": ["html"]},
            "updated_at": {"path": "t", "transforms": ["epoch"]},
        }
    )
    item = {
        "code": "4006381333931",
        "name": " Pencil ",
        "cents": 199,
        "brands": "Stabilo,Schwan",
        "category": {"id": 3, "name": "Office"},
        "pics": ["p/1.jpg"],
        "in_stock": False,
        "body": "<p>Soft</p>",
        "t": 0,
    }
    offer = map_generic_item(vendor(raw), parse_mapping(raw), item)
    assert offer.vendor_product_id == "4006381333931" and offer.title == "Pencil"
    assert (offer.price, offer.currency) == (Decimal("1.99"), "EUR")
    assert offer.gtin == "04006381333931"
    assert (offer.brand, offer.category) == ("Stabilo", "Office")
    assert offer.images == ("https://cdn.example/p/1.jpg",)
    assert offer.availability is Availability.OUT_OF_STOCK
    assert offer.description == "Soft"
    assert offer.vendor_updated_at == datetime(1970, 1, 1, tzinfo=UTC)


# -- pagination -----------------------------------------------------------------------------------------------


def test_page_pagination() -> None:
    pages = parse_mapping(mapping(pagination={"style": "page", "page_param": "p", "size_param": "n", "size": 5}))
    pag = pages.pagination
    assert pag.request(None) == (None, {"p": 1, "n": 5})
    assert pag.next_cursor(None, 5, {}) == "2"
    assert pag.request("2") == (None, {"p": 2, "n": 5})
    assert pag.next_cursor("2", 0, {}) is None
    zero = parse_mapping(mapping(pagination={"style": "page", "start": 0})).pagination
    assert zero.request(None)[1]["page"] == 0 and zero.next_cursor(None, 3, {}) == "1"


def test_offset_pagination() -> None:
    pag = parse_mapping(mapping(pagination={"style": "offset", "offset_param": "skip", "size": 10})).pagination
    assert pag.request(None) == (None, {"skip": 0, "limit": 10})
    assert pag.next_cursor(None, 10, []) == "10"
    assert pag.request("10") == (None, {"skip": 10, "limit": 10})
    assert pag.next_cursor("10", 0, []) is None


def test_cursor_pagination() -> None:
    raw = mapping(pagination={"style": "cursor", "cursor_param": "after", "next_path": "meta.next"})
    pag = parse_mapping(raw).pagination
    assert pag.request(None) == (None, {})
    assert pag.next_cursor(None, 2, {"meta": {"next": "abc"}}) == "abc"
    assert pag.request("abc") == (None, {"after": "abc"})
    assert pag.next_cursor("abc", 2, {"meta": {"next": None}}) is None
    assert pag.next_cursor("abc", 0, {"meta": {"next": "def"}}) is None  # an empty page ends it


def test_link_pagination() -> None:
    pag = parse_mapping(mapping(pagination={"style": "link"})).pagination
    header = '<https://shop.example/p?page=1>; rel="prev", <https://shop.example/p?page=3>; rel="next"'
    assert pag.next_cursor(None, 2, [], {"link": header}) == "https://shop.example/p?page=3"
    assert pag.request("https://shop.example/p?page=3") == ("https://shop.example/p?page=3", {})
    assert pag.next_cursor(None, 2, [], {}) is None
    assert pag.next_cursor(None, 0, [], {"link": header}) is None
