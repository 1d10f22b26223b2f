"""`python -m bench.write_path`: the CPU cost per offer of SQLite's bulk write path (issues 12 and 13).

The store alone, in this process, no HTTP and no vendor: the demo pair of vendors (the DummyJSON simulator's
catalog and the Shopify simulator's, which carries 70% of the same items as variants under other ids and
spellings), rendered and mapped by the real mappers beforehand, then written a page at a time the way a sync
writes them (``SqliteCatalog.upsert_offers`` in the bulk lane) or a node applies the changelog
(``upsert_positioned``).
Pages of 250 offers, 8 pages per store call. Three passes over the same offers:

1. first sync: every offer new;
2. re-sync: the same content fetched again (only ``fetched_at`` moves);
3. re-priced: every offer at a new price and vendor update time.

Each with the matcher off (``CATALOG_MATCHING=false``) and on. Measured as process CPU time (time.process_time:
every thread, the writer's included), so the other work on a shared machine weighs less; reported as µs per offer.
``--check`` prints digests of every table the write path fills instead (``check``), so two versions of the code
can be compared on the very same input: the same offers in the same parts must store the same bytes.
``--profile`` prints the top of a cProfile of one pass.
``--commit-every N,...`` measures instead what a commit costs a sync (issue 15): the first sync's offers written in
transactions of N offers each (one ``upsert_offers`` call per N), as a sync's batch is cut when a shopper's miss
must write in between (about one commit per miss), against whole batches in the same run; CPU per offer, its ratio
to whole batches, and the bytes the process wrote per offer (the WAL: every commit writes each page it dirtied).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import hashlib
import os
import pstats
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from app.domain.changes import FeedPosition
from app.domain.lanes import Lane, in_lane
from app.domain.models import Offer, Vendor, VendorKind
from app.sources.dummyjson import map_dummyjson_item
from app.sources.shopify import map_shopify_product
from app.store.sqlite.catalog import SqliteCatalog
from bench.table import Row, print_table
from simulators.config import SimConfig
from simulators.server import build_simulator

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PAGE = 250
#: Pages per store call: what a sync finds piled up while its last write ran (``app.ingest.sync``), what a node's
#: consumer polls at once.
PAGES_PER_WRITE = 8
#: Issue 12: a node lands at least this many offers/s into its SQLite.
NODE_TARGET = 20_000

VENDORS = (
    Vendor(id="dummyjson", name="DummyJSON", kind=VendorKind.DUMMYJSON, base_url="http://dj.test", currency="USD"),
    Vendor(id="northwind", name="Northwind", kind=VendorKind.SHOPIFY, base_url="https://nw.test", currency="EUR"),
)


def demo_offers(size: int) -> list[list[Offer]]:
    """Each vendor's offers, in catalog order: DummyJSON's ``size`` items, the Shopify store's variants."""
    dj = build_simulator(SimConfig(kind=VendorKind.DUMMYJSON, size=size, seed=1))
    sh = build_simulator(SimConfig(kind=VendorKind.SHOPIFY, size=size, seed=2))
    first = [map_dummyjson_item(VENDORS[0], dj.render(pos), T0) for pos in dj.state.carried]
    second = [o for pos in sh.state.carried for o in map_shopify_product(VENDORS[1], sh.render(pos), T0, [])]
    return [first, second]


def resynced(offers: Sequence[Offer], hours: int) -> list[Offer]:
    return [dataclasses.replace(o, fetched_at=T0 + timedelta(hours=hours)) for o in offers]


def repriced(offers: Sequence[Offer], hours: int) -> list[Offer]:
    at = T0 + timedelta(hours=hours)
    return [
        dataclasses.replace(
            o, price=(o.price * Decimal("1.07")).quantize(Decimal("0.01")), fetched_at=at, vendor_updated_at=at
        )
        for o in offers
    ]


def pages(offers: Sequence[Offer]) -> list[list[Offer]]:
    return [list(offers[i : i + PAGE]) for i in range(0, len(offers), PAGE)]


