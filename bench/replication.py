"""`python -m bench.replication`: the SQLite -> PostgreSQL push, as a table.

What it measures, against the real PostgreSQL (DATABASE_URL, default 127.0.0.1:5432/test, a throwaway schema):
1. Push throughput: an outbox of N captured changes (real offer and product images) pushed by the real pusher
   (COPY into staging, coalesce, upsert, price history, watermark), in changes/s; baseline: a plain COPY of the same
   rows into an UNLOGGED table (the floor under any COPY-based push).
2. Lag at a steady write rate: another process commits single-offer updates to the SQLite file at R writes/s while
   the pusher runs with its default poll interval; lag = PostgreSQL commit time - capture time, per change.
3. Capture overhead: the same store upserts into two identical SQLite files, one with the capture triggers; per
   offer time with / without (batches of 500 and single-offer transactions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql

from app.domain.models import Availability, Offer, Vendor, VendorKind
from app.replication.capture import SqliteOutbox
from app.replication.postgres.replica import PostgresReplica
from app.replication.pusher import Pusher
from app.replication.schema import Change
from app.store.sqlite.catalog import SqliteCatalog
from bench.table import Row, passed, print_table

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent


def make_offers(n: int, *, price: str = "10.00", start: int = 0) -> list[Offer]:
    return [
        Offer(
            vendor_id="v1",
            vendor_product_id=str(i),
            title=f"Widget model {i % 5000} deluxe",
            brand=f"Brand {i % 97}",
            category="Tools",
            description="A sturdy widget for everyday use. " * 8,
            price=Decimal(price) + Decimal(i % 1000) / 100,
            currency="EUR",
            availability=Availability.IN_STOCK if i % 4 else Availability.OUT_OF_STOCK,
            stock=i % 50,
            images=(f"https://img.example/{i}.jpg",),
            url=f"https://shop.example/p/{i}",
        )
        for i in range(start, start + n)
    ]


def seeded(path: Path, offers: int, *, triggers: bool) -> None:
    async def run() -> None:
        store = SqliteCatalog(path, page_cache_size=0)
        store.open()
        try:
            await store.add_vendor(Vendor("v1", "V1", VendorKind.DUMMYJSON, "http://x", "EUR"))
            for start in range(0, offers, 5000):
                await store.upsert_offers(make_offers(min(5000, offers - start), start=start))
        finally:
            store.close()

    asyncio.run(run())
    if triggers:
        box = SqliteOutbox(path)
        box.open()
        box.install_capture()
        box.write("DELETE FROM repl_outbox")
        box.close()


def pusher(path: Path, url: str, schema: str, *, batch: int, poll_s: float = 0.2) -> Pusher:
    box = SqliteOutbox(path)
    box.open()
    return Pusher(box, PostgresReplica(url, schema=schema, node_id="bench"), batch_size=batch, poll_s=poll_s)


# -- 1. throughput ----------------------------------------------------------------------------------------------


def throughput(workdir: Path, url: str, schema: str, changes: int) -> list[Row]:
    db = workdir / "push.db"
    offers = max(1000, changes // 4)
    seeded(db, offers, triggers=False)
    # Queue ~`changes` changes: the first install's reload of every row (offers, products), then price updates.
    p = pusher(db, url, schema, batch=5000)
    p.prepare()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        round_ = 0
        while conn.execute("SELECT count(*) FROM repl_outbox").fetchone()[0] < changes:
            round_ += 1
            conn.execute("UPDATE offers SET price = CAST(CAST(price AS REAL) + ? AS TEXT)", (round_ / 100,))
            conn.commit()
        queued = conn.execute("SELECT count(*) FROM repl_outbox").fetchone()[0]
    rows = p.outbox.read(0, queued)
    started = time.perf_counter()
    pushed = 0
    while n := p.step():
        pushed += n
    push_s = time.perf_counter() - started
    p.close()
    p.replica.close()
    p.outbox.close()

    base_s = copy_baseline(url, schema, rows)
    rate, base_rate = pushed / push_s, len(rows) / base_s
    return [
        Row(f"push {pushed:,} changes (batches of 5,000)", f"{rate:,.0f} changes/s", ">= 50,000/s", rate >= 50_000),
        Row(
            "  baseline: plain COPY of the same rows, UNLOGGED",
            f"{base_rate:,.0f} rows/s (push / baseline {rate / base_rate:.2f})",
            "",
            None,
        ),
    ]


def copy_baseline(url: str, schema: str, rows: Sequence[Change]) -> float:
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(
            "CREATE UNLOGGED TABLE copy_baseline "
            "(seq bigint, tbl text, pk text, op text, at double precision, row jsonb)"
        )
        conn.commit()
        started = time.perf_counter()
        for part in range(0, len(rows), 5000):
            with conn.cursor() as cur, cur.copy("COPY copy_baseline FROM STDIN") as copy:
                for c in rows[part : part + 5000]:
                    copy.write_row((c.seq, c.tbl, c.pk, c.op, c.at, c.row))
            conn.commit()
        return time.perf_counter() - started


# -- 2. lag at a steady write rate ------------------------------------------------------------------------------

_WRITER = """
import sqlite3, sys, time
path, rate, seconds, offers = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
conn = sqlite3.connect(path, isolation_level=None, timeout=30)
interval, start, i = 1.0 / rate, time.perf_counter(), 0
while (now := time.perf_counter()) - start < seconds:
    due = start + i * interval
    if due > now:
        time.sleep(due - now)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE offers SET price = ? WHERE vendor_id = 'v1' AND vendor_product_id = ?",
                 (f"{20 + (i % 997) / 100:.2f}", str(i % offers)))
    conn.execute("COMMIT")
    i += 1
