"""The shortcuts a store takes, which must change no decision: screens (a store refuses candidate pairs by them
without reading the records, so a screen may only refuse what merging refuses anyway,
``app.domain.matching.screen``), and offers that cannot conflict (clustering never compares them)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from app.domain.matching import MatchRecord, default_matcher, from_mapping
from app.domain.matching.screen import Screen, dumps, loads, refused
from tools.matching_data import DATASETS, SPLITS, default_dir, read_split, split_path

GTIN = "04006381333931"


def rec(title: str, brand: str | None = None, **kw: object) -> MatchRecord:
    return MatchRecord(title=title, brand=brand, price=Decimal("10"), currency="EUR", **kw)  # type: ignore[arg-type]


def screened(a: MatchRecord, b: MatchRecord) -> bool:
    m = default_matcher()
    return refused(m.screen(a), m.screen(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (rec("Apple iPhone 13 Pro 128 GB", "Apple"), rec("Apple iPhone 13 Pro Max 128 GB", "Apple")),  # tier
        (rec("Photoshop CS5", "Adobe"), rec("Photoshop CS5 Upgrade", "Adobe")),  # edition
        (rec("Cotton Shirt Blue", "Acme"), rec("Cotton Shirt Blue - XL", "Acme")),  # size on one side
        (rec("Galaxy S10", "Samsung"), rec("Galaxy S10 256 GB", "Samsung")),  # a measure on one side
        (rec("Women Leather Bag", "Prada"), rec("Women Leather Bag", "Heshe")),  # two brands given
    ],
)
def test_what_a_screen_refuses_merging_refuses(a: MatchRecord, b: MatchRecord) -> None:
    assert screened(a, b) and screened(b, a)
    assert not default_matcher().score(a, b, "merge").match


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # Identifiers decide before any difference of the titles: the screen must leave these to scoring.
        (rec("Apple iPhone 13 Pro", "Apple", gtin=GTIN), rec("Apple iPhone 13 Pro Max", "Apple", gtin=GTIN)),
        (rec("Kettle Pro", "Acme", sku="K-100"), rec("Kettle", "Acme", sku="k100")),
        # No difference a screen can tell: the model decides.
        (rec("Acme Electric Kettle 1.7 L", "Acme"), rec("Electric Kettle 1.7 L by Acme", "Acme")),
    ],
)
def test_identifiers_and_alike_titles_are_left_to_scoring(a: MatchRecord, b: MatchRecord) -> None:
    assert not screened(a, b)
    if a.gtin or a.sku:
        assert default_matcher().score(a, b, "merge").match


def test_a_screen_reads_back_as_written() -> None:
    m = default_matcher()
    for r in (rec("Apple iPhone 13 Pro Max 256 GB Blue - XL", "Apple", sku="A-1", gtin=GTIN), rec("kettle")):
        s = m.screen(r)
        text = dumps(s)
        assert text is not None and loads(text) == s
    odd = Screen(False, True, "a\x1fb", None, None, frozenset(), frozenset(), False, frozenset())
    assert dumps(odd) is None  # not storable: that offer is scored, never screened


def _benchmark_records() -> list[MatchRecord]:
    folder = default_dir()
    records: dict[str, MatchRecord] = {}
    for dataset, split in itertools.product(DATASETS, SPLITS):
        path = split_path(folder, dataset, split)
        if not path.exists():
            pytest.skip(f"the public benchmark pairs are not at {folder} (../shared/matching)")
        for pair in read_split(path):
            for side in (pair.left, pair.right):
                records.setdefault(repr(sorted(side.items())), from_mapping(side))
    return list(records.values())


def test_on_the_benchmarks_a_screen_never_refuses_a_pair_merging_would_take() -> None:
    """Every pair of records of one benchmark sharing a title word (the pairs blocking could make), scored and
    screened: no pair the screen refuses is a merge, and the screen refuses a real share of them."""
    m = default_matcher()
    records = _benchmark_records()
    by_word: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        for w in set(r.title.lower().split()):
            if len(w) >= 4:
                by_word.setdefault(w, []).append(i)
    pairs = {(i, j) for ids in by_word.values() if len(ids) <= 30 for i, j in itertools.combinations(ids, 2)}
    assert len(pairs) > 20_000
    refusals = 0
    for i, j in sorted(pairs):
        a, b = records[i], records[j]
        if refused(m.screen(a), m.screen(b)):
            refusals += 1
            assert not m.score(a, b, "merge").match, (a.title, b.title)
    assert refusals > len(pairs) // 10


def test_on_the_benchmarks_an_offer_that_cannot_conflict_conflicts_with_none() -> None:
    m = default_matcher()
    everything = _benchmark_records()
    inert = [r for r in everything if not m.can_conflict(r)]
    records = everything[:1500]
    assert 100 < len(inert) < len(everything) // 2  # electronics and software: most titles carry a number
    for a in inert:
        for b in records:
            assert not m.conflict(a, b) and not m.conflict(b, a), (a.title, b.title)
    assert any(m.conflict(a, b) for a, b in itertools.combinations(records[:300], 2))


def test_cluster_gives_the_same_groups_with_and_without_skipping_members_that_cannot_conflict() -> None:
    from app.domain.matching import Edge, cluster

    m = default_matcher()
    titles = ["Galaxy S10 128 GB", "Galaxy S10", "Galaxy S10 256 GB", "Galaxy S10 Phone", "Galaxy S10 Red"]
    recs = {("v", str(i)): rec(t, "Samsung") for i, t in enumerate(titles)}
    keys = sorted(recs)
    base = {k: f"offer:{k[0]}:{k[1]}" for k in keys}
    edges = [Edge.of(x, y, 0.9 + 0.001 * i) for i, (x, y) in enumerate(itertools.combinations(keys, 2))]

    def conflict(x: tuple[str, str], y: tuple[str, str]) -> bool:
        return m.conflict(recs[x], recs[y])

    plain = cluster(base, edges, conflict, 0.5)
    assert len(plain) > 1  # the two capacities never share a product
    assert cluster(base, edges, conflict, 0.5, can_conflict=lambda k: m.can_conflict(recs[k])) == plain
