"""Unification with the matcher in the SQLite store: the same products as the whole-set reference in any arrival
order and batching, stable ids, reasons in the product detail, identifiers still deciding, overrides."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import orjson
from pytest import MonkeyPatch

from app.domain.matching import (
    NO_OVERRIDES,
    OverrideChange,
    Overrides,
    blocking,
    default_matcher,
    from_offer,
    unify_explained,
)
from app.domain.models import Offer
from app.domain.unify import product_id
from app.store.sqlite.catalog import SqliteCatalog
from app.store.sqlite.matching import _RECORD, _record
from app.store.sqlite.offers import OFFER_READ, row_to_offer
from tests.integration.test_sqlite_catalog import T0, offer, with_vendors

GTIN_A = "04006381333931"
GTIN_B = "00036000291452"


def catalog() -> list[Offer]:
    return [
        offer("shop1", "1", title="Apple iPhone 13 Pro 128GB Graphite", brand="Apple", price=Decimal("999")),
        offer("shop2", "7", title="iPhone 13 Pro (128 GB) - Graphite", price=Decimal("989")),
        offer("shop3", "x", title="APPLE IPHONE 13 PRO 256GB GRAPHITE", price=Decimal("1099")),
        offer("shop2", "8", title="iPhone 13 Pro (256 GB) - Graphite", price=Decimal("1089")),
        offer("shop1", "2", title="Essence Mascara Lash Princess", brand="Essence", price=Decimal("9.99")),
        offer("shop3", "y", title="Mascara Lash Princess by Essence", price=Decimal("10.49")),
        # Identifiers: the same GTIN joins whatever the titles; two GTINs never join however alike the titles.
        offer("shop1", "3", title="Kettle KT-100 steel", brand="Acme", gtin=GTIN_A),
        offer("shop2", "3", title="Acme KT100 Kettle, steel", gtin=GTIN_B),
        offer("shop3", "3", title="Water boiler", brand="Acme", gtin=GTIN_A),
        offer("shop2", "9", title="Annibale Colombo Bed", brand="Annibale Colombo", price=Decimal("1899")),
        offer("shop3", "9", title="Annibale Colombo Sofa", brand="Annibale Colombo", price=Decimal("2499")),
    ]


def assignment(store: SqliteCatalog) -> dict[tuple[str, str], str]:
    conn = sqlite3.connect(store.path)
    rows = conn.execute("SELECT vendor_id, vendor_product_id, product_id FROM offers").fetchall()
    conn.close()
    return {(v, p): pid for v, p, pid in rows}


def expected(offers: list[Offer], overrides: Overrides = NO_OVERRIDES) -> dict[tuple[str, str], str]:
    keys, _ = unify_explained(offers, default_matcher(), overrides)
    return {k: product_id(key) for k, key in keys.items()}


async def fresh(path: Path) -> SqliteCatalog:
    store = SqliteCatalog(path)
    store.open()
    await with_vendors(store, "shop1", "shop2", "shop3")
    return store


async def test_any_order_and_batching_gives_the_reference_products(tmp_path: Path) -> None:
    offers = catalog()
    want = expected(offers)
    groups = {frozenset(k for k in want if want[k] == pid) for pid in want.values()}
    assert frozenset({("shop1", "1"), ("shop2", "7")}) in groups  # retitled: merged by score
    assert frozenset({("shop1", "2"), ("shop3", "y")}) in groups
    assert frozenset({("shop1", "3"), ("shop3", "3")}) in groups  # the GTIN decides
    assert frozenset({("shop2", "3")}) in groups  # another GTIN: never merged
    assert frozenset({("shop2", "9")}) in groups  # a bed is not a sofa
    for seed in range(4):
        order = offers[:]
        random.Random(seed).shuffle(order)
        store = await fresh(tmp_path / f"c{seed}.db")
        try:
            size = 1 + seed  # one by one, pairs, ... : candidates both stored and in the same batch
            for i in range(0, len(order), size):
                await store.upsert_offers(order[i : i + size])
            assert assignment(store) == want
            # A re-sync with new content (prices) keeps every product and id.
            await store.upsert_offers(
                [replace(o, price=o.price + 1, fetched_at=T0 + timedelta(hours=1)) for o in order]
            )
            assert assignment(store) == want
        finally:
            store.close()


async def test_keys_over_their_cap_make_no_candidates_in_any_order(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    """Block purging: with caps of two offers, the Essence listings' keys (three offers) make no candidates, so the
    mascara pair found while only two of them were stored must go again when the third arrives; the iPhones still
    meet on keys of two. The store must give the capped reference's products whatever the order."""
    offers = [
        *catalog(),
        offer("shop1", "4", title="Apple iPhone 13 Pro 128GB Sierra Blue", brand="Apple", price=Decimal("999")),
        offer("shop3", "z", title="iPhone 13 Pro 128 GB Sierra Blue", price=Decimal("995")),
        offer("shop2", "5", title="Essence Lash Princess Mascara Black", brand="Essence", price=Decimal("9.49")),
    ]
    uncapped = expected(offers)
    monkeypatch.setattr(blocking, "MAX_WORD_BLOCK", 2)
    monkeypatch.setattr(blocking, "MAX_CODE_BLOCK", 2)
    want = expected(offers)
    assert want != uncapped  # the cap decides something here
    assert want[("shop1", "2")] != want[("shop3", "y")] and want[("shop1", "4")] == want[("shop3", "z")]
    for seed in range(6):
        order = offers[:]
        random.Random(seed).shuffle(order)
        store = await fresh(tmp_path / f"c{seed}.db")
        try:
            size = 1 + seed % 3
            for i in range(0, len(order), size):
                await store.upsert_offers(order[i : i + size])
            assert assignment(store) == want
            conn = sqlite3.connect(store.path)
            (stopped,) = conn.execute("SELECT count(*) FROM match_stop_keys").fetchone()
            conn.close()
            assert stopped > 0
            await store.upsert_offers(
                [replace(o, price=o.price + 1, fetched_at=T0 + timedelta(hours=1)) for o in order]
            )
            assert assignment(store) == want
        finally:
            store.close()


