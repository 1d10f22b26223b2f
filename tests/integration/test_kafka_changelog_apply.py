"""Applying the changelog to a real SQLite store, with updates read from a real simulator (no broker needed)."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.bootstrap import make_source_factory
from app.distributed.changelog_applier import ChangelogApplier
from app.domain.matching import OverrideChange
from app.domain.models import Availability, Vendor, VendorKind, utcnow
from app.domain.requests import FetchRequest, RequestKind, RequestStatus
from app.domain.webhooks import Removal, WebhookChange, WebhookEffect
from app.domain.wire import (
    ChangelogError,
    Update,
    encode,
    override_message,
    parse_update,
    product_message,
    request_message,
    webhook_message,
)
from app.ingest.breaker import BreakerRegistry
from app.ingest.tracker import RequestTracker
from app.sources.port import VendorSource
from app.store.sqlite.catalog import SqliteCatalog
from tests.kafka_support import product_update, sync_messages
from tests.support import Sim, fast_settings, running_sims, sim_config

SIZE = 60


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with running_sims(sim_config(VendorKind.DUMMYJSON, size=SIZE)) as (sim,):
        yield sim


@pytest.fixture
def vendor(sim: Sim) -> Vendor:
    return Vendor("dj", "DummyJSON", VendorKind.DUMMYJSON, sim.base_url, "USD")


@pytest.fixture
async def source(vendor: Vendor, tmp_path: Path) -> AsyncIterator[VendorSource]:
    src = make_source_factory(fast_settings(tmp_path / "unused.db"))(vendor)
    src.page_size = 20  # type: ignore[attr-defined]  # several pages from a small simulated catalog
    yield src
    await src.aclose()


@pytest.fixture
async def world(store: SqliteCatalog, vendor: Vendor) -> tuple[SqliteCatalog, RequestTracker, ChangelogApplier]:
    await store.add_vendor(vendor)
    tracker = RequestTracker()
    return store, tracker, ChangelogApplier(store, tracker, max_upsert=25)


def parsed(messages: list[dict[str, Any]]) -> list[Update]:
    return [parse_update(m) for m in messages]


def snapshot(store: SqliteCatalog, *tables: str) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(store.path) as conn:
        return {t: sorted(map(tuple, conn.execute(f"SELECT * FROM {t}"))) for t in tables}


async def test_a_full_sync_lands_completes_its_request_and_replays_change_nothing(
    world: tuple[SqliteCatalog, RequestTracker, ChangelogApplier], source: VendorSource
) -> None:
    store, tracker, applier = world
    request = FetchRequest(RequestKind.CATALOG, "dj", full=True)
    tracker.submit(request)
    updates = parsed(await sync_messages(source, request_id=request.id))
    assert len(updates) > 4  # started, several pages, finished

    await applier.apply(updates[:2])
    assert store.vendor_status("dj").state == "running"
    await applier.apply(updates[2:])

    status = store.vendor_status("dj")
    assert (status.state, status.syncs_ok, status.offers) == ("ok", 1, SIZE)
    assert status.progress.items_seen == SIZE and status.progress.pages == len(updates) - 2
    state = tracker.get(request.id)
    assert state is not None and state.status is RequestStatus.DONE
    before = snapshot(store, "offers", "products", "vendor_sync")

    await applier.apply(updates)  # a redelivery to the same node
    assert snapshot(store, "offers", "products", "vendor_sync") == before

    fresh = ChangelogApplier(store, tracker)  # a restarted node replaying from its committed offsets
    await fresh.apply(updates)
    # The sync's record too: the store knows it finished, so it is not counted again (syncs_ok, finished_at).
    assert snapshot(store, "offers", "products", "vendor_sync") == before
    assert store.vendor_status("dj").syncs_ok == 1
    assert (applier.offers_applied, fresh.offers_applied) == (2 * SIZE, SIZE)  # rewritten, identical: no change
    assert (applier.batches, fresh.batches) == (3, 1)  # one per apply call: offers per batch bound a transaction's


async def test_a_node_restarted_mid_sync_goes_on_where_it_stopped_and_counts_each_page_once(
    world: tuple[SqliteCatalog, RequestTracker, ChangelogApplier], source: VendorSource
) -> None:
    """The applier's memory dies with the process; what it applied of the sync is in the store, with the sync."""
    store, _, applier = world
    updates = parsed(await sync_messages(source, request_id="r_restart"))
    pages = len(updates) - 2
    await applier.apply(updates[:4])  # started and three pages, then the node is killed
    assert store.vendor_status("dj").progress.pages == 3
    restarted = ChangelogApplier(store, RequestTracker())
    await restarted.apply(updates[2:])  # its committed offset was behind: pages 2 and 3 come again
    status = store.vendor_status("dj")
    assert (status.state, status.syncs_ok, status.offers) == ("ok", 1, SIZE)
    assert (status.progress.pages, status.progress.items_seen) == (pages, SIZE)
    await ChangelogApplier(store, RequestTracker()).apply(updates)  # and once more, the whole sync
    again = store.vendor_status("dj")
    assert (again.syncs_ok, again.finished_at, again.progress) == (1, status.finished_at, status.progress)


