"""The API with DATABASE_URL set: the push as a background task, /ready and /metrics, analytics from PostgreSQL."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.models import VendorKind
from tests.integration.pg import assert_in_step, fresh_schema, pg_scalar, server_url
from tests.support import (
    ApiServer,
    admin,
    assert_error,
    fast_settings,
    running_sims,
    sim_config,
    wait_synced,
    wait_until,
)

pytestmark = pytest.mark.postgres

SIZE = 60


@pytest.fixture(scope="module")
def pg_url() -> str:
    return server_url()


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    with fresh_schema(pg_url, "analytics") as name:
        yield name


def replication(client: httpx.Client) -> dict[str, Any]:
    body = client.get("/ready").json()
    status: dict[str, Any] = body["replication"] if "replication" in body else body["error"]["details"]["replication"]
    return status


def pushed(client: httpx.Client) -> bool:
    status = replication(client)
    return status["backlog"] == 0 and status["last_push_at"] is not None and status["last_error"] is None


def test_analytics_ready_and_metrics_from_postgres(tmp_path: Path, pg_url: str, schema: str) -> None:
    db = tmp_path / "api.db"
    settings = fast_settings(db, database_url=pg_url, database_schema=schema, replication_poll_s=0.05)
    with (
        running_sims(sim_config(VendorKind.DUMMYJSON, size=SIZE)) as (sim,),
        ApiServer(settings) as api,
        httpx.Client(base_url=api.base_url, timeout=10) as client,
    ):
        assert client.post("/vendors", json=sim.vendor_body("dj"), headers=admin()).status_code == 201
        wait_synced(client, "dj")
        wait_until(lambda: pushed(client), timeout=15, what="the catalog to reach PostgreSQL")
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["replication"] is True
        assert ready.json()["replication"]["pushing"] is True and ready.json()["replication"]["lag_s"] == 0

        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        lines = metrics.text.splitlines()
        assert "catalog_replication_backlog 0" in lines
        assert "# TYPE catalog_replication_lag_seconds gauge" in lines
        pushed_total = next(line for line in lines if line.startswith("catalog_replication_pushed_changes_total "))
        assert int(pushed_total.split()[1]) >= SIZE

        # auth: business data, admin key required
        assert_error(client.get("/analytics/vendors"), 401, "unauthorized")
        assert_error(client.get("/analytics/vendors", headers=admin("wrong")), 403, "forbidden")
        vendors = client.get("/analytics/vendors", headers=admin())
        assert vendors.status_code == 200, vendors.text
        (dj,) = vendors.json()["items"]
        products = client.get("/products", params={"limit": 100}).json()["items"]
        assert dj["vendor_id"] == "dj" and dj["offers"] == SIZE and dj["products"] == len(products)
        in_stock = sum(1 for p in products if p["in_stock"])
        assert dj["in_stock_share"] == pytest.approx(in_stock / SIZE, abs=1e-3)
        assert dj["syncs_ok"] == 1 and dj["syncs_failed"] == 0 and dj["state"] == "ok"
        assert 0 <= dj["freshness_s"] < 60

        # the vendor changes prices; the re-sync lands in the history
        changed = sim.tick()
        assert client.post("/vendors/dj/sync", headers=admin()).status_code == 202
        wait_synced(client, "dj", syncs_ok=2)
        wait_until(lambda: pushed(client), timeout=15, what="the changes to reach PostgreSQL")
        pid = pg_scalar(
            pg_url,
            schema,
            "SELECT product_id FROM price_history GROUP BY product_id HAVING count(*) > 1 ORDER BY product_id LIMIT 1",
        )
        assert pid is not None and changed
        history = client.get(f"/analytics/products/{pid}/prices", headers=admin())
        assert history.status_code == 200, history.text
        body = history.json()
        assert body["product_id"] == pid
        points = max(body["offers"], key=lambda o: len(o["points"]))["points"]
        assert len(points) >= 2 and [p["at"] for p in points] == sorted(p["at"] for p in points)
        current = client.get(f"/products/{pid}").json()
        assert points[-1]["price"] in {o["price"] for o in current["offers"]}, (points, current["offers"])

        first_at = datetime.fromisoformat(points[0]["at"])
        before = (first_at - timedelta(seconds=1)).astimezone(UTC).replace(tzinfo=None).isoformat()
        early = client.get(f"/analytics/products/{pid}/prices", params={"to": before}, headers=admin())
        assert early.status_code == 200 and early.json()["offers"] == []
        later = client.get(
            f"/analytics/products/{pid}/prices", params={"from": points[-1]["at"]}, headers=admin()
        ).json()
        assert all(p["at"] >= points[-1]["at"] for o in later["offers"] for p in o["points"])
        assert_error(
            client.get(
                f"/analytics/products/{pid}/prices", params={"from": "2026-02-01", "to": "2026-01-01"}, headers=admin()
            ),
            422,
            "invalid_input",
        )
        assert_error(
            client.get(f"/analytics/products/{pid}/prices", params={"from": "yesterday"}, headers=admin()), 422
        )
        assert_error(client.get("/analytics/products/p_nothing/prices", headers=admin()), 404, "not_found")

        # a row PostgreSQL refuses takes the node out of /ready, with the reason, until it is fixed
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
            (original,) = conn.execute(
                "SELECT price FROM offers WHERE rowid = (SELECT min(rowid) FROM offers)"
            ).fetchone()
            conn.execute("UPDATE offers SET price = 'n/a' WHERE rowid = (SELECT min(rowid) FROM offers)")
            conn.commit()
        wait_until(lambda: client.get("/ready").status_code == 503, timeout=10, what="/ready to fail")
        error = assert_error(client.get("/ready"), 503, "unavailable")
        assert "rejected row" in error["message"] and "n/a" in error["message"]
        assert error["details"]["replication"]["blocked"]["table"] == "offers"
        assert "catalog_replication_blocked 1" in client.get("/metrics").text.splitlines()
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
            conn.execute("UPDATE offers SET price = ? WHERE price = 'n/a'", (original,))
            conn.commit()
        wait_until(lambda: client.get("/ready").status_code == 200, timeout=10, what="/ready to recover")
        wait_until(lambda: pushed(client), timeout=10, what="the fix to reach PostgreSQL")
        catalog = client.get("/products", params={"limit": 100}).json()["items"]
    assert_in_step(db, pg_url, schema)

    # A new node with an empty SQLite (not pushing: one designated node does) starts with the catalog.
    fresh = fast_settings(tmp_path / "fresh.db", database_url=pg_url, database_schema=schema, replication_push=False)
    with ApiServer(fresh) as api, httpx.Client(base_url=api.base_url, timeout=10) as client:
        assert client.get("/products", params={"limit": 100}).json()["items"] == catalog
        status = client.get("/ready").json()["replication"]
        assert status["pushing"] is False and status["backlog"] == 0


def test_analytics_unavailable_without_postgres(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "none.db")
    with ApiServer(settings) as api, httpx.Client(base_url=api.base_url, timeout=10) as client:
        assert_error(client.get("/analytics/vendors", headers=admin()), 503, "unavailable")
        assert_error(client.get("/analytics/products/x/prices", headers=admin()), 503, "unavailable")
        assert "replication" not in client.get("/metrics").text
        assert client.get("/ready").json()["replication"] is None

    # PostgreSQL configured but down: analytics answer 503 fast, the catalog stays ready, the error is shown.
    dead = "postgresql://postgres@127.0.0.1:9/test"
    settings = fast_settings(tmp_path / "down.db", database_url=dead, replication_backoff_max_s=0.2)
    with ApiServer(settings) as api, httpx.Client(base_url=api.base_url, timeout=10) as client:
        assert_error(client.get("/analytics/vendors", headers=admin()), 503, "unavailable")
        status = wait_until(lambda: replication(client)["last_error"] and replication(client), what="the error")
        assert "Operational" in status["last_error"] and status["connected"] is False
        assert client.get("/ready").status_code == 200
