"""`python -m bench.lanes`: a shopper's miss while catalog syncs run, in both runtimes, in the same run (issue 15).

Real processes over loopback: the simulators (one process, four DummyJSON vendors of ``--size`` products each), the
API (embedded; or a kafka node with a Tansu broker and the Flink job). Per runtime:
1. idle: ``--samples`` misses, one after the other, for vendor ``c`` (registered, its first sync failed on purpose,
   so none of its items is stored);
2. sync alone: vendor ``b``'s full sync, nothing else: the throughput baseline;
3. same vendor: vendor ``a``'s full sync with misses for ``a``'s items at 20/s, taken from the end of its catalog
   (not reached by the sync yet);
4. other vendor: vendor ``d``'s full sync with misses for ``c``'s items at 20/s.
Miss latency is reported as p50/p95 of the whole answer (200 expected) and beyond the vendor's own answer time
(the same product fetched straight from the simulator just before); the sync's throughput with misses as a ratio to
the sync alone. The API process's CPU (``/proc``) says where the loss goes: per idle miss, and per synced offer
alone and with misses (also with the misses taken out at their idle cost: what the sync itself paid more, mostly
commits, see ``python -m bench.write_path --commit-every``), and its RSS after the sync alone and at the end.
The four simulators serve the same catalog (the clones' barcodes do not depend on the seed), so each synced vendor
is deleted before the next sync: every sync is a first sync into the same (empty) store, and the loss is the
misses' alone, not the unification with a catalog stored before (the baseline was unfair so until 2026-12-01).
Targets: p95 <= 50 ms (embedded), <= 150 ms (kafka) while syncing; throughput loss <= 15%.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.distributed import ROOT, TOPICS, _pct, _process
from bench.processes import by_thread, cpu_seconds, free_port, rss_mb, thread_cpu, wait_http

ADMIN = {"X-API-Key": "bench-admin-key-0123456789abcdef"}
VENDORS = ("a", "b", "c", "d")


def _sims_command(size: int, ports: dict[str, int]) -> list[str]:
    """One process serving a DummyJSON simulator of ``size`` products on each port (vendor id -> port)."""
    configs = ", ".join(f"(SimConfig(kind='dummyjson', size={size}, seed=1), {port})" for port in ports.values())
    code = (
        "from simulators.config import SimConfig; from simulators.server import run_simulators; "
        f"run_simulators([{configs}])"
    )
    return [sys.executable, "-c", code]


class Misses:
    """Misses at a steady rate from a thread, until stopped; each paired with the vendor's own time for the item."""

    def __init__(self, api: str, sim: str, vendor_id: str, ids: Iterator[int], per_s: float) -> None:
        self._api, self._sim, self._vendor, self._ids, self._per_s = api, sim, vendor_id, ids, per_s
        self.totals: list[float] = []
        self.beyond: list[float] = []
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def one(self, api: httpx.Client, sim: httpx.Client) -> None:
        vpid = str(next(self._ids))
        t0 = time.perf_counter()
        sim.get(f"/products/{vpid}").raise_for_status()
        direct = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = api.get(f"/vendors/{self._vendor}/products/{vpid}", params={"wait_ms": 5000})
        total = time.perf_counter() - t0
        self.statuses[got.status_code] = self.statuses.get(got.status_code, 0) + 1
        self.totals.append(total)
        self.beyond.append(total - direct)

    def _run(self) -> None:
        with httpx.Client(base_url=self._api, timeout=30) as api, httpx.Client(base_url=self._sim, timeout=30) as sim:
            next_at = time.perf_counter()
            while not self._stop.is_set():
                self.one(api, sim)
                next_at += 1 / self._per_s
                self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def __enter__(self) -> Misses:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def _state(api: httpx.Client, vendor_id: str) -> dict[str, Any]:
    response = api.get(f"/vendors/{vendor_id}")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def _wait(api: httpx.Client, vendor_id: str, done: Any, timeout_s: float = 900.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done(_state(api, vendor_id)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"vendor {vendor_id} did not get there within {timeout_s} s")
        time.sleep(0.05)


def _sync(api: httpx.Client, vendor_id: str, size: int, *, register: dict[str, Any] | None) -> float:
    """A full sync of ``vendor_id`` (registering it, or asking again); returns offers/s until it is recorded."""
    oks = _state(api, vendor_id)["sync"]["syncs_ok"] if register is None else 0
    t0 = time.perf_counter()
    if register is not None:
        api.post("/vendors", json=register, headers=ADMIN).raise_for_status()
    else:
        api.post(f"/vendors/{vendor_id}/sync", params={"full": True}, headers=ADMIN).raise_for_status()
    _wait(api, vendor_id, lambda s: s["sync"]["syncs_ok"] > oks and s["offers"] >= size)
    return size / (time.perf_counter() - t0)


def _delete(api: httpx.Client, vendor_id: str) -> None:
    """The vendor and its offers gone (the next sync lands in the store as it was before this one)."""
    api.delete(f"/vendors/{vendor_id}", headers=ADMIN, timeout=600).raise_for_status()


def _body(vendor_id: str, port: int) -> dict[str, Any]:
    return {"id": vendor_id, "name": vendor_id, "kind": "dummyjson", "base_url": f"http://127.0.0.1:{port}",
            "currency": "USD"}  # fmt: skip


def _register_unsynced(api: httpx.Client, sim: str, vendor_id: str, port: int) -> None:
    """Registered with its first sync failed on purpose (the simulator fails every call meanwhile): a vendor the
    service knows and holds none of, so every product of it is a miss."""
    httpx.patch(f"{sim}/_sim/config", json={"error_rate": 1.0, "failure_modes": ["500"]}).raise_for_status()
    api.post("/vendors", json=_body(vendor_id, port), headers=ADMIN).raise_for_status()
    _wait(api, vendor_id, lambda s: s["sync"]["state"] == "failed", timeout_s=120)
    httpx.patch(f"{sim}/_sim/config", json={"error_rate": 0.0}).raise_for_status()


@contextlib.contextmanager
def running(
    runtime: str,
    sims_command: list[str],
    log_dir: Path,
    settings: dict[str, str] | None = None,
    pids: dict[str, int] | None = None,
) -> Iterator[str]:
    """The simulators (``sims_command``, their own process) and an API node of ``runtime`` over loopback, with what
    it needs (kafka: a Tansu broker and the Flink job, each its own process); yields the node's URL once it answers.
    The caller waits for its simulators itself. ``settings``: more of the node's environment (``--env``); ``pids``
    gets the node's process id (``"api"``)."""
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
    env.update(
        {
            "CATALOG_ENV": "development",
            "CATALOG_OUTBOUND_ALLOW_PRIVATE": "127.0.0.0/8",
            "CATALOG_VENDOR_MAX_ATTEMPTS": "1",
            "CATALOG_PAGE_ATTEMPTS": "1",
            "CATALOG_BREAKER_FAILURES": "100",
        }
    )
    node_env = {
        **env,
        "CATALOG_RUNTIME": runtime,
        "CATALOG_NODE_ID": f"lanes-{runtime}",
        "CATALOG_DB_PATH": str(log_dir / f"{runtime}.db"),
        "CATALOG_ADMIN_KEY": ADMIN["X-API-Key"],
        "CATALOG_SCHEDULER_ENABLED": "false",
        "CATALOG_RATE_LIMIT_MISSES_PER_MIN": "0",
        "CATALOG_LOG_LEVEL": "warning",
        **(settings or {}),
    }
    api_cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(api_port), "--log-level", "warning"]
    with contextlib.ExitStack() as stack:
        if runtime == "kafka":
            from app.distributed.flink.jars import install
            from app.distributed.kafka.broker import TansuBroker

            jars = ROOT / "var" / "flink-jars"
            install(jars)
            broker = TansuBroker(free_port())
            broker.start()
            stack.callback(broker.stop)
            kafka = {"CATALOG_KAFKA_BOOTSTRAP": broker.bootstrap, "CATALOG_KAFKA_PARTITIONS": "1",
                     "CATALOG_FLINK_JARS_DIR": str(jars)}  # fmt: skip
            kafka.update({f"CATALOG_{k.upper()}": v for k, v in TOPICS.items()})
            env.update(kafka)
            node_env.update(kafka)
            stack.enter_context(
                _process(
                    [sys.executable, "-m", "app.distributed.flink.job", "--no-checkpoints"],
                    env={**env, **(settings or {}), "FLINK_LOG_DIR": str(log_dir / "flink")},
                    log=log_dir / "job.log",
                )
            )
        stack.enter_context(_process(sims_command, log=log_dir / f"sims-{runtime}.log"))
        api_pid = stack.enter_context(
            _process([*api_cmd, "--no-access-log"], env=node_env, log=log_dir / f"{runtime}.log")
        )
        if pids is not None:
            pids["api"] = api_pid
        node = f"http://127.0.0.1:{api_port}"
        wait_http(f"{node}/health")
        yield node