async def write(store: SqliteCatalog, vendors: Sequence[Sequence[Offer]], path: str, pos: list[int]) -> None:
    """Every vendor's offers a page at a time, as its sync (``upsert``) or a node's changelog (``positioned``)."""
    for offers in vendors:
        if path == "upsert":  # a sync writes what piled up while the last write ran: several pages per call
            for start in range(0, len(offers), PAGE * PAGES_PER_WRITE):
                await store.upsert_offers(offers[start : start + PAGE * PAGES_PER_WRITE])
        else:  # the node applies what its consumer polled, several messages per call
            batch: list[tuple[FeedPosition, Sequence[Offer]]] = []
            for page in pages(offers):
                pos[0] += 1
                batch.append((FeedPosition("u0", pos[0], 1.7e9 + pos[0]), page))
                if len(batch) == PAGES_PER_WRITE:
                    await store.upsert_positioned(batch)
                    batch = []
            if batch:
                await store.upsert_positioned(batch)


#: What a check compares: every table the write path writes, time-independent columns only (the feed's and the
#: outbox's ``at`` are clocks), the FTS index by its content (its b-tree layout depends on how writes were grouped).
CHECKED = (
    "SELECT rowid, * FROM products ORDER BY id",
    "SELECT rowid, * FROM offers ORDER BY vendor_id, vendor_product_id",
    "SELECT * FROM product_vendors ORDER BY vendor_id, product_id",
    "SELECT * FROM images ORDER BY id",
    "SELECT * FROM product_images ORDER BY image_id, product_id",
    "SELECT * FROM match_keys ORDER BY k, vendor_id, offer",
    "SELECT * FROM match_edges ORDER BY a, b",
    "SELECT * FROM match_why ORDER BY offer",
    "SELECT product_id, part, pos, deleted FROM feed ORDER BY product_id, part",
    "SELECT * FROM meta WHERE key != 'feed_epoch' ORDER BY key",
    "SELECT term, doc, col, offset FROM temp.fts_terms ORDER BY term, doc, col, offset",
    "SELECT seq, tbl, pk, op, row FROM repl_outbox WHERE tbl != 'vendors' ORDER BY seq",  # vendors: created_at
)


def digests(path: Path) -> dict[str, str]:
    """A digest per query of ``CHECKED``, and of them all ("all")."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE VIRTUAL TABLE temp.fts_terms USING fts5vocab(main, products_fts, instance)")
    out = {}
    whole = hashlib.blake2b(digest_size=12)
    for sql in CHECKED:
        h = hashlib.blake2b(digest_size=12)
        for row in conn.execute(sql):
            h.update(repr(row).encode())
        out[sql] = h.hexdigest()
        whole.update(h.digest())
    conn.close()
    out["all"] = whole.hexdigest()
    return out


@dataclasses.dataclass
class Pass:
    name: str
    offers: int
    cpu_s: float


async def run_passes(
    vendors: list[list[Offer]],
    *,
    matching: bool,
    path: str,
    profile: str | None = None,
    capture: bool = False,
    slice_s: float = 0.01,
) -> tuple[list[Pass], dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "catalog.db"
        store = SqliteCatalog(db, matching=matching, bulk_slice_s=slice_s)
        store.open()
        if capture:  # as with DATABASE_URL set: every change also queued for PostgreSQL by triggers
            from app.replication.capture import install

            await store.run_in_transaction(install)
        for v in VENDORS:
            await store.add_vendor(v)
        n = sum(len(v) for v in vendors)
        plan = [
            ("first sync (new)", vendors),
            ("re-sync (unchanged)", [resynced(v, 1) for v in vendors]),
            ("re-priced (changed)", [repriced(v, 2) for v in vendors]),
        ]
        out = []
        pos = [0]
        for name, data in plan:
            prof = cProfile.Profile() if profile and profile in name else None
            started = time.process_time()
            with in_lane(Lane.BULK):
                if prof is not None:  # the writes run on the store's writer thread: profile that thread
                    await store._db.on_writer(lambda _c, p=prof: p.enable())
                await write(store, data, path, pos)
                if prof is not None:
                    await store._db.on_writer(lambda _c, p=prof: p.disable())
            out.append(Pass(name, n, time.process_time() - started))
            if prof is not None:
                print(f"\n== profile: {name}, matching {'on' if matching else 'off'}, {path}")
                pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
                pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        store.close()
        return out, digests(db)


def _written_bytes() -> int:
    """Bytes this process has written so far (``/proc/self/io``: the WAL, the checkpoints, the search index)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


