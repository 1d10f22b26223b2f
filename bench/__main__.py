"""`python -m bench` (or `make bench`): the service's speed and memory, as a table.

What it measures, all against real processes over loopback:
1. Ingest: a DummyJSON simulator scaled to N products (its own process) and the API (its own process, empty
   SQLite). The clock starts at `POST /vendors` and stops when the vendor's sync reports done.
2. Memory: the API's resident set size with those N products stored, after the read benchmarks too.
3. Reads: `GET /products?limit=50` and `GET /products/{id}` throughput, each as a ratio to `/_bench/body`, a
   route of the same server returning a precomputed body of the same size. Rounds alternate between the real
   route and its baseline so machine noise hits both alike; the ratio of the medians is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.loadgen import LoadResult, hammer
from bench.processes import development_env, free_port, rss_mb, simulator_command, wait_http
from bench.table import Row, passed, print_table

ADMIN = {"X-API-Key": "bench-admin-key"}


def start_simulator(size: int, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(simulator_command(size, port))


def raw_fetch_seconds(base_url: str, page_size: int = 250) -> float:
    """The floor under the ingest time: walking the simulator's pages and parsing their JSON, nothing else."""
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=30) as http:
        skip, total = 0, 1
        while skip < total:
            body = orjson.loads(http.get("/products", params={"limit": page_size, "skip": skip}).content)
            total = body["total"]
            skip += len(body["products"]) or total
    return time.perf_counter() - started


def page_paths(client: httpx.Client, pages: int) -> list[str]:
    """URLs of successive pages of 50: cycling through more of them than the page cache holds misses it."""
    paths = ["/products?limit=50"]
    cursor = client.get(paths[0]).json()["next_cursor"]
    while cursor and len(paths) < pages:
        paths.append(f"/products?limit=50&cursor={cursor}")
        cursor = client.get(paths[-1]).json()["next_cursor"]
    return paths