def run_runtime(
    runtime: str, size: int, samples: int, log_dir: Path, settings: dict[str, str] | None = None
) -> dict[str, Any]:
    ports = {v: free_port() for v in VENDORS}
    sims = {v: f"http://127.0.0.1:{ports[v]}" for v in VENDORS}
    pids: dict[str, int] = {}
    cpu: dict[str, float] = {}
    threads: dict[str, dict[str, float]] = {}
    with running(runtime, _sims_command(size, ports), log_dir, settings, pids) as node:
        for v in VENDORS:
            wait_http(f"{sims[v]}/products?limit=1", timeout_s=300)
        with httpx.Client(base_url=node, timeout=30) as api:
            _register_unsynced(api, sims["c"], "c", ports["c"])
            _register_unsynced(api, sims["a"], "a", ports["a"])
            c_ids = iter(range(size, 0, -1))
            idle = Misses(node, sims["c"], "c", c_ids, 20)
            with httpx.Client(base_url=node, timeout=30) as a, httpx.Client(base_url=sims["c"]) as s:
                for _ in range(3):  # warm-up (kafka: the job's first calls), not counted
                    idle.one(a, s)
                idle.totals.clear()
                idle.beyond.clear()
                idle.statuses.clear()
                started, threads["idle0"] = cpu_seconds(pids["api"]), thread_cpu(node)
                for _ in range(samples):
                    idle.one(a, s)
                cpu["idle"], threads["idle"] = cpu_seconds(pids["api"]) - started, thread_cpu(node)
            started, threads["alone0"] = cpu_seconds(pids["api"]), thread_cpu(node)
            alone = _sync(api, "b", size, register=_body("b", ports["b"]))
            cpu["alone"], threads["alone"] = cpu_seconds(pids["api"]) - started, thread_cpu(node)
            rss = {"alone": rss_mb(pids["api"])}
            _delete(api, "b")
            started, threads["same0"] = cpu_seconds(pids["api"]), thread_cpu(node)
            with Misses(node, sims["a"], "a", iter(range(size, 0, -1)), 20) as same:
                same_rate = _sync(api, "a", size, register=None)
            cpu["same"], threads["same"] = cpu_seconds(pids["api"]) - started, thread_cpu(node)
            _delete(api, "a")
            started, threads["other0"] = cpu_seconds(pids["api"]), thread_cpu(node)
            with Misses(node, sims["c"], "c", c_ids, 20) as other:
                other_rate = _sync(api, "d", size, register=_body("d", ports["d"]))
            cpu["other"], threads["other"] = cpu_seconds(pids["api"]) - started, thread_cpu(node)
            rss["end"] = rss_mb(pids["api"])
    return {"idle": idle, "same": same, "other": other, "alone": alone, "same_rate": same_rate,
            "other_rate": other_rate, "cpu": cpu, "rss": rss, "threads": threads}  # fmt: skip


