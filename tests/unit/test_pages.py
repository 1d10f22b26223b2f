"""The one read-ahead page walk (embedded sync and Flink slices), with a scripted in-memory source."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

import pytest

from app.domain.models import Offer, Page, SkippedItem, Vendor, VendorKind
from app.domain.queries import SyncProgress
from app.errors import VendorBadResponse, VendorTimeout
from app.ingest.pages import walk_pages

VENDOR = Vendor("v", "V", VendorKind.SHOPIFY, "http://v", "EUR")


class ScriptedSource:
    """Pages by cursor: ``{None: Page(next_cursor="a"), "a": ...}``; a cursor mapped to an exception raises it."""

    supports_changes_since = True

    def __init__(self, pages: dict[str | None, Page | Exception]) -> None:
        self.vendor = VENDOR
        self.pages = pages
        self.asked: list[tuple[str | None, datetime | None]] = []

    async def fetch_page(self, cursor: str | None = None, *, since: datetime | None = None) -> Page:
        self.asked.append((cursor, since))
        page = self.pages[cursor]
        if isinstance(page, Exception):
            raise page
        return page

    async def fetch_product(self, vendor_product_id: str) -> tuple[Offer, ...]:
        raise AssertionError("not called")

    async def aclose(self) -> None:
        pass


def page(n: int, next_cursor: str | None, *, skipped: int = 0) -> Page:
    offers = tuple(Offer("v", f"{n}-{i}", "x", Decimal(1), "EUR") for i in range(2))
    skips = tuple(SkippedItem(None, "price: 'N/A' is not a price") for _ in range(skipped))
    return Page(offers, skips, next_cursor, total=10)


def chain(count: int) -> dict[str | None, Page | Exception]:
    """``count`` pages: None -> "1" -> ... -> the last, whose next cursor is None."""
    cursors: list[str | None] = [None, *(str(i) for i in range(1, count))]
    return {c: page(i, cursors[i + 1] if i + 1 < count else None) for i, c in enumerate(cursors)}


async def test_the_walk_reads_the_whole_catalog_in_order_with_the_since_it_was_given() -> None:
    since = datetime(2026, 1, 1)
    source = ScriptedSource(chain(5))
    async with walk_pages(source, since=since, read_ahead=2) as walk:
        outcomes = [o async for o in walk]
    assert [o.page.offers[0].vendor_product_id for o in outcomes] == ["0-0", "1-0", "2-0", "3-0", "4-0"]
    assert walk.next_cursor is None and {s for _, s in source.asked} == {since}


async def test_a_stop_rule_ends_the_walk_where_a_continuation_picks_it_up() -> None:
    source = ScriptedSource(chain(5))
    async with walk_pages(source, stop=lambda fetched: fetched >= 2) as walk:
        first = [o async for o in walk]
    assert len(first) == 2 and walk.next_cursor == "2"
    async with walk_pages(source, cursor=walk.next_cursor, stop=lambda fetched: fetched >= 2) as walk:
        second = [o async for o in walk]
    assert [o.page.offers[0].vendor_product_id for o in second] == ["2-0", "3-0"] and walk.next_cursor == "4"


@pytest.mark.parametrize("sliced", [False, True])
async def test_a_repeated_cursor_is_a_bad_vendor_response_in_both_runtimes(sliced: bool) -> None:
    pages: dict[str | None, Page | Exception] = {None: page(0, "a"), "a": page(1, "b"), "b": page(2, "a")}
    stop = (lambda fetched: fetched >= 40) if sliced else None
    handed: list[str] = []
    with pytest.raises(VendorBadResponse, match="repeated cursor 'a'"):
        async with walk_pages(ScriptedSource(pages), stop=stop) as walk:
            async for outcome in walk:
                handed.append(outcome.page.offers[0].vendor_product_id)
    assert handed == ["0-0", "1-0", "2-0"]  # pages fetched before the loop was seen are good


async def test_a_page_that_keeps_failing_ends_the_walk_after_the_pages_before_it() -> None:
    pages: dict[str | None, Page | Exception] = {None: page(0, "a"), "a": VendorTimeout("too slow")}
    source = ScriptedSource(pages)
    handed = []
    with pytest.raises(VendorTimeout):
        async with walk_pages(source, attempts=2, pause_s=0) as walk:
            async for outcome in walk:
                handed.append(outcome)
    assert len(handed) == 1 and source.asked.count(("a", None)) == 2  # tried again once


async def test_next_batch_takes_what_has_piled_up_up_to_the_limit() -> None:
    source = ScriptedSource(chain(6))
    async with walk_pages(source, read_ahead=8) as walk:
        await asyncio.sleep(0.01)  # let the fetcher read ahead
        batches = []
        while batch := await walk.next_batch(max_offers=4):
            batches.append(len(batch))
    assert sum(batches) == 6 and max(batches) == 2  # 2 offers a page: two pages make the limit
    assert walk.next_cursor is None


async def test_a_walk_left_early_stops_its_fetcher() -> None:
    source = ScriptedSource(chain(50))
    async with walk_pages(source, read_ahead=1) as walk:
        assert await walk.next() is not None
    asked = len(source.asked)
    await asyncio.sleep(0.01)
    assert len(source.asked) == asked < 50


def test_progress_counts_a_page_the_same_way_for_both_runtimes() -> None:
    progress = SyncProgress()
    progress.add_page(2, 1, 10, {"price": 1})
    progress.add_page(3, 2, None, {"price": 1, "gtin": 1})
    assert (progress.pages, progress.items_seen, progress.items_skipped, progress.items_total) == (2, 5, 3, 10)
    assert progress.skip_reasons == {"price": 2, "gtin": 1}
