"""The Flink job's message handling that needs no vendor: parsing, continuations, dead letters, failures."""

from __future__ import annotations

import concurrent.futures
from datetime import UTC, datetime

import orjson
import pytest

from app.distributed.flink.processing import Output, ProductCalls, Sink, dead_letter, failed, unknown_vendor
from app.domain.models import Vendor, VendorKind
from app.domain.requests import FetchRequest, RequestKind
from app.domain.wire import (
    ChangelogError,
    Continuation,
    Work,
    parse_request,
    parse_update,
    parse_vendor,
    request_from_dict,
    request_to_dict,
    vendor_to_dict,
)
from app.secrets import Secrets

DEV_SECRETS = Secrets.development_only()


def _json(data: object) -> str:
    return orjson.dumps(data).decode()


def test_a_hand_written_catalog_request_parses_with_defaults() -> None:
    work = parse_request('{"v": 1, "id": "r_kcat", "kind": "catalog", "vendor_id": "shop", "full": true}')
    assert work.continuation is None
    assert work.request.id == "r_kcat" and work.request.kind is RequestKind.CATALOG and work.request.full


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "tombstone"),
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"v": 2, "kind": "product", "vendor_id": "a", "vendor_product_id": "1"}', "version"),
        ('{"v": 1, "kind": "teleport", "vendor_id": "a"}', "teleport"),
        ('{"v": 1, "kind": "product", "vendor_id": "a"}', "vendor_product_id"),
        ('{"v": 1, "kind": "catalog", "vendor_id": ""}', "vendor_id"),
        ('{"v": 1, "kind": "catalog"}', "vendor_id"),
        ('{"v": 1, "kind": "catalog", "vendor_id": "a", "requested_at": "yesterday"}', "bad request"),
        ('{"v": 1, "kind": "product", "vendor_id": "a", "vendor_product_id": "1", "continuation": {}}', "continue"),
        ('{"v": 1, "kind": "catalog", "vendor_id": "a", "continuation": {"v": 1, "cursor": "x"}}', "continuation"),
    ],
)
def test_unreadable_requests_are_refused_with_a_reason(raw: str | None, reason: str) -> None:
    with pytest.raises(ChangelogError, match=reason):
        parse_request(raw)


def test_since_survives_the_round_trip_and_is_none_when_absent() -> None:
    since = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    request = FetchRequest(RequestKind.CATALOG, "shop", since=since)
    wire = orjson.loads(_json(request_to_dict(request)))
    assert wire["v"] == 1 and wire["since"] == "2026-01-02T03:04:05.678000+00:00"
    assert request_from_dict(wire) == request
    # Through a continuation too: every slice of an incremental sync asks for the same changes.
    more = Continuation("s_1", since, "cursor-2", page_no=1, items=100)
    assert parse_request(_json(Work(request, more).to_dict())).request.since == since
    # Messages written before ``since`` existed (or by hand) read as "everything".
    assert parse_request('{"v": 1, "kind": "catalog", "vendor_id": "shop"}').request.since is None
    assert parse_request('{"v": 1, "kind": "catalog", "vendor_id": "shop", "since": null}').request.since is None
    with pytest.raises(ChangelogError, match="bad request"):
        parse_request('{"v": 1, "kind": "catalog", "vendor_id": "shop", "since": "last week"}')


