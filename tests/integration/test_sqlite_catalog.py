"""The SQLite store on a real file: schema, idempotent upserts, change sequence, unification, queries."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from app.domain.cursor import InvalidCursor
from app.domain.models import Availability, Offer, Vendor, VendorKind
from app.domain.queries import ProductQuery, Sort
from app.domain.unify import unify
from app.errors import Conflict, NotFound
from app.store.sqlite.catalog import SqliteCatalog

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GTINS = ["04006381333931", "00036000291452", "00000096385074"]


def vendor(vid: str) -> Vendor:
    return Vendor(id=vid, name=vid.title(), kind=VendorKind.DUMMYJSON, base_url="http://x", currency="USD")


def offer(v: str, vpid: str, **kw: object) -> Offer:
    base: dict[str, object] = {
        "title": f"Thing {vpid}",
        "price": Decimal("10.00"),
        "currency": "USD",
        "fetched_at": T0,
        "vendor_updated_at": T0,
    }
    base.update(kw)
    return Offer(vendor_id=v, vendor_product_id=vpid, **base)  # type: ignore[arg-type]


async def with_vendors(store: SqliteCatalog, *ids: str) -> None:
    for vid in ids:
        await store.add_vendor(vendor(vid))


def stored_products(store: SqliteCatalog) -> dict[str, dict[str, object]]:
    conn = sqlite3.connect(store.path)
    rows = conn.execute("SELECT id, doc FROM products").fetchall()
    conn.close()
    return {pid: orjson.loads(doc) for pid, doc in rows}


def test_schema_is_wal_with_fts(store: SqliteCatalog) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"offers", "products", "products_fts", "vendors", "vendor_sync", "product_vendors"} <= names
    conn.close()


def test_reopening_applies_migrations_once(store: SqliteCatalog) -> None:
    again = SqliteCatalog(store.path)
    again.open()
    assert again.change_seq() == 0
    again.close()


async def test_upsert_is_idempotent_and_sequence_moves_only_on_change(store: SqliteCatalog) -> None:
    await with_vendors(store, "a")
    offers = [offer("a", str(i), sku=f"S{i}") for i in range(5)]
    first = await store.upsert_offers(offers)
    assert (first.inserted, first.updated, first.unchanged) == (5, 0, 0)
    seq = store.change_seq()
    later = [replace(o, fetched_at=T0 + timedelta(hours=1)) for o in offers]
    second = await store.upsert_offers(later)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 5)
    assert store.change_seq() == seq
    ref = store.find_offer("a", "0")
    assert ref is not None and ref.fetched_at == T0 + timedelta(hours=1)

    third = await store.upsert_offers([replace(offers[0], price=Decimal("11.00"), fetched_at=T0 + timedelta(hours=2))])
    assert third.updated == 1 and third.products_changed == 1
    assert store.change_seq() > seq
    doc = orjson.loads(store.get_product(ref.product_id).doc)  # type: ignore[union-attr]
    assert doc["min_price"] == "11.00"


async def test_a_late_older_fetch_of_the_same_version_changes_nothing_and_the_sweep_keeps_the_offer(
    store: SqliteCatalog,
) -> None:
    """The kafka runtime applies a miss (its own topic) and a sync page in no fixed order: the miss fetched first
    but applied last must neither roll the offer back nor move its fetch time back before the sync's start."""
    await with_vendors(store, "a")
    synced_at, sync_started = T0 + timedelta(minutes=10), T0 + timedelta(minutes=5)
    await store.upsert_offers([offer("a", "1", stock=5, fetched_at=synced_at, availability=Availability.IN_STOCK)])
    await store.upsert_offers([offer("a", "1", stock=9, fetched_at=T0)])  # same vendor time, fetched earlier
    ref = store.find_offer("a", "1")
    assert ref is not None and ref.fetched_at == synced_at
    assert await store.mark_unlisted("a", sync_started) == 0
    doc = orjson.loads(store.get_product(ref.product_id).doc)  # type: ignore[union-attr]
    assert doc["in_stock"] is True
    # In one batch too: the newest observation wins, whatever the order.
    await store.upsert_offers([offer("a", "2", stock=3, fetched_at=synced_at), offer("a", "2", stock=7, fetched_at=T0)])
    assert stored(store, "a", "2", "stock") == 3
    assert stored(store, "a", "1", "stock") == 5


