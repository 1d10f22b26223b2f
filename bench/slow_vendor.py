"""`python -m bench.slow_vendor`: a shopper's miss for one vendor while another vendor answers in 9 s, in both
runtimes, in the same run (issue 12).

Real processes over loopback, as in ``bench.lanes`` (whose start-up this reuses): one simulator process serving two
DummyJSON vendors of ``--size`` products, ``x`` (answers at once) and ``s``, and an API node (embedded; or kafka: a
Tansu broker, the Flink job, the node). Both vendors are registered with their first sync failed on purpose, so
every product is a miss. Then ``s``'s simulator is told to answer every call in 9 s. Per runtime:
1. idle: ``--samples`` misses for ``x`` at ``--rate``/s, each paired with ``x``'s own answer time for the item;
2. slow vendor: the same while ``--slow-clients`` shoppers each ask ``s`` for a product not stored (``wait_ms``
   10 s, asking again on a 202 until answered, then the next product), so that many of ``s``'s misses are pending at
   all times: more than ``s``'s vendor concurrency (``CATALOG_VENDOR_CONCURRENCY``, 4), the embedded interactive
   lane's per-vendor quota (4 of 8 workers) and the Flink job's vendor calls in flight per worker (16). The ``x``
   misses start once ``s``'s simulator has its calls in progress.
Reported: ``x``'s p50/p95 in both phases, the ratio of the p50s (the target: about 1, its usual p50), how ``x``'s
misses were answered, and what ``s`` did meanwhile (its pending misses, the calls its simulator received and the
misses answered in the window).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.distributed import _pct
from bench.lanes import Misses, _register_unsynced, _row, _sims_command, _start_table, running
from bench.processes import free_port, wait_http

SLOW_MS = 9000
SLOW_WAIT_MS = 10_000  # the node's wait_ms_max: longer than the slow vendor's answer


class SlowShoppers:
    """``clients`` threads asking ``vendor`` for products not stored, each re-asking on a 202 until it is answered
    (the node shares the request already pending for that product), then taking the next product."""

    def __init__(self, api: str, vendor_id: str, ids: Iterator[int], clients: int) -> None:
        self._api, self._vendor, self._clients = api, vendor_id, clients
        self._ids, self._ids_lock = ids, threading.Lock()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.answered_at: list[float] = []  # perf_counter times of the misses answered (anything but 202)
        self.errors = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _next_id(self) -> str:
        with self._ids_lock:
            return str(next(self._ids))

    def _run(self) -> None:
        with httpx.Client(base_url=self._api, timeout=SLOW_WAIT_MS / 1000 + 20) as api:
            while not self._stop.is_set():
                vpid = self._next_id()
                while not self._stop.is_set():
                    try:
                        got = api.get(f"/vendors/{self._vendor}/products/{vpid}", params={"wait_ms": SLOW_WAIT_MS})
                    except httpx.HTTPError:
                        with self._lock:
                            self.errors += 1
                        self._stop.wait(0.5)
                        continue
                    with self._lock:
                        self.statuses[got.status_code] += 1
                        if got.status_code != 202:
                            self.answered_at.append(time.perf_counter())
                    if got.status_code != 202:
                        break

    def answered_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for t in self.answered_at if start <= t <= end)

    def __enter__(self) -> SlowShoppers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(SLOW_WAIT_MS / 1000 + 30)


def _vendor_calls(sim: str) -> int:
    """Requests the simulator has received so far (its own counter; ``/_sim/*`` is not counted nor slowed)."""
    stats: dict[str, Any] = httpx.get(f"{sim}/_sim/stats", timeout=10).json()
    return int(stats["requests"])


def _paced(misses: Misses, api: httpx.Client, sim: httpx.Client, samples: int, per_s: float) -> None:
    next_at = time.perf_counter()
    for _ in range(samples):
        misses.one(api, sim)
        next_at += 1 / per_s
        time.sleep(max(0.0, next_at - time.perf_counter()))


def run_runtime(runtime: str, size: int, samples: int, rate: float, slow_clients: int, log_dir: Path) -> dict[str, Any]:
    ports = {"x": free_port(), "s": free_port()}
    sims = {v: f"http://127.0.0.1:{p}" for v, p in ports.items()}
    with running(runtime, _sims_command(size, ports), log_dir) as node:
        for sim in sims.values():
            wait_http(f"{sim}/products?limit=1", timeout_s=300)
        with httpx.Client(base_url=node, timeout=30) as api:
            _register_unsynced(api, sims["x"], "x", ports["x"])
            _register_unsynced(api, sims["s"], "s", ports["s"])  # registered at full speed: the sync fails at once
        httpx.patch(f"{sims['s']}/_sim/config", json={"latency_ms": SLOW_MS}).raise_for_status()
        x_ids = iter(range(size, 0, -1))
        idle = Misses(node, sims["x"], "x", x_ids, rate)
        loaded = Misses(node, sims["x"], "x", x_ids, rate)
        with httpx.Client(base_url=node, timeout=30) as api, httpx.Client(base_url=sims["x"], timeout=30) as x_sim:
            for _ in range(3):  # warm-up (kafka: the job's first calls), not counted
                idle.one(api, x_sim)
            idle.totals.clear()
            idle.beyond.clear()
            idle.statuses.clear()
            _paced(idle, api, x_sim, samples, rate)

            calls_before = _vendor_calls(sims["s"])
            with SlowShoppers(node, "s", itertools.count(1), slow_clients) as slow:
                # x's misses start once s's simulator holds calls: s's first misses are in flight, the rest wait
                deadline = time.monotonic() + 60
                while _vendor_calls(sims["s"]) - calls_before < min(slow_clients, 4):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the slow vendor's misses never reached its simulator")
                    time.sleep(0.05)
                time.sleep(1.0)  # and every shopper's miss has been published
                start, calls_start = time.perf_counter(), _vendor_calls(sims["s"])
                _paced(loaded, api, x_sim, samples, rate)
                end, calls_end = time.perf_counter(), _vendor_calls(sims["s"])
                s_answered = slow.answered_between(start, end)
            s_statuses = dict(sorted(slow.statuses.items()))
            s_errors = slow.errors
    return {"idle": idle, "loaded": loaded, "window_s": end - start, "s_calls": calls_end - calls_start,
            "s_answered": s_answered, "s_statuses": s_statuses, "s_errors": s_errors}  # fmt: skip


def _p50_p95(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.1f} / p95 {_pct(values, 0.95) * 1000:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=2000, help="products of each simulated vendor")
    parser.add_argument("--samples", type=int, default=100, help="timed misses for x per phase")
    parser.add_argument("--rate", type=float, default=5.0, help="misses for x per second, at most")
    parser.add_argument("--slow-clients", type=int, default=24, help="misses for the slow vendor pending at once")
    parser.add_argument("--runtime", choices=["embedded", "kafka", "both"], default="both")
    args = parser.parse_args(argv)
    log_dir, runtimes = _start_table("bench-slow-vendor-", args.runtime)
    for runtime in runtimes:
        r = run_runtime(runtime, args.size, args.samples, args.rate, args.slow_clients, log_dir)
        idle: Misses = r["idle"]
        loaded: Misses = r["loaded"]
        ratio = statistics.median(loaded.totals) / statistics.median(idle.totals)
        beyond = f"beyond vendor p50 {statistics.median(idle.beyond) * 1000:.1f} ms"
        _row(f"{runtime}: miss for x, idle (n={len(idle.totals)})", _p50_p95(idle.totals), beyond)
        _row(f"{runtime}:   answers", str(dict(sorted(idle.statuses.items()))), "")
        beyond = f"beyond vendor p50 {statistics.median(loaded.beyond) * 1000:.1f} ms"
        _row(f"{runtime}: miss for x, s answering in 9 s (n={len(loaded.totals)})", _p50_p95(loaded.totals), beyond)
        _row(f"{runtime}:   answers", str(dict(sorted(loaded.statuses.items()))), "")
        _row(f"{runtime}:   p50 with s slow / idle", f"{ratio:.2f}x", "target: ~1 (x's usual p50)")
        _row(
            f"{runtime}:   s meanwhile ({r['window_s']:.0f} s window)",
            f"{args.slow_clients} pending, {r['s_answered']} answered",
            f"{r['s_calls']} calls reached s's simulator",
        )
        errors = f", {r['s_errors']} client errors" if r["s_errors"] else ""
        _row(f"{runtime}:   s answers, whole phase", str(r["s_statuses"]), f"202 = asked again{errors}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
