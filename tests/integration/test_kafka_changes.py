"""The change feed on two nodes of the kafka runtime (real Tansu, two SQLite files, node B a separate process):
for the same changelog both answer the same feed, byte for byte, and a client may page on one node and go on on
the other. The Flink job is played by the test, as in ``test_kafka_runtime.py``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.bootstrap import make_source_factory
from app.domain.images import image_id
from app.domain.models import Offer, Vendor, VendorKind
from app.domain.webhooks import Removal, WebhookChange, WebhookEffect
from app.domain.wire import vendor_from_dict, vendor_to_dict, webhook_message
from app.secrets import Secrets
from simulators.images import ImageServer, encoded, photo
from tests.kafka_support import Broker, consume, private_topics, produce, sync_messages, unique
from tests.support import (
    ApiServer,
    ServiceProcess,
    Sim,
    admin,
    fast_settings,
    running_sims,
    service_env,
    sim_config,
    vendor_state,
    wait_until,
)

pytestmark = pytest.mark.kafka

DEV_SECRETS = Secrets.development_only()


@dataclass
class Nodes:
    bootstrap: str
    topics: dict[str, str]
    a: httpx.Client
    b: httpx.Client
    sims: dict[str, Sim]
    tmp: Path


@pytest.fixture(scope="module")
def nodes(kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    tmp = tmp_path_factory.mktemp("kafka_changes")
    topics = private_topics()
    common = {"runtime": "kafka", "kafka_bootstrap": kafka_broker.bootstrap, "kafka_partitions": 3, **topics}
    env = service_env(
        tmp / "b.db",
        CATALOG_NODE_ID=unique("b"),
        CATALOG_SCHEDULER_ENABLED="false",
        **{f"CATALOG_{k.upper()}": str(v) for k, v in common.items()},
    )
    with contextlib.ExitStack() as stack:
        dummy, shop, woo = stack.enter_context(
            running_sims(
                sim_config(VendorKind.DUMMYJSON, size=30),
                sim_config(VendorKind.SHOPIFY, size=15),
                sim_config(VendorKind.WOOCOMMERCE, size=15),
            )
        )
        api = stack.enter_context(ApiServer(fast_settings(tmp / "a.db", node_id=unique("a"), **common)))
        b_process = ServiceProcess(env, tmp / "b.log")
        stack.callback(b_process.kill)
        b_process.start()
        a = stack.enter_context(httpx.Client(base_url=api.base_url, timeout=15))
        b = stack.enter_context(httpx.Client(base_url=b_process.base_url, timeout=15))
        yield Nodes(kafka_broker.bootstrap, topics, a, b, {"dj": dummy, "shop": shop, "woo": woo}, tmp)


def sync_of(nodes: Nodes, vendor_id: str, request_id: str) -> list[dict[str, Any]]:
    """What the Flink job would publish for the vendor's catalog request (the same shared fetch code)."""
    sim = nodes.sims[vendor_id]
    body = vendor_state(nodes.a, vendor_id)
    vendor = Vendor(vendor_id, body["name"], VendorKind(body["kind"]), sim.base_url, body["currency"])
    vendor = vendor_from_dict(
        {**vendor_to_dict(vendor, secrets=DEV_SECRETS), "credentials": sim.vendor_body(vendor_id)["credentials"]},
        secrets=DEV_SECRETS,
    )

    async def run() -> list[dict[str, Any]]:
        source = make_source_factory(fast_settings(nodes.tmp / "unused.db"))(vendor)
        source.page_size = 5  # type: ignore[attr-defined]
        try:
            return await sync_messages(source, request_id=request_id)
        finally:
            await source.aclose()

    return asyncio.run(run())


def feed(client: httpx.Client, since: str | None = None, limit: int = 1000) -> dict[str, Any]:
    response = client.get("/changes", params={"limit": limit, **({"since": since} if since else {})})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def live(page: dict[str, Any]) -> dict[str, Any]:
    return {c["id"]: c["product"] for c in page["changes"] if not c["deleted"]}


def replayed(changes: list[dict[str, Any]]) -> dict[str, Any]:
    """What a client holds after applying the changes in order: upserts replace, tombstones remove."""
    held: dict[str, Any] = {}
    for change in changes:
        if change["deleted"]:
            held.pop(change["id"], None)
        else:
            held[change["id"]] = change["product"]
    return held


def synced(client: httpx.Client, vendor_id: str) -> bool:
    response = client.get(f"/vendors/{vendor_id}")  # 404 until the node read the vendor's definition
    state = response.json()
    return response.status_code == 200 and state["sync"]["state"] == "ok" and state["offers"] > 0


