"""`python -m bench.matching`: the matcher's speed and its blocking, on the benchmark records (issue 10).

Measures, per dataset (Abt-Buy, Amazon-Google; train and validation records together):

1. Blocking recall: share of the labelled true pairs that unification would merge (scored with the ``merge``
   threshold and its refusals) whose records share at least one blocking key under its cap (the dataset's records
   as one store: a key of more than ``blocking.max_block`` of them makes no candidates), the same over all true
   pairs, and the candidates per record (records of the *other* shop sharing such a key), from an in-memory index.
2. ``score`` throughput in pairs/s over the labelled pairs, profiles warm (the store keeps them cached).
3. Ingest cost per offer: every record arrives once, in a seeded random order, with a cold profile; its keys
   are looked up in the index, it is scored against the candidates found (``score_many``), and it is indexed.
   Reported as µs per offer and offers/s, against the budget of ~100 µs per offer (30% of today's ingest).
4. The same ingest loop on the demo catalog (194 DummyJSON products, each listed by two "vendors" under
   different spellings), the short-title case the service mostly sees.
5. (``--ingest``, and ``python -m bench --suite matching``) The service itself: the three demo stores (DummyJSON,
   Shopify, WooCommerce simulators in one process of their own, each scaled to ``--size`` catalog positions)
   ingested by the API in its own process, with ``CATALOG_MATCHING`` false and true in alternating rounds of the
   same run, from an empty store to every vendor synced; the ratio of the medians is what matching adds (wall
   time, and the API process' CPU time, which other work on the machine does not inflate).

Timings are process CPU time (time.process_time), so other engineers' load on the 2 cores weighs less.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import httpx
import orjson

from app.domain.matching import Matcher, MatchRecord, default_matcher, from_mapping
from app.domain.matching.blocking import max_block
from bench.processes import cpu_seconds, free_port, wait_http
from bench.table import Row, print_table
from tools.matching_data import DATASETS, SPLITS, default_dir, read_split, split_path

BUDGET_US = 100.0
ADMIN = {"X-API-Key": "bench-admin-key"}


def load(data_dir: Path, dataset: str) -> tuple[list[tuple[MatchRecord, MatchRecord, bool]], list[MatchRecord]]:
    pairs = []
    sides: dict[bytes, tuple[int, MatchRecord]] = {}
    for split in SPLITS:
        for p in read_split(split_path(data_dir, dataset, split)):
            left, right = from_mapping(p.left), from_mapping(p.right)
            sides.setdefault(b"L" + orjson.dumps(p.left, option=orjson.OPT_SORT_KEYS), (0, left))
            sides.setdefault(b"R" + orjson.dumps(p.right, option=orjson.OPT_SORT_KEYS), (1, right))
            pairs.append((left, right, p.label))
    return pairs, [r for _, r in sides.values()]


def blocking(
    matcher: Matcher, pairs: Sequence[tuple[MatchRecord, MatchRecord, bool]], records: Sequence[MatchRecord]
) -> tuple[float, float, float]:
    """Recall over the true pairs unification would merge (the blocking's job: the others are refused when
    compared, e.g. a number only one title has); recall over all true pairs; mean candidates (other side) per
    record. Keys over their cap among ``records`` count for nothing, as in a store holding them all."""
    sizes = Counter(k for r in records for k in matcher.blocking_keys(r))

    def keys(r: MatchRecord) -> set[str]:
        return {k for k in matcher.blocking_keys(r) if sizes[k] <= max_block(k)}

    true = [(a, b) for a, b, label in pairs if label]
    meet = [bool(keys(a) & keys(b)) for a, b in true]
    mergeable = [met for (a, b), met in zip(true, meet, strict=True) if matcher.score(a, b, "merge").match]
    left = {a for a, _, _ in pairs}
    right = {b for _, b, _ in pairs}
    index: dict[str, set[MatchRecord]] = defaultdict(set)
    for r in right:
        for k in keys(r):
            index[k].add(r)
    candidates = [len(set().union(*(index.get(k, set()) for k in keys(a)))) for a in left]
    return sum(mergeable) / len(mergeable), sum(meet) / len(true), sum(candidates) / len(candidates)


def pairs_per_second(matcher: Matcher, pairs: Sequence[tuple[MatchRecord, MatchRecord, bool]]) -> float:
    for a, b, _ in pairs:  # warm the profile cache, as a running store has it
        matcher.score(a, b)
    started = time.process_time()
    for a, b, _ in pairs:
        matcher.score(a, b)
    return len(pairs) / (time.process_time() - started)


def ingest(records: Sequence[MatchRecord], seed: int = 7) -> tuple[float, float]:
    """µs per offer (profile cold, keys, lookup, score_many, index) and mean candidates scored."""
    matcher = Matcher(default_matcher().model)  # a fresh profile cache: every arriving offer is new
    order = list(records)
    random.Random(seed).shuffle(order)
    index: dict[str, list[MatchRecord]] = defaultdict(list)
    scored = 0
    started = time.process_time()
    for record in order:
        keys = matcher.blocking_keys(record)
        seen: dict[MatchRecord, None] = {}
        for k in keys:
            for c in index.get(k, ()):
                seen.setdefault(c, None)
        matcher.score_many(record, list(seen), "merge")
        scored += len(seen)
        for k in keys:
            index[k].append(record)
    elapsed = time.process_time() - started
    return elapsed / len(order) * 1e6, scored / len(order)


def demo_records() -> list[MatchRecord]:
    """The simulators' 194 products, each as two vendors would title it: as served, and rearranged with the
    brand moved to the end and the barcode dropped, so every product has one true partner."""
    from simulators.catalog import load_base_items

    out = []
    for item in load_base_items():
        price = Decimal(item.price)
        out.append(
            MatchRecord(
                title=item.title,
                description=item.description,
                brand=item.brand,
                category=item.category,
                price=price,
                currency="USD",
                sku=item.sku,
            )
        )
        words = item.title.split()
        retitled = " ".join(words[1:] + words[:1]) + (f" by {item.brand}" if item.brand else "")
        out.append(
            MatchRecord(
                title=retitled,
                brand=None,
                category=item.category,
                price=(price * Decimal("1.05")).quantize(Decimal("0.01")),
                currency="USD",
            )
        )
    return out


def run(data_dir: Path) -> list[Row]:
    matcher = default_matcher()
    rows: list[Row] = []
    for dataset in DATASETS:
        pairs, records = load(data_dir, dataset)
        recall, recall_all, per_record = blocking(matcher, pairs, records)
        rows.append(
            Row(
                f"{dataset}: blocking recall (true pairs merging would take, sharing a key)",
                f"{recall:.3f}",
                ">= 0.95",
                recall >= 0.95,
            )
        )
        rows.append(Row(f"{dataset}:   of all true pairs", f"{recall_all:.3f}", "", None))
        rows.append(Row(f"{dataset}: candidates per record", f"{per_record:.1f}", "", None))
        rows.append(
            Row(f"{dataset}: score, warm profiles", f"{pairs_per_second(matcher, pairs):,.0f} pairs/s", "", None)
        )
        us, scored = ingest(records)
        rows.append(
            Row(
                f"{dataset}: ingest blocking+scoring per offer ({scored:.1f} candidates)",
                f"{us:.0f} µs ({1e6 / us:,.0f} offers/s)",
                f"<= {BUDGET_US:.0f} µs",
                us <= BUDGET_US,
            )
        )
    us, scored = ingest(demo_records())
    rows.append(
        Row(
            f"demo catalog: ingest blocking+scoring per offer ({scored:.1f} candidates)",
            f"{us:.0f} µs ({1e6 / us:,.0f} offers/s)",
            f"<= {BUDGET_US:.0f} µs",
            us <= BUDGET_US,
        )
    )
    return rows


def demo_stores_command(size: int, ports: Sequence[int]) -> list[str]:
    """The demo set's three simulators, scaled, in one process of their own (the vendors' side of the machine)."""
    code = (
        "from simulators.server import DEMO_SIMULATORS, run_simulators; "
        f"ports = {list(ports)!r}; "
        f"run_simulators([(c.model_copy(update={{'size': {size}, 'change_interval_s': 0.0}}), p) "
        "for (c, _), p in zip(DEMO_SIMULATORS, ports)])"
    )
    return [sys.executable, "-c", code]


def ingest_once(matching: bool, ports: Sequence[int], workdir: Path) -> tuple[float, float, int, int]:
    """Seconds from the first POST /vendors to every demo vendor synced, the API process' CPU seconds over the
    same span, offers and products stored."""
    from simulators.demo import demo_vendors

    api_port = free_port()
    db = workdir / f"catalog-{matching}-{time.monotonic_ns()}.db"
    env = {
        **os.environ,
        "CATALOG_DB_PATH": str(db),
        "CATALOG_ADMIN_KEY": ADMIN["X-API-Key"],
        "CATALOG_LOG_LEVEL": "warning",
        "CATALOG_MATCHING": "true" if matching else "false",
        "CATALOG_SCHEDULER_ENABLED": "false",
        "CATALOG_ENV": "development",  # no secret keys of our own: a benchmark, not a deployment
        "CATALOG_OUTBOUND_ALLOW_PRIVATE": "127.0.0.0/8",  # the simulators
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(api_port), "--log-level", "warning"],
        env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{api_port}/health")
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=60) as client:
            vendors = demo_vendors()
            started = time.perf_counter()
            cpu_started = cpu_seconds(api.pid)
            for vendor, port in zip(vendors, ports, strict=True):
                body = {
                    "id": vendor.id,
                    "name": vendor.name,
                    "kind": str(vendor.kind),
                    "base_url": f"http://127.0.0.1:{port}",
                    "credentials": dict(vendor.credentials),
                    "currency": vendor.currency,
                    "refresh_interval_s": 86_400,
                }
                client.post("/vendors", headers=ADMIN, json=body).raise_for_status()
            offers = 0
            for vendor in vendors:
                while True:
                    state = client.get(f"/vendors/{vendor.id}").json()
                    if state["sync"]["state"] in ("ok", "failed"):
                        break
                    time.sleep(0.02)
                if state["sync"]["state"] != "ok":
                    raise RuntimeError(f"sync of {vendor.id} failed: {state['sync']['last_error']}")
                offers += state["offers"]
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(api.pid) - cpu_started
        with contextlib.closing(sqlite3.connect(db)) as conn:
            (products,) = conn.execute("SELECT count(*) FROM products").fetchone()
        return elapsed, cpu, offers, int(products)
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)


def run_ingest(size: int, rounds: int) -> list[Row]:
    """Matching's share of the service's ingest: alternating rounds without and with it, medians compared."""
    ports = [free_port() for _ in range(3)]
    stores = subprocess.Popen(demo_stores_command(size, ports))
    workdir = Path(tempfile.mkdtemp(prefix="catalog-bench-matching-"))
    times: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    counts: dict[bool, tuple[int, int]] = {}
    try:
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/_sim/stats", timeout_s=120)
        for _ in range(rounds):
            for matching in (False, True):
                elapsed, cpu, offers, products = ingest_once(matching, ports, workdir)
                times[matching].append(elapsed)
                cpus[matching].append(cpu)
                counts[matching] = (offers, products)
    finally:
        stores.send_signal(signal.SIGTERM)
        stores.wait(timeout=30)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    cpu_off, cpu_on = statistics.median(cpus[False]), statistics.median(cpus[True])
    offers = counts[True][0]
    ratio, cpu_ratio = on / off, cpu_on / cpu_off
    return [
        Row(
            f"ingest of the 3 demo stores at {size:,} positions ({offers:,} offers), matching off",
            f"{off:.2f} s ({offers / off:,.0f} offers/s), {cpu_off:.2f} s CPU, {counts[False][1]:,} products",
            "",
            None,
        ),
        Row(
            "  matching on",
            f"{on:.2f} s ({offers / on:,.0f} offers/s), {cpu_on:.2f} s CPU, {counts[True][1]:,} products",
            "",
            None,
        ),
        Row(f"  ratio on/off (medians of {rounds} alternating rounds)", f"{ratio:.2f}", "<= 1.30", ratio <= 1.30),
        Row("  the same in the API process' CPU time (load-independent)", f"{cpu_ratio:.2f}", "<= 1.30", None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="folder of the benchmark files")
    parser.add_argument("--ingest", action="store_true", help="also the service's ingest with and without matching")
    parser.add_argument("--size", type=int, default=2_000, help="ingest: catalog positions per demo store")
    parser.add_argument("--rounds", type=int, default=3, help="ingest: alternating rounds")
    args = parser.parse_args()
    print("\n## Matching (issue 10)")
    rows = run(args.data or default_dir())
    if args.ingest:
        rows += run_ingest(args.size, args.rounds)
    print_table(rows)


if __name__ == "__main__":
    main()