def test_a_continuation_survives_its_round_trip_through_json() -> None:
    request = FetchRequest(RequestKind.CATALOG, "shop", full=True)
    more = Continuation("s_1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "cursor-9", page_no=4, items=1000)
    work = parse_request(_json(Work(request, more).to_dict()))
    assert work.continuation == more
    assert work.request == request


def test_vendor_definitions_parse_and_refuse_garbage() -> None:
    vendor = Vendor("shop", "Shop", VendorKind.SHOPIFY, "http://x", "EUR", credentials={"access_token": "t"})
    assert parse_vendor(secrets=DEV_SECRETS, raw=_json(vendor_to_dict(vendor, secrets=DEV_SECRETS))) == vendor
    for raw in (None, "nope", '{"v": 1, "id": "x"}', '{"v": 3}'):
        with pytest.raises(ChangelogError):
            parse_vendor(secrets=DEV_SECRETS, raw=raw)


def test_a_dead_letter_keeps_the_message_and_says_why() -> None:
    out = dead_letter("{not json", "not JSON: boom", source="requests", by="catalog-ingest")
    assert out.sink is Sink.DEAD_LETTERS
    body = orjson.loads(out.value)
    assert body["raw"] == "{not json" and body["error"] == "not JSON: boom" and body["source"] == "requests"
    assert body["v"] == 1 and body["by"] == "catalog-ingest" and body["partition"] is body["offset"] is None


def test_a_product_request_for_an_unknown_vendor_fails_visibly() -> None:
    request = FetchRequest(RequestKind.PRODUCT, "ghost", vendor_product_id="1")
    [out] = unknown_vendor(Work(request), 30)
    assert out.sink is Sink.INTERACTIVE and out.key == "ghost"  # a product outcome: the interactive topic
    update = parse_update(orjson.loads(out.value))
    assert update.request_id == request.id
    assert update.raw["status"] == "failed" and update.raw["error_code"] == "unknown_vendor"
    assert "ghost" in update.raw["error"]


def test_a_catalog_request_that_cannot_run_starts_and_ends_its_sync_with_the_error() -> None:
    request = FetchRequest(RequestKind.CATALOG, "shop", full=True)
    outs = failed(Work(request), "ingest_crashed", "boom")
    updates = [parse_update(orjson.loads(o.value)) for o in outs]
    assert [u.type.value for u in updates] == ["sync_started", "sync_finished"]
    assert updates[1].raw["error"] == "ingest_crashed: boom"
    assert updates[0].sync == updates[1].sync  # the same sync, so a node can close what it opened


def test_a_failed_continuation_only_ends_the_sync_it_belongs_to() -> None:
    request = FetchRequest(RequestKind.CATALOG, "shop")
    more = Continuation("s_7", datetime(2026, 1, 1, tzinfo=UTC), "c", page_no=3, items=750)
    [out] = failed(Work(request, more), "unknown_vendor", "gone")
    finished = orjson.loads(out.value)
    assert finished["type"] == "sync_finished" and finished["sync_id"] == "s_7"
    assert finished["pages"] == 3 and finished["items"] == 750 and finished["error"] == "unknown_vendor: gone"


def test_a_replayed_request_runs_the_same_sync_id() -> None:
    """After a crash the same request may be read again: its updates then belong to the same sync."""
    request = FetchRequest(RequestKind.CATALOG, "shop")
    first = orjson.loads(failed(Work(request), "x", "y")[0].value)["sync_id"]
    again = orjson.loads(failed(parse_request(_json(request_to_dict(request))), "x", "y")[0].value)["sync_id"]
    assert first == again


class _Calls:
    """Vendor calls that finish when the test says so: which were started, in which order."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []  # (vendor id, vendor product id)
        self.futures: dict[tuple[str, str], concurrent.futures.Future[list[Output]]] = {}

    def start(self, work: Work, vendor: Vendor) -> concurrent.futures.Future[list[Output]]:
        key = (vendor.id, work.request.vendor_product_id or "")
        future: concurrent.futures.Future[list[Output]] = concurrent.futures.Future()
        self.started.append(key)
        self.futures[key] = future
        return future

    def finish(self, vendor_id: str, vpid: str) -> None:
        self.futures[(vendor_id, vpid)].set_result([])


def _ask(calls: ProductCalls, vendor_id: str, vpid: str) -> None:
    vendor = Vendor(id=vendor_id, name=vendor_id, kind=VendorKind.DUMMYJSON, base_url="https://x.test", currency="USD")
    work = Work(FetchRequest(RequestKind.PRODUCT, vendor_id, vendor_product_id=vpid))
    calls.add(f"raw-{vendor_id}-{vpid}", work, vendor)


def test_a_slow_vendors_requests_hold_only_its_share_of_the_calls_and_the_others_start_at_once() -> None:
    vendor = _Calls()
    calls = ProductCalls(vendor.start, limit=4)  # half of them per vendor
    for vpid in "123456":
        _ask(calls, "slow", vpid)
    _ask(calls, "fast", "9")
    # The slow vendor holds two calls; its four others wait; the fast vendor's request, behind them, started.
    assert vendor.started == [("slow", "1"), ("slow", "2"), ("fast", "9")]
    assert (calls.in_flight, calls.waiting, calls.busy("slow")) == (3, 4, 2)
    assert not calls.full

    vendor.finish("fast", "9")
    assert [raw for raw, _ in calls.done()] == ["raw-fast-9"]
    assert vendor.started[-1] == ("fast", "9"), "a slot of the fast vendor is not the slow vendor's to take"

    vendor.finish("slow", "1")
    assert [raw for raw, _ in calls.done()] == ["raw-slow-1"]
    assert vendor.started[-1] == ("slow", "3"), "the slow vendor's next one, in arrival order"
    assert calls.busy("slow") == 2 and calls.waiting == 3


def test_when_every_call_is_taken_requests_wait_in_order_and_a_full_backlog_says_so() -> None:
    vendor = _Calls()
    calls = ProductCalls(vendor.start, limit=2, per_vendor=2, backlog=2)
    for vendor_id, vpid in (("a", "1"), ("b", "1"), ("c", "1"), ("a", "2")):
        _ask(calls, vendor_id, vpid)
    assert vendor.started == [("a", "1"), ("b", "1")]
    assert calls.full  # the operator now waits for a call before it reads on

    vendor.finish("b", "1")
    calls.wait()  # returns: one call is done
    assert [raw for raw, _ in calls.done()] == ["raw-b-1"]
    assert vendor.started[-1] == ("c", "1") and not calls.full

    calls.cancel()
    assert (calls.in_flight, calls.waiting) == (0, 0)
    assert vendor.futures[("a", "1")].cancelled()
