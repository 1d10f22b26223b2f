"""The in-memory ``FakeCatalogStore`` (tests/fakes.py) answers as the SQLite store does, so unit tests that use it
test the rules and not the fake. The same operations go to both; every answer a service reads is compared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import orjson
import pytest

from app.domain.models import Availability, utcnow
from app.domain.queries import ProductQuery, Sort, StoredProduct, SyncProgress
from app.errors import CatalogError, Conflict, NotFound
from app.store.port import CatalogStore
from app.store.sqlite.catalog import SqliteCatalog
from tests.fakes import FakeCatalogStore, offer, vendor

T = TypeVar("T")

GTIN = "00012345678905"
HOUR_AGO = utcnow() - timedelta(hours=1)


@dataclass
class Both:
    real: CatalogStore
    fake: CatalogStore

    async def same(self, call: Callable[[CatalogStore], Awaitable[T]]) -> T:
        """Run ``call`` on both stores; its answers must be equal."""
        real, fake = await call(self.real), await call(self.fake)
        assert real == fake
        return real

    def same_now(self, call: Callable[[CatalogStore], T]) -> T:
        real, fake = call(self.real), call(self.fake)
        assert real == fake
        return real

    async def same_error(self, call: Callable[[CatalogStore], Awaitable[object]], kind: type[CatalogError]) -> None:
        for store in (self.real, self.fake):
            with pytest.raises(kind):
                await call(store)

    def products(self) -> None:
        """Every product either store lists: same documents, ETags and freshness in the other."""
        compared = 0
        for store, other in ((self.real, self.fake), (self.fake, self.real)):
            for v in store.list_vendors():
                for item in walk(store, ProductQuery(vendor=v.id, limit=100)):
                    pid = orjson.loads(item)["id"]
                    assert comparable(store.get_product(pid)) == comparable(other.get_product(pid)), pid
                    compared += 1
        assert compared > 0


def comparable(stored: StoredProduct | None) -> object:
    if stored is None:
        return None
    return orjson.loads(stored.doc), stored.etag, sorted(stored.offers, key=lambda o: o.vendor_product_id)


def walk(store: CatalogStore, query: ProductQuery) -> list[bytes]:
    """Every page of a query, followed by its cursors."""
    items: list[bytes] = []
    cursor: str | None = None
    while True:
        page = store.list_products(replace(query, cursor=cursor))
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items


def counters(store: CatalogStore, vendor_id: str) -> tuple[str, int, int, int, int]:
    status = store.vendor_status(vendor_id)
    return status.state, status.syncs_ok, status.syncs_failed, status.offers, status.products


@pytest.fixture
async def both(tmp_path: Path) -> AsyncIterator[Both]:
    real = SqliteCatalog(tmp_path / "catalog.db")
    real.open()
    try:
        yield Both(real, FakeCatalogStore())
    finally:
        real.close()


async def test_unification_writes_and_reads_agree(both: Both) -> None:
    await both.same(lambda s: s.add_vendor(vendor("a", refresh_interval_s=600)))
    await both.same(lambda s: s.add_vendor(vendor("b", enabled=False)))
    batch = [
        offer("a", "1", gtin=GTIN, brand="Acme", sku="X-1", fetched_at=HOUR_AGO),
        offer("b", "9", brand="ACME", sku="x1", price=Decimal("8.50"), description="long text"),  # joins by brand+sku
        offer("a", "2", title="Alone", availability=Availability.IN_STOCK),
        offer("a", "3a", parent_id="3", images=("http://i/1.jpg",), vendor_updated_at=HOUR_AGO),
        offer("a", "3b", parent_id="3", price=Decimal("1.25")),
    ]
    first = await both.same(lambda s: s.upsert_offers(batch))
    assert (first.inserted, first.updated, first.unchanged) == (5, 0, 0) and first.products_changed > 0

    refetched = [replace(o, fetched_at=utcnow()) for o in batch]
    again = await both.same(lambda s: s.upsert_offers(refetched))
    assert (again.inserted, again.updated, again.unchanged, again.products_changed) == (0, 0, 5, 0)
    reprice = [offer("a", "2", title="Alone", price=Decimal("3"), availability=Availability.IN_STOCK)]
    repriced = await both.same(lambda s: s.upsert_offers(reprice))
    assert repriced.updated == 1

    gtin_ref = both.same_now(lambda s: s.find_offer("a", "1"))
    joined = both.same_now(lambda s: s.find_offer("b", "9"))
    assert gtin_ref is not None and joined is not None and gtin_ref.product_id == joined.product_id
    parent = both.same_now(lambda s: s.find_offer("a", "3"))  # the oldest-fetched variant of parent 3
    assert parent is not None
    assert both.same_now(lambda s: s.find_offer("a", "nope")) is None
    both.products()

    sorts = (Sort.UPDATED, Sort.PRICE, Sort.PRICE_DESC)  # relevance ranks by FTS in SQLite, by id in the fake
    pages = both.same_now(lambda s: [walk(s, ProductQuery(vendor="a", sort=sort, limit=2)) for sort in sorts])
    assert [len(items) for items in pages] == [4, 4, 4]  # the GTIN product, "Alone" and one per variant
    assert len(both.same_now(lambda s: walk(s, ProductQuery(in_stock=True, limit=1)))) == 1
    assert len(both.same_now(lambda s: walk(s, ProductQuery(brand="acme", max_price=Decimal("9"))))) == 1


async def test_sync_status_unlisting_and_removal_agree(both: Both) -> None:
    await both.same(lambda s: s.add_vendor(vendor("a")))
    await both.same(lambda s: s.add_vendor(vendor("b")))
    shared = [offer("a", "1", gtin=GTIN), offer("b", "1", gtin=GTIN), offer("a", "2", fetched_at=HOUR_AGO)]
    await both.same(lambda s: s.upsert_offers(shared))

    status = both.same_now(lambda s: counters(s, "a"))
    assert status == ("never", 0, 0, 2, 2)
    await both.same(lambda s: s.sync_started("a"))
    await both.same(lambda s: s.sync_progress("a", SyncProgress(pages=2, items_seen=3, skip_reasons={"price": 1})))
    assert both.same_now(lambda s: s.vendor_status("a").progress) == SyncProgress(2, 3, 0, None, {"price": 1})
    await both.same(lambda s: s.sync_finished("a", error=None, full=True))
    await both.same(lambda s: s.sync_finished("b", error="vendor_timeout: slow", full=False))
    assert both.same_now(lambda s: counters(s, "a")) == ("ok", 1, 0, 2, 2)
    assert both.same_now(lambda s: counters(s, "b")) == ("failed", 0, 1, 1, 1)
    assert both.same_now(lambda s: s.vendor_status("b").last_error) == "vendor_timeout: slow"

    assert await both.same(lambda s: s.mark_unlisted("a", utcnow() - timedelta(minutes=5))) == 1
    assert await both.same(lambda s: s.mark_unlisted("a", utcnow() - timedelta(minutes=5))) == 0
    both.products()

    await both.same(lambda s: s.delete_vendor("b"))
    assert both.same_now(lambda s: s.find_offer("b", "1")) is None
    assert both.same_now(lambda s: [v.id for v in s.list_vendors()]) == ["a"]
    both.products()
    await both.same(lambda s: s.sync_interrupted("a"))
    assert both.same_now(lambda s: s.vendor_status("a").state) == "interrupted"


async def test_removing_a_product_and_its_variants_agrees(both: Both) -> None:
    await both.same(lambda s: s.add_vendor(vendor("a")))
    variants = [offer("a", "3a", parent_id="3"), offer("a", "3b", parent_id="3"), offer("a", "4", gtin=GTIN)]
    await both.same(lambda s: s.upsert_offers(variants))
    assert await both.same(lambda s: s.delete_offers_of("a", "3", keep=["3b"])) == 1  # 3a is no longer listed
    assert await both.same(lambda s: s.delete_offers_of("a", "3", keep=["3b"])) == 0
    both.products()
    assert await both.same(lambda s: s.delete_offers_of("a", "3")) == 1
    assert await both.same(lambda s: s.delete_offers_of("b", "4")) == 0  # another vendor's id
    assert both.same_now(lambda s: s.find_offer("a", "3b")) is None
    both.products()


async def test_refusals_agree(both: Both) -> None:
    await both.same(lambda s: s.add_vendor(vendor("a")))
    await both.same_error(lambda s: s.add_vendor(vendor("a")), Conflict)
    await both.same_error(lambda s: s.update_vendor(vendor("nobody")), NotFound)
    await both.same_error(lambda s: s.delete_vendor("nobody"), NotFound)
    for store in (both.real, both.fake):
        with pytest.raises(NotFound):
            store.vendor_status("nobody")
    await both.same(lambda s: s.update_vendor(vendor("a", enabled=False)))
    assert both.same_now(lambda s: s.get_vendor("a")) == vendor("a", enabled=False)
    assert both.same_now(lambda s: s.ping()) is True