async def test_a_sync_reading_an_older_version_than_a_webhook_still_counts_the_offer_as_listed(
    store: SqliteCatalog,
) -> None:
    await with_vendors(store, "a")
    hook = offer("a", "1", title="Newer", vendor_updated_at=T0 + timedelta(hours=1), fetched_at=T0, stock=2)
    await store.upsert_offers([hook])
    read_by_sync = offer("a", "1", title="Older", vendor_updated_at=T0, fetched_at=T0 + timedelta(minutes=20))
    await store.upsert_offers([read_by_sync])
    assert await store.mark_unlisted("a", T0 + timedelta(minutes=15)) == 0
    ref = store.find_offer("a", "1")
    assert ref is not None and ref.fetched_at == T0 + timedelta(minutes=20)
    doc = orjson.loads(store.get_product(ref.product_id).doc)  # type: ignore[union-attr]
    assert doc["name"] == "Newer" and stored(store, "a", "1", "availability") == "unknown"  # not discontinued


def stored(store: SqliteCatalog, vendor_id: str, vendor_product_id: str, column: str) -> object:
    """One column of a stored offer row, read apart from the store's own code."""
    conn = sqlite3.connect(store.path)
    (value,) = conn.execute(
        f"SELECT {column} FROM offers WHERE vendor_id = ? AND vendor_product_id = ?", (vendor_id, vendor_product_id)
    ).fetchone()
    conn.close()
    return value


async def test_change_seq_is_strictly_increasing_per_row(store: SqliteCatalog) -> None:
    await with_vendors(store, "a")
    await store.upsert_offers([offer("a", str(i)) for i in range(3)])
    await store.upsert_offers([offer("a", "1", title="renamed")])
    conn = sqlite3.connect(store.path)
    seqs = [r[0] for r in conn.execute("SELECT change_seq FROM offers UNION ALL SELECT change_seq FROM products")]
    conn.close()
    assert len(seqs) == len(set(seqs))
    assert max(seqs) == store.change_seq()


async def test_incremental_unification_matches_whole_set_in_any_order(store: SqliteCatalog) -> None:
    await with_vendors(store, "a", "b", "c")
    rng = random.Random(3)
    offers: list[Offer] = []
    for i in range(60):
        brand = rng.choice(["Acme", "acme", "Globex", None])
        sku = rng.choice([f"K-{i % 9}", f"k {i % 9}", None])
        gtin = rng.choice([*GTINS, None, None, None])
        offers.append(
            offer(
                rng.choice("abc"),
                f"{i}",
                brand=brand,
                sku=sku,
                gtin=gtin,
                price=Decimal(rng.randint(100, 999)) / 100,
                images=(f"https://img/{i % 7}",),
                description=rng.choice(["", "text"]),
            )
        )
    rng.shuffle(offers)
    for start in range(0, len(offers), 7):
        await store.upsert_offers(offers[start : start + 7])
    expected = {p.id: p for p in unify(offers)}
    stored = stored_products(store)
    assert set(stored) == set(expected)
    for pid, product in expected.items():
        doc = stored[pid]
        assert doc["name"] == product.name
        assert doc["min_price"] == str(product.min_price)
        assert sorted((o["vendor_id"], o["vendor_product_id"]) for o in doc["offers"]) == sorted(  # type: ignore[attr-defined]
            o.key for o in product.offers
        )


async def test_a_late_barcode_pulls_matching_offers_into_the_gtin_product(store: SqliteCatalog) -> None:
    await with_vendors(store, "a", "b")
    await store.upsert_offers([offer("a", "1", brand="Acme", sku="X1")])
    before = store.find_offer("a", "1")
    await store.upsert_offers([offer("b", "7", brand="ACME", sku="x-1", gtin=GTINS[0])])
    after = store.find_offer("a", "1")
    assert before is not None and after is not None
    assert before.product_id != after.product_id
    assert after.product_id == store.find_offer("b", "7").product_id  # type: ignore[union-attr]
    assert store.get_product(before.product_id) is None
    assert store.count_products() == 1


async def test_delete_vendor_rebuilds_shared_products(store: SqliteCatalog) -> None:
    await with_vendors(store, "a", "b")
    await store.upsert_offers(
        [
            offer("a", "1", gtin=GTINS[0], title="From A", description="a"),
            offer("b", "2", gtin=GTINS[0], title="From B"),
        ]
    )
    pid = store.find_offer("b", "2").product_id  # type: ignore[union-attr]
    assert orjson.loads(store.get_product(pid).doc)["name"] == "From A"  # type: ignore[union-attr]
    await store.delete_vendor("a")
    assert orjson.loads(store.get_product(pid).doc)["name"] == "From B"  # type: ignore[union-attr]
    assert store.get_vendor("a") is None
    with pytest.raises(NotFound):
        await store.delete_vendor("a")