async def test_detail_says_why_each_offer_belongs(tmp_path: Path) -> None:
    store = await fresh(tmp_path / "c.db")
    try:
        await store.upsert_offers(catalog())
        phone = store.find_offer("shop2", "7")
        assert phone is not None
        stored = store.get_product(phone.product_id)
        assert stored is not None
        matches = {(o["vendor_id"], o["vendor_product_id"]): o["match"] for o in orjson.loads(stored.doc)["offers"]}
        assert matches[("shop1", "1")] == {"by": "key", "key": "offer:shop1:1"}
        by_score = matches[("shop2", "7")]
        assert by_score["by"] == "score" and by_score["score"] >= default_matcher().threshold("merge")
        assert "brand" in by_score["reasons"] or any(str(r).startswith("title:") for r in by_score["reasons"])
        kettle = store.find_offer("shop3", "3")
        assert kettle is not None
        doc = orjson.loads(store.get_product(kettle.product_id).doc)  # type: ignore[union-attr]
        assert {o["match"]["key"] for o in doc["offers"]} == {"gtin:" + GTIN_A}
    finally:
        store.close()


async def test_removing_the_bridge_splits_the_product_again(tmp_path: Path) -> None:
    store = await fresh(tmp_path / "c.db")
    try:
        offers = catalog()
        await store.upsert_offers(offers)
        await store.delete_offers_of("shop2", "7")
        rest = [o for o in offers if o.key != ("shop2", "7")]
        assert assignment(store) == expected(rest)
        await store.delete_vendor("shop3")
        rest = [o for o in rest if o.vendor_id != "shop3"]
        assert assignment(store) == expected(rest)
    finally:
        store.close()


async def test_split_and_pin_survive_a_full_resync(tmp_path: Path) -> None:
    store = await fresh(tmp_path / "c.db")
    try:
        offers = catalog()
        await store.upsert_offers(offers)
        await store.apply_override(OverrideChange("split", ("shop2", "7")))
        await store.apply_override(OverrideChange("pin", ("shop2", "9"), ("shop3", "9")))
        overrides = Overrides(frozenset({("shop2", "7")}), frozenset({(("shop2", "9"), ("shop3", "9"))}))
        want = expected(offers, overrides)
        assert want[("shop2", "7")] == product_id("offer:shop2:7") != want[("shop1", "1")]
        assert want[("shop2", "9")] == want[("shop3", "9")]
        assert assignment(store) == want
        # A full re-sync: every offer rewritten with new content, then the same again unchanged.
        again = [replace(o, price=o.price + 2, fetched_at=T0 + timedelta(days=1)) for o in offers]
        await store.upsert_offers(again)
        await store.upsert_offers(again)
        assert assignment(store) == want
        # Offers deleted at the vendor and listed again keep their overrides.
        await store.delete_offers_of("shop3", "9")
        await store.upsert_offers([o for o in again if o.key == ("shop3", "9")])
        assert assignment(store) == want
        pinned = store.get_product(want[("shop2", "9")])
        assert pinned is not None
        assert {o["match"]["by"] for o in orjson.loads(pinned.doc)["offers"]} <= {"key", "pin"}
        # Clearing the overrides gives the matcher's products back.
        await store.apply_override(OverrideChange("clear", ("shop2", "7")))
        await store.apply_override(OverrideChange("clear", ("shop3", "9")))
        assert assignment(store) == expected(offers)
    finally:
        store.close()


async def test_a_store_opened_without_matching_reclusters_on_identifiers(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = await fresh(path)
    offers = catalog()
    await store.upsert_offers(offers)
    store.close()
    plain = SqliteCatalog(path, matching=False)
    plain.open()
    try:
        keys, _ = unify_explained(offers, None)
        assert assignment(plain) == {k: product_id(v) for k, v in keys.items()}
    finally:
        plain.close()
    again = SqliteCatalog(path)
    again.open()
    try:
        assert assignment(again) == expected(offers)
    finally:
        again.close()


async def test_the_candidates_record_is_the_stored_offers_record(tmp_path: Path) -> None:
    """The unifier reads a candidate's match fields only (``_RECORD``): the record must be the one the whole
    stored offer gives, or a pair's score would depend on which side was read back."""
    store = await fresh(tmp_path / "c.db")
    try:
        await store.upsert_offers([*catalog(), offer("shop1", "n", title="Déjà Vu 2", description="x", sku="A-1")])
        conn = sqlite3.connect(store.path)
        whole = {
            int(r[0]): from_offer(row_to_offer(r[1:])) for r in conn.execute(f"SELECT rowid, {OFFER_READ} FROM offers")
        }
        read = {int(r[0]): _record(r) for r in conn.execute(f"SELECT {_RECORD} FROM offers")}
        conn.close()
        assert read == whole and len(read) == len(catalog()) + 1
    finally:
        store.close()
