"""`python -m bench.images`: thumbnails per second, cached and uncached, and the bytes of a phone's list screen.

Real processes over loopback: the vendor's image server (`simulators.images` serving 20 photo-like JPEGs of
2000x2000, its own process) and the API (its own process, its SQLite filled with 20 products leading
with those images). Measured with the raw-socket load generator, rounds alternating with their baseline:
- cached: `GET /images/{id}?w=200&format=webp` of the 20 warm thumbnails against `/_bench/body` serving a body of
  the same size through the same server (what the cache lookup and headers cost on top of the framework);
- uncached: every request a thumbnail not made yet (a new width), against the same-run rate of Pillow alone
  rendering the same originals in this process on one thread, and the vendor serving its originals;
- a list screen of 20 products: `GET /products?limit=20` plus each product's lead image, as the originals or as
  `w=200` WebP thumbnails, in bytes on the wire (gzip accepted, as a phone's HTTP client does).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

from app.domain.models import Offer, Vendor, VendorKind
from app.images.pillow import MAX_SIDE, PillowImaging
from app.store.sqlite.catalog import SqliteCatalog
from bench.loadgen import LoadResult, hammer
from bench.processes import development_env, free_port, wait_http
from bench.table import Row, print_table
from simulators.images import encoded, photo

ADMIN = {"X-API-Key": "bench-admin-key"}
PRODUCTS = 20
PHONE = "w=200&format=webp"


def originals(folder: Path, side: int) -> list[bytes]:
    bodies = []
    for i in range(PRODUCTS):
        body = encoded(photo(side, side, seed=i), "JPEG", quality=92)
        (folder / f"{i}.jpg").write_bytes(body)
        bodies.append(body)
    return bodies


def fill_store(db: Path, image_base: str) -> None:
    store = SqliteCatalog(db)
    store.open()
    offers = [
        Offer(
            vendor_id="shop",
            vendor_product_id=str(i),
            title=f"Product {i}",
            description="A product of the thumbnail benchmark. " * 8,
            price=Decimal("19.99") + i,
            currency="EUR",
            sku=f"SKU-{i}",
            brand="Bench",
            category="bench",
            stock=5,
            images=(f"{image_base}/{i}.jpg",),
        )
        for i in range(PRODUCTS)
    ]

    async def fill() -> None:
        vendor = Vendor(id="shop", name="Shop", kind=VendorKind.DUMMYJSON, base_url=image_base, currency="EUR")
        await store.add_vendor(vendor)
        await store.upsert_offers(offers)

    asyncio.run(fill())
    store.close()


def render_alone(bodies: list[bytes], widths: list[tuple[int, int]], seconds: float) -> float:
    """Pillow alone, one thread: thumbnails made per second from the same originals at the same widths as the
    uncached requests (the floor under an uncached thumbnail)."""
    imaging = PillowImaging(max_pixels=40_000_000, max_side=MAX_SIDE)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        index, w = widths[done % len(widths)]
        imaging.render(bodies[index], w=w, h=None, fmt="webp", placeholder=False)
        done += 1
    return done / (time.perf_counter() - started)


def checked(result: LoadResult, what: str) -> float:
    if result.errors:
        raise RuntimeError(f"{result.errors} errors while benchmarking {what}")
    return result.rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--side", type=int, default=2000, help="pixels of each original's side")
    print_table(run_images(parser.parse_args()))


def run_images(args: argparse.Namespace) -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-images-"))
    (tmp / "vendor").mkdir()
    bodies = originals(tmp / "vendor", args.side)
    vendor_port, api_port = free_port(), free_port()
    vendor = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from simulators.images import serve_folder; serve_folder({str(tmp / 'vendor')!r}, {vendor_port})",
        ]
    )
    image_base = f"http://127.0.0.1:{vendor_port}"
    fill_store(tmp / "catalog.db", image_base)
    env = development_env(
        CATALOG_DB_PATH=str(tmp / "catalog.db"),
        CATALOG_ADMIN_KEY=ADMIN["X-API-Key"],
        CATALOG_SCHEDULER_ENABLED="false",
        CATALOG_BENCH_ROUTES="true",
        CATALOG_IMAGES_CACHE_MB="1024",
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(api_port), "--log-level", "warning"],
        env=env,
    )
    rows: list[Row] = []
    try:
        wait_http(f"{image_base}/0.jpg")
        wait_http(f"http://127.0.0.1:{api_port}/health")
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=60) as client:
            page = client.get("/products", params={"limit": PRODUCTS})
            items = page.json()["items"]
            assert len(items) == PRODUCTS, page.text
            thumbs = [f"{item['thumbnail']}?{PHONE}" for item in items]
            made = [client.get(t) for t in thumbs]  # warms the cache, computes the placeholders
            assert all(r.status_code == 200 for r in made), [r.text for r in made if r.status_code != 200]
            sparse = client.get(
                "/products", params={"limit": PRODUCTS, "fields": "id,name,min_price,thumbnail,placeholder"}
            )
            after = client.get("/products", params={"limit": PRODUCTS})
            with httpx.Client(timeout=60) as phone:
                original_bytes = sum(phone.get(item["image"]).num_bytes_downloaded for item in items)
            thumb_bytes = sum(r.num_bytes_downloaded for r in made)
            client.put("/_bench/body", content=made[0].content).raise_for_status()
            etag = made[0].headers["etag"]

        rows.append(
            Row(
                "originals",
                f"{PRODUCTS} JPEGs {args.side}x{args.side}, {sum(map(len, bodies)) / PRODUCTS / 1e6:.2f} MB each",
                "",
                None,
            )
        )
        # cached, against the framework serving the same bytes
        cached, base = [], []
        for _ in range(args.rounds):
            cached.append(
                checked(
                    asyncio.run(
                        hammer("127.0.0.1", api_port, thumbs, connections=args.connections, seconds=args.seconds)
                    ),
                    "cached thumbnails",
                )
            )
            base.append(
                checked(
                    asyncio.run(
                        hammer(
                            "127.0.0.1", api_port, "/_bench/body", connections=args.connections, seconds=args.seconds
                        )
                    ),
                    "/_bench/body",
                )
            )
        c, b = statistics.median(cached), statistics.median(base)
        rows.append(
            Row(
                f"GET /images/{{id}}?{PHONE}, cached ({len(made[0].content) / 1024:.1f} KB)", f"{c:.0f} req/s", "", None
            )
        )
        rows.append(Row("/_bench/body, same bytes (baseline)", f"{b:.0f} req/s", "", None))
        rows.append(Row("cached / baseline", f"{c / b:.2f}x", ">= 0.5x", c / b >= 0.5))
        revalidated = asyncio.run(
            hammer(
                "127.0.0.1",
                api_port,
                thumbs[0],
                connections=args.connections,
                seconds=args.seconds,
                headers={"If-None-Match": etag},
            )
        )
        rows.append(Row("If-None-Match revalidation (304)", f"{revalidated.rps:.0f} req/s", "", None))

        # uncached: each request a width not asked for before
        variants = [(i, w) for i in range(PRODUCTS) for w in range(150, 450) if w != 200]  # phone sizes
        random.Random(1).shuffle(variants)
        # items come newest first: the product of original i is "Product i"
        thumbnail_of = {int(item["name"].split()[-1]): item["thumbnail"] for item in items}
        uncached_paths = [f"{thumbnail_of[i]}?w={w}&format=webp" for i, w in variants]
        uncached, alone, raw = [], [], []
        for r in range(args.rounds):
            share = uncached_paths[r :: args.rounds]
            uncached.append(
                checked(
                    asyncio.run(
                        hammer("127.0.0.1", api_port, share, connections=args.connections, seconds=args.seconds)
                    ),
                    "uncached thumbnails",
                )
            )
            alone.append(render_alone(bodies, variants[r :: args.rounds], args.seconds))
            raw.append(
                checked(
                    asyncio.run(
                        hammer(
                            "127.0.0.1",
                            vendor_port,
                            [f"/{i}.jpg" for i in range(PRODUCTS)],
                            connections=args.connections,
                            seconds=args.seconds,
                        )
                    ),
                    "the vendor's originals",
                )
            )
        u, a, v = statistics.median(uncached), statistics.median(alone), statistics.median(raw)
        rows.append(Row("GET /images/{id}?w=<new>&format=webp, uncached", f"{u:.1f} req/s", "", None))
        rows.append(Row("Pillow alone, one thread, same originals (baseline)", f"{a:.1f} /s", "", None))
        rows.append(Row("vendor serving the originals (simulators.images)", f"{v:.0f} req/s", "", None))
        rows.append(Row("uncached / Pillow alone", f"{u / a:.2f}x", ">= 0.8x", u / a >= 0.8))

        # a list screen of 20 products on a phone
        list_bytes = page.num_bytes_downloaded
        rows.append(Row(f"list screen: GET /products?limit={PRODUCTS}", f"{list_bytes / 1024:.1f} KB", "", None))
        rows.append(Row(f"  + {PRODUCTS} original images", f"{(list_bytes + original_bytes) / 1e6:.2f} MB", "", None))
        rows.append(
            Row(
                f"  + {PRODUCTS} thumbnails {PHONE}",
                f"{(after.num_bytes_downloaded + thumb_bytes) / 1024:.1f} KB",
                "",
                None,
            )
        )
        rows.append(
            Row(
                "  sparse fields=id,name,min_price,thumbnail,placeholder + thumbnails",
                f"{(sparse.num_bytes_downloaded + thumb_bytes) / 1024:.1f} KB",
                "",
                None,
            )
        )
        ratio = (list_bytes + original_bytes) / (after.num_bytes_downloaded + thumb_bytes)
        rows.append(Row("  originals / thumbnails", f"{ratio:.0f}x fewer bytes", "", None))
    finally:
        for proc in (api, vendor):
            proc.terminate()
            proc.wait(timeout=10)
    return rows


if __name__ == "__main__":
    main()