print(i / (time.perf_counter() - start))
"""


def lag(workdir: Path, url: str, schema: str, rate: int, seconds: float, poll_s: float) -> list[Row]:
    db = workdir / "lag.db"
    seeded(db, 5000, triggers=True)
    lags: list[float] = []
    p = pusher(db, url, schema, batch=5000, poll_s=poll_s)
    p.on_batch = lambda changes, committed: lags.extend(committed - c.at for c in changes)
    thread = threading.Thread(target=p.run, daemon=True)
    thread.start()
    while not p.counters.schema_ok:
        time.sleep(0.05)
    writer = subprocess.run(
        [sys.executable, "-c", _WRITER, str(db), str(rate), str(seconds), "5000"],
        capture_output=True,
        text=True,
        check=True,
    )
    deadline = time.monotonic() + 10
    while p.outbox.read(p.watermark, 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    p.stop()
    thread.join(timeout=10)
    p.outbox.close()
    achieved = float(writer.stdout.strip())
    q = statistics.quantiles(lags, n=100)
    p50, p99 = q[49], q[98]
    target = poll_s + 0.05
    return [
        Row(
            f"lag at {achieved:,.0f} writes/s, poll {poll_s * 1000:.0f} ms ({len(lags):,} changes)",
            f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms",
            f"p99 <= {target * 1000:.0f} ms",
            p99 <= target,
        )
    ]


# -- 3. capture overhead ----------------------------------------------------------------------------------------


def capture_overhead(workdir: Path, offers: int, rounds: int) -> list[Row]:
    plain, captured = workdir / "plain.db", workdir / "captured.db"
    seeded(plain, offers, triggers=False)
    shutil.copy(plain, captured)
    box = SqliteOutbox(captured)
    box.open()
    box.install_capture()
    box.write("DELETE FROM repl_outbox")
    box.close()

    def timed(path: Path, batch: int, writes: int) -> float:
        async def run() -> float:
            store = SqliteCatalog(path, page_cache_size=0)
            store.open()
            try:
                total = 0.0
                for r in range(rounds):
                    price = f"{20 + r}.00"
                    for start in range(0, writes, batch):
                        chunk = make_offers(batch, price=price, start=start)
                        t = time.perf_counter()
                        await store.upsert_offers(chunk)
                        total += time.perf_counter() - t
                return total / (rounds * writes)
            finally:
                store.close()

        return asyncio.run(run())

    rows = []
    for label, batch, writes in (("batches of 500", 500, offers), ("one offer per transaction", 1, 500)):
        # alternate so machine noise hits both alike
        with_t = min(timed(captured, batch, writes) for _ in range(2))
        without = min(timed(plain, batch, writes) for _ in range(2))
        rows.append(
            Row(
                f"capture overhead, upserts in {label}",
                f"{with_t * 1e6:,.0f} us vs {without * 1e6:,.0f} us per offer (with / without {with_t / without:.2f})",
                "",
                None,
            )
        )
    return rows


# -- the table --------------------------------------------------------------------------------------------------


def run_replication(
    *, url: str | None = None, changes: int = 100_000, rate: int = 1000, seconds: float = 5.0, poll_s: float = 0.2
) -> list[Row]:
    """Everything above; the lead's `python -m bench` can call this and print the rows with its own."""
    url = url or os.environ.get("DATABASE_URL") or DEFAULT_URL
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-repl-"))
    rows: list[Row] = []
    try:
        rows += throughput(workdir, url, schema, changes)
        rows += lag(workdir, url, schema + "_lag", rate, seconds, poll_s)
        rows += capture_overhead(workdir, 5000, 2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with psycopg.connect(url, autocommit=True) as conn:
            for name in (schema, schema + "_lag"):
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="PostgreSQL (default: DATABASE_URL, else 127.0.0.1:5432/test)")
    parser.add_argument("--changes", type=int, default=100_000, help="changes pushed in the throughput run")
    parser.add_argument("--rate", type=int, default=1000, help="writes/s in the lag run")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the lag run")
    parser.add_argument("--poll-ms", type=float, default=200, help="the pusher's poll interval in the lag run")
    args = parser.parse_args()
    rows = run_replication(
        url=args.url, changes=args.changes, rate=args.rate, seconds=args.seconds, poll_s=args.poll_ms / 1000
    )
    print_table(rows)
    return 0 if passed(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
