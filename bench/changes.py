"""`python -m bench.changes [--products N]`: the change feed's speed, against a list page of the same server.

The API runs as its own process over a DummyJSON simulator of N products (its own process too). Measured with
the raw-socket load generator: `GET /changes?limit=100` from the beginning (a whole page of list documents
merged from the feed table) against `GET /products?limit=100` (the same documents from the list query, uncached:
every request another page), rounds alternating, ratio of medians; then a full walk of the feed (every product
once).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.loadgen import hammer
from bench.processes import development_env, free_port, simulator_command, wait_http
from bench.table import Row, print_table

ADMIN = {"X-API-Key": "bench-admin-key"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    print_table(run_changes(parser.parse_args()))


def run_changes(args: argparse.Namespace) -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-changes-"))
    sim_port, api_port = free_port(), free_port()
    sim = subprocess.Popen(simulator_command(args.products, sim_port))
    env = development_env(
        CATALOG_DB_PATH=str(tmp / "catalog.db"),
        CATALOG_ADMIN_KEY=ADMIN["X-API-Key"],
        CATALOG_SCHEDULER_ENABLED="false",
        CATALOG_LIST_CACHE_PAGES="0",
        CATALOG_CHANGES_POLL_S="0.02",
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(api_port), "--log-level", "warning"], env=env
    )
    rows: list[Row] = []
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/products?limit=1")
        wait_http(f"http://127.0.0.1:{api_port}/health")
        base = f"http://127.0.0.1:{api_port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            body = {
                "id": "dj",
                "name": "DummyJSON",
                "kind": "dummyjson",
                "base_url": f"http://127.0.0.1:{sim_port}",
                "currency": "USD",
            }
            client.post("/vendors", json=body, headers=ADMIN).raise_for_status()
            while client.get("/vendors/dj").json()["sync"]["state"] != "ok":
                time.sleep(0.2)
            products = client.get("/vendors/dj").json()["products"]

            # pages of the list and of the feed, many different ones each (neither is served from a cache)
            lists, feeds = ["/products?limit=100"], ["/changes?limit=100"]
            for _ in range(30):
                page = client.get(lists[-1]).json()
                if page["next_cursor"]:
                    lists.append(f"/products?limit=100&cursor={page['next_cursor']}")
                change = client.get(feeds[-1]).json()
                if change["more"]:
                    feeds.append(f"/changes?limit=100&since={change['next']}")
            feed_rps, list_rps = [], []
            for _ in range(args.rounds):
                feed_rps.append(asyncio.run(hammer("127.0.0.1", api_port, feeds, seconds=3)).rps)
                list_rps.append(asyncio.run(hammer("127.0.0.1", api_port, lists, seconds=3)).rps)
            feed, listing = statistics.median(feed_rps), statistics.median(list_rps)
            rows.append(Row("catalog", f"{products} products", "", None))
            rows.append(Row("GET /changes?limit=100 (pages of 100 list documents)", f"{feed:.0f} req/s", "", None))
            rows.append(Row("GET /products?limit=100, uncached (baseline)", f"{listing:.0f} req/s", "", None))
            rows.append(Row("feed / list ratio", f"{feed / listing:.2f}x", ">= 0.5x", feed / listing >= 0.5))

            started = time.perf_counter()
            since, seen = None, 0
            while True:
                page = client.get("/changes", params={"limit": 1000, **({"since": since} if since else {})}).json()
                seen += len(page["changes"])
                since = page["next"]
                if not page["more"]:
                    break
            walk = time.perf_counter() - started
            rows.append(Row("whole feed walk, pages of 1000", f"{seen} changes in {walk:.2f} s", "", None))

    finally:
        for proc in (api, sim):
            proc.terminate()
            proc.wait(timeout=10)
    return rows


if __name__ == "__main__":
    main()
