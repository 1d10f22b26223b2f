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
import threading
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
from app.domain.wire import request_to_dict, vendor_to_dict
from app.secrets import Secrets
from tests.cluster_support import (
    WEBHOOK_SECRET,
    Nginx,
    content_hash,
    metric,
    nginx_binary,
    priced_product,
    shop_items,
    shopify_webhook,
    stored_prices,
)
from tests.flink_support import FlinkJob, ensure_jars, job_env
from tests.hostile import Answer, HostileVendor, Seen
from tests.kafka_support import consume, private_topics, produce, unique
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
    vendor_state,
    wait_request,
    wait_synced,
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

DEV_SECRETS = Secrets.development_only()


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
        produce(self.bootstrap, self.topic("vendors"), [(vendor.id, vendor_to_dict(vendor, secrets=DEV_SECRETS))])

    def request(self, request: FetchRequest) -> None:
        topic = "product_requests" if request.kind is RequestKind.PRODUCT else "vendor_requests"
        produce(self.bootstrap, self.topic(topic), [(request.vendor_id, request_to_dict(request))])

    def updates(
        self, *, until: Any = None, count: int = 100_000, timeout: float = 30.0, topic: str = "updates"
    ) -> list[tuple[Any, Any]]:
        self.job.check()
        return consume(self.bootstrap, self.topic(topic), count=count, timeout=timeout, until=until)

    def all_updates(self, *, timeout: float = 5.0) -> list[tuple[Any, Any]]:
        """Both lanes' changelog topics: catalog pages and product outcomes."""
        return self.updates(timeout=timeout) + self.updates(timeout=timeout, topic="interactive_updates")

    def update_for(self, request_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        def found(records: list[tuple[Any, Any]]) -> bool:
            return any(v.get("request_id") == request_id for _, v in records)

        records = self.updates(until=found, timeout=timeout, topic="interactive_updates")  # a product outcome
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


def test_requests_of_several_nodes_for_one_unknown_id_cost_the_vendor_one_call(setup: Setup) -> None:
    """Nodes that miss one unknown id at once each publish a request; the job answers them all from one 404."""
    setup.define(setup.vendor("dj-once", setup.dummy))
    first = FetchRequest(RequestKind.PRODUCT, "dj-once", vendor_product_id="7777777")
    setup.request(first)
    assert setup.update_for(first.id)["status"] == "not_found"
    calls = setup.dummy.requests()
    others = [FetchRequest(RequestKind.PRODUCT, "dj-once", vendor_product_id="7777777") for _ in range(3)]
    for request in others:
        setup.request(request)
    for request in others:
        update = setup.update_for(request.id)
        assert (update["status"], update["error_code"], update["vendor_failure"]) == (
            "not_found",
            "vendor_item_not_found",
            False,
        )
    assert setup.dummy.requests() == calls


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
    # the four poison requests and the tombstone, in whichever order the two request sources deliver them
    dead = consume(setup.bootstrap, setup.topic("dead_letters"), count=5, timeout=20)
    assert len(dead) == 5, dead
    raws = [v["raw"] for _, v in dead]
    assert "{not json" in raws and "[1, 2]" in raws and None in raws
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


def _held_pages(sim: Sim, release: threading.Event, answered: list[str]) -> HostileVendor:
    """The simulator behind a proxy whose catalog pages wait for ``release`` (at most ``PAGE_HOLD_S``, under the
    vendor timeout) and whose products answer at once: a catalog slice then holds its operator until the test lets
    it go, and a product request queued behind it would wait as long. ``answered`` gets each page as it goes."""

    def forward(seen: Seen) -> Answer:
        page = seen.path.split("?", 1)[0] == "/products"
        if page:
            release.wait(PAGE_HOLD_S)
        answer = httpx.get(f"{sim.base_url}{seen.path}", timeout=10)
        if page:
            answered.append(seen.path)
        return answer.status_code, {"Content-Type": "application/json"}, answer.content

    vendor = HostileVendor()
    vendor.routes["/products"] = forward
    for vpid in range(1, 501):
        vendor.routes[f"/products/{vpid}"] = forward
    return vendor


PAGE_HOLD_S = 4.5  # the job's vendor timeout in these tests is 5 s (flink_support): a held page is slow, not failed


def test_a_miss_is_served_while_the_same_vendors_catalog_slice_holds_the_job(setup: Setup) -> None:
    release = threading.Event()
    pages: list[str] = []
    with running_sims(sim_config(VendorKind.DUMMYJSON, size=500)) as [sim], _held_pages(sim, release, pages) as slow:
        try:
            body = {**sim.vendor_body("slow-dj"), "base_url": slow.base_url}
            assert setup.a.post("/vendors", json=body, headers=admin()).status_code == 201
            # The full sync's first slice is fetching its first page (held): the product request must not wait for it.
            wait_until(lambda: any(s.path.startswith("/products?") for s in slow.seen), timeout=60, what="the sync")
            miss = setup.a.get("/vendors/slow-dj/products/499", params={"wait_ms": 4000})
            assert miss.status_code == 200, miss.text
            assert not pages, "the miss was answered only after the sync's first page"
            assert "queue;dur=" in miss.headers["Server-Timing"]
            assert vendor_state(setup.a, "slow-dj")["sync"]["syncs_ok"] == 0, "the miss was served only after the sync"
        finally:
            release.set()
        # Let the sync end here, so its last updates cannot trail into the tests that count updates.
        wait_synced(setup.a, "slow-dj", timeout=60)


SLOW_MISSES = 20  # more than a job worker's vendor calls in flight (ProcessingConfig.product_in_flight, 16)


def test_a_slow_vendor_holds_only_its_share_of_the_jobs_calls_and_another_vendors_miss_is_answered(
    setup: Setup,
) -> None:
    """A slow vendor's misses beyond every limit (its concurrency, its share of the calls, all the calls): another
    vendor's miss is answered while the slow vendor still holds each of its calls. Before the share, the slow
    vendor's requests took all 16 calls and the next request, of any vendor, waited for one of them to end."""
    release = threading.Event()
    answered: list[str] = []

    def held(seen: Seen) -> Answer:
        release.wait(4.0)  # under the job's vendor timeout (5 s): a slow call, not a failed one
        answered.append(seen.path)
        return 404, {"Content-Type": "application/json"}, b'{"message": "no such product"}'

    with running_sims(sim_config(VendorKind.DUMMYJSON, size=30)) as [sim], HostileVendor() as slow:

        def catalog(seen: Seen) -> Answer:
            page = httpx.get(f"{sim.base_url}{seen.path}", timeout=10)
            return page.status_code, {"Content-Type": "application/json"}, page.content

        slow.routes["/products"] = catalog
        for i in range(SLOW_MISSES):
            slow.routes[f"/products/{9000 + i}"] = held
        try:
            body = {**sim.vendor_body("held-dj"), "base_url": slow.base_url}
            assert setup.a.post("/vendors", json=body, headers=admin()).status_code == 201
            quick = setup.a.post("/vendors", json=setup.dummy.vendor_body("quick-dj"), headers=admin())
            assert quick.status_code == 201, quick.text
            wait_synced(setup.a, "held-dj", timeout=60)
            wait_synced(setup.a, "quick-dj", timeout=60)
            for i in range(SLOW_MISSES):
                miss = setup.a.get(f"/vendors/held-dj/products/{9000 + i}", params={"wait_ms": 0})
                assert miss.status_code == 202, miss.text
            wait_until(
                lambda: sum(s.path.startswith("/products/") for s in slow.seen) >= 4,
                timeout=30,
                what="the slow vendor to hold its first calls",
            )
            miss = setup.a.get("/vendors/quick-dj/products/999999", params={"wait_ms": 3500})
            # The vendor's own answer (it has no such item), through the job, while the slow calls are held.
            assert miss.status_code == 404, miss.text
            assert not answered, f"the quick vendor's miss waited for {len(answered)} of the slow vendor's calls"
        finally:
            release.set()
        # Every held request ends here, so its outcomes cannot trail into the tests that count updates.
        wait_until(lambda: len(answered) == SLOW_MISSES, timeout=60, what="the slow vendor's calls to end")


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


def test_a_webhook_received_by_one_node_changes_the_product_on_the_other(setup: Setup) -> None:
    """Each node has its own SQLite file: a webhook only reaches node B through the changelog."""
    body = setup.shop.vendor_body("wh-shop")
    body["credentials"]["webhook_secret"] = WEBHOOK_SECRET
    assert setup.a.post("/vendors", json=body, headers=admin()).status_code == 201  # its first sync: via Flink

    def synced(client: httpx.Client) -> bool:
        return bool(client.get("/vendors/wh-shop").json()["sync"]["state"] == "ok")

    def priced(client: httpx.Client, item: int, price: str) -> bool:
        return stored_prices(client, "wh-shop", item) == {Decimal(price)}

    for client in (setup.a, setup.b):
        wait_until(functools.partial(synced, client), timeout=60, what="the first sync on both nodes")
    item, marker = shop_items(setup.shop, 2)
    before = stored_prices(setup.b, "wh-shop", item)
    assert before is not None and Decimal("0.01") not in before

    answer = shopify_webhook(
        setup.a, "wh-shop", priced_product(setup.shop, item, "0.01"), topic="products/update", delivery_id="wh-1"
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] == "updated" and answer.json()["offers"] >= 1
    for client in (setup.b, setup.a):  # A too: it applies its own webhook from the changelog, like B
        wait_until(functools.partial(priced, client, item, "0.01"), timeout=20, what="the webhook's price")

    # The vendor delivers wh-1 again, to the other node this time, with what would roll the product back.
    replay = shopify_webhook(
        setup.b, "wh-shop", priced_product(setup.shop, item, "0.02"), topic="products/update", delivery_id="wh-1"
    )
    assert replay.status_code == 200, replay.text
    # A fresh delivery behind it (same vendor, same partition): once it is applied, the replay was seen too.
    fresh = shopify_webhook(
        setup.b, "wh-shop", priced_product(setup.shop, marker, "0.03"), topic="products/update", delivery_id="wh-2"
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


def _node_env(setup: Setup, name: str, group: str) -> dict[str, str]:
    settings = {"runtime": "kafka", "kafka_bootstrap": setup.bootstrap, "kafka_partitions": 2, **setup.topics}
    return service_env(
        setup.tmp / f"{name}.db",
        CATALOG_NODE_ID=name,
        CATALOG_SCHEDULER_ENABLED="true",
        CATALOG_SCHEDULER_TICK_S="0.5",
        CATALOG_KAFKA_SCHEDULER_GROUP=group,
        CATALOG_KAFKA_TOPIC_SCHEDULER=group,
        **{f"CATALOG_{k.upper()}": str(v) for k, v in settings.items()},
    )


def _catalog_requests(setup: Setup, vendor_id: str) -> int:
    """Catalog requests asked of the job for this vendor so far (continuations are the job's own)."""
    records = consume(setup.bootstrap, setup.topic("vendor_requests"), count=100_000, timeout=2)
    return sum(1 for k, v in records if k == vendor_id and v and "continuation" not in v)


def _owners(nodes: dict[str, httpx.Client]) -> list[str]:
    return [name for name, client in nodes.items() if metric(client, "catalog_scheduler_leader") == 1]


def test_three_nodes_behind_nginx_share_requests_webhooks_and_one_scheduler_and_converge_after_kill_9(
    setup: Setup,
) -> None:
    """Round robin over three API nodes (each its own SQLite file): register a vendor on one, a webhook on
    another, a 202 followed on a third; then kill -9 the scheduler's owner and one more node."""
    nginx_path = nginx_binary()
    if nginx_path is None:
        pytest.skip("Debian's nginx is not installed (make install installs it: apt-get install -y nginx-light)")
    group = unique("scheduler")
    names = ["n1", "n2", "n3"]
    procs = {n: ServiceProcess(_node_env(setup, n, group), setup.tmp / f"{n}.log") for n in names}
    with contextlib.ExitStack() as stack:
        for proc in procs.values():
            stack.callback(proc.kill)
            proc.start()
        nodes = {n: stack.enter_context(httpx.Client(base_url=p.base_url, timeout=20)) for n, p in procs.items()}
        by_port = {f"127.0.0.1:{p.port}": n for n, p in procs.items()}
        lb = Nginx(nginx_path, [p.port for p in procs.values()], setup.tmp / "nginx")
        stack.callback(lb.stop)
        api = stack.enter_context(httpx.Client(base_url=lb.start().base_url, timeout=20))

        def node_of(response: httpx.Response) -> str:
            """The node that answered (nginx lists every node it tried, a dead one first: the last one answered)."""
            return by_port[response.headers["x-upstream"].split(", ")[-1]]

        # A vendor registered on one node; its first sync (through the job) lands on all three.
        body = setup.shop.vendor_body("tri-shop", refresh_interval_s=10)
        body["credentials"]["webhook_secret"] = WEBHOOK_SECRET
        registered = api.post("/vendors", json=body, headers=admin())
        assert registered.status_code == 201, registered.text

        def synced(client: httpx.Client) -> bool:
            response = client.get("/vendors/tri-shop")  # 404 until the node has read the vendor's definition
            return response.status_code == 200 and response.json()["sync"]["state"] == "ok"

        for client in nodes.values():
            wait_until(functools.partial(synced, client), timeout=60, what="the first sync on every node")

        # A webhook received by another node changes every node.
        item = shop_items(setup.shop, 1)[0]
        sent = time.monotonic()
        answer = shopify_webhook(
            api, "tri-shop", priced_product(setup.shop, item, "0.07"), topic="products/update", delivery_id="tri-1"
        )
        assert answer.status_code == 200, answer.text
        assert node_of(answer) != node_of(registered)

        def repriced(client: httpx.Client, price: str) -> bool:
            return stored_prices(client, "tri-shop", item) == {Decimal(price)}

        for client in nodes.values():
            wait_until(functools.partial(repriced, client, "0.07"), timeout=20, what="the webhook on every node")
        print(f"webhook visible on all three nodes {time.monotonic() - sent:.2f}s after it was received")

        # A miss answered 202 by one node, its Location followed on the others until done.
        accepted = api.get("/vendors/tri-shop/products/999999999", params={"wait_ms": 0})
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["location"]
        polls = [api.get(location) for _ in range(2)]
        assert all(p.status_code == 200 for p in polls), [p.text for p in polls]
        assert {node_of(p) for p in polls} == set(names) - {node_of(accepted)}  # the two other nodes know it
        assert wait_request(api, location)["status"] == "not_found"
        for client in nodes.values():  # every node, directly, has the outcome (each a moment apart)
            assert wait_request(client, location)["status"] == "not_found"

        # Exactly one scheduler: the vendor is asked for once per interval, whatever the number of nodes.
        owners = wait_until(lambda: len(_owners(nodes)) == 1 and _owners(nodes), timeout=30, what="one owner")
        before, started = _catalog_requests(setup, "tri-shop"), time.monotonic()
        time.sleep(21)
        three = (_catalog_requests(setup, "tri-shop") - before) / ((time.monotonic() - started) / 10)
        assert _owners(nodes) == owners  # nobody else took it meanwhile
        print(f"catalog requests per 10 s refresh interval with three nodes: {three:.2f}")

        # kill -9 the owner and one more node; the third takes the schedule over, then all converge.
        owner = owners[0]
        victims = [owner, next(n for n in names if n != owner)]
        survivor = next(n for n in names if n not in victims)
        for name in victims:
            procs[name].proc.kill()  # type: ignore[union-attr]  # SIGKILL: no goodbye to the group
            procs[name].proc.wait(5)  # type: ignore[union-attr]
        killed = time.monotonic()
        wait_until(lambda: _owners({survivor: nodes[survivor]}) == [survivor], timeout=60, what="a new owner")
        print(f"scheduler taken over by {survivor} {time.monotonic() - killed:.1f}s after kill -9 of {owner}")
        syncs = vendor_state(nodes[survivor], "tri-shop")["sync"]["syncs_ok"]
        before, started = _catalog_requests(setup, "tri-shop"), time.monotonic()
        wait_synced(nodes[survivor], "tri-shop", timeout=60, syncs_ok=syncs + 1)  # the schedule goes on
        time.sleep(max(0.0, 21 - (time.monotonic() - started)))
        one = (_catalog_requests(setup, "tri-shop") - before) / ((time.monotonic() - started) / 10)
        print(f"catalog requests per 10 s refresh interval with one node: {one:.2f}")
        late = shopify_webhook(
            api, "tri-shop", priced_product(setup.shop, item, "0.08"), topic="products/update", delivery_id="tri-2"
        )
        assert late.status_code == 200 and node_of(late) == survivor, late.text  # nginx skips the dead nodes

        for name in victims:  # back, on their own SQLite files: they catch up from their committed offsets
            procs[name] = ServiceProcess(_node_env(setup, name, group), setup.tmp / f"{name}.log")
            stack.callback(procs[name].kill)
            procs[name].port = int(str(nodes[name].base_url).rsplit(":", 1)[1].rstrip("/"))
            procs[name].start()
        restarted = time.monotonic()

        def converged() -> bool:
            # Every node: the late webhook's price (the scheduled syncs read an older version of the item since).
            return len({content_hash(c) for c in nodes.values()}) == 1

        wait_until(converged, timeout=60, interval=0.2, what="the same content hash on every node")
        print(f"all three nodes hold the same content {time.monotonic() - restarted:.2f}s after the restart")
        assert all(repriced(c, "0.08") for c in nodes.values())  # the restarted nodes applied what they missed
        assert len(_owners(nodes)) == 1


def test_a_restarted_job_resumes_from_its_checkpoint_and_reprocesses_nothing(setup: Setup) -> None:
    """Last: it restarts the module's job (which resumes from its newest checkpoint, see make_environment)."""
    before = setup.all_updates()
    assert before
    time.sleep(3)  # a checkpoint (1 s apart) now covers everything read so far
    setup.job.stop()
    setup.job.start()
    fresh = FetchRequest(RequestKind.PRODUCT, "dj", vendor_product_id="9")
    setup.request(fresh)
    assert setup.update_for(fresh.id, timeout=120)["status"] == "done"
    time.sleep(2)  # anything replayed would have come out before or with the fresh request's update
    after = setup.all_updates()
    # Partitions interleave differently on each read: compare what was written, not the order it is read in.
    new = Counter(_identity(v) for _, v in after) - Counter(_identity(v) for _, v in before)
    assert list(new.elements()) == [(fresh.id, "product", None)], new


def _identity(update: dict[str, Any]) -> tuple[str, str, int | None]:
    """A webhook update (published by a node, not the job) has a delivery id instead of a request id; a request
    announcement (also a node's) carries the request."""
    key = update.get("request_id") or update.get("delivery_id") or update["request"]["id"]
    return (key, update["type"], update.get("page_no"))


def test_a_job_restarted_against_an_emptied_broker_says_why_and_starts_from_the_topics_start(
    setup: Setup, kafka_broker: DevBroker
) -> None:
    """Last: the broker restarts empty (memory storage, a new cluster id; a rebuilt Kafka cluster is the same trap).
    The job's checkpoint holds offsets of the old topics: it must not resume from them."""
    setup.job.stop()
    kafka_broker.stop()
    kafka_broker.start()
    setup.job.start()
    setup.define(setup.vendor("after-restart", setup.dummy))
    request = FetchRequest(RequestKind.PRODUCT, "after-restart", vendor_product_id="3")
    setup.request(request)
    assert setup.update_for(request.id, timeout=120)["status"] == "done"
    log = setup.job.log()
    assert "not resuming from checkpoint" in log and "cluster id" in log and "was recreated" in log, log[-3000:]
    assert (setup.tmp / "checkpoints.stale").is_dir()
