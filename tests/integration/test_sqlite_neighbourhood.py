"""Settling a write from its neighbourhood (``app.store.sqlite.neighbourhood``) gives the whole-set reference's
products and explanations, on a catalog of look-alikes whose components hold several products each: colours
that conflict, listings without a colour that could join either, retitled and brand-less listings, in any
arrival order and part size, and again after a re-pricing and a removal."""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from pytest import MonkeyPatch

from app.domain.matching import candidate_edges, cluster, default_matcher, from_offer, unify_explained
from app.domain.models import Offer
from app.domain.unify import product_id
from app.store.sqlite import neighbourhood
from app.store.sqlite.catalog import SqliteCatalog
from app.store.sqlite.neighbourhood import default_key
from tests.integration.test_sqlite_catalog import T0, offer, with_vendors

VENDORS = ("shop1", "shop2", "shop3", "shop4")
LINES = (
    ("Acme", "Trail Runner Shoe Lightweight Mesh Upper"),
    ("Acme", "Road Runner Shoe Cushioned Mesh Upper"),
    ("Zeta", "Trail Runner Shoe Lightweight Grip Sole"),
    ("Orbit", "Desk Lamp Dimmable LED Arm"),
    ("Orbit", "Floor Lamp Dimmable LED Arc"),
    ("Zeta", "Rain Jacket Packable Hooded Shell"),
    ("Acme", "Rain Jacket Packable Hooded Shell"),
)
COLOURS = ("Red", "Blue", "Black", "Green", None, None)


def lookalikes(count: int = 120, seed: int = 0) -> list[Offer]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        brand, line = rng.choice(LINES)
        colour = rng.choice(COLOURS)
        words = line.split()
        if rng.random() < 0.3:
            rng.shuffle(words)
        title = " ".join(words)
        title = f"{brand} {title}" if rng.random() < 0.6 else f"{title} by {brand}"
        if colour:
            title += rng.choice((f" {colour}", f" - {colour}", f" ({colour})"))
        price = Decimal(rng.choice(("49.99", "52.00", "47.50", "99.00")))
        out.append(
            offer(rng.choice(VENDORS), f"x{i}", title=title, brand=brand if rng.random() < 0.5 else None, price=price)
        )
    return out


def stored(path: Path) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], Any]]:
    """Each offer's product id and explanation as the product detail gives it."""
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT o.vendor_id, o.vendor_product_id, o.product_id, o.gtin, o.match_key, w.why "
        "FROM offers o LEFT JOIN match_why w ON w.offer = o.rowid"
    ).fetchall()
    conn.close()
    pids = {(v, p): pid for v, p, pid, *_ in rows}
    why = {
        (v, p): orjson.loads(w) if w else {"by": "key", "key": default_key(g, mk, (v, p))} for v, p, _, g, mk, w in rows
    }
    return pids, why


def no_key_stopped(path: Path) -> bool:
    conn = sqlite3.connect(path)
    (n,) = conn.execute("SELECT count(*) FROM match_stop_keys").fetchone()
    conn.close()
    return bool(n == 0)


def reference(offers: list[Offer]) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], Any]]:
    keys, why = unify_explained(offers, default_matcher())
    # As JSON gives them back: the store keeps each explanation as JSON text.
    return {k: product_id(key) for k, key in keys.items()}, {k: orjson.loads(orjson.dumps(v)) for k, v in why.items()}


def test_the_catalog_chains_products_into_components() -> None:
    """The fixture is what the module is for: edges link products that conflicts keep apart."""
    offers = lookalikes()
    records = {o.key: from_offer(o) for o in offers}
    edges = candidate_edges(records, default_matcher())
    pids, _ = reference(offers)
    parent = {k: k for k in records}

    def find(x: tuple[str, str]) -> tuple[str, str]:
        while parent[x] != x:
            x = parent[x] = parent[parent[x]]
        return x

    for e in edges:
        parent[find(e.a)] = find(e.b)
    products_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for k in records:
        products_of[find(k)].add(pids[k])
    assert max(len(s) for s in products_of.values()) >= 5