async def test_vendor_crud(store: SqliteCatalog) -> None:
    v = replace(vendor("a"), credentials={"access_token": "secret"})
    await store.add_vendor(v)
    with pytest.raises(Conflict):
        await store.add_vendor(v)
    assert store.get_vendor("a") == v
    await store.update_vendor(replace(v, name="Renamed", enabled=False))
    assert store.get_vendor("a").name == "Renamed"  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await store.update_vendor(vendor("zzz"))
    assert store.vendor_status("a").state == "never"


async def seed_catalog(store: SqliteCatalog) -> list[Offer]:
    await with_vendors(store, "a", "b")
    offers = []
    for i in range(45):
        offers.append(
            offer(
                "a" if i % 3 else "b",
                str(i),
                title=f"{['Red', 'Blue', 'Green'][i % 3]} phone model {i}",
                brand=["Acme", "Globex"][i % 2],
                category=["phones", "cases"][i % 2],
                price=Decimal(i + 1),
                availability=Availability.IN_STOCK if i % 4 else Availability.OUT_OF_STOCK,
                vendor_updated_at=T0 + timedelta(minutes=i),
                description=f"Model number {i}",
            )
        )
    await store.upsert_offers(offers)
    return offers


def walk(store: SqliteCatalog, query: ProductQuery) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = None
    for _ in range(100):
        page = store.list_products(replace(query, cursor=cursor))
        items.extend(orjson.loads(i) for i in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize("sort", list(Sort))
async def test_cursor_walk_returns_everything_once_in_order(store: SqliteCatalog, sort: Sort) -> None:
    await seed_catalog(store)
    q = "phone" if sort is Sort.RELEVANCE else None
    items = walk(store, ProductQuery(q=q, sort=sort, limit=7))
    ids = [i["id"] for i in items]
    assert len(ids) == 45 == len(set(ids))
    prices = [Decimal(str(i["min_price"])) for i in items]
    if sort is Sort.PRICE:
        assert prices == sorted(prices)
    if sort is Sort.PRICE_DESC:
        assert prices == sorted(prices, reverse=True)
    if sort is Sort.UPDATED:
        times = [str(i["updated_at"]) for i in items]
        assert times == sorted(times, reverse=True)


async def test_filters(store: SqliteCatalog) -> None:
    await seed_catalog(store)
    assert {i["brand"] for i in walk(store, ProductQuery(brand="acme"))} == {"Acme"}
    assert len(walk(store, ProductQuery(brand="ACME"))) == 23
    assert {i["category"] for i in walk(store, ProductQuery(category="Cases"))} == {"cases"}
    assert len(walk(store, ProductQuery(vendor="b"))) == 15
    cheap = walk(store, ProductQuery(min_price=Decimal(10), max_price=Decimal(20), sort=Sort.PRICE))
    assert [i["min_price"] for i in cheap] == [str(n) for n in range(10, 21)]
    assert all(i["in_stock"] for i in walk(store, ProductQuery(in_stock=True)))
    assert len(walk(store, ProductQuery(in_stock=False))) == 12


async def test_full_text_search_with_prefix_and_relevance(store: SqliteCatalog) -> None:
    await seed_catalog(store)
    assert len(walk(store, ProductQuery(q="blue"))) == 15
    assert len(walk(store, ProductQuery(q="blu"))) == 15
    assert len(walk(store, ProductQuery(q="green model"))) == 15
    assert walk(store, ProductQuery(q="model 17")) != []
    assert walk(store, ProductQuery(q="nonexistentword")) == []
    assert walk(store, ProductQuery(q='"*)(')) == []
    top = store.list_products(ProductQuery(q="globex", sort=Sort.RELEVANCE, limit=5))
    assert all(orjson.loads(i)["brand"] == "Globex" for i in top.items)


async def test_cursor_from_other_filters_is_refused(store: SqliteCatalog) -> None:
    await seed_catalog(store)
    page = store.list_products(ProductQuery(brand="acme", limit=5))
    assert page.next_cursor
    with pytest.raises(InvalidCursor):
        store.list_products(ProductQuery(brand="globex", limit=5, cursor=page.next_cursor))


async def test_find_offer_by_parent_id(store: SqliteCatalog) -> None:
    await with_vendors(store, "a")
    await store.upsert_offers([offer("a", "v1", parent_id="p9"), offer("a", "v2", parent_id="p9")])
    assert store.find_offer("a", "p9") is not None
    assert store.find_offer("a", "nope") is None


async def test_search_index_follows_renames_and_removals(store: SqliteCatalog) -> None:
    await with_vendors(store, "a")
    await store.upsert_offers([offer("a", "1", title="Walnut desk"), offer("a", "2", title="Oak chair")])
    assert len(walk(store, ProductQuery(q="walnut"))) == 1
    await store.upsert_offers([offer("a", "1", title="Maple desk")])
    assert walk(store, ProductQuery(q="walnut")) == []
    assert [i["name"] for i in walk(store, ProductQuery(q="maple"))] == ["Maple desk"]
    await store.delete_vendor("a")
    assert walk(store, ProductQuery(q="oak")) == []
    conn = sqlite3.connect(store.path)
    conn.execute("INSERT INTO products_fts (products_fts) VALUES ('integrity-check')")
    conn.close()


async def test_cached_pages_are_dropped_by_any_write(store: SqliteCatalog) -> None:
    await with_vendors(store, "a")
    await store.upsert_offers([offer("a", "1", title="First")])
    first = store.list_products(ProductQuery())
    assert store.list_products(ProductQuery()) is first
    await store.upsert_offers([offer("a", "2", title="Second")])
    again = store.list_products(ProductQuery())
    assert again is not first and len(again.items) == 2
    assert again.etag != first.etag


async def test_cached_product_reads_follow_every_commit_even_fetch_time_touches(store: SqliteCatalog) -> None:
    await with_vendors(store, "a")
    await store.upsert_offers([offer("a", "1")])
    pid = store.find_offer("a", "1").product_id  # type: ignore[union-attr]
    first = store.get_product(pid)
    assert store.get_product(pid) is first
    await store.upsert_offers([offer("a", "1", fetched_at=T0 + timedelta(days=1))])  # same content: a touch
    touched = store.get_product(pid)
    assert touched is not first and touched is not None
    assert touched.offers[0].fetched_at == T0 + timedelta(days=1)
    await store.delete_vendor("a")
    assert store.get_product(pid) is None


def fts_matches_products(store: SqliteCatalog) -> None:
    """FTS5's own check of the search index against the rows of ``products`` (rank 1: the content too), so an
    entry left stale by a skipped re-index fails here, not in a shopper's search."""
    conn = sqlite3.connect(store.path)
    try:
        conn.execute("INSERT INTO products_fts (products_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


async def test_the_search_index_holds_what_products_say_through_reprices_renames_and_moves(
    store: SqliteCatalog,
) -> None:
    await with_vendors(store, "a", "b")
    await store.upsert_offers(
        [offer("a", "1", title="Walnut desk", brand="Acme", sku="D1"), offer("a", "2", title="Oak chair")]
    )
    fts_matches_products(store)
    # A re-price leaves the searched text as it was: its entry is kept, and still finds it.
    await store.upsert_offers([offer("a", "1", title="Walnut desk", brand="Acme", sku="D1", price=Decimal("12"))])
    fts_matches_products(store)
    assert [i["name"] for i in walk(store, ProductQuery(q="walnut"))] == ["Walnut desk"]
    # Another vendor's offer joins the product (brand + SKU) with a description: the text changes.
    await store.upsert_offers([offer("b", "9", title="Desk", brand="Acme", sku="D1", description="Solid maple top")])
    fts_matches_products(store)
    assert [i["name"] for i in walk(store, ProductQuery(q="maple"))] == ["Desk"]
    # A brand change alone re-indexes too (brand is searched).
    await store.upsert_offers([offer("a", "2", title="Oak chair", brand="Globex")])
    fts_matches_products(store)
    assert [i["name"] for i in walk(store, ProductQuery(q="globex"))] == ["Oak chair"]
    await store.delete_offers_of("b", "9")
    fts_matches_products(store)
    assert walk(store, ProductQuery(q="maple")) == []
    assert [i["name"] for i in walk(store, ProductQuery(q="walnut"))] == ["Walnut desk"]


async def test_a_rebuild_keeps_product_vendors_and_lead_images_exact(store: SqliteCatalog) -> None:
    await with_vendors(store, "a", "b")

    def pairs() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        conn = sqlite3.connect(store.path)
        try:
            vendors = set(conn.execute("SELECT vendor_id, product_id FROM product_vendors"))
            leads = set(conn.execute("SELECT image_id, product_id FROM product_images"))
        finally:
            conn.close()
        return vendors, leads

    def expected() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        docs = stored_products(store)
        vendors = {(v, pid) for pid, d in docs.items() for v in d["vendors"]}  # type: ignore[attr-defined]
        leads = {(str(d["thumbnail"]).rsplit("/", 1)[1], pid) for pid, d in docs.items() if d["thumbnail"]}
        return vendors, leads

    await store.upsert_offers([offer("a", "1", gtin=GTINS[0], images=("http://i/1.jpg",))])
    await store.upsert_offers([offer("b", "1", gtin=GTINS[0], images=("http://i/0.jpg",), description="Has one")])
    assert pairs() == expected() and len(pairs()[0]) == 2
    # The lead image moves to the offer with a description; a re-price changes neither.
    await store.upsert_offers([offer("b", "1", gtin=GTINS[0], images=("http://i/0.jpg",), price=Decimal("9"))])
    assert pairs() == expected()
    await store.upsert_offers([offer("b", "1", gtin=GTINS[1], images=("http://i/2.jpg",))])  # leaves the product
    assert pairs() == expected() and len(stored_products(store)) == 2
    await store.delete_offers_of("a", "1")
    assert pairs() == expected()


def counted(store: SqliteCatalog, vendor_id: str) -> tuple[int, int]:
    """The vendor's offers and products, counted from the rows themselves."""
    conn = sqlite3.connect(store.path)
    (offers,) = conn.execute("SELECT count(*) FROM offers WHERE vendor_id = ?", (vendor_id,)).fetchone()
    (products,) = conn.execute("SELECT count(*) FROM product_vendors WHERE vendor_id = ?", (vendor_id,)).fetchone()
    conn.close()
    return offers, products


def status_counts(store: SqliteCatalog, vendor_id: str) -> tuple[int, int]:
    s = store.vendor_status(vendor_id)
    return s.offers, s.products


async def test_vendor_status_counts_follow_every_write_without_counting_rows(store: SqliteCatalog) -> None:
    await with_vendors(store, "a", "b")
    await store.upsert_offers([offer("a", str(i), sku=f"S{i}") for i in range(6)])
    # Two of b's offers join a's products (shared barcodes), one is its own.
    await store.upsert_offers([offer("a", "g0", gtin=GTINS[0]), offer("a", "g1", gtin=GTINS[1])])
    await store.upsert_offers(
        [offer("b", "x0", gtin=GTINS[0]), offer("b", "x1", gtin=GTINS[1]), offer("b", "own", title="Other")]
    )
    assert status_counts(store, "a") == counted(store, "a") == (8, 8)
    assert status_counts(store, "b") == counted(store, "b") == (3, 3)
    await store.delete_offers_of("a", "g0")
    assert status_counts(store, "a") == counted(store, "a") == (7, 7)
    assert status_counts(store, "b") == counted(store, "b") == (3, 3)
    await store.delete_vendor("b")
    assert status_counts(store, "a") == counted(store, "a") == (7, 7)
    await store.add_vendor(vendor("b"))  # the same id again starts from nothing
    assert status_counts(store, "b") == (0, 0)


async def test_a_file_from_before_the_counts_gets_them_from_its_rows(store: SqliteCatalog) -> None:
    await with_vendors(store, "a")
    await store.upsert_offers([offer("a", str(i), sku=f"S{i}") for i in range(4)])
    store.close()
    conn = sqlite3.connect(store.path)  # as the file was before 0012_vendor_counts.sql
    for trigger in ("offer_in", "offer_out", "product_in", "product_out"):
        conn.execute(f"DROP TRIGGER vendor_counts_{trigger}")
    conn.execute("DROP TABLE vendor_counts")
    conn.execute("DELETE FROM schema_migrations WHERE name = '0012_vendor_counts.sql'")
    conn.commit()
    conn.close()
    again = SqliteCatalog(store.path)
    again.open()
    try:
        assert status_counts(again, "a") == (4, 4)
    finally:
        again.close()
