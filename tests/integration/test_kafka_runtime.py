"""The API nodes of the distributed runtime against a real broker (Tansu), real SQLite files and real simulators.

The Flink job is played by the test: it reads the requests the API published, calls the simulator with the same
shared fetch functions the job uses (``app.ingest.fetch``), and produces the updates with the contract's own
builders. Node A runs in this process, node B as a separate ``uvicorn`` process with its own SQLite file and its own
consumer group; both must end up with the same catalog. Topic names are private to this module (the broker is
shared by the session).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from app.bootstrap import make_source_factory
from app.domain.models import Offer, Vendor, VendorKind, utcnow
from app.domain.requests import RequestKind
from app.domain.wire import (
    SyncRef,
    product_message,
    request_from_dict,
    sync_finished_message,
    sync_started_message,
    vendor_from_dict,
    vendor_to_dict,
)
from app.ingest.planning import SINCE_MARGIN
from app.secrets import Secrets
from app.sources.port import VendorSource
from tests.kafka_support import (
    Broker,
    consume,
    private_topics,
    produce,
    product_update,
    read_raw,
    sync_messages,
    unique,
)
from tests.support import (
    ApiServer,
    ServiceProcess,
    Sim,
    admin,
    all_products,
    assert_error,
    fast_settings,
    running_sims,
    service_env,
    sim_config,
    vendor_state,
    wait_request,
    wait_until,
)

pytestmark = pytest.mark.kafka

SIZE = 45
T = TypeVar("T")

DEV_SECRETS = Secrets.development_only()


@dataclass
class Cluster:
    bootstrap: str
    topics: dict[str, str]
    a: httpx.Client
    b: httpx.Client
    b_process: ServiceProcess
    dummy: Sim
    shop: Sim
    tmp: Path

    def topic(self, name: str) -> str:
        return self.topics[f"kafka_topic_{name}"]

    def with_source(self, vendor_id: str, use: Callable[[VendorSource], Awaitable[T]], page_size: int = 0) -> T:
        """Run ``use`` with a real source of the vendor (what the Flink job builds from its definition)."""
        body = vendor_state(self.a, vendor_id)
        sim = self.dummy if body["kind"] == "dummyjson" else self.shop
        vendor = Vendor(vendor_id, body["name"], VendorKind(body["kind"]), sim.base_url, body["currency"])
        vendor = vendor_from_dict(
            secrets=DEV_SECRETS,
            data={
                **vendor_to_dict(vendor, secrets=DEV_SECRETS),
                "credentials": sim.vendor_body(vendor_id)["credentials"],
            },
        )

        async def run() -> T:
            source = make_source_factory(fast_settings(self.tmp / "unused.db"))(vendor)
            if page_size:
                source.page_size = page_size  # type: ignore[attr-defined]
            try:
                return await use(source)
            finally:
                await source.aclose()

        return asyncio.run(run())


@pytest.fixture(scope="module")
def cluster(kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("kafka_runtime")
    topics = private_topics()
    common = {"runtime": "kafka", "kafka_bootstrap": kafka_broker.bootstrap, "kafka_partitions": 2, **topics}
    env = service_env(
        tmp / "b.db",
        CATALOG_NODE_ID=unique("b"),
        CATALOG_SCHEDULER_ENABLED="false",
        **{f"CATALOG_{k.upper()}": str(v) for k, v in common.items()},
    )
    with contextlib.ExitStack() as stack:
        dummy, shop = stack.enter_context(
            running_sims(sim_config(VendorKind.DUMMYJSON, size=SIZE), sim_config(VendorKind.SHOPIFY, size=20))
        )
        api = stack.enter_context(ApiServer(fast_settings(tmp / "a.db", node_id=unique("a"), **common)))
        b_process = ServiceProcess(env, tmp / "b.log")
        stack.callback(b_process.kill)
        b_process.start()
        a = stack.enter_context(httpx.Client(base_url=api.base_url, timeout=15))
        b = stack.enter_context(httpx.Client(base_url=b_process.base_url, timeout=15))
        yield Cluster(kafka_broker.bootstrap, topics, a, b, b_process, dummy, shop, tmp)


def records(cluster: Cluster, name: str, count: int) -> list[tuple[str | None, Any]]:
    got = consume(cluster.bootstrap, cluster.topic(name), count=count)
    assert len(got) >= count, got
    return got


def synced(client: httpx.Client, vendor_id: str) -> bool:
    return bool(vendor_state(client, vendor_id)["sync"]["state"] == "ok")


def lists_a_product_named(client: httpx.Client, name: str) -> bool:
    return any(p["name"] == name for p in all_products(client))


def serves(client: httpx.Client, path: str) -> bool:
    """Whether ``path`` is answered 200 from local data (no wait for a vendor)."""
    return client.get(path, params={"wait_ms": 0}).status_code == 200


def test_both_nodes_are_ready_on_the_kafka_runtime(cluster: Cluster) -> None:
    for client in (cluster.a, cluster.b):
        body = client.get("/ready").json()
        assert body["runtime"] == "kafka"
        assert body["checks"] == {"store": True, "broker": True, "changelog": True, "scheduler": True, "search": True}


def test_a_vendor_added_on_one_node_is_published_and_reaches_the_other(cluster: Cluster) -> None:
    body = cluster.dummy.vendor_body("dj", credentials={"token": "tok_sealed_on_the_topic_5e"})
    response = cluster.a.post("/vendors", json=body, headers=admin())
    assert response.status_code == 201, response.text

    (key, definition), *_ = records(cluster, "vendors", 1)
    assert key == "dj"
    # Credentials travel sealed (issue 11): the topic, its dead letters and the job's state hold a Fernet token.
    assert definition["credentials"].startswith("fernet:") and "tok_sealed" not in str(definition)
    assert vendor_from_dict(secrets=DEV_SECRETS, data=definition) == Vendor(
        "dj", body["name"], VendorKind.DUMMYJSON, body["base_url"], "USD", {"token": "tok_sealed_on_the_topic_5e"}
    )
    (key, request), *_ = records(cluster, "vendor_requests", 1)
    assert key == "dj"
    parsed = request_from_dict(request)
    assert (parsed.kind, parsed.vendor_id, parsed.full, request["v"]) == (RequestKind.CATALOG, "dj", True, 1)

    # Node B never saw the POST: it learns the vendor from the topic.
    wait_until(lambda: cluster.b.get("/vendors/dj").status_code == 200, timeout=20, what="node B to learn dj")
    assert vendor_state(cluster.b, "dj")["base_url"] == body["base_url"]


def test_a_catalog_sync_in_the_changelog_lands_on_both_nodes_and_a_replay_changes_nothing(cluster: Cluster) -> None:
    (_, request), *_ = records(cluster, "vendor_requests", 1)
    messages = cluster.with_source("dj", lambda s: sync_messages(s, request_id=request["id"]), page_size=10)
    assert len(messages) >= 5
    started = time.monotonic()
    produce(cluster.bootstrap, cluster.topic("updates"), [("dj", m) for m in messages])

    for client in (cluster.a, cluster.b):
        wait_until(partial(synced, client, "dj"), timeout=20, what="the sync to land")
    print(f"sync of {SIZE} offers applied on both nodes {time.monotonic() - started:.2f}s after producing")
    for client in (cluster.a, cluster.b):
        state = vendor_state(client, "dj")
        assert state["offers"] == SIZE and state["sync"]["syncs_ok"] == 1, state
    # The node that published the request sees it done.
    assert wait_request(cluster.a, f"/requests/{request['id']}")["status"] == "done"
    on_a, on_b = all_products(cluster.a), all_products(cluster.b)
    assert len(on_a) == SIZE
    assert on_a == on_b

    # Replay everything, then one change behind it (same key, same partition: applied after the replay).
    changed = json.loads(json.dumps(messages[1]))
    changed["offers"] = [{**changed["offers"][0], "title": "Renamed after the replay"}]
    produce(cluster.bootstrap, cluster.topic("updates"), [*[("dj", m) for m in messages], ("dj", changed)])
    for client in (cluster.a, cluster.b):
        wait_until(
            partial(lists_a_product_named, client, "Renamed after the replay"),
            timeout=20,
            what="the change behind the replay",
        )
    renamed = changed["offers"][0]["vendor_product_id"]
    for client, before in ((cluster.a, on_a), (cluster.b, on_b)):
        after = all_products(client)
        assert [p["id"] for p in after] == [p["id"] for p in before]
        differing = [p for p, q in zip(before, after, strict=True) if p != q]
        assert len(differing) == 1, differing
        assert vendor_state(client, "dj")["sync"]["syncs_ok"] == 1  # the replayed sync was not counted again
        assert renamed in json.dumps(client.get(f"/products/{differing[0]['id']}").json())


def test_a_node_plans_catalog_requests_as_the_embedded_workers_do(cluster: Cluster) -> None:
    """Incremental (with ``since``) once a full sync has landed, for a source that filters by change time; the job
    holds no sync status, so the node decides and the request carries it."""
    assert cluster.a.post("/vendors", json=cluster.shop.vendor_body("inc"), headers=admin()).status_code == 201
    first = _catalog_request(cluster, "inc", None)
    assert first["full"] is True and first["since"] is None  # never fully synced: full, whatever was asked
    messages = cluster.with_source("inc", lambda s: sync_messages(s, request_id=first["id"]), page_size=10)
    produce(cluster.bootstrap, cluster.topic("updates"), [("inc", m) for m in messages])
    wait_until(lambda: vendor_state(cluster.a, "inc")["sync"]["state"] == "ok", timeout=20, what="the full sync")
    last_success = datetime.fromisoformat(vendor_state(cluster.a, "inc")["sync"]["last_success_at"])

    incremental = _catalog_request(cluster, "inc", cluster.a.post("/vendors/inc/sync", headers=admin()))
    assert incremental["full"] is False
    assert datetime.fromisoformat(incremental["since"]) == last_success - SINCE_MARGIN
    full = _catalog_request(cluster, "inc", cluster.a.post("/vendors/inc/sync?full=true", headers=admin()))
    assert full["full"] is True and full["since"] is None
    # DummyJSON cannot filter by change time: its syncs are read whole, and count as full.
    assert vendor_state(cluster.a, "dj")["sync"]["last_full_sync_at"] is not None
    whole = _catalog_request(cluster, "dj", cluster.a.post("/vendors/dj/sync", headers=admin()))
    assert whole["full"] is True and whole["since"] is None


def _catalog_request(cluster: Cluster, vendor_id: str, response: httpx.Response | None) -> dict[str, Any]:
    """The request on ``vendor_requests`` behind ``response`` (202 + Location), or the vendor's first one."""
    wanted: str | None = None
    if response is not None:
        assert response.status_code == 202, response.text
        wanted = response.headers["location"].rsplit("/", 1)[-1]

    def match(got: list[tuple[str | None, Any]]) -> bool:
        return any(key == vendor_id and (wanted is None or r["id"] == wanted) for key, r in got)

    got = consume(cluster.bootstrap, cluster.topic("vendor_requests"), count=1000, timeout=15, until=match)
    found = [r for key, r in got if key == vendor_id and (wanted is None or r["id"] == wanted)]
    assert found, got
    return dict(found[0])


