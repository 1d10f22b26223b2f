"""Ordering and durable webhook deduplication over real HTTP (issue 11): a late webhook or a sync carrying an older
version never rolls a product back, and a delivery id seen before changes nothing, even after a restart."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from app.domain.models import VendorKind
from app.domain.webhooks import sign
from tests.support import SHOPIFY_TOKEN, ApiServer, Sim, admin, fast_settings, running_sims, sim_config, wait_synced

SECRET = "whsec_order_9d2e"


@pytest.fixture(scope="module")
def shop() -> Iterator[Sim]:
    with running_sims(sim_config(VendorKind.SHOPIFY, size=10)) as (sim,):
        yield sim


@contextlib.contextmanager
def api(db: Path, shop: Sim, *, register: bool = True) -> Iterator[httpx.Client]:
    with ApiServer(fast_settings(db)) as server, httpx.Client(base_url=server.base_url, timeout=15) as client:
        if register:
            body = shop.vendor_body("shop")
            body["credentials"]["webhook_secret"] = SECRET
            assert client.post("/vendors", json=body, headers=admin()).status_code == 201
            wait_synced(client, "shop")
        yield client


def vendor_product(shop: Sim) -> dict[str, Any]:
    """The shop's first product, as its own API shows it now."""
    response = httpx.get(
        f"{shop.base_url}/admin/api/2024-01/products.json",
        params={"limit": 1},
        headers={"X-Shopify-Access-Token": SHOPIFY_TOKEN},
    )
    assert response.status_code == 200, response.text
    product: dict[str, Any] = response.json()["products"][0]
    return product


def version(shop: Sim, title: str, at: datetime) -> dict[str, Any]:
    """The vendor's product as a webhook carries it, retitled and stamped ``at`` (product and variants)."""
    product = vendor_product(shop)
    stamp = at.isoformat()
    variants = [{**v, "updated_at": stamp} for v in product["variants"]]
    return {**product, "title": title, "updated_at": stamp, "variants": variants}


def deliver(client: httpx.Client, product: dict[str, Any], delivery_id: str) -> dict[str, Any]:
    body = orjson.dumps(product)
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "products/update",
        "X-Shopify-Webhook-Id": delivery_id,
        "X-Shopify-Hmac-Sha256": sign(body, SECRET),
    }
    response = client.post("/webhooks/shopify/shop", content=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def titles(client: httpx.Client, shop: Sim) -> set[str]:
    response = client.get(f"/vendors/shop/products/{vendor_product(shop)['id']}")
    assert response.status_code == 200, response.text
    return {o["title"].split(" - ")[0] for o in response.json()["offers"] if o["vendor_id"] == "shop"}


def test_an_older_update_never_overwrites_a_newer_one(tmp_path: Path, shop: Sim) -> None:
    now = datetime.now(UTC)
    with api(tmp_path / "order.db", shop) as client:
        assert deliver(client, version(shop, "Newer", now + timedelta(hours=1)), "d-new")["applied"] == "updated"
        assert titles(client, shop) == {"Newer"}
        # A late webhook of an older version: answered (the vendor must not retry it) but changes nothing.
        assert deliver(client, version(shop, "Older", now - timedelta(hours=1)), "d-old")["applied"] == "updated"
        assert titles(client, shop) == {"Newer"}
        # A full sync reads the vendor's current version, older than the webhook's: still no roll-back.
        assert client.post("/vendors/shop/sync?full=true", headers=admin()).status_code == 202
        wait_synced(client, "shop", syncs_ok=2)
        assert titles(client, shop) == {"Newer"}
        # A newer version than the stored one goes through.
        deliver(client, version(shop, "Newest", now + timedelta(hours=2)), "d-newest")
        assert titles(client, shop) == {"Newest"}


def test_a_delivery_seen_before_a_restart_changes_nothing_after_it(tmp_path: Path, shop: Sim) -> None:
    db = tmp_path / "dedup.db"
    now = datetime.now(UTC)
    with api(db, shop) as client:
        first = deliver(client, version(shop, "First", now + timedelta(hours=1)), "d-same")
        assert titles(client, shop) == {"First"}
    with api(db, shop, register=False) as client:
        # The platform delivers the same id again (here with a newer body, to show it is not applied at all).
        again = deliver(client, version(shop, "Replayed", now + timedelta(hours=3)), "d-same")
        assert again == first
        assert titles(client, shop) == {"First"}