def test_two_nodes_answer_the_same_feed_and_a_client_can_switch_between_them(nodes: Nodes) -> None:
    for vendor_id, sim in nodes.sims.items():
        assert nodes.a.post("/vendors", json=sim.vendor_body(vendor_id), headers=admin()).status_code == 201
    requests = consume(nodes.bootstrap, nodes.topics["kafka_topic_vendor_requests"], count=3)
    assert len(requests) >= 3
    for key, request in requests:
        assert key is not None
        vendor_id = key
        produce(
            nodes.bootstrap,
            nodes.topics["kafka_topic_updates"],
            [(vendor_id, m) for m in sync_of(nodes, vendor_id, request["id"])],
        )
    for client in (nodes.a, nodes.b):
        for vendor_id in nodes.sims:
            wait_until(partial(synced, client, vendor_id), timeout=30, what=f"{vendor_id} synced")

    on_a, on_b = feed(nodes.a), feed(nodes.b)
    assert not on_a["more"] and on_a["changes"]
    # The same live products and documents on both nodes. Each node interleaves the changelog's partitions in its
    # own order, so a product changed by messages of two partitions may be listed at either one's position, and a
    # product that existed only between messages of different partitions is a tombstone on one node only (README:
    # change feed limits).
    assert live(on_a) == live(on_b)
    listed = {c["id"] for c in on_a["changes"] if not c["deleted"]}
    products = {p["id"] for p in nodes.a.get("/products", params={"limit": 100}).json()["items"]}
    assert listed == products

    # page on A, go on on B, and so on: the same pages as on A alone (a product changed in two partitions may come
    # once per partition across pages; within one page it comes once), ending at the same token
    def walk(clients: tuple[httpx.Client, ...]) -> tuple[list[dict[str, Any]], str]:
        changes: list[dict[str, Any]] = []
        since: str | None = None
        for turn in range(500):
            page = feed(clients[turn % len(clients)], since, limit=7)
            changes += page["changes"]
            since = page["next"]
            if not page["more"]:
                return changes, since
        raise AssertionError("the feed never ended")

    switching, since = walk((nodes.a, nodes.b))
    alone_a, alone_b = walk((nodes.a,)), walk((nodes.b,))
    assert live({"changes": switching}) == live({"changes": alone_a[0]}) == live({"changes": alone_b[0]})
    # a client that applies what it read, whichever nodes answered, holds exactly the catalog
    assert (
        replayed(switching) == replayed(alone_a[0]) == {c["id"]: c["product"] for c in on_a["changes"] if c["product"]}
    )

    # A change and a removal behind the token: both nodes list exactly them, in the changelog's order.
    dj_only = [c["id"] for c in on_a["changes"] if c["product"] and c["product"]["vendors"] == ["dj"]]
    assert len(dj_only) >= 2
    renamed_vpid, gone_vpid = (
        nodes.a.get(f"/products/{pid}").json()["offers"][0]["vendor_product_id"] for pid in dj_only[:2]
    )
    messages = sync_of(nodes, "dj", "r_again")
    page = next(m for m in messages if any(o["vendor_product_id"] == renamed_vpid for o in m.get("offers", ())))
    offer = next(o for o in page["offers"] if o["vendor_product_id"] == renamed_vpid)
    renamed = {**page, "offers": [{**offer, "title": "Renamed in the changelog"}]}
    removal = webhook_message(WebhookChange("dj", WebhookEffect.DELETED, removals=(Removal(gone_vpid),)))
    produce(nodes.bootstrap, nodes.topics["kafka_topic_updates"], [("dj", renamed), ("dj", removal)])

    def both_listed(client: httpx.Client) -> bool:
        return len(feed(client, since)["changes"]) == 2

    for client in (nodes.a, nodes.b):
        wait_until(partial(both_listed, client), timeout=20, what="the two changes")
    since = alone_a[1]
    after_a, after_b = feed(nodes.a, since), feed(nodes.b, since)
    assert after_a == after_b
    assert [(c["id"], c["deleted"]) for c in after_a["changes"]] == [(dj_only[0], False), (dj_only[1], True)]
    assert after_a["changes"][0]["product"]["name"] == "Renamed in the changelog"
    assert after_a["changes"][1]["product"] is None


def test_a_placeholder_computed_on_one_node_reaches_every_node_at_one_position(nodes: Nodes) -> None:
    """Node A thumbnails an image first; its placeholder travels the changelog, so node B's document and both
    nodes' change feeds carry it, at the same place."""
    photo_jpeg = encoded(photo(640, 480, seed=7), "JPEG")
    with ImageServer({"/p.jpg": (photo_jpeg, "image/jpeg")}) as images:
        body = {**nodes.sims["dj"].vendor_body("pics"), "name": "Pictures"}
        assert nodes.a.post("/vendors", json=body, headers=admin()).status_code == 201

        def known(client: httpx.Client) -> bool:
            return client.get("/vendors/pics").status_code == 200

        for client in (nodes.a, nodes.b):
            wait_until(partial(known, client), timeout=20, what="the vendor on both nodes")
        item = Offer("pics", "1", "Pictured", Decimal("5.00"), "USD", images=(images.url("/p.jpg"),))
        webhook = webhook_message(WebhookChange("pics", WebhookEffect.UPDATED, offers=(item,)))
        produce(nodes.bootstrap, nodes.topics["kafka_topic_updates"], [("pics", webhook)])

        def listed(client: httpx.Client) -> dict[str, Any] | None:
            items = client.get("/products", params={"vendor": "pics"}).json()["items"]
            return items[0] if items else None

        on_a = wait_until(partial(listed, nodes.a), timeout=20, what="the product on A")
        wait_until(partial(listed, nodes.b), timeout=20, what="the product on B")
        assert on_a["placeholder"] is None and on_a["thumbnail"] == "/images/" + image_id(images.url("/p.jpg"))
        tokens = {"a": feed(nodes.a)["next"], "b": feed(nodes.b)["next"]}

        assert nodes.a.get(on_a["thumbnail"], params={"w": 80}).status_code == 200

        def placeholder(client: httpx.Client) -> str | None:
            value: str | None = client.get(f"/products/{on_a['id']}").json()["placeholder"]
            return value

        on_b = wait_until(partial(placeholder, nodes.b), timeout=20, what="the placeholder on B")
        # A learns its own placeholder from the changelog too, and its consumer may read it after B's did.
        wait_until(lambda: placeholder(nodes.a) == on_b, timeout=20, what="the same placeholder on A")
        after = {name: feed(client, tokens[name]) for name, client in (("a", nodes.a), ("b", nodes.b))}
        for page in after.values():
            assert [(c["id"], c["product"]["placeholder"]) for c in page["changes"]] == [(on_a["id"], on_b)]
        assert after["a"]["next"] == after["b"]["next"]  # the same changelog position on both nodes
        assert images.hits["/p.jpg"] == 1
