"""The changelog contract: every message survives JSON (as a Flink job or ``kcat`` would carry it) unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.distributed.changelog_applier import ChangelogApplier, product_outcome
from app.domain.images import image_id
from app.domain.models import Availability, Offer, Vendor, VendorKind
from app.domain.queries import ProductQuery, StoredImage
from app.domain.requests import FetchRequest, RequestKind
from app.domain.webhooks import Removal, WebhookChange, WebhookEffect
from app.domain.wire import (
    ChangelogError,
    SyncRef,
    UpdateType,
    dead_letter,
    offer_from_dict,
    offer_to_dict,
    page_message,
    parse_update,
    placeholder_message,
    product_message,
    request_from_dict,
    request_to_dict,
    sync_finished_message,
    sync_started_message,
    vendor_from_dict,
    vendor_to_dict,
    webhook_message,
)
from app.ingest.tracker import RequestTracker
from app.secrets import Secrets
from tests.fakes import FakeCatalogStore, vendor

AT = datetime(2026, 11, 25, 12, 30, 15, 123000, tzinfo=UTC)

DEV_SECRETS = Secrets.development_only()


def offer(vpid: str = "p1", **changes: Any) -> Offer:
    values: dict[str, Any] = {
        "vendor_id": "shop",
        "vendor_product_id": vpid,
        "title": "Kettle",
        "price": Decimal("19.990"),
        "currency": "EUR",
        "description": "1.7 l",
        "images": ("https://img/1.jpg",),
        "sku": "K-1",
        "gtin": "4006381333931",
        "brand": "Acme",
        "category": "kitchen",
        "availability": Availability.IN_STOCK,
        "stock": 3,
        "url": "https://shop/p1",
        "vendor_updated_at": AT,
        "fetched_at": AT,
        "parent_id": "parent-1",
    }
    values.update(changes)
    return Offer(**values)


def wire(message: dict[str, Any]) -> Any:
    return json.loads(json.dumps(message))


REF = SyncRef("s1", "r_1", "shop", True, AT)


def test_offer_round_trip_keeps_exact_decimals_and_timestamps() -> None:
    original = offer()
    back = offer_from_dict(wire(offer_to_dict(original)))
    assert back == original
    assert str(back.price) == "19.990"


def test_vendor_round_trip_carries_credentials_and_mapping() -> None:
    vendor = Vendor(
        "gen", "Generic", VendorKind.GENERIC, "http://x", "USD", {"token": "t"}, 60, False, {"items": "data"}
    )
    assert vendor_from_dict(secrets=DEV_SECRETS, data=wire(vendor_to_dict(vendor, secrets=DEV_SECRETS))) == vendor


def test_request_round_trip() -> None:
    request = FetchRequest(RequestKind.PRODUCT, "shop", "p1")
    assert request_from_dict(wire(request_to_dict(request))) == request


def test_product_update_parses_into_the_outcome_the_workers_apply() -> None:
    message = product_message(
        request_id="r_9", vendor_id="shop", vendor_product_id="p1", status="done", offers=[offer(), offer("p2")]
    )
    update = parse_update(wire(message))
    assert update.type is UpdateType.PRODUCT and update.request_id == "r_9"
    outcome = product_outcome(update)
    assert outcome.offers == (offer(), offer("p2"))
    assert outcome.offer_for_request() == offer()
    assert update.sync is None


def test_sync_messages_parse_with_their_ref() -> None:
    messages = [
        sync_started_message(REF),
        page_message(REF, page_no=0, offers=[offer()], skipped=2, skip_reasons={"price": 2}, total=10),
        sync_finished_message(REF, pages=1, items=1),
    ]
    updates = [parse_update(wire(m)) for m in messages]
    for update in updates:
        assert update.sync == REF
    assert [u.type for u in updates] == [UpdateType.SYNC_STARTED, UpdateType.PAGE, UpdateType.SYNC_FINISHED]
    assert updates[1].offers == (offer(),)


@pytest.mark.parametrize(
    "message",
    [
        [],
        {"v": 2, "type": "product", "vendor_id": "shop"},
        {"v": 1, "type": "teleport", "vendor_id": "shop"},
        {"v": 1, "type": "product", "vendor_id": ""},
        {**product_message(request_id="r", vendor_id="shop", vendor_product_id="p1", status="done"), "offers": {}},
        product_message(request_id="r", vendor_id="shop", vendor_product_id="p1", status="done", offers=[offer()])
        | {"vendor_id": "other"},
        {**sync_started_message(REF), "started_at": None},
        {**sync_started_message(REF), "started_at": "yesterday"},
        # parse, but could not be applied: refused before anything of them is
        product_message(request_id="r", vendor_id="shop", vendor_product_id="p1", status="maybe"),
        product_message(request_id="r", vendor_id="shop", vendor_product_id="p1", status="pending"),
        product_message(request_id="r", vendor_id="shop", vendor_product_id="p1", status="done"),
        product_message(request_id="", vendor_id="shop", vendor_product_id="p1", status="not_found"),
        page_message(REF, page_no=-1, offers=[]),
        page_message(REF, page_no=0, offers=[]) | {"skip_reasons": {"price": "two"}},
        sync_finished_message(REF, pages=1, items=1) | {"error": 5},
        sync_started_message(REF) | {"sync_id": ""},
    ],
)
def test_malformed_updates_are_refused_by_the_parser(message: Any) -> None:
    with pytest.raises(ChangelogError):
        parse_update(wire(message))


def test_a_webhook_update_carries_its_change_whole() -> None:
    change = WebhookChange(
        "shop", WebhookEffect.UPDATED, (offer(), offer("p2")), (Removal("parent-1", ("p1", "p2")),), "d-7"
    )
    update = parse_update(wire(webhook_message(change)))
    assert update.type is UpdateType.WEBHOOK and update.webhook == change
    assert update.offers == change.offers and update.sync is None and update.request_id is None
    deleted = WebhookChange("shop", WebhookEffect.DELETED, removals=(Removal("7"),))
    assert parse_update(wire(webhook_message(deleted))).webhook == deleted


@pytest.mark.parametrize(
    "change",
    [
        {"effect": "exploded"},
        {"removals": [{"id": ""}]},
        {"removals": [{"id": "7", "keep": [7]}]},
        {"removals": {"id": "7"}},
        {"delivery_id": 5},
        {"effect": "deleted"},  # a delete that carries offers
        {"vendor_id": "other"},  # offers of another vendor
    ],
)
def test_malformed_webhook_updates_are_refused(change: dict[str, Any]) -> None:
    good = webhook_message(WebhookChange("shop", WebhookEffect.UPDATED, (offer(),), (Removal("parent-1"),)))
    with pytest.raises(ChangelogError):
        parse_update(wire({**good, **change}))


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "catalog", "vendor_id": "shop"},  # no version
        {"v": 2, "kind": "catalog", "vendor_id": "shop"},
        {"v": 1, "kind": "teleport", "vendor_id": "shop"},
        {"v": 1, "kind": "catalog", "vendor_id": ""},
        {"v": 1, "kind": "product", "vendor_id": "shop"},
        {"v": 1, "kind": "catalog", "vendor_id": "shop", "since": "last week"},
    ],
)
def test_requests_are_refused_by_one_decoder_for_job_and_nodes_alike(data: dict[str, Any]) -> None:
    with pytest.raises(ChangelogError):
        request_from_dict(data)


def test_a_vendor_definition_of_another_version_is_refused() -> None:
    data = vendor_to_dict(Vendor("shop", "Shop", VendorKind.SHOPIFY, "http://x", "EUR"), secrets=DEV_SECRETS)
    with pytest.raises(ChangelogError, match="version"):
        vendor_from_dict(secrets=DEV_SECRETS, data={**data, "v": 2})


def test_a_dead_letter_has_one_shape_whoever_writes_it() -> None:
    letter = dead_letter(
        source="catalog_product_updates", error="unreadable", raw=b"\xff{", key=b"dj", by="catalog-node-a", offset=7
    )
    assert wire(letter) == letter  # plain JSON
    assert set(letter) == {"v", "source", "error", "raw", "key", "partition", "offset", "by", "at"}
    assert letter["raw"] == "\ufffd{" and letter["key"] == "dj" and letter["offset"] == 7
    assert letter["partition"] is None


def test_placeholder_update_carries_the_image_and_is_checked() -> None:
    url = "https://cdn.example/p/1.jpg"
    image = StoredImage(image_id(url), url, "shop")
    message = json.loads(json.dumps(placeholder_message(image, "LEHV6nWB2yk8pyo0adR*.7kCMdnj")))
    update = parse_update(message)
    assert (update.type, update.vendor_id, update.placeholder) == (
        UpdateType.PLACEHOLDER,
        "shop",
        (image, "LEHV6nWB2yk8pyo0adR*.7kCMdnj"),
    )
    # an id that is not the URL's would let a message point any image at any URL
    for wrong in ({"image_id": image_id(url + "?x")}, {"placeholder": "<script>"}, {"placeholder": 7}):
        with pytest.raises(ChangelogError):
            parse_update({**message, **wrong})


async def test_every_node_applies_a_placeholder_to_the_documents() -> None:
    store = FakeCatalogStore()
    await store.add_vendor(vendor("shop"))
    url = "https://cdn.example/p/1.jpg"
    await store.upsert_offers([offer("1", images=(url,))])
    applier = ChangelogApplier(store, RequestTracker())
    await applier.apply([parse_update(placeholder_message(StoredImage(image_id(url), url, "shop"), "L00000fQfQfQ"))])
    (summary,) = [json.loads(raw) for raw in store.list_products(ProductQuery()).items]
    assert summary["placeholder"] == "L00000fQfQfQ" and summary["thumbnail"] == "/images/" + image_id(url)
