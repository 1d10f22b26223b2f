"""Hostile vendor values with DATABASE_URL set (issue 11: "NUL bytes or an overflowing numeric block replication,
turn /ready to 503 on every node"): what the edge lets in, PostgreSQL takes, so the push never stops on it.

A real HTTP vendor (``tests.hostile.HostileVendor``), the API for real with the push as its background task, and
the real PostgreSQL of the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hostile import HostileVendor
from tests.integration.pg import assert_in_step, fresh_schema, pg_scalar, server_url
from tests.support import ApiServer, admin, fast_settings, vendor_state, wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema() -> Iterator[tuple[str, str]]:
    url = server_url()
    with fresh_schema(url, "hostile") as name:
        yield url, name


def item(n: int, **fields: Any) -> dict[str, Any]:
    return {"id": str(n), "title": f"Thing {n}", "price": "9.99", **fields}


def test_nul_bytes_and_huge_prices_never_block_the_push(tmp_path: Path, schema: tuple[str, str]) -> None:
    url, name = schema
    db = tmp_path / "catalog.db"
    with HostileVendor() as vendor:
        vendor.json(
            "/products",
            {
                "products": [
                    item(1, title="Nul\u0000 byte\u0007 title", description="a\u0000b"),
                    item(2),
                    item(3),
                    item(4),
                    item(5, price="999999999999.999999"),  # the largest price the edge keeps
                    item(6, price=10**70),
                    item(7, price="1" * 70),
                ]
            },
        )
        body = {
            "id": "dirty",
            "name": "dirty",
            "kind": "generic",
            "base_url": vendor.base_url,
            "currency": "EUR",
            "mapping": {
                "path": "/products",
                "items": "products",
                "fields": {"id": "id", "title": "title", "price": "price", "description": "description"},
                "pagination": {"style": "link"},
            },
        }
        settings = fast_settings(db, database_url=url, database_schema=name, replication_poll_s=0.05)
        with ApiServer(settings) as api, httpx.Client(base_url=api.base_url, timeout=20) as client:
            assert client.post("/vendors", json=body, headers=admin()).status_code == 201
            state = wait_until(
                lambda: (s := vendor_state(client, "dirty"))["sync"]["state"] in ("ok", "failed") and s,
                timeout=20,
                what="the sync",
            )
            assert state["sync"]["state"] == "ok" and state["offers"] == 5

            def pushed() -> bool:
                ready = client.get("/ready")
                return ready.status_code == 200 and ready.json()["replication"]["backlog"] == 0

            wait_until(pushed, timeout=20, what="the push to PostgreSQL")
    assert_in_step(db, url, name)
    title = pg_scalar(url, name, "SELECT title FROM offers WHERE vendor_product_id = '1'")
    assert title == "Nul byte title"
    assert str(pg_scalar(url, name, "SELECT price FROM offers WHERE vendor_product_id = '5'")) == "999999999999.999999"
