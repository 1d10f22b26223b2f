"""Clustering offers into products: order independence, conflicts, stable keys, components."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.matching import Edge, OfferKey, cluster, default_matcher, unify_offers
from app.domain.models import Offer
from app.domain.unify import assign_products

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GTIN_A = "04006381333931"
GTIN_B = "00036000291452"


def offer(vendor: str, vpid: str, title: str, **kw: object) -> Offer:
    base: dict[str, object] = {"price": Decimal("10.00"), "currency": "USD", "fetched_at": T0}
    base.update(kw)
    return Offer(vendor_id=vendor, vendor_product_id=vpid, title=title, **base)  # type: ignore[arg-type]


def as_sets(keys: dict[OfferKey, str]) -> set[frozenset[OfferKey]]:
    groups: dict[str, set[OfferKey]] = defaultdict(set)
    for member, key in keys.items():
        groups[key].add(member)
    return {frozenset(g) for g in groups.values()}


def no_conflict(x: OfferKey, y: OfferKey) -> bool:
    return False


def test_without_edges_the_groups_and_keys_are_todays() -> None:
    offers = [
        offer("a", "1", "Kettle", gtin=GTIN_A),
        offer("b", "2", "Kettle", brand="Acme", sku="K-1"),
        offer("c", "3", "Kettle", brand="ACME", sku="k1", gtin=GTIN_A),
        offer("d", "4", "Toaster"),
    ]
    base = assign_products(offers)
    groups = cluster(base, [], no_conflict, 0.5)
    assert {m: g.key for g in groups for m in g.members} == base


def test_edges_merge_and_the_strongest_identifier_names_the_product() -> None:
    base = {("a", "1"): "gtin:" + GTIN_A, ("b", "2"): "bs:acme|K1", ("c", "3"): "offer:c:3"}
    edges = [Edge.of(("c", "3"), ("b", "2"), 0.9), Edge.of(("a", "1"), ("b", "2"), 0.8)]
    [group] = cluster(base, edges, no_conflict, 0.5)
    assert group.key == "gtin:" + GTIN_A and group.members == (("a", "1"), ("b", "2"), ("c", "3"))
    # Below the threshold nothing merges.
    assert len(cluster(base, edges, no_conflict, 0.95)) == 3


def test_a_chain_of_edges_never_gathers_two_offers_of_one_vendor() -> None:
    """A shop's two look-alikes are two items: the chain shop1 - shop2 - shop1 stops where it would hold shop1
    twice, whatever the scores; identifiers (and ``same_vendor``) still join one vendor's offers."""
    a, b, c = ("shop1", "1"), ("shop2", "7"), ("shop1", "2")
    base = {a: "offer:shop1:1", b: "offer:shop2:7", c: "offer:shop1:2"}
    edges = [Edge.of(a, b, 0.9), Edge.of(b, c, 0.8)]
    assert {g.members for g in cluster(base, edges, no_conflict, 0.5)} == {(a, b), (c,)}
    assert {g.members for g in cluster(base, edges, no_conflict, 0.5, same_vendor=True)} == {(a, c, b)}
    shared = {a: "gtin:" + GTIN_A, b: "offer:shop2:7", c: "gtin:" + GTIN_A}
    assert {g.members for g in cluster(shared, edges, no_conflict, 0.5)} == {(a, c, b)}


def test_a_chain_of_edges_never_joins_two_gtins() -> None:
    base = {("a", "1"): "gtin:" + GTIN_A, ("b", "2"): "offer:b:2", ("c", "3"): "gtin:" + GTIN_B}
    gtins = {("a", "1"): GTIN_A, ("c", "3"): GTIN_B}

    def conflict(x: OfferKey, y: OfferKey) -> bool:
        return x in gtins and y in gtins and gtins[x] != gtins[y]

    edges = [Edge.of(("a", "1"), ("b", "2"), 0.7), Edge.of(("b", "2"), ("c", "3"), 0.9)]
    groups = cluster(base, edges, conflict, 0.5)
    # The stronger edge wins: b joins c, and the weaker a-b edge is refused.
    assert {g.key: g.members for g in groups} == {
        "gtin:" + GTIN_A: (("a", "1"),),
        "gtin:" + GTIN_B: (("b", "2"), ("c", "3")),
    }