def _miss(client: httpx.Client, path: str, wait_ms: int) -> httpx.Response:
    return client.get(path, params={"wait_ms": wait_ms})


def _product_request(cluster: Cluster, vpid: str) -> dict[str, Any]:
    def wanted(records: list[tuple[str | None, Any]]) -> bool:
        return any(r["vendor_product_id"] == vpid for _, r in records)

    read = consume(cluster.bootstrap, cluster.topic("product_requests"), count=1000, timeout=4, until=wanted)
    found: list[dict[str, Any]] = [r for _, r in read if r["vendor_product_id"] == vpid]
    assert found, f"no product request for {vpid}"
    return found[-1]


def test_a_miss_answers_200_when_its_product_update_is_applied(cluster: Cluster) -> None:
    response = cluster.a.post("/vendors", json=cluster.shop.vendor_body("shop"), headers=admin())
    assert response.status_code == 201, response.text
    vpid = cluster.with_source("shop", _first_offer).vendor_product_id
    path = f"/vendors/shop/products/{vpid}"

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(_miss, cluster.a, path, 8000)
        request = wait_until(lambda: _try_request(cluster, vpid), timeout=10, what="the product request")
        assert request["kind"] == "product" and request["vendor_id"] == "shop"
        update = cluster.with_source("shop", lambda s: product_update(s, request_from_dict(request)))
        assert update["status"] == "done"
        produce(cluster.bootstrap, cluster.topic("updates"), [("shop", update)])
        answer = waiting.result(timeout=15)
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started < 8
    assert vpid in json.dumps(answer.json())
    # Node B applied it too, though it never asked.
    wait_until(lambda: cluster.b.get(path, params={"wait_ms": 0}).status_code == 200, timeout=15, what="node B")


