"""Sort keys of the search index: one number per product that orders as (value, id) does."""

from __future__ import annotations

import random

from app.domain.unify import product_id
from app.search.query import analyzer
from app.search.tantivy_index import id_bits, sort_key


def test_id_bits_sort_as_the_store_ids_do() -> None:
    ids = sorted(product_id(f"k{i}") for i in range(2000))
    bits = [id_bits(i) for i in ids]
    assert bits == sorted(bits)
    assert len(set(bits)) == len(bits)


def test_id_bits_of_other_ids_keep_their_order() -> None:
    ids = sorted(["a", "ab", "abc", "b", "offer:x", "zz"])
    bits = [id_bits(i) for i in ids]
    assert bits == sorted(bits)


def test_sort_key_orders_by_value_then_id() -> None:
    rng = random.Random(3)
    pairs = [(rng.choice([0, 999, 1000, 25_000]), product_id(f"p{i}")) for i in range(500)]
    keys = [sort_key(v, pid) for v, pid in sorted(pairs)]
    assert keys == sorted(keys)


def test_sort_key_clamps_out_of_range_values() -> None:
    pid = product_id("x")
    assert sort_key(-5, pid) == sort_key(0, pid)
    assert sort_key(1 << 40, pid) == sort_key((1 << 34) - 1, pid)


def test_the_analyzer_folds_case_and_accents_and_splits_on_punctuation() -> None:
    assert analyzer().analyze("Nescafé GOLD 6-Pack, J'adore") == ["nescafe", "gold", "6", "pack", "j", "adore"]
