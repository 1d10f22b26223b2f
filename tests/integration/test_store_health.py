"""Disk and store health over real HTTP (issue 11): a store that cannot write and a replication backlog above its
limit turn /ready to 503 with the reason, while reads go on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.domain.models import VendorKind
from tests.integration.pg import fresh_schema, server_url
from tests.support import ApiServer, Sim, admin, fast_settings, free_port, running_sims, sim_config, wait_until


@pytest.fixture(scope="module")
def big_shop() -> Iterator[Sim]:
    with running_sims(sim_config(VendorKind.DUMMYJSON, size=3000)) as (sim,):
        yield sim


def test_a_full_store_is_reported_on_ready_and_reads_go_on(tmp_path: Path, big_shop: Sim) -> None:
    """The size cap (PRAGMA max_page_count) stands in for a full disk: SQLite answers both with SQLITE_FULL."""
    settings = fast_settings(tmp_path / "full.db", db_max_mb=2)
    with ApiServer(settings) as api, httpx.Client(base_url=api.base_url, timeout=15) as client:
        assert client.get("/ready").status_code == 200
        assert client.post("/vendors", json=big_shop.vendor_body("dj"), headers=admin()).status_code == 201

        def not_ready() -> httpx.Response | None:
            response = client.get("/ready")
            return response if response.status_code == 503 else None

        response = wait_until(not_ready, timeout=30, what="/ready to report the full store")
        error = response.json()["error"]
        assert error["details"]["checks"]["store"] is False
        assert "cannot write" in error["message"]
        assert str(tmp_path) not in response.text  # no paths on a public endpoint
        assert client.get("/products", params={"limit": 5}).status_code == 200
        assert client.get("/vendors/dj").status_code == 200


@pytest.mark.postgres
def test_a_replication_backlog_above_its_limit_is_an_alarm(tmp_path: Path, big_shop: Sim) -> None:
    """Capture installed while PostgreSQL answered; then it is away (nothing listens where the node looks for it)
    and the changes of a sync pile up in the outbox past the limit."""
    db, url = tmp_path / "backlog.db", server_url()
    with fresh_schema(url, "backlog") as schema:
        first = fast_settings(db, database_url=url, database_schema=schema)
        with ApiServer(first) as api, httpx.Client(base_url=api.base_url, timeout=15) as client:
            wait_until(lambda: client.get("/ready").json().get("replication", {}).get("connected"), timeout=20)
    away = fast_settings(
        db,
        database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
        replication_initial_load=False,
        replication_backlog_max=500,
    )
    with ApiServer(away) as api, httpx.Client(base_url=api.base_url, timeout=15) as client:
        assert client.post("/vendors", json=big_shop.vendor_body("dj"), headers=admin()).status_code == 201

        def alarm() -> httpx.Response | None:
            response = client.get("/ready")
            return response if response.status_code == 503 else None

        response = wait_until(alarm, timeout=30, what="the backlog alarm")
        message = response.json()["error"]["message"]
        assert "above the limit of 500" in message and "CATALOG_REPLICATION_BACKLOG_MAX" in message
        assert "nobody" not in response.text and "127.0.0.1" not in response.text  # no users or hosts
        metrics = client.get("/metrics").text
        assert "catalog_replication_backlog_over_limit 1" in metrics
        assert "catalog_replication_backlog_limit 500" in metrics
        assert "nobody" not in metrics and str(tmp_path) not in metrics