def _try_request(cluster: Cluster, vpid: str) -> dict[str, Any] | None:
    with contextlib.suppress(AssertionError):
        return _product_request(cluster, vpid)
    return None


def test_a_miss_that_is_not_answered_in_time_is_202_then_completes(cluster: Cluster) -> None:
    path = "/vendors/shop/products/999999999"
    response = _miss(cluster.a, path, 0)
    assert response.status_code == 202, response.text
    location = response.headers["location"]
    request = wait_until(lambda: _try_request(cluster, "999999999"), timeout=10, what="the product request")
    assert location == f"/requests/{request['id']}"
    update = cluster.with_source("shop", lambda s: product_update(s, request_from_dict(request)))
    assert update["status"] == "not_found"
    produce(cluster.bootstrap, cluster.topic("updates"), [("shop", update)])
    assert wait_request(cluster.a, location)["status"] == "not_found"


def _product_requests_for(cluster: Cluster, vpid: str) -> int:
    read = consume(cluster.bootstrap, cluster.topic("product_requests"), count=1000, timeout=4)
    return sum(1 for _, r in read if r["vendor_product_id"] == vpid)


def test_a_not_found_from_the_changelog_answers_404_on_every_node_without_a_new_request(cluster: Cluster) -> None:
    """The job's ``not_found`` outcome is remembered by each node that applies it (not_found_ttl_s): a miss of that
    id on either node is answered 404 at once, and nothing more is asked of the job (so of the vendor)."""
    if cluster.a.get("/vendors/shop").status_code == 404:  # this test run alone
        assert cluster.a.post("/vendors", json=cluster.shop.vendor_body("shop"), headers=admin()).status_code == 201
    wait_until(lambda: cluster.b.get("/vendors/shop").status_code == 200, timeout=20, what="node B to learn shop")
    vpid = "888888888"
    path = f"/vendors/shop/products/{vpid}"
    response = _miss(cluster.a, path, 0)
    assert response.status_code == 202, response.text
    location = response.headers["location"]
    request = wait_until(lambda: _try_request(cluster, vpid), timeout=10, what="the product request")
    update = cluster.with_source("shop", lambda s: product_update(s, request_from_dict(request)))
    assert (update["status"], update["error_code"]) == ("not_found", "vendor_item_not_found")
    produce(cluster.bootstrap, cluster.topic("updates"), [("shop", update)])
    assert wait_request(cluster.a, location)["status"] == "not_found"
    assert wait_request(cluster.b, location)["status"] == "not_found"  # node B learnt it from the changelog
    for client in (cluster.a, cluster.b, cluster.a, cluster.b):
        error = assert_error(_miss(client, path, 0), 404, "not_found")
        assert error["details"]["request_id"] == request["id"]
    assert _product_requests_for(cluster, vpid) == 1