async def commit_cost(offers: Sequence[Offer], every: int, *, matching: bool) -> tuple[float, float]:
    """CPU µs and written KB per offer of a first sync written in transactions of ``every`` offers."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteCatalog(Path(tmp) / "catalog.db", matching=matching, bulk_slice_s=1e9)  # one part per call
        store.open()
        for v in VENDORS:
            await store.add_vendor(v)
        started, written = time.process_time(), _written_bytes()
        with in_lane(Lane.BULK):
            for start in range(0, len(offers), every):
                await store.upsert_offers(offers[start : start + every])
        cpu, wrote = time.process_time() - started, _written_bytes() - written
        store.close()
    return cpu / len(offers) * 1e6, wrote / len(offers) / 1e3


def commit_rows(vendors: list[list[Offer]], sizes: Sequence[int], modes: Sequence[bool]) -> list[Row]:
    """Whole batches (``PAGE * PAGES_PER_WRITE`` offers, what an idle sync commits at once) first, then each size."""
    offers = [o for v in vendors for o in v]
    rows = []
    for matching in modes:
        base, base_kb = asyncio.run(commit_cost(offers, PAGE * PAGES_PER_WRITE, matching=matching))
        label = "matching on" if matching else "matching off"
        rows.append(Row(f"{label}: first sync, whole batches", f"{base:,.0f} µs, {base_kb:,.1f} KB/offer", "", None))
        for every in sizes:
            us, kb = asyncio.run(commit_cost(offers, every, matching=matching))
            rows.append(
                Row(
                    f"{label}: first sync, a commit every {every} offers",
                    f"{us:,.0f} µs ({us / base:.2f}x), {kb:,.1f} KB/offer",
                    "",
                    None,
                )
            )
    return rows


def check(vendors: list[list[Offer]], modes: Sequence[bool], path: str) -> None:
    """The digests of what the three passes store, capture on, with parts of a fixed size: the writer's parts
    otherwise follow the measured write rate, and where a batch is cut decides the sequence numbers. Both bounds:
    whole batches in one part, and parts of ``MIN_OFFERS`` (products rebuilt over and over as a batch lands)."""
    for matching in modes:
        for slicing, slice_s in (("whole batches", 1e9), ("parts of 10", 1e-9)):
            _, stored = asyncio.run(run_passes(vendors, matching=matching, path=path, capture=True, slice_s=slice_s))
            label = f"matching {'on' if matching else 'off'}, {slicing}"
            for sql, value in stored.items():
                print(f"{label}: {value}  {sql}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000, help="catalog positions per simulator")
    parser.add_argument("--path", choices=("upsert", "positioned"), default="upsert")
    parser.add_argument("--matching", choices=("off", "on", "both"), default="both")
    parser.add_argument("--profile", metavar="PASS", help="cProfile the pass whose name contains this (e.g. first)")
    parser.add_argument("--capture", action="store_true", help="with the replication capture triggers installed")
    parser.add_argument(
        "--slice-s",
        type=float,
        default=0.01,
        help="the writer's part length (CATALOG_BULK_WRITE_SLICE_MS); 1e9: whole batches, the same parts every run",
    )
    parser.add_argument("--check", action="store_true", help="only print digests of the stored rows (see check)")
    parser.add_argument(
        "--commit-every",
        metavar="N,...",
        help="only measure a first sync committed every N offers against whole batches (see commit_cost)",
    )
    args = parser.parse_args()

    vendors = demo_offers(args.size)
    n = sum(len(v) for v in vendors)
    print(
        f"{n:,} offers ({', '.join(f'{len(v):,}' for v in vendors)}), pages of {PAGE}, path {args.path}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    rows: list[Row] = []
    modes = (False, True) if args.matching == "both" else (args.matching == "on",)
    if args.check:
        check(vendors, modes, args.path)
        return
    if args.commit_every:
        print_table(commit_rows(vendors, [int(n) for n in args.commit_every.split(",")], modes))
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return
    for matching in modes:
        passes, _ = asyncio.run(
            run_passes(
                vendors,
                matching=matching,
                path=args.path,
                profile=args.profile,
                capture=args.capture,
                slice_s=args.slice_s,
            )
        )
        label = "matching on" if matching else "matching off"
        for p in passes:
            us = p.cpu_s / p.offers * 1e6
            ok = None if matching or p.name.startswith("re-sync") else 1e6 / us >= NODE_TARGET
            rows.append(
                Row(
                    f"{label}: {p.name}, CPU per offer",
                    f"{us:,.0f} µs ({1e6 / us:,.0f} offers/s)",
                    f">= {NODE_TARGET:,} offers/s" if ok is not None else "",
                    ok,
                )
            )
    print_table(rows)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
