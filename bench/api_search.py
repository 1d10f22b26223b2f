"""`python -m bench --suite search`: search through the API as shoppers use it, at 100k products (or ``--products``).

What it measures, against a real API process over loopback:
1. A catalog of N products (``bench.search_data``: real DummyJSON products varied the way a large catalog is)
   written through the store's own write path, then the API started on it: the time until /ready (the index is
   built at start, from the store).
2. Distinct searches: each of 600 different queries (words, pairs, prefixes as typed, typos, brand + type) asked
   once, one at a time, ``GET /products?q=...&limit=20``; p50 and p99. Same-run baselines: the same number of
   requests to ``/_bench/body`` serving a search page's bytes (the HTTP floor), and the store's FTS5 search of the
   same queries in this process (what ``q=`` cost before the index, without HTTP).
3. Product reads while searches run: ``GET /products/{id}`` over distinct ids on one connection while two more
   connections search without pause; p50 and p99, against the same reads with no search running.
4. The API's RSS at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx

from bench.loadgen import hammer
from bench.processes import free_port, rss_mb, wait_http
from bench.search_data import CatalogGenerator
from bench.table import Row, passed, print_table

ADMIN = {"X-API-Key": "bench-admin-key"}
QUERIES = 600
BATCH = 5000


async def fill(
    path: Path, count: int, *, gtins: bool = False, matching: bool = True
) -> tuple[float, tuple[float, float], list[str]]:
    """The catalog through ``upsert_offers`` in batches, one offer per product; returns seconds, the write rate
    (offers/s) over the first and the last tenth of the products (does an offer cost more as the store grows?),
    and the queries. ``gtins``: each offer with a valid GTIN of its own (a catalog whose vendors send barcodes;
    the look-alikes then all carry different ones). ``matching``: False unifies on identifiers alone
    (``CATALOG_MATCHING=false``), which writes a catalog of a million look-alikes in minutes instead of hours."""
    from app.domain.models import Availability, Offer, Vendor, VendorKind
    from app.domain.normalize import gtin_check_digit
    from app.store.sqlite.catalog import SqliteCatalog

    generator = CatalogGenerator()
    store = SqliteCatalog(path, matching=matching)
    store.open()
    started = time.perf_counter()
    try:
        for vid in generator.vendors:
            await store.add_vendor(
                Vendor(id=vid, name=vid, kind=VendorKind.DUMMYJSON, base_url="http://bench.invalid", currency="EUR")
            )
        batch: list[Offer] = []
        written: list[tuple[int, float]] = [(0, time.perf_counter())]  # (products, when) after each batch
        for doc in generator.products(count):
            batch.append(
                Offer(
                    vendor_id=doc.vendors[0],
                    vendor_product_id=doc.id,
                    title=doc.name,
                    description=doc.description,
                    brand=doc.brand,
                    category=doc.category,
                    price=Decimal(str(doc.min_price_base)),
                    currency="EUR",
                    availability=Availability.IN_STOCK if doc.in_stock else Availability.OUT_OF_STOCK,
                    vendor_updated_at=doc.updated_at,
                    gtin=_gtin(len(batch) + written[-1][0], gtin_check_digit) if gtins else None,
                )
            )
            if len(batch) == BATCH:
                await store.upsert_offers(batch)
                written.append((written[-1][0] + len(batch), time.perf_counter()))
                batch = []
        if batch:
            await store.upsert_offers(batch)
            written.append((written[-1][0] + len(batch), time.perf_counter()))
    finally:
        store.close()
    return time.perf_counter() - started, _tenths(written), [q for _, q in generator.queries(QUERIES)]


def _gtin(n: int, check_digit: Callable[[str], int]) -> str:
    """The ``n``-th GTIN-14 of a private range (prefix 2: GS1's in-store numbers), check digit included."""
    body = f"2{n:012d}"
    return f"{body}{check_digit(body)}"


def _tenths(written: list[tuple[int, float]]) -> tuple[float, float]:
    """Offers/s over the batches that wrote the first tenth of the products and over those of the last tenth."""
    total = written[-1][0]
    first = next(i for i, (n, _) in enumerate(written) if n >= total / 10)
    last = next(i for i, (n, _) in enumerate(written) if n >= total - total / 10)
    head = written[first][0] / (written[first][1] - written[0][1])
    tail = (total - written[last - 1][0]) / (written[-1][1] - written[last - 1][1]) if last else head
    return head, tail


def fts5_latencies(path: Path, queries: list[str]) -> list[float]:
    """The store's own FTS5 search of these queries, in this process: what ``q=`` cost before the index."""
    from app.domain.queries import ProductQuery
    from app.store.sqlite.catalog import SqliteCatalog

    store = SqliteCatalog(path, page_cache_size=0)
    store.open()
    out = []
    try:
        for q in queries:
            started = time.perf_counter()
            store.list_products(ProductQuery(q=q, limit=20))
            out.append((time.perf_counter() - started) * 1000)
    finally:
        store.close()
    return out


async def once_each(port: int, paths: list[str]) -> list[float]:
    """Each path once, one after another on one keep-alive connection; latencies in ms."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    try:
        for path in paths:
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if head[9:12] != b"200":
                raise RuntimeError(f"{path}: {head[:12]!r}")
            length = next(int(h[15:]) for h in head.split(b"\r\n") if h[:15].lower() == b"content-length:")
            await reader.readexactly(length)
            out.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def reads_under_search(port: int, reads: list[str], searches: list[str], seconds: float) -> tuple[float, ...]:
    alone = await hammer("127.0.0.1", port, reads, connections=1, seconds=seconds)
    loaded, load = await asyncio.gather(
        hammer("127.0.0.1", port, reads, connections=1, seconds=seconds),
        hammer("127.0.0.1", port, searches, connections=2, seconds=seconds),
    )
    if alone.errors or loaded.errors or load.errors:
        raise RuntimeError("errors while reading under search load")
    return alone.p50_ms, alone.p99_ms, loaded.p50_ms, loaded.p99_ms, load.rps


def search_suite(args: argparse.Namespace) -> int:
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="catalog-bench-search-"))
    db = workdir / "catalog.db"
    matching = args.search_unify == "matching"
    fill_s, (head, tail), queries = asyncio.run(fill(db, args.products, matching=matching))
    rows.append(
        Row(
            f"write {args.products:,} products through the store ({args.search_unify})",
            f"{fill_s:.1f} s",
            "",
            None,
        )
    )
    rows.append(
        Row(
            "  offers/s, first tenth / last tenth of them",
            f"{head:,.0f} / {tail:,.0f} ({tail / head:.2f}x)",
            "last >= 0.8x first",
            tail >= 0.8 * head,
        )
    )
    port = free_port()
    env = {
        **os.environ,
        "CATALOG_DB_PATH": str(db),
        "CATALOG_ADMIN_KEY": ADMIN["X-API-Key"],
        "CATALOG_BENCH_ROUTES": "true",
        "CATALOG_LOG_LEVEL": "warning",
        "CATALOG_SCHEDULER_ENABLED": "false",
        "CATALOG_ENV": "development",  # a throwaway catalog: the development keys are fine
        # As the catalog was written: a store opened the other way re-clusters every offer at start.
        "CATALOG_MATCHING": "true" if matching else "false",
    }
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port), "--log-level", "warning"]
    api = subprocess.Popen([*command, "--no-access-log"], env=env)
    try:
        started = time.perf_counter()
        wait_http(f"http://127.0.0.1:{port}/health", timeout_s=120)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        while client.get("/ready").status_code != 200:
            if api.poll() is not None:
                raise RuntimeError("the API exited")
            time.sleep(0.2)
        rows.append(Row("  API start to /ready (index built)", f"{time.perf_counter() - started:.1f} s", "", None))
        paths = [f"/products?q={quote(q)}&limit=20" for q in queries]
        hits = sum(1 for p in paths[:100] if client.get(p).json()["items"])
        asyncio.run(once_each(port, paths[:50]))  # warm-up, then every query once, none of them seen before
        warm, paths = paths[:50], paths[50:]
        lat = asyncio.run(once_each(port, paths))
        client.put("/_bench/body", content=client.get(warm[0]).content)
        base = asyncio.run(once_each(port, ["/_bench/body"] * len(paths)))
        p50, p99 = statistics.median(lat), pct(lat, 0.99)
        rows.append(Row(f"{len(paths)} distinct searches, p50", f"{p50:.2f} ms", "<= 10 ms", p50 <= 10))
        rows.append(Row("  p99", f"{p99:.2f} ms", "<= 50 ms", p99 <= 50))
        rows.append(
            Row(
                "  baseline: /_bench/body, same bytes",
                f"p50 {statistics.median(base):.2f} ms, p99 {pct(base, 0.99):.2f} ms",
                "",
                None,
            )
        )
        fts = fts5_latencies(db, queries[50 : 50 + args.fts5_queries])
        rows.append(
            Row(
                f"  baseline: FTS5 in-process, {len(fts)} of the queries",
                f"p50 {statistics.median(fts):.2f} ms, p99 {pct(fts, 0.99):.2f} ms",
                "",
                None,
            )
        )
        rows.append(Row("  queries with hits (of the first 100)", f"{hits}", "", None))
        ids = [p["id"] for p in client.get("/products", params={"limit": 100}).json()["items"]]
        cursor = client.get("/products", params={"limit": 100, "sort": "price"}).json()
        ids += [p["id"] for p in cursor["items"]]
        reads = [f"/products/{pid}" for pid in dict.fromkeys(ids)]
        a50, a99, l50, l99, srps = asyncio.run(reads_under_search(port, reads, paths, args.seconds))
        rows.append(Row("product reads alone, p50 / p99", f"{a50:.2f} / {a99:.2f} ms", "", None))
        rows.append(
            Row(
                f"product reads while 2 connections search ({srps:,.0f} searches/s)",
                f"p50 {l50:.2f} ms, p99 {l99:.2f} ms",
                "p99 <= 50 ms",
                l99 <= 50,
            )
        )
        facets = asyncio.run(once_each(port, [f"{p}&facets=brand,category,vendor,price,in_stock" for p in paths[:200]]))
        rows.append(
            Row(
                "200 distinct searches with all facets",
                f"p50 {statistics.median(facets):.2f} ms, p99 {pct(facets, 0.99):.2f} ms",
                "",
                None,
            )
        )
        rss = rss_mb(api.pid)
        rows.append(Row(f"API RSS with {args.products:,} products", f"{rss:.0f} MB", "<= 300 MB", rss <= 300))
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows)
    return 0 if passed(rows) else 1