async def test_any_node_answers_for_a_request_another_node_took(
    world: tuple[SqliteCatalog, RequestTracker, ChangelogApplier], source: VendorSource, tmp_path: Path
) -> None:
    """A node learns of a request from its ``request`` update, then its outcome completes it there too."""
    store, _, _ = world
    other = SqliteCatalog(tmp_path / "other.db")
    other.open()
    try:
        await other.add_vendor(store.get_vendor("dj"))  # type: ignore[arg-type]
        tracker = RequestTracker()
        applier = ChangelogApplier(other, tracker)
        product = FetchRequest(RequestKind.PRODUCT, "dj", "3")
        catalog = FetchRequest(RequestKind.CATALOG, "dj", full=True)
        await applier.apply(parsed([request_message(product), request_message(catalog)]))
        for request in (product, catalog):
            state = tracker.get(request.id)
            assert state is not None and state.status is RequestStatus.PENDING
            assert state.request == request
        await applier.apply(parsed([await product_update(source, product)]))
        done = tracker.get(product.id)
        assert done is not None and done.status is RequestStatus.DONE
        assert done.product_id == other.find_offer("dj", "3").product_id  # type: ignore[union-attr]
        await applier.apply(parsed(await sync_messages(source, request_id=catalog.id)))
        synced = tracker.get(catalog.id)
        assert synced is not None and synced.status is RequestStatus.DONE
        # An outcome whose request update this node never read still answers (a node that joined later).
        unseen = FetchRequest(RequestKind.PRODUCT, "dj", "999999")
        await applier.apply(parsed([await product_update(source, unseen)]))
        missing = tracker.get(unseen.id)
        assert missing is not None and missing.status is RequestStatus.NOT_FOUND
        assert missing.request.vendor_product_id == "999999"
    finally:
        other.close()


async def test_a_full_sync_marks_what_it_did_not_see_and_a_failed_one_does_not(
    world: tuple[SqliteCatalog, RequestTracker, ChangelogApplier], source: VendorSource
) -> None:
    store, _, applier = world
    await applier.apply(parsed(await sync_messages(source, started_at=utcnow() - timedelta(seconds=5))))
    second = await sync_messages(source)
    page = second[1]
    gone = page["offers"].pop(0)["vendor_product_id"]

    failed = [*second[:-1], {**second[-1], "error": "vendor_error: 500 on page 3"}]
    failed = [{**m, "sync_id": "failed-one"} for m in failed]
    await applier.apply(parsed(failed))
    status = store.vendor_status("dj")
    assert status.state == "failed" and "500 on page 3" in (status.last_error or "")
    ref = store.find_offer("dj", gone)
    assert ref is not None
    assert store.get_product(ref.product_id) is not None
    assert _availability(store, gone) != Availability.DISCONTINUED.value

    await applier.apply(parsed(second))
    assert store.vendor_status("dj").state == "ok"
    assert _availability(store, gone) == Availability.DISCONTINUED.value
    with sqlite3.connect(store.path) as conn:
        discontinued = conn.execute("SELECT count(*) FROM offers WHERE availability = 'discontinued'").fetchone()[0]
    assert discontinued == 1


