"""Scoring pairs with the shipped model: identifier rules, variant conflicts, reasons, realistic retitles."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from decimal import Decimal

import pytest

from app.domain.matching import MatchRecord, default_matcher, from_mapping, from_offer, score, score_many
from app.domain.matching.features import FEATURES
from app.domain.matching.model import load_model
from app.domain.models import Offer

GTIN_A = "04006381333931"
GTIN_B = "00036000291452"


def rec(title: str, brand: str | None = None, price: str | None = None, **kw: object) -> MatchRecord:
    return MatchRecord(
        title=title,
        brand=brand,
        price=Decimal(price) if price is not None else None,
        currency="USD" if price is not None else None,
        **kw,  # type: ignore[arg-type]
    )


def test_shipped_model_loads_with_its_thresholds() -> None:
    model = load_model()
    assert model.trees > 0
    assert 0.0 < model.thresholds.match <= model.thresholds.merge < 1.0
    assert len(model.vocabulary.idf) > 1000 and model.vocabulary.brands
    assert model.metadata["trained_by"] == "python -m tools.train_matcher"
    # The compiled trees take exactly the feature vector the features module makes.
    assert 0.0 <= model.probability([0.0] * len(FEATURES)) <= 1.0


def test_nothing_is_loaded_at_import() -> None:
    code = (
        "import app.domain.matching as m\n"
        "from app.domain.matching.model import load_model\n"
        "assert load_model.cache_info().currsize == 0\n"
        "m.score(m.MatchRecord(title='a'), m.MatchRecord(title='b'))\n"
        "assert load_model.cache_info().currsize == 1\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_same_valid_gtin_matches_whatever_the_titles() -> None:
    d = score(rec("Acme kettle", gtin=GTIN_A), rec("Something else entirely", gtin=GTIN_A))
    assert (d.match, d.score, d.reasons) == (True, 1.0, ("gtin",))


def test_different_valid_gtins_never_match_even_with_identical_titles() -> None:
    d = score(rec("Apple iPhone 9", "Apple", gtin=GTIN_A), rec("Apple iPhone 9", "Apple", gtin=GTIN_B), "match")
    assert (d.match, d.score, d.reasons) == (False, 0.0, ("gtin_conflict",))


def test_two_gtins_decide_before_either_record_is_read() -> None:
    """A store's look-alikes mostly carry GTINs of their own: refusing them must cost no profile (a candidate's
    profile is most of what scoring a pair costs), and the decision is the one the profiled rules give."""
    matcher = default_matcher()
    a, b, c = (rec(f"Zq{n} kettle 1.7 l", "Acme", gtin=g) for n, g in ((1, GTIN_A), (2, GTIN_B), (3, GTIN_A)))
    misses = matcher.profile.cache_info().misses
    assert matcher.score(a, b, "merge").reasons == ("gtin_conflict",)
    assert [d.reasons for d in matcher.score_many(a, [b, c], "merge")] == [("gtin_conflict",), ("gtin",)]
    assert matcher.score(a, c).reasons == ("gtin",)
    # One profile read: a's own, by score_many (it reads the new record's once for all its candidates); b's and
    # c's never, though each was scored.
    assert matcher.profile.cache_info().misses == misses + 1


def test_brand_and_sku_match_as_today() -> None:
    d = score(rec("Mascara", "Essence", sku="BEA-ESS-001"), rec("Lash Princess", "ESSENCE", sku="bea ess 001"))
    assert d.match and d.reasons == ("brand_sku",)


@pytest.mark.parametrize(
    ("left", "right", "reason"),
    [
        ("Apple iPhone 13 Pro 128GB Graphite", "Apple iPhone 13 Pro 256 GB Graphite", "capacity"),
        ("Nike T-Shirt Blue Size M", "Nike T-Shirt Blue Size L", "size"),
        ("Coca-Cola 6-pack cans", "Coca-Cola 12 pack cans", "pack"),
        ("Microsoft Office 2007 Standard", "Microsoft Office 2010 Standard", "year"),
        ("AirPods Max Silver", "AirPods Max Space Grey", "colour"),
        ("Dell XPS 13 9300 Laptop", "Dell XPS 13 9310 Laptop", "number"),
        ("Essence Mascara Lash Princess #2", "Essence Mascara Lash Princess #3", "number"),
        ("Sony Cyber-shot DSC-W120/P", "Sony Cyber-shot DSC-W130/P", "model"),
    ],
)
def test_variant_conflicts_are_never_a_match(left: str, right: str, reason: str) -> None:
    d = score(rec(left, price="100"), rec(right, price="100"))
    assert not d.match and d.score == 0.0
    assert f"variant_conflict:{reason}" in d.reasons


@pytest.mark.parametrize(
    ("left", "right"),
    [
        # brand prefix added or moved, word order, separators, abbreviations, no barcode
        (
            rec("iPhone 9", "Apple", "549", category="smartphones"),
            rec("Apple iPhone 9", None, "559", category="smartphones"),
        ),
        (
            rec("Essence Mascara Lash Princess", "Essence", "9.99"),
            rec("Mascara Lash Princess by Essence", None, "10.49"),
        ),
        (rec("Lenovo Yoga 920", "Lenovo", "1099.99"), rec("Yoga 920 by Lenovo", None, "1079.99")),
        (rec("New DELL XPS 13 9300 Laptop", "Dell", "1499.99"), rec("Dell XPS13 9300 laptop", None, "1479.00")),
        (rec("Samsung Galaxy Tab S8 Plus Grey", "Samsung", "599.99"), rec("Galaxy Tab S8+ Grey", "Samsung", "589.99")),
        (rec("Oppo F19 Pro Plus", "Oppo", "399.99"), rec("OPPO F19 Pro+", None, "399.99")),
        (
            rec("Sony Cyber-shot DSC-W120/P 7.2MP Pink", "Sony", "104.95"),
            rec("sony pink cyber-shot 7.2 megapixel digital camera dscw120p", None, "99.00"),
        ),
        (rec("Nike Air Jordan 1 Red And Black", "Nike", "149.99"), rec("Air Jordan 1 - Red/Black", "Nike", "149.99")),
    ],
)
def test_retitled_listings_of_one_product_merge(left: MatchRecord, right: MatchRecord) -> None:
    d = score(left, right, "merge")
    assert d.match, d
    assert score(right, left, "merge") == d  # symmetric


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (rec("iPhone 9", "Apple", "549"), rec("iPhone X", "Apple", "899")),
        (rec("Samsung Galaxy S8", "Samsung", "499.99"), rec("Samsung Galaxy S10", "Samsung", "699.99")),
        (rec("Apple iPhone 13 Pro 128GB", "Apple"), rec("Apple iPhone 13 Pro Max 128GB", "Apple")),
        (rec("Red Lipstick", "Chic Cosmetics", "12.99"), rec("Red Nail Polish", "Nail Couture", "8.99")),
        (rec("Realme X", "Realme", "299.99"), rec("Realme XT", "Realme", "349.99")),
    ],
)
def test_near_duplicates_stay_apart_when_merging(left: MatchRecord, right: MatchRecord) -> None:
    assert not score(left, right, "merge").match


def test_reasons_name_the_evidence() -> None:
    d = score(
        rec("Sony Cyber-shot DSC-W120/P 7.2MP Pink", "Sony", "104.95"),
        rec("sony pink cyber-shot 7.2 megapixel digital camera dscw120p", "Sony", "99.00"),
    )
    assert d.reasons[0] == "model:dscw120p"
    assert "brand" in d.reasons
    assert any(r.startswith("title:") for r in d.reasons)
    assert "price:1.06" in d.reasons


def test_prices_in_other_currencies_are_not_compared() -> None:
    a = rec("Lenovo Yoga 920", "Lenovo", "1099.99")
    b = replace(rec("Yoga 920 by Lenovo", None, "999.00"), currency="EUR")
    assert not any(r.startswith("price:") for r in score(a, b).reasons)


def test_score_many_agrees_with_score() -> None:
    new = rec("Apple iPhone 9", None, "559")
    candidates = [rec("iPhone 9", "Apple", "549"), rec("iPhone X", "Apple", "899"), rec("Kiwi", price="2.49")]
    assert score_many(new, candidates, "merge") == [score(new, c, "merge") for c in candidates]


def test_records_from_offers_and_json() -> None:
    offer = Offer("v", "1", "iPhone 9", Decimal("549"), "USD", sku="SMA-APP-IPH-121", brand="Apple", gtin=GTIN_A)
    assert from_offer(offer) == MatchRecord(
        title="iPhone 9", brand="Apple", price=Decimal("549"), currency="USD", sku="SMA-APP-IPH-121", gtin=GTIN_A
    )
    loose = from_mapping({"title": " iPhone  9 ", "price": "549.0", "gtin": "4006381333931", "extra": 1})
    assert loose == MatchRecord(title="iPhone 9", price=Decimal("549.0"), gtin=GTIN_A)
    assert from_mapping({"title": "x", "price": "n/a", "gtin": "123"}) == MatchRecord(title="x")


def test_blocking_keys_put_retitled_listings_together_and_near_duplicates_apart() -> None:
    m = default_matcher()
    a = m.blocking_keys(rec("Sony Cyber-shot DSC-W120/P", "Sony"))
    assert "c:dscw120p" in a
    assert a & m.blocking_keys(rec("sony pink cyber-shot digital camera dscw120p"))
    assert a & m.blocking_keys(rec("Cybershot DSC W120/P by Sony"))
    assert "g:" + GTIN_A in m.blocking_keys(rec("x", gtin=GTIN_A))


def _meet(a: MatchRecord, b: MatchRecord) -> bool:
    """Whether a store finds ``b`` among ``a``'s candidates (and so ``a`` among ``b``'s)."""
    m = default_matcher()
    return bool(m.blocking_keys(a) & m.blocking_keys(b))


def test_numbered_look_alikes_are_not_candidates_of_each_other_but_retitled_twins_are() -> None:
    ball_3, ball_4 = rec("Tennis Ball #3", "Wilson"), rec("Tennis Ball #4", "Wilson")
    assert not _meet(ball_3, ball_4)
    assert _meet(ball_3, rec("Ball Tennis #3 by Wilson"))
    # The listing without a number may be any of the numbered ones: not merged, so not a candidate either.
    unnumbered = rec("Wilson Tennis Ball")
    assert not _meet(ball_4, unnumbered)
    assert "variant_differs:number" in score(ball_4, unnumbered, "merge").reasons
    # A model number is never qualified: listings sharing one meet and merge whatever their numbers.
    phone, listed = rec("Apple iPhone 12 A2172 64GB"), rec("iPhone A2172 64GB", "Apple")
    assert _meet(phone, listed)
    assert "variant_differs:number" not in score(phone, listed, "merge").reasons


def test_titles_of_only_a_brand_and_a_number_still_meet_their_twin() -> None:
    apple = rec("Apple #42", "Apple")
    assert {k[:2] for k in default_matcher().blocking_keys(apple)} == {"t:"}
    assert _meet(apple, rec("Apple #42"))
    assert not _meet(apple, rec("Apple #43", "Apple"))