def test_poison_messages_go_to_the_dead_letter_topic_and_the_consumer_goes_on(cluster: Cluster) -> None:
    poison: list[tuple[str | None, Any]] = [
        ("dj", b"{not json"),
        ("dj", {"v": 99, "type": "product", "vendor_id": "dj"}),
        ("dj", product_message(request_id="r_x", vendor_id="dj", vendor_product_id="1", status="maybe")),
    ]
    good = product_message(
        request_id="r_nobody_waits",
        vendor_id="dj",
        vendor_product_id="late",
        status="done",
        offers=[
            dataclasses.replace(
                cluster.with_source("dj", _first_offer), vendor_product_id="late", gtin=None, sku=None, title="Late"
            )
        ],
    )
    produce(cluster.bootstrap, cluster.topic("updates"), [*poison, ("dj", good)])
    for client in (cluster.a, cluster.b):
        wait_until(
            partial(serves, client, "/vendors/dj/products/late"),
            timeout=20,
            what="the good update behind the poison",
        )
    dead = read_raw(cluster.bootstrap, cluster.topic("dead_letters"), count=6)
    assert len(dead) == 6  # three per node
    letters = [orjson.loads(m.value() or b"null") for m in dead]
    assert [letter["raw"] for letter in letters].count("{not json") == 2
    assert {m.key() for m in dead} == {b"dj"}  # the refused message's own key
    for letter in letters:
        assert letter["v"] == 1 and letter["error"] and letter["source"] == cluster.topic("updates")
        assert letter["by"].startswith("catalog-node-") and letter["key"] == "dj"
        assert isinstance(letter["partition"], int) and isinstance(letter["offset"], int)
    assert cluster.a.get("/ready").status_code == 200
    metrics = cluster.a.get("/metrics").text.splitlines()
    assert "catalog_changelog_dead_letters_total 3" in metrics
    assert "catalog_changelog_running 1" in metrics