def _availability(store: SqliteCatalog, vpid: str) -> str:
    with sqlite3.connect(store.path) as conn:
        row = conn.execute("SELECT availability FROM offers WHERE vendor_product_id = ?", (vpid,)).fetchone()
    return str(row[0])


async def test_product_updates_complete_the_waiting_request_like_the_embedded_workers(
    world: tuple[SqliteCatalog, RequestTracker, ChangelogApplier], source: VendorSource
) -> None:
    store, tracker, applier = world
    first = (await source.fetch_page(None)).offers[0]
    found = FetchRequest(RequestKind.PRODUCT, "dj", first.vendor_product_id)
    missing = FetchRequest(RequestKind.PRODUCT, "dj", "999999")
    gone_vendor = FetchRequest(RequestKind.PRODUCT, "nobody", "1")
    for request in (found, missing, gone_vendor):
        tracker.submit(request)
    messages = [
        await product_update(source, found),
        await product_update(source, missing),
        product_message(request_id=gone_vendor.id, vendor_id="nobody", vendor_product_id="1", status="not_found"),
    ]
    await applier.apply(parsed(messages))

    done = tracker.get(found.id)
    assert done is not None and done.status is RequestStatus.DONE
    ref = store.find_offer("dj", first.vendor_product_id)
    assert ref is not None and done.product_id == ref.product_id
    stored = store.get_product(ref.product_id)
    assert stored is not None
    offers = {o["vendor_product_id"]: o for o in orjson.loads(stored.doc)["offers"]}
    assert offers[first.vendor_product_id]["price"] == str(first.price)
    not_found = tracker.get(missing.id)
    assert not_found is not None and not_found.status is RequestStatus.NOT_FOUND
    unknown = tracker.get(gone_vendor.id)
    assert unknown is not None and (unknown.status, unknown.error_code) == (RequestStatus.FAILED, "not_found")
    assert applier.unknown_vendor == 1


async def test_vendor_definitions_are_added_updated_and_deleted_once(
    world: tuple[SqliteCatalog, RequestTracker, ChangelogApplier], vendor: Vendor
) -> None:
    store, _, applier = world
    removed: list[str] = []
    applier = ChangelogApplier(store, RequestTracker(), on_vendor_removed=removed.append)
    assert await applier.apply_vendor("dj", vendor) is False  # already held: nothing written
    renamed = dataclasses.replace(vendor, name="Renamed", refresh_interval_s=60)
    assert await applier.apply_vendor("dj", renamed) is True
    assert store.get_vendor("dj") == renamed
    other = dataclasses.replace(vendor, id="dj2")
    assert await applier.apply_vendor("dj2", other) is True
    assert store.get_vendor("dj2") == other
    assert await applier.apply_vendor("dj2", None) is True
    assert await applier.apply_vendor("dj2", None) is False
    assert store.get_vendor("dj2") is None and removed == ["dj2"]


async def test_vendor_failures_reported_by_the_job_open_the_nodes_breaker(
    world: tuple[SqliteCatalog, RequestTracker, ChangelogApplier], source: VendorSource
) -> None:
    store, tracker, _ = world
    breakers = BreakerRegistry(failures=3, open_s=30)
    applier = ChangelogApplier(store, tracker, breakers=breakers)

    def failed(n: int) -> dict[str, Any]:
        return product_message(
            request_id=f"r_{n}",
            vendor_id="dj",
            vendor_product_id=str(n),
            status="failed",
            error="HTTP 503 after 4 attempts",
            error_code="vendor_unavailable",
            vendor_failure=True,
        )

    await applier.apply(parsed([failed(1), failed(2)]))
    assert not breakers.get("dj").blocked()
    await applier.apply(parsed([failed(3)]))
    assert breakers.get("dj").blocked()  # misses of dj are now refused at once by the node
    not_found = product_message(request_id="r_4", vendor_id="dj", vendor_product_id="4", status="not_found")
    await applier.apply(parsed([not_found]))  # the vendor answered: it is alive again
    assert not breakers.get("dj").blocked()


