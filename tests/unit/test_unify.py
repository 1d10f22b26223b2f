"""Unification rules, including that product ids do not depend on arrival order."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from app.domain.models import Availability, Offer
from app.domain.unify import assign_products, build_product, match_key, matched_key, product_id, unify

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GTIN_A = "04006381333931"
GTIN_B = "00036000291452"


def offer(vendor: str, vpid: str, **kw: object) -> Offer:
    base: dict[str, object] = {
        "title": f"{vendor} {vpid}",
        "price": Decimal("10.00"),
        "currency": "USD",
        "fetched_at": T0,
    }
    base.update(kw)
    return Offer(vendor_id=vendor, vendor_product_id=vpid, **base)  # type: ignore[arg-type]


def groups(offers: list[Offer]) -> set[frozenset[tuple[str, str]]]:
    by_key: dict[str, set[tuple[str, str]]] = {}
    for key, pkey in assign_products(offers).items():
        by_key.setdefault(pkey, set()).add(key)
    return {frozenset(v) for v in by_key.values()}


def test_same_gtin_is_one_product_even_with_other_brands() -> None:
    offers = [offer("a", "1", gtin=GTIN_A, brand="Acme"), offer("b", "9", gtin=GTIN_A, brand="Other")]
    assert groups(offers) == {frozenset({("a", "1"), ("b", "9")})}


def test_different_gtins_never_merge_even_with_same_brand_and_sku() -> None:
    offers = [
        offer("a", "1", gtin=GTIN_A, brand="Acme", sku="X-1"),
        offer("b", "2", gtin=GTIN_B, brand="Acme", sku="X-1"),
    ]
    assert len(groups(offers)) == 2


def test_brand_and_normalised_sku_match_without_gtin() -> None:
    offers = [
        offer("a", "1", brand="Nestlé", sku="bea-ess-001"),
        offer("b", "2", brand="nestle", sku="BEA ESS 001"),
    ]
    assert groups(offers) == {frozenset({("a", "1"), ("b", "2")})}


def test_offer_without_barcode_joins_the_single_gtin_of_its_brand_and_sku() -> None:
    offers = [offer("a", "1", brand="Acme", sku="X1", gtin=GTIN_A), offer("b", "2", brand="ACME", sku="x-1")]
    keys = assign_products(offers)
    assert keys[("b", "2")] == f"gtin:{GTIN_A}" == keys[("a", "1")]


def test_ambiguous_brand_sku_with_two_gtins_is_not_guessed() -> None:
    offers = [
        offer("a", "1", brand="Acme", sku="X1", gtin=GTIN_A),
        offer("b", "2", brand="Acme", sku="X1", gtin=GTIN_B),
        offer("c", "3", brand="Acme", sku="X1"),
    ]
    keys = assign_products(offers)
    assert keys[("c", "3")] == "bs:acme|X1"
    assert len(groups(offers)) == 3


def test_no_gtin_no_brand_is_its_own_product() -> None:
    offers = [offer("a", "1", sku="X1"), offer("b", "1", sku="X1")]
    assert len(groups(offers)) == 2


def test_ids_and_content_do_not_depend_on_order() -> None:
    rng = random.Random(7)
    offers = [
        offer("a", "1", brand="Acme", sku="X1", gtin=GTIN_A, description="long", images=("https://i/1",)),
        offer("b", "2", brand="Acme", sku="x1", price=Decimal("8.50")),
        offer("c", "3", brand="Acme", sku="X-1", currency="EUR", price=Decimal("9"), images=("https://i/2",)),
        offer("d", "4", gtin=GTIN_B, description="d"),
        offer("e", "5", gtin=GTIN_B, images=("https://i/3", "https://i/4")),
        offer("f", "6"),
    ]
    reference = unify(offers)
    for _ in range(20):
        shuffled = offers[:]
        rng.shuffle(shuffled)
        assert unify(shuffled) == reference
    assert [p.id for p in reference] == sorted(p.id for p in reference)
    assert product_id(f"gtin:{GTIN_A}") in {p.id for p in reference}


def test_lead_offer_rule_and_prices() -> None:
    rich = offer(
        "z",
        "9",
        title="Rich",
        description="desc",
        images=("https://i/a", "https://i/b"),
        brand="B",
        availability=Availability.IN_STOCK,
        price=Decimal("12.00"),
    )
    poor = offer("a", "1", title="Poor", images=("https://i/b",), price=Decimal("9.99"))
    eur = offer("m", "5", title="Euro", currency="EUR", price=Decimal("7.00"))
    product = build_product("p_x", [poor, eur, rich])
    assert product.name == "Rich"
    assert product.description == "desc"
    assert product.images == ("https://i/a", "https://i/b")
    assert product.currency == "USD"
    assert (product.min_price, product.max_price) == (Decimal("9.99"), Decimal("12.00"))
    assert [(p.currency, p.min, p.max) for p in product.prices] == [
        ("EUR", Decimal("7.00"), Decimal("7.00")),
        ("USD", Decimal("9.99"), Decimal("12.00")),
    ]
    assert product.in_stock is True
    assert [o.vendor_id for o in product.offers] == ["m", "a", "z"]


def test_ties_broken_by_vendor_then_id() -> None:
    first = offer("a", "2", title="A2")
    second = offer("a", "10", title="A10")
    assert build_product("p", [first, second]).name == "A10"
    assert build_product("p", [replace(second), first]).name == "A10"


def test_single_offer_fast_path_matches_the_general_rule() -> None:
    only = offer(
        "a",
        "1",
        title="T",
        description="d",
        images=("https://i/1", "https://i/1", "https://i/2"),
        brand="B",
        category="C",
        gtin=GTIN_A,
        availability=Availability.IN_STOCK,
        price=Decimal("3.50"),
        vendor_updated_at=T0,
    )
    fast = build_product("p", [only])
    # the general path, reached with two offers of which the second is an exact twin in another vendor
    twin = replace(only, vendor_id="b")
    general = build_product("p", [only, twin])
    for field in (
        "name",
        "description",
        "brand",
        "category",
        "images",
        "gtin",
        "currency",
        "min_price",
        "max_price",
        "in_stock",
        "updated_at",
    ):
        assert getattr(fast, field) == getattr(general, field), field
    assert fast.images == ("https://i/1", "https://i/2")
    assert [(p.currency, p.min, p.max) for p in fast.prices] == [("USD", Decimal("3.50"), Decimal("3.50"))]


def test_matched_key_gives_the_single_linked_gtin_else_the_match_key() -> None:
    mk = match_key(offer("a", "1", brand="Acme", sku="X-1"))
    assert mk is not None
    assert matched_key(mk, []) == f"bs:{mk}"
    assert matched_key(mk, [GTIN_A, GTIN_A]) == f"gtin:{GTIN_A}"
    assert matched_key(mk, [GTIN_A, GTIN_B]) == f"bs:{mk}"
