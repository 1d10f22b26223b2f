"""The Flink job's core without Flink: real sources against real simulators over HTTP, slice by slice."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.distributed.flink.processing import Output, ProcessingConfig, Processor, Sink
from app.domain.models import Vendor, VendorKind, utcnow
from app.domain.requests import FetchRequest, RequestKind
from app.domain.wire import Work, parse_request, parse_update, request_to_dict
from tests.support import CREDENTIALS, Sim, fast_settings, running_sims, sim_config


@pytest.fixture(scope="module")
def sims() -> Iterator[list[Sim]]:
    with running_sims(sim_config(VendorKind.DUMMYJSON, size=600), sim_config(VendorKind.SHOPIFY, size=40)) as sims:
        yield sims


def _vendor(vendor_id: str, sim: Sim) -> Vendor:
    return Vendor(vendor_id, vendor_id, sim.kind, sim.base_url, sim.server.config.currency, dict(CREDENTIALS[sim.kind]))


def _processor(tmp_path: Path, pages_per_message: int = 1) -> Processor:
    settings = fast_settings(tmp_path / "unused.db")
    return Processor(
        ProcessingConfig.from_settings(settings, pages_per_message=pages_per_message, page_retry_pause_s=0.01)
    )


def _drain(processor: Processor, vendor: Vendor, request: FetchRequest) -> tuple[list[dict[str, Any]], int]:
    """Runs a catalog request and every continuation it writes, as the job would; returns updates and slices."""
    updates: list[dict[str, Any]] = []
    work: Work | None = parse_request(orjson.dumps(request_to_dict(request)).decode())
    slices = 0
    while work is not None:
        outputs: list[Output] = processor.handle(work, vendor)
        slices += 1
        updates.extend(orjson.loads(o.value) for o in outputs if o.sink is Sink.UPDATES)
        more = [o for o in outputs if o.sink is Sink.REQUESTS]
        assert len(more) <= 1 and all(o.key == vendor.id for o in outputs)
        work = parse_request(more[0].value) if more else None
    return updates, slices


@pytest.mark.parametrize("kind", [VendorKind.DUMMYJSON, VendorKind.SHOPIFY])
def test_a_catalog_is_read_slice_by_slice_through_continuations(
    sims: list[Sim], kind: VendorKind, tmp_path: Path
) -> None:
    sim = next(s for s in sims if s.kind is kind)
    vendor = _vendor(f"v-{kind}", sim)
    request = FetchRequest(RequestKind.CATALOG, vendor.id, full=True)
    with _processor(tmp_path, pages_per_message=1) as processor:
        updates, slices = _drain(processor, vendor, request)
    parsed = [parse_update(u) for u in updates]  # every message is valid for the nodes
    assert parsed[0].type.value == "sync_started" and parsed[-1].type.value == "sync_finished"
    pages = [u for u in updates if u["type"] == "page"]
    assert slices == len(pages)  # one page per slice here
    ids = [o["vendor_product_id"] for p in pages for o in p["offers"]]
    assert len(ids) == len(set(ids)) == updates[-1]["items"]
    assert updates[-1]["error"] is None and updates[-1]["pages"] == len(pages)
    assert len({u["sync_id"] for u in updates}) == 1
    if kind is VendorKind.DUMMYJSON:
        assert len(ids) == sim.items()


def test_a_page_that_keeps_failing_ends_the_sync_with_an_error(sims: list[Sim], tmp_path: Path) -> None:
    sim = next(s for s in sims if s.kind is VendorKind.DUMMYJSON)
    vendor = _vendor("failing", sim)
    request = FetchRequest(RequestKind.CATALOG, vendor.id, full=True)
    with _processor(tmp_path, pages_per_message=1) as processor:
        first = processor.handle(Work(request), vendor)
        assert [o.sink for o in first] == [Sink.UPDATES, Sink.UPDATES, Sink.REQUESTS]
        sim.configure(error_rate=1.0, failure_modes=["500"])
        try:
            rest = processor.handle(parse_request(first[-1].value), vendor)
        finally:
            sim.configure(error_rate=0.0)
    assert [o.sink for o in rest] == [Sink.UPDATES]  # no continuation: the sync is over
    finished = orjson.loads(rest[0].value)
    assert finished["type"] == "sync_finished" and finished["error"]
    assert finished["pages"] == 1 and finished["items"] == 250  # what was read before the failure


def test_a_product_request_reports_done_not_found_and_vendor_failure(sims: list[Sim], tmp_path: Path) -> None:
    sim = next(s for s in sims if s.kind is VendorKind.DUMMYJSON)
    vendor = _vendor("dj", sim)

    def status(vpid: str) -> dict[str, Any]:
        [out] = processor.handle(Work(FetchRequest(RequestKind.PRODUCT, "dj", vendor_product_id=vpid)), vendor)
        result: dict[str, Any] = orjson.loads(out.value)
        return result

    with _processor(tmp_path) as processor:
        done = status("3")
        assert done["status"] == "done" and [o["vendor_product_id"] for o in done["offers"]] == ["3"]
        assert status("987654")["status"] == "not_found"
        sim.configure(error_rate=1.0, failure_modes=["500"])
        try:
            failed = status("4")
        finally:
            sim.configure(error_rate=0.0)
    assert failed["status"] == "failed" and failed["vendor_failure"] is True and failed["error"]


def test_requests_of_several_nodes_for_one_unknown_id_cost_one_call(sims: list[Sim], tmp_path: Path) -> None:
    """Each node publishes its own request for an id it has not seen answered; the job answers every one of them,
    each with its own request id, from one vendor 404 while not_found_ttl_s lasts (its expiry: test_not_found)."""
    sim = next(s for s in sims if s.kind is VendorKind.DUMMYJSON)
    vendor = _vendor("dj-thrift", sim)
    settings = fast_settings(tmp_path / "unused.db", not_found_ttl_s=600)
    with Processor(ProcessingConfig.from_settings(settings)) as processor:
        before = sim.requests()
        requests = [FetchRequest(RequestKind.PRODUCT, vendor.id, vendor_product_id="876543") for _ in range(5)]
        answers = [orjson.loads(processor.handle(Work(r), vendor)[0].value) for r in requests]
        assert sim.requests() - before == 1
        assert [(a["request_id"], a["status"], a["error_code"], a["vendor_failure"]) for a in answers] == [
            (r.id, "not_found", "vendor_item_not_found", False) for r in requests
        ]
        processor.forget(vendor.id)  # a deleted vendor's 404s go with it
        processor.handle(Work(FetchRequest(RequestKind.PRODUCT, vendor.id, vendor_product_id="876543")), vendor)
        assert sim.requests() - before == 2
        renamed = dataclasses.replace(vendor, name="renamed")  # so do a redefined one's
        processor.handle(Work(FetchRequest(RequestKind.PRODUCT, vendor.id, vendor_product_id="876543")), renamed)
        assert sim.requests() - before == 3


def test_an_incremental_request_reads_only_what_changed_since_its_since(tmp_path: Path) -> None:
    """The node's ``since`` reaches the vendor (WooCommerce ``modified_after``) in every slice of the sync."""
    with running_sims(sim_config(VendorKind.WOOCOMMERCE, size=2400)) as (sim,):
        vendor = _vendor("woo", sim)
        since = utcnow() - timedelta(seconds=2)  # the simulated catalog was last changed long before
        # Each tick reprices ~5 % of what is carried; two make more than one page of 100.
        changed = sorted({str(i) for _ in range(2) for i in sim.tick()})
        assert len(changed) > 100
        with _processor(tmp_path, pages_per_message=1) as processor:
            incremental, slices = _drain(processor, vendor, FetchRequest(RequestKind.CATALOG, "woo", since=since))
            whole, _ = _drain(processor, vendor, FetchRequest(RequestKind.CATALOG, "woo", full=True, since=since))
        carried = sim.items()
    assert slices >= 2  # the continuation carried ``since`` too
    assert sorted(o["vendor_product_id"] for u in incremental for o in u.get("offers", [])) == changed
    assert incremental[0]["full"] is False and incremental[-1]["error"] is None
    # A full request ignores ``since``: the whole catalog.
    assert whole[-1]["items"] == carried > len(changed)


def test_since_is_ignored_by_a_source_that_cannot_filter_by_change_time(sims: list[Sim], tmp_path: Path) -> None:
    sim = next(s for s in sims if s.kind is VendorKind.DUMMYJSON)
    vendor = _vendor("dj-since", sim)
    request = FetchRequest(RequestKind.CATALOG, vendor.id, since=utcnow() - timedelta(seconds=2))
    with _processor(tmp_path, pages_per_message=10) as processor:
        updates, _ = _drain(processor, vendor, request)
    assert updates[-1]["error"] is None and updates[-1]["items"] == sim.items()