async def test_a_webhook_update_is_applied_like_the_embedded_runtime_and_a_replayed_delivery_changes_nothing(
    world: tuple[SqliteCatalog, RequestTracker, ChangelogApplier], source: VendorSource
) -> None:
    store, _, applier = world
    await applier.apply(parsed(await sync_messages(source)))
    first, second = (await source.fetch_page(None)).offers[:2]
    cheaper = dataclasses.replace(first, price=Decimal("0.01"))
    update = WebhookChange("dj", WebhookEffect.UPDATED, (cheaper,), delivery_id="d-1")
    await applier.apply(parsed([webhook_message(update)]))
    assert _price(store, first.vendor_product_id) == "0.01"
    before = snapshot(store, "offers", "products")

    older = WebhookChange(
        "dj", WebhookEffect.UPDATED, (dataclasses.replace(first, price=Decimal("5")),), delivery_id="d-1"
    )
    await applier.apply(parsed([webhook_message(older)]))  # the same delivery, published again by another node
    await ChangelogApplier(store, RequestTracker()).apply(parsed([webhook_message(update)]))  # a restarted node
    assert snapshot(store, "offers", "products") == before

    deleted = WebhookChange("dj", WebhookEffect.DELETED, removals=(Removal(second.vendor_product_id),))
    await applier.apply(parsed([webhook_message(deleted)]))
    assert store.find_offer("dj", second.vendor_product_id) is None
    assert store.find_offer("dj", first.vendor_product_id) is not None
    ghost = WebhookChange("nobody", WebhookEffect.DELETED, removals=(Removal("1"),))
    await applier.apply(parsed([webhook_message(ghost)]))
    assert applier.unknown_vendor == 1


def documents(store: SqliteCatalog) -> dict[str, tuple[str, bytes]]:
    """Each product's ETag and document (change sequences are each node's own)."""
    with sqlite3.connect(store.path) as conn:
        return {pid: (etag, doc) for pid, etag, doc in conn.execute("SELECT id, etag, doc FROM products")}


def _price(store: SqliteCatalog, vpid: str) -> str:
    ref = store.find_offer("dj", vpid)
    assert ref is not None
    stored = store.get_product(ref.product_id)
    assert stored is not None
    return str({o["vendor_product_id"]: o for o in orjson.loads(stored.doc)["offers"]}[vpid]["price"])


async def test_override_updates_give_every_node_the_same_products(
    world: tuple[SqliteCatalog, RequestTracker, ChangelogApplier], source: VendorSource, tmp_path: Path
) -> None:
    """A split or pin published by one node travels as an ``override`` update; each node records it and
    re-clusters, so two stores that applied the same messages hold the same products and documents."""
    store, _, applier = world
    other = SqliteCatalog(tmp_path / "other.db")
    other.open()
    try:
        await other.add_vendor(store.get_vendor("dj"))  # type: ignore[arg-type]
        syncs = parsed(await sync_messages(source))
        first, second, third = (await source.fetch_page(None)).offers[:3]
        overrides = [
            OverrideChange("pin", first.key, second.key),
            OverrideChange("split", third.key),
            OverrideChange("pin", third.key, first.key),  # replaces the split of the third
            OverrideChange("clear", second.key),
        ]
        messages = parsed([orjson.loads(encode(override_message(o))) for o in overrides])
        await applier.apply(syncs + messages)
        other_applier = ChangelogApplier(other, RequestTracker())
        await other_applier.apply(syncs[:3])
        await other_applier.apply(syncs[3:] + messages)
        assert documents(store) == documents(other) and len(documents(store)) == SIZE - 1
        pinned = store.find_offer(*first.key)
        assert pinned is not None and pinned == other.find_offer(*first.key)
        assert store.find_offer(*third.key) == pinned
        assert store.find_offer(*second.key) != pinned
        kinds = [(r[2], r[3]) for r in snapshot(other, "match_overrides")["match_overrides"]]
        assert kinds == [("pin", "dj")]
    finally:
        other.close()
    with pytest.raises(ChangelogError):
        parse_update({**override_message(overrides[0]), "other": ["dj"]})
    with pytest.raises(ChangelogError):
        parse_update({**override_message(overrides[1]), "offer": ["someone-else", "1"]})
