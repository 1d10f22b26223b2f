"""The Flink ingest job on a real MiniCluster, against a real broker (Tansu), real simulators and real API nodes.

One job serves the whole module (it takes 10-20 s to start and ~800 MB): it runs as
``python -m app.distributed.flink.job`` in its own process group, cutting catalog syncs into slices of 2 pages so
that the continuation path is exercised. The module has its own broker, the development broker of
``catalog broker`` (memory storage), whose proxy lets Debian's kcat talk to Tansu. Node A (in this process) and
node B (a ``uvicorn`` subprocess) run the kafka runtime with their own SQLite files; the last tests restart the job
and check it reprocesses nothing, then restart the broker and check the job notices.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.distributed.kafka.broker import DevBroker
from app.domain.models import Vendor, VendorKind
from app.domain.requests import FetchRequest, RequestKind
from app.domain.webhooks import sign
from app.domain.wire import request_to_dict, vendor_to_dict
from tests.flink_support import FlinkJob, ensure_jars, job_env, private_topics
from tests.kafka_support import consume, produce, unique
from tests.support import (
    CREDENTIALS,
    ApiServer,
    ServiceProcess,
    Sim,
    admin,
    all_products,
    fast_settings,
    free_port,
    running_sims,
    service_env,
    sim_config,
    wait_until,
)

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.flink,
    pytest.mark.slow,
    # The module's MiniCluster and job start in whichever test runs first (~16 s here, unloaded).
    pytest.mark.timeout(300),
]

DUMMY_SIZE = 700  # 3 pages of 250: two slices of PAGES_PER_MESSAGE pages
SHOP_SIZE = 30
PAGES_PER_MESSAGE = 2
UNKNOWN_VENDOR_WAIT_S = 3.0


@dataclass
class Setup:
    bootstrap: str
    topics: dict[str, str]
    job: FlinkJob
    dummy: Sim
    shop: Sim
    a: httpx.Client
    b: httpx.Client
    tmp: Path

    def topic(self, name: str) -> str:
        return self.topics[f"kafka_topic_{name}"]

    def vendor(self, vendor_id: str, sim: Sim) -> Vendor:
        return Vendor(
            id=vendor_id,
            name=vendor_id,
            kind=sim.kind,
            base_url=sim.base_url,
            currency=sim.server.config.currency,
            credentials=dict(CREDENTIALS[sim.kind]),
        )

    def define(self, vendor: Vendor) -> None:
        produce(self.bootstrap, self.topic("vendors"), [(vendor.id, vendor_to_dict(vendor))])

    def request(self, request: FetchRequest) -> None:
        topic = "product_requests" if request.kind is RequestKind.PRODUCT else "vendor_requests"
        produce(self.bootstrap, self.topic(topic), [(request.vendor_id, request_to_dict(request))])

    def updates(self, *, until: Any = None, count: int = 100_000, timeout: float = 30.0) -> list[tuple[Any, Any]]:
        self.job.check()
        return consume(self.bootstrap, self.topic("updates"), count=count, timeout=timeout, until=until)

    def update_for(self, request_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        def found(records: list[tuple[Any, Any]]) -> bool:
            return any(v.get("request_id") == request_id for _, v in records)

        records = self.updates(until=found, timeout=timeout)
        matching = [v for _, v in records if v.get("request_id") == request_id]
        assert matching, f"no update for {request_id}; job log:\n{self.job.log()[-3000:]}"
        result: dict[str, Any] = matching[0]
        return result

    def sync_records(self, request_id: str, *, timeout: float = 60.0) -> list[tuple[Any, Any]]:
        def finished(records: list[tuple[Any, Any]]) -> bool:
            return any(v.get("request_id") == request_id and v.get("type") == "sync_finished" for _, v in records)

        records = self.updates(until=finished, timeout=timeout)
        mine = [(k, v) for k, v in records if v.get("request_id") == request_id]
        assert mine and mine[-1][1]["type"] == "sync_finished", f"sync {request_id} did not finish: {mine[-3:]}"
        return mine


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[DevBroker]:
    """This module's own broker: what `catalog broker --memory` runs (Tansu behind the proxy kcat needs)."""
    broker = DevBroker(free_port()).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def setup(kafka_broker: DevBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    ensure_jars()
    tmp = tmp_path_factory.mktemp("flink")
    topics = private_topics()
    group = unique("ingest")
    job = FlinkJob(
        job_env(kafka_broker.bootstrap, topics),
        tmp / "job.log",
        "--group",
        group,
        "--pages-per-message",
        str(PAGES_PER_MESSAGE),
        "--checkpoints",
        str(tmp / "checkpoints"),
        "--unknown-vendor-wait-s",
        str(UNKNOWN_VENDOR_WAIT_S),
    )
    common = {"runtime": "kafka", "kafka_bootstrap": kafka_broker.bootstrap, "kafka_partitions": 2, **topics}
    node_env = service_env(
        tmp / "b.db",
        CATALOG_NODE_ID=unique("b"),
        CATALOG_SCHEDULER_ENABLED="false",
        **{f"CATALOG_{k.upper()}": str(v) for k, v in common.items()},
    )
    with contextlib.ExitStack() as stack:
        stack.callback(job.stop)
        job.start()  # first: the MiniCluster takes longest, the rest starts meanwhile
        dummy, shop = stack.enter_context(
            running_sims(
                sim_config(VendorKind.DUMMYJSON, size=DUMMY_SIZE), sim_config(VendorKind.SHOPIFY, size=SHOP_SIZE)
            )
        )
        api = stack.enter_context(ApiServer(fast_settings(tmp / "a.db", node_id=unique("a"), **common)))
        b_process = ServiceProcess(node_env, tmp / "b.log")
        stack.callback(b_process.kill)
        b_process.start()
        a = stack.enter_context(httpx.Client(base_url=api.base_url, timeout=20))
        b = stack.enter_context(httpx.Client(base_url=b_process.base_url, timeout=20))
        ready = Setup(kafka_broker.bootstrap, topics, job, dummy, shop, a, b, tmp)
        # Ready when a first request went through: that covers the MiniCluster start and the group join.
        ready.define(ready.vendor("probe", dummy))
        probe = FetchRequest(RequestKind.PRODUCT, "probe", vendor_product_id="1")
        ready.request(probe)
        assert ready.update_for(probe.id, timeout=120)["status"] == "done"
        yield ready


def test_a_product_request_goes_through_flink_to_the_vendor_and_back_with_its_offers(setup: Setup) -> None:
    setup.define(setup.vendor("dj", setup.dummy))
    calls_before = setup.dummy.requests()
    request = FetchRequest(RequestKind.PRODUCT, "dj", vendor_product_id="5")
    setup.request(request)
    update = setup.update_for(request.id)
    assert update["type"] == "product" and update["status"] == "done", update
    assert [o["vendor_product_id"] for o in update["offers"]] == ["5"]
    assert update["offers"][0]["vendor_id"] == "dj" and update["offers"][0]["currency"] == "USD"
    assert setup.dummy.requests() > calls_before  # the simulator really was called

    missing = FetchRequest(RequestKind.PRODUCT, "dj", vendor_product_id="999999")
    setup.request(missing)
    assert setup.update_for(missing.id)["status"] == "not_found"


def test_a_request_that_arrives_before_its_vendor_definition_waits_for_it(setup: Setup) -> None:
    request = FetchRequest(RequestKind.PRODUCT, "late-shop", vendor_product_id="1")
    setup.request(request)
    time.sleep(1.0)
    setup.define(setup.vendor("late-shop", setup.shop))
    update = setup.update_for(request.id)
    assert update["status"] in ("done", "not_found"), update  # answered by the vendor, not failed
    assert update["vendor_id"] == "late-shop"


def test_requests_for_a_vendor_the_job_never_hears_of_fail_with_the_reason(setup: Setup) -> None:
    product = FetchRequest(RequestKind.PRODUCT, "nobody", vendor_product_id="1")
    catalog = FetchRequest(RequestKind.CATALOG, "nobody", full=True)
    setup.request(product)
    setup.request(catalog)
    update = setup.update_for(product.id, timeout=UNKNOWN_VENDOR_WAIT_S + 30)
    assert update["status"] == "failed" and update["error_code"] == "unknown_vendor", update
    finished = setup.sync_records(catalog.id)[-1][1]
    assert finished["error"].startswith("unknown_vendor:"), finished


def test_a_deleted_vendor_definition_is_forgotten(setup: Setup) -> None:
    setup.define(setup.vendor("gone", setup.dummy))
    before = FetchRequest(RequestKind.PRODUCT, "gone", vendor_product_id="2")
    setup.request(before)
    assert setup.update_for(before.id)["status"] == "done"
    produce(setup.bootstrap, setup.topic("vendors"), [("gone", None)])  # the tombstone a node writes on delete
    time.sleep(1.0)
    after = FetchRequest(RequestKind.PRODUCT, "gone", vendor_product_id="2")
    setup.request(after)
    update = setup.update_for(after.id, timeout=UNKNOWN_VENDOR_WAIT_S + 30)
    assert update["status"] == "failed" and update["error_code"] == "unknown_vendor", update


def test_a_catalog_request_syncs_the_whole_vendor_page_by_page(setup: Setup) -> None:
    setup.define(setup.vendor("shop", setup.shop))
    setup.define(setup.vendor("dj-cat", setup.dummy))
    request = FetchRequest(RequestKind.CATALOG, "dj-cat", full=True)
    setup.request(request)
    records = setup.sync_records(request.id)
    assert {k for k, _ in records} == {"dj-cat"}  # keyed by vendor id
    kinds = [v["type"] for _, v in records]
    assert kinds[0] == "sync_started" and kinds[-1] == "sync_finished" and set(kinds[1:-1]) == {"page"}
    pages = [v for _, v in records if v["type"] == "page"]
    ids = [o["vendor_product_id"] for page in pages for o in page["offers"]]
    assert len(ids) == len(set(ids)) == setup.dummy.items() == DUMMY_SIZE
    assert [p["page_no"] for p in pages] == list(range(1, len(pages) + 1))
    finished = records[-1][1]
    assert finished["error"] is None and finished["items"] == DUMMY_SIZE and finished["pages"] == len(pages)
    assert len({v["sync_id"] for _, v in records}) == 1
    # The sync was cut into slices, each continued through the requests topic.
    continued = consume(setup.bootstrap, setup.topic("vendor_requests"), count=100, timeout=3)
    slices = [v for _, v in continued if v.get("id") == request.id and "continuation" in v]
    assert len(slices) == -(-len(pages) // PAGES_PER_MESSAGE) - 1


def test_poison_messages_go_to_the_dead_letter_topic_and_the_job_goes_on(setup: Setup) -> None:
    poison: list[tuple[str | None, Any]] = [
        ("dj", b"{not json"),
        ("dj", {"v": 1, "id": "r_bad_kind", "kind": "teleport", "vendor_id": "dj"}),
        ("dj", {"v": 7, "kind": "product", "vendor_id": "dj", "vendor_product_id": "1"}),
        ("dj", b"[1, 2]"),
    ]
    produce(setup.bootstrap, setup.topic("product_requests"), poison)
    produce(setup.bootstrap, setup.topic("vendor_requests"), [("dj", None)])  # a tombstone (kcat -Z)
    good = FetchRequest(RequestKind.PRODUCT, "dj", vendor_product_id="7")
    setup.request(good)
    assert setup.update_for(good.id)["status"] == "done"
    dead = consume(setup.bootstrap, setup.topic("dead_letters"), count=4, timeout=20)
    assert len(dead) == 4, dead
    raws = sorted(v["raw"] for _, v in dead)
    assert "{not json" in raws and "[1, 2]" in raws
    reasons = " | ".join(v["error"] for _, v in dead)
    assert "not JSON" in reasons and "teleport" in reasons and "version" in reasons, reasons
    setup.job.check()


def test_kcat_publishes_a_hand_written_request_and_the_vendor_catalog_appears(setup: Setup) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("Debian's kcat is not installed (apt-get install -y kcat)")
    setup.define(setup.vendor("kcat-shop", setup.shop))
    line = '{"v": 1, "id": "r_kcat_1", "kind": "catalog", "vendor_id": "kcat-shop", "full": true}\n'
    subprocess.run(
        [kcat, "-P", "-b", setup.bootstrap, "-t", setup.topic("vendor_requests"), "-k", "kcat-shop"],
        input=line.encode(),
        check=True,
        timeout=30,
    )
    records = setup.sync_records("r_kcat_1")
    assert records[-1][1]["error"] is None, records[-1][1]
    pages = [v for _, v in records if v["type"] == "page"]
    ids = {o["vendor_product_id"] for page in pages for o in page["offers"]}
    assert len(ids) == records[-1][1]["items"] > 0
    assert all(o["vendor_id"] == "kcat-shop" for page in pages for o in page["offers"])


def _miss(client: httpx.Client, path: str, wait_ms: int) -> httpx.Response:
    return client.get(path, params={"wait_ms": wait_ms})


def test_an_api_miss_goes_through_kafka_and_flink_and_answers_200_on_both_nodes(setup: Setup) -> None:
    response = setup.a.post("/vendors", json=setup.dummy.vendor_body("api-dj"), headers=admin())
    assert response.status_code == 201, response.text
    path = "/vendors/api-dj/products/11"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        answer = pool.submit(_miss, setup.a, path, 10_000).result(timeout=30)
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started < 10
    assert "api-dj" in json.dumps(answer.json())
    # Node B never asked; it applied the same update from the changelog.
    wait_until(lambda: setup.b.get(path, params={"wait_ms": 0}).status_code == 200, timeout=20, what="node B")


def test_a_catalog_sync_asked_of_one_node_lands_in_both_nodes_sqlite(setup: Setup) -> None:
    response = setup.a.post("/vendors", json=setup.shop.vendor_body("api-shop"), headers=admin())
    assert response.status_code == 201, response.text
    response = setup.a.post("/vendors/api-shop/sync", params={"full": True}, headers=admin())
    assert response.status_code == 202, response.text

    def synced(client: httpx.Client) -> list[dict[str, Any]] | None:
        body = client.get("/vendors/api-shop").json()
        if body["sync"]["state"] != "ok":
            return None
        return all_products(client, "/vendors/api-shop/products")

    in_a = wait_until(lambda: synced(setup.a), timeout=60, what="node A to sync")
    in_b = wait_until(lambda: synced(setup.b), timeout=60, what="node B to sync")
    assert len(in_a) == len(in_b) > 0
    assert sorted(p["id"] for p in in_a) == sorted(p["id"] for p in in_b)


WEBHOOK_SECRET = "whsec_two_nodes"


def _shopify_webhook(
    client: httpx.Client, vendor_id: str, product: dict[str, Any], *, topic: str, delivery_id: str
) -> httpx.Response:
    """A Shopify webhook as the platform sends it: the raw JSON body, its HMAC and the Shopify headers."""
    body = json.dumps(product).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Hmac-Sha256": sign(body, WEBHOOK_SECRET),
        "X-Shopify-Topic": topic,
        "X-Shopify-Webhook-Id": delivery_id,
    }
    return client.post(f"/webhooks/shopify/{vendor_id}", content=body, headers=headers)


def _shop_token(sim: Sim) -> dict[str, str]:
    return {"X-Shopify-Access-Token": sim.vendor_body("x")["credentials"]["access_token"]}


def _shop_items(sim: Sim, count: int) -> list[int]:
    response = httpx.get(
        f"{sim.base_url}/admin/api/2024-01/products.json", params={"limit": count}, headers=_shop_token(sim)
    )
    assert response.status_code == 200, response.text
    return [int(p["id"]) for p in response.json()["products"]]


def _priced(sim: Sim, item: int, price: str) -> dict[str, Any]:
    """The vendor's own product JSON (from its admin API) with every variant at ``price``."""
    response = httpx.get(f"{sim.base_url}/admin/api/2024-01/products/{item}.json", headers=_shop_token(sim))
    assert response.status_code == 200, response.text
    product: dict[str, Any] = response.json()["product"]
    for variant in product["variants"]:
        variant["price"] = price
    return product


def _prices(client: httpx.Client, vendor_id: str, item: int) -> set[Decimal] | None:
    """This node's stored prices of the vendor's offers of ``item`` (None while it holds none): read locally only."""
    response = client.get(f"/vendors/{vendor_id}/products/{item}", params={"wait_ms": 0})
    if response.status_code != 200:
        return None
    offers = [
        o
        for o in response.json()["offers"]
        if o["vendor_id"] == vendor_id and str(item) in (o["vendor_product_id"], o["parent_id"])
    ]
    return {Decimal(o["price"]) for o in offers} or None


def test_a_webhook_received_by_one_node_changes_the_product_on_the_other(setup: Setup) -> None:
    """Each node has its own SQLite file: a webhook only reaches node B through the changelog."""
    body = setup.shop.vendor_body("wh-shop")
    body["credentials"]["webhook_secret"] = WEBHOOK_SECRET
    assert setup.a.post("/vendors", json=body, headers=admin()).status_code == 201  # its first sync: via Flink

    def synced(client: httpx.Client) -> bool:
        return bool(client.get("/vendors/wh-shop").json()["sync"]["state"] == "ok")

    def priced(client: httpx.Client, item: int, price: str) -> bool:
        return _prices(client, "wh-shop", item) == {Decimal(price)}

    for client in (setup.a, setup.b):
        wait_until(functools.partial(synced, client), timeout=60, what="the first sync on both nodes")
    item, marker = _shop_items(setup.shop, 2)
    before = _prices(setup.b, "wh-shop", item)
    assert before is not None and Decimal("0.01") not in before

    answer = _shopify_webhook(
        setup.a, "wh-shop", _priced(setup.shop, item, "0.01"), topic="products/update", delivery_id="wh-1"
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] == "updated" and answer.json()["offers"] >= 1
    for client in (setup.b, setup.a):  # A too: it applies its own webhook from the changelog, like B
        wait_until(functools.partial(priced, client, item, "0.01"), timeout=20, what="the webhook's price")

    # The vendor delivers wh-1 again, to the other node this time, with what would roll the product back.
    replay = _shopify_webhook(
        setup.b, "wh-shop", _priced(setup.shop, item, "0.02"), topic="products/update", delivery_id="wh-1"
    )
    assert replay.status_code == 200, replay.text
    # A fresh delivery behind it (same vendor, same partition): once it is applied, the replay was seen too.
    fresh = _shopify_webhook(
        setup.b, "wh-shop", _priced(setup.shop, marker, "0.03"), topic="products/update", delivery_id="wh-2"
    )
    assert fresh.status_code == 200, fresh.text
    for client in (setup.a, setup.b):
        wait_until(functools.partial(priced, client, marker, "0.03"), timeout=20, what="the delivery after the replay")
        assert priced(client, item, "0.01")  # the replay changed nothing

    # A delete received by B, sent by the simulator the platform's way, removes the offers on A.
    pid = setup.a.get(f"/vendors/wh-shop/products/{item}", params={"wait_ms": 0}).json()["id"]
    order = {
        "url": f"{str(setup.b.base_url).rstrip('/')}/webhooks/shopify/wh-shop",
        "secret": WEBHOOK_SECRET,
        "topic": "products/delete",
        "item": item,
    }
    sent = httpx.post(f"{setup.shop.base_url}/_sim/webhook", json=order, timeout=10)
    assert sent.status_code == 200 and sent.json()["status"] == 200, sent.text
    assert sent.json()["body"] == {"applied": "deleted", "offers": None}  # published, applied by every node after

    def gone_from_a() -> bool:
        response = setup.a.get(f"/products/{pid}")
        if response.status_code == 404:
            return True
        offers = response.json()["offers"]
        return not [
            o for o in offers if o["vendor_id"] == "wh-shop" and str(item) in (o["vendor_product_id"], o["parent_id"])
        ]

    wait_until(gone_from_a, timeout=20, what="the delete on node A")


def test_a_restarted_job_resumes_from_its_checkpoint_and_reprocesses_nothing(setup: Setup) -> None:
    """Last: it restarts the module's job (which resumes from its newest checkpoint, see make_environment)."""
    before = setup.updates(count=100_000, timeout=5)
    assert before
    time.sleep(3)  # a checkpoint (1 s apart) now covers everything read so far
    setup.job.stop()
    setup.job.start()
    fresh = FetchRequest(RequestKind.PRODUCT, "dj", vendor_product_id="9")
    setup.request(fresh)
    assert setup.update_for(fresh.id, timeout=120)["status"] == "done"
    time.sleep(2)  # anything replayed would have come out before or with the fresh request's update
    after = setup.updates(count=100_000, timeout=5)
    # Partitions interleave differently on each read: compare what was written, not the order it is read in.
    new = Counter(_identity(v) for _, v in after) - Counter(_identity(v) for _, v in before)
    assert list(new.elements()) == [(fresh.id, "product", None)], new


def _identity(update: dict[str, Any]) -> tuple[str, str, int | None]:
    """A webhook update (published by a node, not the job) has a delivery id instead of a request id."""
    return (update.get("request_id") or update["delivery_id"], update["type"], update.get("page_no"))