async def read_ratio(
    port: int, path: str | list[str], rounds: int, seconds: float, connections: int
) -> tuple[float, float, float]:
    """Median rps of ``path`` (or paths) and of the baseline serving the same bytes, and their ratio."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        body = (await client.get(path if isinstance(path, str) else path[0])).content
        await client.put("/_bench/body", content=body)
    await hammer("127.0.0.1", port, path, connections=connections, seconds=0.5)  # warm-up
    await hammer("127.0.0.1", port, "/_bench/body", connections=connections, seconds=0.5)
    real: list[LoadResult] = []
    base: list[LoadResult] = []
    for _ in range(rounds):
        real.append(await hammer("127.0.0.1", port, path, connections=connections, seconds=seconds))
        base.append(await hammer("127.0.0.1", port, "/_bench/body", connections=connections, seconds=seconds))
    if any(r.errors for r in real + base):
        raise RuntimeError(f"errors while benchmarking {path}")
    real_rps = statistics.median(r.rps for r in real)
    base_rps = statistics.median(r.rps for r in base)
    return real_rps, base_rps, real_rps / base_rps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--suite",
        choices=["all", "api", "search", "distributed", "slow-vendor", "replication", "changes", "images", "matching"],
        default="all",
        help="api: ingest, reads, memory; search: distinct searches and reads under search through the API; "
        "distributed: Kafka + Flink; slow-vendor: a miss while another vendor answers in 9 s, both runtimes; "
        "replication: SQLite -> PostgreSQL; changes: the change feed; images: thumbnails and a list screen's bytes; "
        "matching: the matcher's throughput and its share of the ingest",
    )
    parser.add_argument("--products", type=int, default=100_000, help="api, search: products ingested")
    parser.add_argument(
        "--search-unify",
        choices=["matching", "identifiers"],
        default="matching",
        help="search: how the catalog is unified as it is written (identifiers: CATALOG_MATCHING=false, the API "
        "too; a million look-alikes are written in minutes instead of hours)",
    )
    parser.add_argument("--fts5-queries", type=int, default=300, help="search: queries of the FTS5 baseline")
    parser.add_argument("--rounds", type=int, default=5, help="api: alternating rounds per read ratio")
    parser.add_argument("--seconds", type=float, default=2.0, help="api: seconds per round")
    parser.add_argument("--connections", type=int, default=8, help="api: keep-alive connections")
    parser.add_argument("--sync-size", type=int, default=30_000, help="distributed: products of the synced vendor")
    parser.add_argument("--samples", type=int, default=40, help="distributed: timed misses")
    parser.add_argument("--changes", type=int, default=100_000, help="replication: changes pushed")
    parser.add_argument("--feed-products", type=int, default=20_000, help="changes: products in the feed")
    parser.add_argument("--side", type=int, default=2000, help="images: pixels of each original's side")
    parser.add_argument("--matching-size", type=int, default=2_000, help="matching: positions per demo store")
    parser.add_argument("--matching-rounds", type=int, default=3, help="matching: alternating ingest rounds")
    args = parser.parse_args()
    status = 0
    if args.suite in ("all", "api"):
        print("\n## API: ingest, reads, memory (embedded runtime)")
        status |= api_suite(args)
    if args.suite in ("all", "search"):
        from bench.api_search import search_suite

        print(f"\n## Search through the API: {args.products:,} products (embedded runtime)")
        status |= search_suite(args)
    if args.suite in ("all", "distributed"):
        from bench import distributed

        print("\n## Distributed runtime: Kafka (Tansu) + Flink MiniCluster, parallelism 1\n")
        distributed.print_table(distributed.run_distributed(args.sync_size, args.samples))
    if args.suite in ("all", "slow-vendor"):
        from bench import slow_vendor

        print("\n## A miss while another vendor answers in 9 s (embedded and kafka, through an API node)\n")
        status |= slow_vendor.main([])
    if args.suite in ("all", "matching"):
        from bench import matching

        print("\n## Matching (issue 10): the matcher, its blocking, and its share of the ingest")
        rows = matching.run(matching.default_dir())
        rows += matching.run_ingest(194, 5)  # the demo stores as served: real products only, no clones
        rows += matching.run_ingest(args.matching_size, args.matching_rounds)
        print_table(rows)
        status |= 0 if passed(rows) else 1
    if args.suite in ("all", "replication"):
        from bench import replication

        print("\n## SQLite -> PostgreSQL replication")
        rows = replication.run_replication(changes=args.changes)
        print_table(rows)
        status |= 0 if passed(rows) else 1
    if args.suite in ("all", "changes"):
        from bench import changes

        print("\n## Change feed (embedded runtime)")
        rows = changes.run_changes(argparse.Namespace(products=args.feed_products, rounds=min(args.rounds, 3)))
        print_table(rows)
        status |= 0 if passed(rows) else 1
    if args.suite in ("all", "images"):
        from bench import images

        print("\n## Thumbnails")
        rows = images.run_images(
            argparse.Namespace(
                rounds=min(args.rounds, 3), seconds=args.seconds, connections=args.connections, side=args.side
            )
        )
        print_table(rows)
        status |= 0 if passed(rows) else 1
    return status


def api_suite(args: argparse.Namespace) -> int:
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="catalog-bench-"))
    sim_port, api_port = free_port(), free_port()
    sim = start_simulator(args.products, sim_port)
    env = development_env(
        CATALOG_DB_PATH=str(workdir / "catalog.db"),
        CATALOG_ADMIN_KEY=ADMIN["X-API-Key"],
        CATALOG_BENCH_ROUTES="true",
    )
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--port",
            str(api_port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats", timeout_s=120)
        wait_http(f"http://127.0.0.1:{api_port}/health")
        raw_s = raw_fetch_seconds(f"http://127.0.0.1:{sim_port}")
        client = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30)
        started = time.perf_counter()
        response = client.post(
            "/vendors",
            headers=ADMIN,
            json={
                "id": "bench",
                "name": "Bench",
                "kind": "dummyjson",
                "base_url": f"http://127.0.0.1:{sim_port}",
                "currency": "USD",
                "refresh_interval_s": 86_400,
            },
        )
        response.raise_for_status()
        while True:
            vendor = client.get("/vendors/bench").json()
            if vendor["sync"]["state"] in ("ok", "failed"):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        if vendor["sync"]["state"] != "ok":
            raise RuntimeError(f"sync failed: {vendor['sync']['last_error']}")
        offers = vendor["offers"]
        rows.append(
            Row(
                f"ingest {offers:,} products from a simulator",
                f"{elapsed:.1f} s",
                "< 10 s (100k)",
                elapsed < 10 if args.products >= 100_000 else None,
            )
        )
        rows.append(Row("  ingest rate", f"{offers / elapsed:,.0f} offers/s", "", None))
        rows.append(
            Row(
                "  baseline: fetch + parse the same pages only",
                f"{raw_s:.1f} s (ingest / baseline {elapsed / raw_s:.1f}x)",
                "",
                None,
            )
        )
        rows.append(Row("API RSS after ingest", f"{rss_mb(api.pid):.0f} MB", "", None))

        first = client.get("/products", params={"limit": 50}).json()["items"][0]["id"]
        list_rps, list_base, list_ratio = asyncio.run(
            read_ratio(api_port, "/products?limit=50", args.rounds, args.seconds, args.connections)
        )
        detail_rps, detail_base, detail_ratio = asyncio.run(
            read_ratio(api_port, f"/products/{first}", args.rounds, args.seconds, args.connections)
        )
        rows.append(Row("GET /products?limit=50", f"{list_rps:,.0f} req/s vs {list_base:,.0f} baseline", "", None))
        rows.append(Row("  ratio to precomputed body", f"{list_ratio:.2f}", ">= 0.70", list_ratio >= 0.7))
        cold_paths = page_paths(client, pages=min(400, max(2, offers // 50 - 1)))
        cold_rps, _, cold_ratio = asyncio.run(
            read_ratio(api_port, cold_paths, args.rounds, args.seconds, args.connections)
        )
        rows.append(
            Row(
                f"  {len(cold_paths)} different pages in turn (page cache missed)",
                f"{cold_rps:,.0f} req/s, ratio {cold_ratio:.2f}",
                "",
                None,
            )
        )
        rows.append(Row("GET /products/{id}", f"{detail_rps:,.0f} req/s vs {detail_base:,.0f} baseline", "", None))
        rows.append(Row("  ratio to precomputed body", f"{detail_ratio:.2f}", ">= 0.80", detail_ratio >= 0.8))
        rss = rss_mb(api.pid)
        rows.append(Row(f"API RSS with {offers:,} products, after reads", f"{rss:.0f} MB", "< 250 MB", rss < 250))
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)

    print_table(rows)
    return 0 if passed(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
