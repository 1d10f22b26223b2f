"""A shopper's miss written inside a sync's open transaction (``app/store/sqlite/unsettled.py``): answered, read
back and its images found before the sync commits; list pages show it only after that commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from app.domain.changes import FeedPosition
from app.domain.images import image_id
from app.domain.lanes import Lane, in_lane, interactive_work
from app.domain.queries import ProductQuery
from app.store.sqlite.catalog import SqliteCatalog
from tests.integration.test_sqlite_catalog import offer, with_vendors

PHOTO = "http://img.example/m1.jpg"
T = TypeVar("T")


def committed_offers(store: SqliteCatalog) -> set[str]:
    conn = sqlite3.connect(store.path)
    try:
        return {row[0] for row in conn.execute("SELECT vendor_product_id FROM offers")}
    finally:
        conn.close()


def sync_parts(
    store: SqliteCatalog, interactive: Callable[[], Coroutine[Any, Any, T]], at_second: Callable[[], None]
) -> tuple[Callable[[str], Callable[[sqlite3.Connection], None]], list[Future[T]]]:
    """Parts of a sync of vendor b, each writing one offer: the first sends ``interactive`` in the interactive lane
    and waits until the writer holds it, the second calls ``at_second`` (the interactive write ran between them).
    Returns the parts' maker and the interactive write's future (there once the first part ran)."""
    loop = asyncio.get_running_loop()
    writer = store._db._writer
    assert writer is not None
    sent: list[Future[T]] = []

    def sync_part(vpid: str) -> Callable[[sqlite3.Connection], None]:
        def write(conn: sqlite3.Connection) -> None:
            store.upsert_in(conn, [offer("b", vpid)])
            if vpid == "s1":
                with in_lane(Lane.INTERACTIVE):
                    sent.append(asyncio.run_coroutine_threadsafe(interactive(), loop))
                while not writer.waiting(Lane.INTERACTIVE):
                    time.sleep(0.001)
            if vpid == "s2":
                at_second()

        return write

    return sync_part, sent


async def test_a_refetchable_miss_is_read_back_before_the_sync_holding_the_writer_commits(
    store: SqliteCatalog,
) -> None:
    await with_vendors(store, "a", "b")
    written, checked = threading.Event(), threading.Event()

    def hold() -> None:  # the miss ran between the two parts; the sync waits here for the checks below
        written.set()
        assert checked.wait(10.0)

    sync_part, miss = sync_parts(  # the shopper's miss arrives while the sync holds the writer
        store, lambda: store.upsert_offers([offer("a", "m1", images=(PHOTO,))], refetchable=True), hold
    )

    with in_lane(Lane.BULK):
        sync = asyncio.create_task(store._db.bulk([sync_part("s1"), sync_part("s2"), sync_part("s3")]))
    try:
        assert await asyncio.to_thread(written.wait, 10.0)
        assert (await asyncio.wrap_future(miss[0])).inserted == 1  # answered, not committed
        assert committed_offers(store) == set()
        ref = store.find_offer("a", "m1")
        assert ref is not None
        product = store.get_product(ref.product_id)
        assert product is not None and b"Thing m1" in product.doc
        assert store.cached_product(ref.product_id) == (product,)
        image = store.image(image_id(PHOTO))
        assert image is not None and image.url == PHOTO
        assert store.list_products(ProductQuery()).items == []  # pages follow commits, as for any write
    finally:
        checked.set()
        await sync
    assert committed_offers(store) == {"m1", "s1", "s2", "s3"}
    assert not store._unsettled  # the commit cleared it: reads are the file's again
    ref = store.find_offer("a", "m1")
    assert ref is not None and store.get_product(ref.product_id) is not None
    assert len(store.list_products(ProductQuery()).items) == 4


async def test_a_webhooks_write_is_never_answered_before_it_commits(store: SqliteCatalog) -> None:
    """A webhook's change cannot be fetched again: the sync commits before it (the default, not refetchable)."""
    await with_vendors(store, "a", "b")
    seen: list[set[str]] = []
    sync_part, hook = sync_parts(
        store, lambda: store.upsert_offers([offer("a", "w1")]), lambda: seen.append(committed_offers(store))
    )

    with in_lane(Lane.BULK):
        await store._db.bulk([sync_part("s1"), sync_part("s2")])
    await asyncio.wrap_future(hook[0])
    assert seen == [{"s1", "w1"}]  # the sync committed its part, then the webhook's write committed on its own


async def test_a_kafka_outcome_written_inside_a_sync_is_durable_only_at_the_syncs_commit(store: SqliteCatalog) -> None:
    """The interactive consumer stores its offsets once ``commits()`` reaches ``durable_at()``: not before."""
    await with_vendors(store, "a", "b")
    marks: list[tuple[int, int]] = []
    written, checked = threading.Event(), threading.Event()

    def hold() -> None:
        written.set()
        assert checked.wait(10.0)

    sync_part, outcome = sync_parts(
        store,
        lambda: store.upsert_positioned([(FeedPosition("i0", 7, 0.0), [offer("a", "k1")])], refetchable=True),
        hold,
    )

    before = store.commits()
    with in_lane(Lane.BULK):
        sync = asyncio.create_task(store._db.bulk([sync_part("s1"), sync_part("s2")]))
    try:
        assert await asyncio.to_thread(written.wait, 10.0)
        await asyncio.wrap_future(outcome[0])
        marks.append((store.commits(), store.durable_at()))
        assert store.find_offer("a", "k1") is not None and "k1" not in committed_offers(store)
    finally:
        checked.set()
        await sync
    assert marks == [(before, before + 1)]  # answered, not durable: its offsets must wait
    assert store.commits() >= marks[0][1] and store.durable_at() == store.commits()
    assert "k1" in committed_offers(store)


async def test_a_changelog_message_is_cut_while_a_miss_runs_and_lets_its_nested_outcome_in(
    tmp_path: Path,
) -> None:
    """One page message of 200 offers is one part (its products commit together); with interactive work
    running it is written in pieces, and a kafka outcome arriving meanwhile is written between two of them,
    answered before the message ends, and committed with it."""
    store = SqliteCatalog(tmp_path / "catalog.db", bulk_slice_s=0.0001)  # pieces of the slicer's least
    store.open()
    try:
        await with_vendors(store, "a", "b")
        page = [(FeedPosition("u0", 1, 0.0), [offer("b", f"p{i}") for i in range(200)])]
        before = store.commits()
        with interactive_work.running():  # a miss being handled: the sync steps aside at each piece
            with in_lane(Lane.BULK):
                sync = asyncio.create_task(store.upsert_positioned(page))
            await asyncio.sleep(0.01)
            with in_lane(Lane.INTERACTIVE):
                outcome = asyncio.create_task(
                    store.upsert_positioned([(FeedPosition("i0", 1, 0.0), [offer("a", "k1")])], refetchable=True)
                )
            await asyncio.wait_for(outcome, 10.0)
            assert not sync.done()  # answered midway through the message
            assert store.find_offer("a", "k1") is not None
        await asyncio.wait_for(sync, 30.0)
        assert store.commits() - before == 1  # the message and the outcome in one commit
        assert committed_offers(store) == {"k1", *(f"p{i}" for i in range(200))}
    finally:
        store.close()