def _row(name: str, value: str, note: str = "") -> None:
    print(f"| {name:<52} | {value:>28} | {note:<40} |")


def _start_table(prefix: str, runtime: str) -> tuple[Path, list[str]]:
    """A fresh log folder and the runtimes asked for (``both``: embedded, then kafka), printed with the table's
    header; shared by the lanes and slow-vendor benches."""
    log_dir = Path(tempfile.mkdtemp(prefix=prefix))
    print(f"logs: {log_dir}")
    print(f"| {'measure':<52} | {'value':>28} | {'target / note':<40} |")
    print(f"|{'-' * 54}|{'-' * 30}|{'-' * 42}|")
    return log_dir, ["embedded", "kafka"] if runtime == "both" else [runtime]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--runtime", choices=["embedded", "kafka", "both"], default="both")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the API node and the job, e.g. CATALOG_BULK_WRITE_SLICE_MS=30 (repeatable)",
    )
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.env)
    log_dir, runtimes = _start_table("bench-lanes-", args.runtime)
    if settings:
        print(f"node settings: {settings}")
    for runtime in runtimes:
        r = run_runtime(runtime, args.size, args.samples, log_dir, settings)
        target = 50 if runtime == "embedded" else 150
        ms = 1000
        for phase, label in (("idle", "idle"), ("same", "same vendor syncing"), ("other", "other vendor syncing")):
            m: Misses = r[phase]
            _row(
                f"{runtime}: miss, {label} (n={len(m.totals)})",
                f"p50 {statistics.median(m.totals) * ms:.1f} / p95 {_pct(m.totals, 0.95) * ms:.1f} ms",
                f"beyond vendor p50 {statistics.median(m.beyond) * ms:.1f} / p95 {_pct(m.beyond, 0.95) * ms:.1f}",
            )
            _row(f"{runtime}:   answers", str(dict(sorted(m.statuses.items()))), f"p95 target <= {target} ms")
        cpu = r["cpu"]
        per_miss = cpu["idle"] / len(r["idle"].totals)
        _row(
            f"{runtime}: API CPU per idle miss",
            f"{per_miss * ms:.2f} ms",
            f"20/s: {20 * per_miss:.0%} of a core",
        )
        th = r["threads"]
        _row(f"{runtime}:   by thread, ms", "", by_thread(th["idle0"], th["idle"], len(r["idle"].totals), 1e3))
        _row(f"{runtime}: sync alone ({args.size} offers)", f"{r['alone']:,.0f} offers/s", "baseline")
        _row(f"{runtime}:   API CPU per offer", f"{cpu['alone'] / args.size * 1e6:,.0f} µs", "")
        _row(f"{runtime}:   by thread, µs", "", by_thread(th["alone0"], th["alone"], args.size, 1e6))
        rss = r["rss"]
        _row(f"{runtime}:   API RSS after it", f"{rss['alone']:,.0f} MB", f"after all phases {rss['end']:,.0f} MB")
        for key, label in (("same_rate", "same"), ("other_rate", "other")):
            loss = 1 - r[key] / r["alone"]
            _row(
                f"{runtime}: sync with 20 misses/s ({label} vendor)",
                f"{r[key]:,.0f} offers/s",
                f"loss {loss:.0%} (<= 15%)",
            )
            misses = len(r[label].totals)
            own = (cpu[label] - misses * per_miss) / args.size * 1e6  # the misses at their idle cost taken out
            _row(
                f"{runtime}:   API CPU per offer",
                f"{cpu[label] / args.size * 1e6:,.0f} µs",
                f"{own:,.0f} µs without {misses} misses at idle cost",
            )
            _row(f"{runtime}:   by thread, µs", "", by_thread(th[f"{label}0"], th[label], args.size, 1e6))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