def test_unify_offers_keeps_variants_apart_and_merges_retitled_listings() -> None:
    offers = [
        offer("shop1", "1", "Apple iPhone 13 Pro 128GB Graphite", brand="Apple", price=Decimal("999")),
        offer("shop2", "7", "iPhone 13 Pro (128 GB) - Graphite", price=Decimal("989")),
        offer("shop3", "x", "APPLE IPHONE 13 PRO 256GB GRAPHITE", price=Decimal("1099")),
        offer("shop2", "8", "iPhone 13 Pro (256 GB) - Graphite", price=Decimal("1089")),
        offer("shop1", "2", "Essence Mascara Lash Princess", brand="Essence", price=Decimal("9.99")),
        offer("shop3", "y", "Mascara Lash Princess by Essence", price=Decimal("10.49")),
    ]
    keys = unify_offers(offers, default_matcher())
    assert as_sets(keys) == {
        frozenset({("shop1", "1"), ("shop2", "7")}),
        frozenset({("shop3", "x"), ("shop2", "8")}),
        frozenset({("shop1", "2"), ("shop3", "y")}),
    }
    assert keys[("shop2", "7")] == "offer:shop1:1"  # the smallest offer key when no identifier is there
    # Any arrival order gives the same products under the same keys.
    shuffled = offers[:]
    random.Random(3).shuffle(shuffled)
    assert unify_offers(shuffled, default_matcher()) == keys


# Random graphs: offers with optional GTINs (conflicts) and scored edges, some tied.
_offers = st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 30)), min_size=1, max_size=14, unique=True)


@st.composite
def graphs(draw: st.DrawFn) -> tuple[dict[OfferKey, str], list[Edge], dict[OfferKey, int]]:
    keys = [(v, str(n)) for v, n in draw(_offers)]
    gtin = {k: draw(st.integers(0, 2)) for k in keys if draw(st.booleans())}
    base = {k: f"gtin:{gtin[k]}" if k in gtin else f"offer:{k[0]}:{k[1]}" for k in keys}
    edges = []
    for _ in range(draw(st.integers(0, 25))):
        x, y = draw(st.sampled_from(keys)), draw(st.sampled_from(keys))
        if x != y:
            edges.append(Edge.of(x, y, draw(st.sampled_from([0.6, 0.7, 0.7, 0.9, 1.0]))))
    return base, edges, gtin


@settings(max_examples=200, deadline=None)
@given(graphs(), st.randoms(use_true_random=False))
def test_any_permutation_gives_the_same_groups_and_keys(
    graph: tuple[dict[OfferKey, str], list[Edge], dict[OfferKey, int]], rnd: random.Random
) -> None:
    base, edges, gtin = graph

    def conflict(x: OfferKey, y: OfferKey) -> bool:
        return x in gtin and y in gtin and gtin[x] != gtin[y]

    expected = cluster(base, edges, conflict, 0.65)
    items = list(base.items())
    rnd.shuffle(items)
    shuffled_edges = edges[:]
    rnd.shuffle(shuffled_edges)
    assert cluster(dict(items), shuffled_edges, conflict, 0.65) == expected
    # No product holds two GTINs.
    for group in expected:
        assert len({gtin[m] for m in group.members if m in gtin}) <= 1


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_clustering_decomposes_over_connected_components(
    graph: tuple[dict[OfferKey, str], list[Edge], dict[OfferKey, int]],
) -> None:
    """What the store relies on: recomputing one component alone gives that component's part of the whole."""
    base, edges, gtin = graph
    threshold = 0.65

    def conflict(x: OfferKey, y: OfferKey) -> bool:
        return x in gtin and y in gtin and gtin[x] != gtin[y]

    whole = cluster(base, edges, conflict, threshold)
    parent = {k: k for k in base}

    def find(x: OfferKey) -> OfferKey:
        while parent[x] != x:
            x = parent[x]
        return x

    by_base: dict[str, list[OfferKey]] = defaultdict(list)
    for k, key in base.items():
        by_base[key].append(k)
    links = [(e.a, e.b) for e in edges if e.score >= threshold]
    links += [(g[0], other) for g in by_base.values() for other in g[1:]]
    for x, y in links:
        parent[find(x)] = find(y)
    components: dict[OfferKey, list[OfferKey]] = defaultdict(list)
    for k in base:
        components[find(k)].append(k)
    parts = []
    for members in components.values():
        inside = set(members)
        sub_edges = [e for e in edges if e.a in inside and e.b in inside]
        parts += cluster({k: base[k] for k in members}, sub_edges, conflict, threshold)
    assert sorted(parts, key=lambda g: g.key) == whole