async def _first_offer(source: VendorSource) -> Offer:
    return (await source.fetch_page(None)).offers[0]


def test_a_deleted_vendor_is_deleted_on_the_other_node(cluster: Cluster) -> None:
    assert cluster.a.delete("/vendors/shop", headers=admin()).status_code == 204
    wait_until(lambda: cluster.b.get("/vendors/shop").status_code == 404, timeout=20, what="node B to drop shop")
    assert_error(cluster.b.get("/vendors/shop"), 404)
    definitions = consume(
        cluster.bootstrap, cluster.topic("vendors"), count=100, until=lambda got: any(v is None for _, v in got)
    )
    tombstones = [k for k, v in definitions if v is None]
    assert tombstones == ["shop"]


def test_the_scheduler_of_a_kafka_node_publishes_due_syncs_to_kafka(
    kafka_broker: Broker, tmp_path: Path, cluster: Cluster
) -> None:
    topics = {f"kafka_topic_{name}": unique(name) for name in ("vendor_requests", "updates", "vendors")}
    settings = fast_settings(
        tmp_path / "sched.db",
        runtime="kafka",
        kafka_bootstrap=kafka_broker.bootstrap,
        node_id=unique("sched"),
        scheduler_enabled=True,
        scheduler_tick_s=0.2,
        **topics,
    )
    with ApiServer(settings) as api, httpx.Client(base_url=api.base_url, timeout=15) as client:
        assert client.post("/vendors", json=cluster.dummy.vendor_body("due"), headers=admin()).status_code == 201
        # The first full sync (requested by the POST) is answered as the job would when the vendor fails.
        (_, first), *_ = consume(kafka_broker.bootstrap, topics["kafka_topic_vendor_requests"], count=1)
        assert first["full"] is True
        ref = SyncRef(unique("sync"), first["id"], "due", True, utcnow())
        produce(
            kafka_broker.bootstrap,
            topics["kafka_topic_updates"],
            [
                ("due", sync_started_message(ref)),
                ("due", sync_finished_message(ref, pages=0, items=0, error="vendor_error: HTTP 503")),
            ],
        )
        wait_until(lambda: vendor_state(client, "due")["sync"]["state"] == "failed", timeout=15, what="the failure")
        # After retry_failed_sync_s (1 s here) the vendor is due again: the scheduler asks Kafka for a sync.
        requests = consume(
            kafka_broker.bootstrap,
            topics["kafka_topic_vendor_requests"],
            count=2,
            timeout=15,
        )
        assert len(requests) == 2, requests
        key, second = requests[1]
        assert key == "due" and second["kind"] == "catalog" and second["id"] != first["id"]
        failed = client.get(f"/requests/{first['id']}").json()
        assert (failed["status"], failed["error"]) == ("failed", "vendor_error: HTTP 503"), failed