async def test_any_order_and_part_size_gives_the_reference(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    offers = lookalikes()
    want_pids, want_why = reference(offers)
    # Both ways the neighbourhood grows must happen here: a far end read whole, and a ring product joined.
    grown = {"whole": 0, "changed": 0}
    real: Callable[..., tuple[set[int], set[int]]] = neighbourhood._reached

    def counting(*args: Any) -> tuple[set[int], set[int]]:
        whole, changed = real(*args)
        grown["whole"] += bool(whole)
        grown["changed"] += bool(changed)
        return whole, changed

    monkeypatch.setattr(neighbourhood, "_reached", counting)
    for seed in range(6):
        order = offers[:]
        random.Random(seed).shuffle(order)
        store = SqliteCatalog(tmp_path / f"c{seed}.db")
        store.open()
        try:
            await with_vendors(store, *VENDORS)
            rng = random.Random(100 + seed)
            i = 0
            while i < len(order):
                size = rng.randint(1, 7)
                await store.upsert_offers(order[i : i + size])
                i += size
            pids, why = stored(store.path)
            assert no_key_stopped(store.path)  # so a removal must give the reference too (see the README)
            assert pids == want_pids
            assert why == want_why
            # New prices move scores (the price ratio is evidence): the reference of the re-priced set.
            repriced = [replace(o, price=o.price * 2 if o.vendor_id == "shop2" else o.price) for o in order]
            repriced = [replace(o, fetched_at=T0 + timedelta(hours=1)) for o in repriced]
            for j in range(0, len(repriced), 9):
                await store.upsert_offers(repriced[j : j + 9])
            want = reference(repriced)
            pids, why = stored(store.path)
            assert pids == want[0]
            assert why == want[1]
            # A removal: the listings that bridged products go, and the reference without them is the store's.
            gone = [o for o in repriced if o.vendor_id == "shop3" and "(" not in o.title and "-" not in o.title]
            for o in gone:
                assert await store.delete_offers_of("shop3", o.vendor_product_id) == 1
            left = [o for o in repriced if o not in gone]
            want = reference(left)
            pids, why = stored(store.path)
            assert pids == want[0]
            assert why == want[1]
        finally:
            store.close()
    assert grown["whole"] > 0 and grown["changed"] > 0


async def test_one_large_write_clusters_each_part_once(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    """A whole catalog in one write settles in several runs; a part met again with the same offers and edges is
    taken as clustered before (``_clustered``), and the products are still the reference's."""
    offers = lookalikes(seed=3)
    want_pids, want_why = reference(offers)
    clustered: list[tuple[frozenset[Any], frozenset[Any]]] = []
    runs = {"n": 0}
    real_cluster, real_run = cluster, neighbourhood.run

    def counting_cluster(base: Any, edges: Any, *args: Any) -> Any:
        clustered.append((frozenset(base), frozenset(edges)))
        return real_cluster(base, edges, *args)

    def counting_run(*args: Any) -> Any:
        runs["n"] += 1
        return real_run(*args)

    monkeypatch.setattr(neighbourhood, "cluster", counting_cluster)
    monkeypatch.setattr(neighbourhood, "run", counting_run)
    store = SqliteCatalog(tmp_path / "c.db")
    store.open()
    try:
        await with_vendors(store, *VENDORS)
        await store.upsert_offers(offers[:60])  # stored products for the second write's settle to grow into
        clustered.clear()
        runs["n"] = 0
        await store.upsert_offers(offers[60:])
        pids, why = stored(store.path)
    finally:
        store.close()
    assert pids == want_pids
    assert why == want_why
    assert runs["n"] > 1
    assert clustered and len(set(clustered)) == len(clustered)
