"""`python -m bench.ingest_growth`: does an offer cost more to write as the catalog grows? (issue 13)

The search bench's generated catalog (``bench.search_data``: the demo products varied into look-alikes, 24
vendors) written through the store in this process, as ``bench --suite search`` fills it (``api_search.fill``:
``--batch`` offers per ``upsert_offers``, one transaction each), without the API or any search. Reports the wall
and CPU time, the write rate over the first and the last tenth of the products and their ratio (issue 13 asks
that the rate at 1M stay within 20% of the rate at 100k), and where the writer thread's CPU went by phase (the
new offers' matching, settling, product rebuilds), over the whole catalog and tenth by tenth: whether an offer's
cost keeps growing with the catalog or levels off, and in which phase.

``--gtins`` gives each offer a valid GTIN of its own (vendors that send barcodes: every look-alike then carries
another one, and two GTINs decide a pair on their own). ``--digest`` adds sha256 digests of the products each offer
landed in, the explanations and the products' ETags: two versions of the code given the same catalog must print the
same ones (how a speed-up is shown to change nothing), e.g.
``PYTHONPATH=<other checkout> python -m bench.ingest_growth --products 30000 --digest``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sqlite3
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.store.sqlite.matching import StoreUnifier
from app.store.sqlite.offers import OfferWriter
from bench import api_search
from bench.table import Row, print_table

#: The writer's phases, timed in its own thread (``time.thread_time``): (class, method, label).
PHASES: tuple[tuple[type, str, str], ...] = (
    (StoreUnifier, "index", "new offers' matching (index)"),
    (StoreUnifier, "settle", "settling (re-clustering)"),
    (OfferWriter, "rebuild", "product rebuilds"),
    (OfferWriter, "upsert", "the whole write"),
)
DIGESTS = (
    ("products of offers", "SELECT vendor_id, vendor_product_id, product_id FROM offers ORDER BY 1, 2"),
    (
        "explanations",
        "SELECT o.vendor_id, o.vendor_product_id, w.why FROM match_why w JOIN offers o ON o.rowid = w.offer "
        "ORDER BY 1, 2",
    ),
    ("product ETags", "SELECT id, etag FROM products ORDER BY id"),
)


def _timed(spent: dict[str, float], label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] += time.thread_time() - started

    return timed


def _instrument(spent: dict[str, float], after_writes: list[dict[str, float]]) -> None:
    """Time each phase on the writer thread; ``after_writes`` gets a copy of the totals after each write."""
    for cls, method, label in PHASES:
        setattr(cls, method, _timed(spent, label, getattr(cls, method)))
    upsert = OfferWriter.upsert

    def snapshot(*args: Any, **kwargs: Any) -> Any:
        try:
            return upsert(*args, **kwargs)
        finally:
            after_writes.append(dict(spent))

    OfferWriter.upsert = snapshot  # type: ignore[method-assign]


def tenths(after_writes: list[dict[str, float]], batch: int) -> list[Row]:
    """The writer's CPU per offer by phase over each tenth of the writes (whole writes, so tenths are approximate
    when the write count is not a multiple of ten)."""
    rows = []
    step = max(1, len(after_writes) // 10)
    before: dict[str, float] = {}
    for first in range(0, len(after_writes), step):
        after = after_writes[min(first + step, len(after_writes)) - 1]
        offers = (min(first + step, len(after_writes)) - first) * batch
        cells = [f"{(after.get(label, 0.0) - before.get(label, 0.0)) * 1e6 / offers:,.0f}" for _, _, label in PHASES]
        rows.append(Row(f"  products {first * batch + 1:,}-{first * batch + offers:,}", " / ".join(cells), "", None))
        before = after
    return rows


def digests(path: Path) -> list[tuple[str, str]]:
    out = []
    with sqlite3.connect(path) as conn:
        for name, query in DIGESTS:
            h = hashlib.sha256()
            for row in conn.execute(query):
                h.update(repr(row).encode())
            out.append((name, h.hexdigest()[:16]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=api_search.BATCH, help="offers per store call")
    parser.add_argument("--digest", action="store_true", help="also digests of what was stored")
    parser.add_argument("--gtins", action="store_true", help="each offer with a valid GTIN of its own")
    args = parser.parse_args()
    api_search.BATCH = args.batch
    spent: dict[str, float] = defaultdict(float)
    after_writes: list[dict[str, float]] = []
    _instrument(spent, after_writes)
    path = Path(tempfile.mkdtemp(prefix="catalog-bench-growth-")) / "catalog.db"
    cpu = time.process_time()
    seconds, (head, tail), _ = asyncio.run(api_search.fill(path, args.products, gtins=args.gtins))
    cpu = time.process_time() - cpu
    n = args.products
    name = f"{n:,} look-alike products{' with GTINs' if args.gtins else ''}, batches of {args.batch:,}"
    rows = [
        Row(name, f"{seconds:.1f} s, {cpu:.1f} s CPU", "", None),
        Row("  offers/s, first tenth", f"{head:,.0f}", "", None),
        Row("  offers/s, last tenth", f"{tail:,.0f}", "", None),
        Row("  last / first", f"{tail / head:.2f}x", "issue 13: 1M within 20% of 100k", None),
    ]
    for _, _, label in PHASES:
        rows.append(
            Row(f"  writer CPU: {label}", f"{spent[label]:.1f} s ({spent[label] * 1e6 / n:,.0f} µs/offer)", "", None)
        )
    rows.append(Row("  writer CPU by tenth, µs/offer", "index / settle / rebuild / whole write", "", None))
    rows += tenths(after_writes, args.batch)
    if args.digest:
        rows += [Row(f"  digest: {name}", value, "", None) for name, value in digests(path)]
    print_table(rows)


if __name__ == "__main__":
    main()
