"""Splits and pins through ``MatchingService`` against the fake store: applied here, or only published."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.domain.matching import OverrideChange
from app.domain.models import Offer, Vendor, VendorKind
from app.errors import Conflict, NotFound
from app.matching.service import MatchingService
from tests.fakes import FakeCatalogStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def offer(vendor: str, vpid: str, title: str) -> Offer:
    return Offer(
        vendor_id=vendor, vendor_product_id=vpid, title=title, price=Decimal("9.99"), currency="USD", fetched_at=T0
    )


class Publisher:
    def __init__(self) -> None:
        self.sent: list[OverrideChange] = []

    async def publish_override(self, change: OverrideChange) -> None:
        self.sent.append(change)


@pytest.fixture
async def store() -> FakeCatalogStore:
    fake = FakeCatalogStore()
    for vid in ("a", "b"):
        await fake.add_vendor(Vendor(vid, vid, VendorKind.DUMMYJSON, "http://x", "USD"))
    await fake.upsert_offers(
        [
            offer("a", "1", "Essence Mascara Lash Princess"),
            offer("b", "1", "Mascara Lash Princess, Essence"),
            offer("b", "2", "Bamboo Spatula"),
        ]
    )
    return fake


def product(store: FakeCatalogStore, vendor: str, vpid: str) -> str:
    ref = store.find_offer(vendor, vpid)
    assert ref is not None
    return ref.product_id


async def test_split_and_pin_are_applied_to_the_store(store: FakeCatalogStore) -> None:
    service = MatchingService(store)
    assert product(store, "a", "1") == product(store, "b", "1")  # the matcher merged the retitled listing
    moved = await service.override(OverrideChange("split", ("b", "1")))
    assert moved == product(store, "b", "1") != product(store, "a", "1")
    joined = await service.override(OverrideChange("pin", ("a", "1"), ("b", "2")))
    assert joined == product(store, "b", "2") == product(store, "a", "1")
    await service.override(OverrideChange("clear", ("b", "1")))
    await service.override(OverrideChange("clear", ("b", "2")))
    assert product(store, "a", "1") == product(store, "b", "1") != product(store, "b", "2")


async def test_in_the_kafka_runtime_the_decision_is_only_published(store: FakeCatalogStore) -> None:
    publisher = Publisher()
    service = MatchingService(store, publisher)
    before = product(store, "b", "1")
    assert await service.override(OverrideChange("split", ("b", "1"))) is None
    assert publisher.sent == [OverrideChange("split", ("b", "1"))]
    assert product(store, "b", "1") == before  # every node, this one included, applies it from the changelog


async def test_unknown_offers_and_self_pins_are_refused(store: FakeCatalogStore) -> None:
    service = MatchingService(store, Publisher())
    with pytest.raises(NotFound):
        await service.override(OverrideChange("split", ("a", "nope")))
    with pytest.raises(NotFound):
        await service.override(OverrideChange("pin", ("a", "1"), ("c", "1")))
    with pytest.raises(Conflict):
        await service.override(OverrideChange("pin", ("a", "1"), ("a", "1")))
