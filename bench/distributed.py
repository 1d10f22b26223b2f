"""`python -m bench.distributed`: the distributed runtime's speed, through a real broker and a real Flink job.

Everything runs as its own process over loopback: a Tansu broker, a DummyJSON simulator, the Flink job on a local
MiniCluster (parallelism 1, the job's default settings). This process plays the API node: it publishes requests and
reads ``product_updates``.

1. Miss latency beyond the vendor's own: for each sample, the vendor's own answer time for a product
   (``GET /products/{id}`` straight at the simulator) and the time from publishing a product request for it to its
   update arriving, paired; reported as p50/p95 of the difference (the target is p50 <= 100 ms).
2. Catalog sync throughput: offers per second from publishing one catalog request to its SYNC_FINISHED, against a
   baseline measured in the same run: the same source walking the same pages in this process (fetch + map, no
   Kafka, no Flink), as a ratio. The target is >= 5,000 offers/s.
3. Until the node's SQLite holds them: offers per second, and the node's CPU time (all its threads) against the
   same updates applied straight to a store in this process, with the node's batches and write transactions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from app.bootstrap import make_source_factory
from app.distributed.kafka.broker import TansuBroker
from app.domain.models import Vendor, VendorKind
from app.domain.requests import FetchRequest, RequestKind
from app.domain.wire import request_to_dict, vendor_to_dict
from app.ingest.fetch import fetch_catalog_page
from app.secrets import Secrets
from app.settings import Settings
from bench.processes import by_thread, cpu_seconds, free_port, simulator_command, thread_cpu, wait_http

ROOT = Path(__file__).resolve().parent.parent
TOPICS = {
    "kafka_topic_vendor_requests": "vendor_requests",
    "kafka_topic_product_requests": "product_requests",
    "kafka_topic_updates": "product_updates",
    "kafka_topic_interactive_updates": "product_interactive",
    "kafka_topic_vendors": "catalog_vendors",
    "kafka_topic_dead_letters": "catalog_dead_letters",
}


@dataclass
class Row:
    name: str
    value: str
    baseline: str = ""
    ratio: str = ""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def _process(args: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> Iterator[int]:
    """A child in its own process group (the Flink job's JVM and Python workers go with it)."""
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc.pid
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if log and not isinstance(out, int):
            out.close()


class Updates:
    """Reads ``product_updates`` from the beginning of every partition (no group join, no reliance on "latest")."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}", "fetch.wait.max.ms": 5}
        )
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])

    def until(self, request_id: str, kind: str, timeout_s: float = 120.0) -> tuple[float, list[dict[str, Any]]]:
        """Waits for the update of ``request_id`` with type ``kind``; returns its arrival time and all updates of
        that request read meanwhile."""
        mine: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        needle = request_id.encode()
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.05)
            if msg is None or msg.error() is not None:
                continue
            raw = msg.value()
            if not raw or needle not in raw:
                continue
            value = orjson.loads(raw)
            if value.get("request_id") != request_id:
                continue
            mine.append(value)
            if value.get("type") == kind:
                return time.perf_counter(), mine
        raise RuntimeError(f"no {kind} update for {request_id} within {timeout_s} s")

    def close(self) -> None:
        self.consumer.close()


def _wait_vendor(api: httpx.Client, vendor_id: str, timeout_s: float = 60.0) -> None:
    """The node learns vendors from ``catalog_vendors``; misses before that would be 404s."""
    deadline = time.monotonic() + timeout_s
    while api.get(f"/vendors/{vendor_id}").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the node did not learn vendor {vendor_id} within {timeout_s} s")
        time.sleep(0.05)


def _wait_landed(db_path: Path, vendor_id: str, size: int, timeout_s: float = 600.0) -> float:
    """When the node's SQLite holds the whole catalog and the sync is recorded as done, read from the file itself
    (read-only, beside the node's writer: WAL). Asking the node's API instead costs the node what is measured: its
    vendor status counts offers and products on its event loop; polled every 20 ms, those requests had half as many
    of the node's py-spy samples as its SQLite writer, and every 0.2 s (two pollers) still 14% of them."""
    deadline = time.monotonic() + timeout_s
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT state FROM vendor_sync WHERE vendor_id = ?", (vendor_id,)).fetchone()
            if row is not None and row[0] == "ok":
                (offers,) = conn.execute("SELECT count(*) FROM offers WHERE vendor_id = ?", (vendor_id,)).fetchone()
                if offers >= size:
                    return time.perf_counter()
            time.sleep(0.02)
    raise RuntimeError(f"the node did not store {size} offers of {vendor_id} within {timeout_s} s")


def _counters(api: httpx.Client, *names: str) -> dict[str, float]:
    """Sums of these ``/metrics`` counters over their labels."""
    out = dict.fromkeys(names, 0.0)
    for line in api.get("/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        name = name.split("{", 1)[0]
        if name in out:
            out[name] += float(value.split()[0])
    return out


NODE_COUNTERS = (
    "catalog_changelog_messages_total",
    "catalog_changelog_batches_total",
    "catalog_writer_transactions_total",
)


def _store_floor(messages: list[dict[str, Any]], path: Path, vendor: Vendor) -> tuple[float, int]:
    """The sync's own updates (decoded beforehand, untimed) applied to a fresh store built as a node builds it, in one
    ``apply`` call in this process, after the job stopped (no Kafka, no HTTP beside it): the CPU the store's writes
    themselves take, the search index caught up included. Returns (CPU seconds, offers)."""
    from app.bootstrap import build_container
    from app.distributed.changelog_applier import ChangelogApplier
    from app.domain.changes import FeedPosition
    from app.domain.lanes import Lane, in_lane
    from app.domain.wire import parse_update
    from app.ingest.tracker import RequestTracker

    async def run() -> tuple[float, int]:
        store = build_container(Settings(db_path=path, env="development")).store
        store.open()
        try:
            await store.add_vendor(vendor)
            updates = [parse_update(m) for m in messages]
            positions = [FeedPosition("u0", i + 1, 0.0) for i in range(len(updates))]
            applier = ChangelogApplier(store, RequestTracker())
            started = time.process_time()
            with in_lane(Lane.BULK):  # as the node's bulk consumer applies
                await applier.apply(updates, positions)
            await store.catch_up_search()
            return time.process_time() - started, applier.offers_applied
        finally:
            store.close()

    return asyncio.run(run())


def _baseline_offers_per_s(vendor: Vendor, settings: Settings) -> tuple[int, float]:
    """The same source over the same pages, in this process: fetch + map and nothing else."""

    async def walk() -> tuple[int, float]:
        source = make_source_factory(settings)(vendor)
        started = time.perf_counter()
        cursor: str | None = None
        items = 0
        try:
            while True:
                outcome = await fetch_catalog_page(source, cursor)
                items += len(outcome.page.offers)
                cursor = outcome.page.next_cursor
                if cursor is None:
                    break
        finally:
            await source.aclose()
        return items, time.perf_counter() - started

    return asyncio.run(walk())


def run_distributed(size: int = 30_000, samples: int = 40, *, log_dir: Path | None = None) -> list[Row]:
    """Starts broker, simulator and job, measures, stops them; returns the table rows."""
    from app.distributed.flink.jars import install

    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    settings = Settings(flink_jars_dir=ROOT / "var" / "flink-jars", outbound_allow_private=["127.0.0.0/8"])
    install(settings.flink_jars_dir)
    broker = TansuBroker(free_port())
    broker.start()
    sim_port = free_port()
    base_url = f"http://127.0.0.1:{sim_port}"
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
        env.update(
            {
                "CATALOG_KAFKA_BOOTSTRAP": broker.bootstrap,
                "CATALOG_FLINK_JARS_DIR": str(settings.flink_jars_dir),
                "CATALOG_KAFKA_PARTITIONS": "1",
                # the bench's simulators listen on loopback, with the public development keys
                "CATALOG_ENV": "development",
                "CATALOG_OUTBOUND_ALLOW_PRIVATE": "127.0.0.0/8",
            }
        )
        api_port = free_port()
        node_env = {
            **env,
            "CATALOG_RUNTIME": "kafka",
            "CATALOG_NODE_ID": "bench-node",
            "CATALOG_DB_PATH": str(log_dir / "node.db"),
            "CATALOG_ADMIN_KEY": "bench-admin-key",
            "CATALOG_SCHEDULER_ENABLED": "false",
            "CATALOG_LOG_LEVEL": "warning",
            "CATALOG_RATE_LIMIT_MISSES_PER_MIN": "0",  # one client times many misses on purpose
        }
        api_cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(api_port), "--log-level", "warning"]
        with (
            _process(simulator_command(size, sim_port), log=log_dir / "simulator.log"),
            _process(
                [sys.executable, "-m", "app.distributed.flink.job", "--checkpoints", str(log_dir / "checkpoints")],
                env={**env, "FLINK_LOG_DIR": str(log_dir / "flink")},
                log=log_dir / "job.log",
            ),
            _process([*api_cmd, "--no-access-log"], env=node_env, log=log_dir / "node.log") as node_pid,
        ):
            wait_http(f"{base_url}/products?limit=1")
            vendor = Vendor(id="bench", name="bench", kind=VendorKind.DUMMYJSON, base_url=base_url, currency="USD")
            producers = [Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})]

            def publish(topic: str, key: str, value: dict[str, Any]) -> None:
                producers[0].produce(topic, key=key, value=orjson.dumps(value))
                producers[0].flush(10)

            _wait_topic(broker.bootstrap, TOPICS["kafka_topic_updates"])
            sealed = vendor_to_dict(vendor, secrets=Secrets.development_only())  # the node's development key
            publish(TOPICS["kafka_topic_vendors"], vendor.id, sealed)
            updates = Updates(broker.bootstrap, TOPICS["kafka_topic_updates"])
            # product outcomes have a topic of their own (the interactive lane)
            outcomes = Updates(broker.bootstrap, TOPICS["kafka_topic_interactive_updates"])
            try:
                started = time.perf_counter()
                warm = FetchRequest(RequestKind.PRODUCT, vendor.id, vendor_product_id="1")
                publish(TOPICS["kafka_topic_product_requests"], vendor.id, request_to_dict(warm))
                outcomes.until(warm.id, "product", timeout_s=180)
                ready_s = time.perf_counter() - started

                overheads, totals, directs = [], [], []
                with httpx.Client(base_url=base_url, timeout=10) as http:
                    for i in range(samples):
                        vpid = str(2 + i)
                        t0 = time.perf_counter()
                        http.get(f"/products/{vpid}").raise_for_status()
                        direct = time.perf_counter() - t0
                        request = FetchRequest(RequestKind.PRODUCT, vendor.id, vendor_product_id=vpid)
                        t0 = time.perf_counter()
                        publish(TOPICS["kafka_topic_product_requests"], vendor.id, request_to_dict(request))
                        arrived, _ = outcomes.until(request.id, "product")
                        total = arrived - t0
                        directs.append(direct)
                        totals.append(total)
                        overheads.append(total - direct)

                # The same misses through an API node (runtime=kafka): GET -> product_requests -> Flink ->
                # product_updates -> the node's SQLite -> 200. The node learnt the vendor from catalog_vendors.
                node = f"http://127.0.0.1:{api_port}"
                wait_http(f"{node}/health")
                node_overheads, node_totals = [], []
                with httpx.Client(base_url=node, timeout=30) as api, httpx.Client(base_url=base_url) as http:
                    _wait_vendor(api, vendor.id)
                    for i in range(samples):
                        vpid = str(2 + samples + i)
                        t0 = time.perf_counter()
                        http.get(f"/products/{vpid}").raise_for_status()
                        direct = time.perf_counter() - t0
                        t0 = time.perf_counter()
                        got = api.get(f"/vendors/{vendor.id}/products/{vpid}", params={"wait_ms": 10_000})
                        total = time.perf_counter() - t0
                        if got.status_code != 200:
                            raise RuntimeError(f"miss through the node answered {got.status_code}: {got.text}")
                        node_totals.append(total)
                        node_overheads.append(total - direct)

                    catalog = FetchRequest(RequestKind.CATALOG, vendor.id, full=True)
                    counted = _counters(api, *NODE_COUNTERS)
                    cpu0, threads0 = cpu_seconds(node_pid), thread_cpu(str(api.base_url))
                    t0 = time.perf_counter()
                    publish(TOPICS["kafka_topic_vendor_requests"], vendor.id, request_to_dict(catalog))
                    arrived, mine = updates.until(catalog.id, "sync_finished", timeout_s=600)
                    sync_s = arrived - t0
                    landed_s = _wait_landed(log_dir / "node.db", vendor.id, size) - t0
                    node_cpu_s = cpu_seconds(node_pid) - cpu0
                    node_threads = by_thread(threads0, thread_cpu(str(api.base_url)), size, 1e6)
                    node_counts = {k: v - counted[k] for k, v in _counters(api, *NODE_COUNTERS).items()}
                finished = mine[-1]
                offers = sum(len(m.get("offers", [])) for m in mine if m.get("type") == "page")
            finally:
                updates.close()
                outcomes.close()
                producers.pop().flush(10)  # gone before the broker stops, or librdkafka logs the lost connection
            base_items, base_s = _baseline_offers_per_s(vendor, settings)
        floor_cpu_s, floor_offers = _store_floor(mine, log_dir / "floor.db", vendor)
    finally:
        broker.stop()

    if finished.get("error") is not None or offers != size:
        raise RuntimeError(f"the sync did not read the whole catalog: {offers}/{size} offers, {finished}")
    ms = 1000.0
    batches = max(1.0, node_counts["catalog_changelog_batches_total"])
    transactions = max(1.0, node_counts["catalog_writer_transactions_total"])
    flink_rate = offers / sync_s
    base_rate = base_items / base_s
    return [
        Row("job start to first update", f"{ready_s:.1f} s"),
        Row(
            f"miss overhead p50 (n={samples})",
            f"{statistics.median(overheads) * ms:.1f} ms",
            f"vendor p50 {statistics.median(directs) * ms:.1f} ms",
            f"total p50 {statistics.median(totals) * ms:.1f} ms",
        ),
        Row(
            "miss overhead p95",
            f"{_pct(overheads, 0.95) * ms:.1f} ms",
            f"vendor p95 {_pct(directs, 0.95) * ms:.1f} ms",
            f"total p95 {_pct(totals, 0.95) * ms:.1f} ms",
        ),
        Row(
            f"miss through an API node p50 (n={samples})",
            f"{statistics.median(node_overheads) * ms:.1f} ms",
            "target <= 100 ms beyond the vendor",
            f"total p50 {statistics.median(node_totals) * ms:.1f} ms",
        ),
        Row(
            "miss through an API node p95",
            f"{_pct(node_overheads, 0.95) * ms:.1f} ms",
            "",
            f"total p95 {_pct(node_totals, 0.95) * ms:.1f} ms",
        ),
        Row(
            f"catalog sync, {offers} offers",
            f"{flink_rate:,.0f} offers/s ({sync_s:.2f} s)",
            f"{base_rate:,.0f} offers/s in-process",
            f"{flink_rate / base_rate:.2f}x",
        ),
        Row(
            f"  landed in the node's SQLite ({size} offers)",
            f"{size / landed_s:,.0f} offers/s ({landed_s:.2f} s)",
            "target >= 5,000 offers/s",
            f"{size / landed_s / base_rate:.2f}x",
        ),
        Row(
            "  node CPU, publish to landed",
            f"{size / node_cpu_s:,.0f} offers/cpu-s ({node_cpu_s:.1f} s)",
            f"store alone {floor_offers / floor_cpu_s:,.0f} offers/cpu-s ({floor_cpu_s:.1f} s)",
            f"{floor_cpu_s / node_cpu_s:.2f}x",
        ),
        Row("  node CPU by thread, µs per offer", node_threads, ""),
        Row(
            "  node batches, write transactions",
            f"{batches:.0f} batches of {node_counts['catalog_changelog_messages_total'] / batches:.1f} msgs",
            f"{transactions:.0f} write transactions",
            f"{size / transactions:.0f} offers/txn",
        ),
        Row("  load average (1 min) at the end", f"{os.getloadavg()[0]:.1f}"),
    ]


def _wait_topic(bootstrap: str, topic: str, timeout_s: float = 120.0) -> None:
    """The job creates its topics when it starts; the reader needs them to exist."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-meta"})
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            meta = consumer.list_topics(timeout=5).topics.get(topic)
            if meta is not None and meta.error is None and meta.partitions:
                return
            time.sleep(0.2)
    finally:
        consumer.close()
    raise RuntimeError(f"topic {topic} was not created within {timeout_s} s (is the job starting?)")


def print_table(rows: list[Row]) -> None:
    widths = [
        max(len(getattr(r, f)) for r in [Row("measure", "value", "baseline", "ratio / total"), *rows])
        for f in ("name", "value", "baseline", "ratio")
    ]
    header = Row("measure", "value", "baseline", "ratio / total")
    for row in [header, *rows]:
        cells = (row.name, row.value, row.baseline, row.ratio)
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=30_000, help="Products of the simulated vendor.")
    parser.add_argument("--samples", type=int, default=40, help="Product requests timed for the miss latency.")
    args = parser.parse_args(argv)
    print_table(run_distributed(args.size, args.samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
