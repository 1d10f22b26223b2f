"""Catalog search through the Tantivy index: kept in step with every write of the store, rebuilt when it cannot be
trusted, and over HTTP: a typo and a prefix find the product, facets count what the filters return, and a search
that does not return does not hold up a product read."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.changes import FeedPosition
from app.domain.models import Availability, Offer, Vendor, VendorKind
from app.domain.queries import ProductPage, ProductQuery
from app.search import PRICE_BANDS, SearchFilters
from app.store.sqlite.catalog import SqliteCatalog
from app.store.sqlite.search import SearchSync
from tests.support import ApiServer, all_products, fast_settings, wait_until

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def vendor(vid: str) -> Vendor:
    return Vendor(id=vid, name=vid.title(), kind=VendorKind.DUMMYJSON, base_url="http://x", currency="EUR")


def offer(v: str, vpid: str, title: str, **kw: Any) -> Offer:
    base: dict[str, Any] = {"price": Decimal("10.00"), "currency": "EUR", "fetched_at": T0, "vendor_updated_at": T0}
    base.update(kw)
    return Offer(vendor_id=v, vendor_product_id=vpid, title=title, **base)


def found(store: SqliteCatalog, text: str | None, **filters: Any) -> set[str]:
    assert store.search is not None
    store.search.flush()  # what the index's own thread would index and commit in a moment, now
    return set(store.search.index.search(text, SearchFilters(**filters), limit=100).ids)


def product_of(store: SqliteCatalog, v: str, vpid: str) -> str:
    ref = store.find_offer(v, vpid)
    assert ref is not None
    return ref.product_id


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteCatalog]:
    s = SqliteCatalog(tmp_path / "c.db", search=SearchSync(tmp_path / "index"))
    s.open()
    assert s.search is not None
    s.search.wait_rebuilt()
    await s.add_vendor(vendor("a"))
    await s.add_vendor(vendor("b"))
    yield s
    s.close()


async def test_every_write_of_the_store_reaches_the_index(store: SqliteCatalog) -> None:
    await store.upsert_offers([offer("a", "1", "Espresso machine"), offer("a", "2", "Teapot")])
    espresso = product_of(store, "a", "1")
    assert found(store, "espresso") == {espresso}

    await store.upsert_offers([offer("a", "1", "Coffee grinder", vendor_updated_at=datetime(2026, 2, 1, tzinfo=UTC))])
    assert found(store, "espresso") == set()
    assert found(store, "grinder") == {product_of(store, "a", "1")}

    await store.mark_unlisted("a", datetime(2027, 1, 1, tzinfo=UTC))  # both discontinued: out of stock
    assert found(store, None, in_stock=True) == set()
    assert len(found(store, None, in_stock=False)) == 2

    await store.delete_offers_of("a", "2")
    assert found(store, "teapot") == set()
    await store.delete_vendor("a")
    assert found(store, None) == set()
    assert store.search is not None and store.search.index.watermark == store.change_seq()


async def test_the_changelog_appliers_writes_reach_the_index(store: SqliteCatalog) -> None:
    """The kafka runtime writes through ``upsert_positioned`` and positioned removals: the same commit hook."""
    await store.upsert_positioned([(FeedPosition("u0", 1, 1.0), [offer("a", "1", "Espresso machine")])])
    assert found(store, "espresso") == {product_of(store, "a", "1")}
    await store.set_feed_position(FeedPosition("u0", 2, 2.0))
    await store.delete_offers_of("a", "1")
    await store.set_feed_position(None)
    assert found(store, "espresso") == set()  # a removal at a changelog position: no local tombstone, the trigger


async def test_writes_of_another_process_are_caught_up(store: SqliteCatalog, tmp_path: Path) -> None:
    await store.upsert_offers([offer("a", "1", "Espresso machine")])
    other = SqliteCatalog(tmp_path / "c.db")  # the CLI: the same file, no index of its own
    other.open()
    try:
        await other.upsert_offers([offer("b", "9", "Kettle")])
        await other.delete_offers_of("a", "1")
    finally:
        other.close()
    await store.catch_up_search()
    assert found(store, "kettle") == {product_of(store, "b", "9")}
    assert found(store, "espresso") == set()  # the removal, from the feed's tombstone


async def test_a_failed_index_write_is_retried_and_searches_use_fts5_meanwhile(
    store: SqliteCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.upsert_offers([offer("a", "1", "Espresso machine")])
    assert store.search is not None
    index = store.search.index

    def broken(docs: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(index, "upsert", broken)
    await store.upsert_offers([offer("a", "2", "Kettle")])  # the store's write goes through all the same
    await store.delete_offers_of("a", "1")
    store.search.flush()  # fails like the index's own thread does
    assert not store.search.ready and "cannot be written" in (store.search_problem() or "")
    monkeypatch.undo()
    store.search.flush()  # what the index's own thread retries within catch_up_s (a failure does not stop it)
    assert store.search.ready and store.search_problem() is None
    assert found(store, "kettle") == {product_of(store, "a", "2")}
    assert found(store, "espresso") == set()  # and the removal made while it failed


async def test_a_restart_catches_up_what_was_written_while_it_was_down(tmp_path: Path) -> None:
    first = SqliteCatalog(tmp_path / "c.db", search=SearchSync(tmp_path / "index"))
    first.open()
    assert first.search is not None
    first.search.wait_rebuilt()
    await first.add_vendor(vendor("a"))
    await first.upsert_offers([offer("a", "1", "Espresso machine"), offer("a", "2", "Teapot")])
    first.close()
    plain = SqliteCatalog(tmp_path / "c.db")
    plain.open()
    await plain.upsert_offers([offer("a", "3", "Kettle")])
    await plain.delete_offers_of("a", "2")
    plain.close()

    again = SqliteCatalog(tmp_path / "c.db", search=SearchSync(tmp_path / "index"))
    again.open()
    try:
        assert again.search is not None and not again.search.wait_rebuilt()  # caught up, not rebuilt
        assert found(again, "kettle") == {product_of(again, "a", "3")}
        assert found(again, "teapot") == set()
        assert found(again, "espresso") == {product_of(again, "a", "1")}
    finally:
        again.close()


async def test_a_lost_index_is_rebuilt_and_ready_says_so_meanwhile(tmp_path: Path) -> None:
    store = SqliteCatalog(tmp_path / "c.db")
    store.open()
    await store.add_vendor(vendor("a"))
    await store.upsert_offers([offer("a", str(i), f"Espresso cup {i}") for i in range(30)])
    store.close()

    release = threading.Event()

    class SlowSync(SearchSync):
        def rebuild(self, conn: sqlite3.Connection) -> int:
            release.wait()
            return super().rebuild(conn)

    indexed = SqliteCatalog(tmp_path / "c.db", search=SlowSync(tmp_path / "index"))
    indexed.open()
    try:
        assert indexed.search is not None and not indexed.search.ready
        assert "rebuilt" in (indexed.search_problem() or "")
        release.set()
        assert indexed.search.wait_rebuilt()
        assert indexed.search_problem() is None
        assert len(found(indexed, "espresso")) == 30
    finally:
        release.set()
        indexed.close()


async def test_the_rebuild_command_replaces_an_index_of_something_else(store: SqliteCatalog, tmp_path: Path) -> None:
    await store.upsert_offers([offer("a", "1", "Espresso machine")])
    store.close()
    shutil.rmtree(tmp_path / "index")
    (tmp_path / "index").mkdir()
    rebuilt = SqliteCatalog(tmp_path / "c.db", search=SearchSync(tmp_path / "index"))
    rebuilt.open()
    try:
        assert rebuilt.rebuild_search() == 1
        assert found(rebuilt, "espresso") == {product_of(rebuilt, "a", "1")}
    finally:
        rebuilt.close()


# -- over HTTP ---------------------------------------------------------------------------------------------------

BRANDS = ("Bialetti", "DeLonghi", "Melitta")
CATEGORIES = ("Coffee", "Kitchen")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, httpx.Client]]:
    """A catalog written before the API starts: the API builds its index at start and /ready waits for it."""
    import asyncio

    path = tmp_path_factory.mktemp("search") / "c.db"

    async def fill() -> None:
        store = SqliteCatalog(path)
        store.open()
        for vid in ("a", "b"):
            await store.add_vendor(vendor(vid))
        offers = [
            offer(
                "ab"[i % 2],
                str(i),
                f"{'Espresso' if i % 3 else 'Filter'} coffee maker {i}",
                brand=BRANDS[i % 3],
                category=CATEGORIES[i % 2],
                price=Decimal(5 + 7 * i),
                availability=Availability.IN_STOCK if i % 4 else Availability.OUT_OF_STOCK,
            )
            for i in range(60)
        ]
        await store.upsert_offers(offers)
        store.close()

    asyncio.run(fill())
    with ApiServer(fast_settings(path)) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        wait_until(lambda: client.get("/ready").status_code == 200, timeout=60, what="the index to be built")
        yield server, client


def names(client: httpx.Client, q: str) -> list[str]:
    return [p["name"] for p in all_products(client, q=q, limit=100)]


def test_a_typo_finds_the_product(api: tuple[ApiServer, httpx.Client]) -> None:
    _, client = api
    exact = names(client, "espresso maker")
    assert exact and names(client, "espreso maker") == exact  # one letter missing in a word of 8
    assert names(client, "expresso maker") == exact  # one letter changed
    assert names(client, "espresso mxkxr") == []  # two typos in one word: no match


def test_a_prefix_finds_the_product(api: tuple[ApiServer, httpx.Client]) -> None:
    _, client = api
    assert set(names(client, "filter coff")) == set(names(client, "filter coffee")) != set()
    assert names(client, "filter cof")[0].startswith("Filter")


def test_search_keeps_filters_and_sorts(api: tuple[ApiServer, httpx.Client]) -> None:
    _, client = api
    items = all_products(client, q="espresso", sort="price", brand="delonghi", limit=7)
    prices = [Decimal(p["min_price"]) for p in items]
    assert items and prices == sorted(prices) and {p["brand"] for p in items} == {"DeLonghi"}
    assert [p["id"] for p in all_products(client, q="espresso", sort="-price", brand="delonghi", limit=3)] == [
        p["id"] for p in reversed(items)
    ]


@pytest.mark.parametrize("q", [None, "coffee", "espresso"])
def test_facets_count_what_the_filters_return(api: tuple[ApiServer, httpx.Client], q: str | None) -> None:
    _, client = api
    base = {"q": q} if q else {}
    response = client.get("/products", params={**base, "facets": "brand,category,vendor,price,in_stock", "limit": 1})
    assert response.status_code == 200, response.text
    facets = response.json()["facets"]
    everything = all_products(client, **base, limit=100)
    assert facets["total"] == len(everything)

    def count(**filters: Any) -> int:
        return len(all_products(client, **base, **filters, limit=100))

    for group in ("brand", "category", "vendor"):
        assert facets[group] and facets[f"{group}_other"] == 0
        for value in facets[group]:
            assert value["count"] == count(**{group: value["key"]}), (group, value)
        assert sum(v["count"] for v in facets[group]) == facets["total"]
    for band, value in zip(PRICE_BANDS, facets["price"], strict=True):
        bounds = {"min_price": str(band.low)}
        if band.high is not None:  # bands are half-open, the filter's bounds inclusive: prices here are whole
            bounds["max_price"] = str(Decimal(str(band.high)) - Decimal("0.01"))
        assert value["key"] == band.key and value["count"] == count(**bounds), band
    assert facets["in_stock"] == {"true": count(in_stock="true"), "false": count(in_stock="false")}


def test_facets_follow_the_filters_too(api: tuple[ApiServer, httpx.Client]) -> None:
    _, client = api
    body = client.get("/products", params={"q": "coffee", "brand": "melitta", "facets": "vendor"}).json()
    assert body["facets"]["total"] == len(all_products(client, q="coffee", brand="melitta", limit=100))
    assert set(body["facets"]) == {"total", "vendor", "vendor_other"}


def test_a_search_that_does_not_return_does_not_hold_up_a_product_read(
    api: tuple[ApiServer, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, client = api
    product = all_products(client, limit=1)[0]
    search = server.app.state.container.catalog.search
    entered, release = threading.Event(), threading.Event()
    real = search.page

    def stuck(query: ProductQuery) -> ProductPage:
        entered.set()
        release.wait()
        result: ProductPage = real(query)
        return result

    monkeypatch.setattr(search, "page", stuck)
    answers: list[httpx.Response] = []
    searching = threading.Thread(target=lambda: answers.append(client.get("/products", params={"q": "coffee"})))
    searching.start()
    try:
        assert entered.wait(30), "the search never started"
        read = client.get(f"/products/{product['id']}")  # answered while the search is still stuck
        assert read.status_code == 200 and read.json()["id"] == product["id"]
        assert not answers  # the search is indeed still waiting
    finally:
        release.set()
        searching.join()
    assert answers[0].status_code == 200 and answers[0].json()["items"]
