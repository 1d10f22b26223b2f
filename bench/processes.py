"""What every benchmark starts with: free ports, a scaled DummyJSON simulator process, waiting for HTTP."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def simulator_command(size: int, port: int) -> list[str]:
    """A DummyJSON simulator of ``size`` products in its own process, so the vendor's serving cost lands on the
    other core, as with a real vendor."""
    code = (
        "from simulators.config import SimConfig; from simulators.server import run_simulators; "
        f"run_simulators([(SimConfig(kind='dummyjson', size={size}, seed=1), {port})])"
    )
    return [sys.executable, "-c", code]


def development_env(**settings: str) -> dict[str, str]:
    """A benchmark API's environment: development (the bench's short admin key and the public secret key are
    accepted) and the loopback simulators admitted by the outbound policy, which refuses private addresses."""
    return {
        **os.environ,
        "CATALOG_ENV": "development",
        "CATALOG_OUTBOUND_ALLOW_PRIVATE": "127.0.0.0/8",
        "CATALOG_LOG_LEVEL": "warning",
        # one load generator is one client: the per-client limits would measure themselves
        "CATALOG_RATE_LIMIT_MISSES_PER_MIN": "0",
        "CATALOG_RATE_LIMIT_THUMBNAILS_PER_MIN": "0",
        **settings,
    }


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB, from ``/proc`` (the benches' memory figures)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads (``/proc``): on a shared machine wall time says
    little of what a run cost the process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(node: str) -> dict[str, float]:
    """The node's CPU seconds by thread group (``catalog_thread_cpu_seconds_total`` on its ``/metrics``)."""
    prefix = 'catalog_thread_cpu_seconds_total{thread="'
    text = httpx.get(f"{node}/metrics", timeout=30).text
    return {
        line[len(prefix) :].split('"', 1)[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


#: Short names of the groups a row names; any other group is named as it is.
ALIASES = {"MainThread": "loop", "sqlite-writer": "writer", "search-index": "search", "executor": "mapping"}


def by_thread(before: dict[str, float], after: dict[str, float], per: int, unit: float) -> str:
    """CPU spent between two readings per ``per`` items, in ``unit`` (1e3: ms, 1e6: µs), by group, the largest
    first; groups under 3% of the whole are summed as "rest"."""
    spent = {g: after.get(g, 0.0) - before.get(g, 0.0) for g in after}
    whole = sum(spent.values()) or 1.0
    shown = sorted((g for g, v in spent.items() if v >= 0.03 * whole), key=lambda g: -spent[g])
    parts = [f"{ALIASES.get(g, g)} {spent[g] / per * unit:,.2f}" for g in shown]
    rest = sum(v for g, v in spent.items() if g not in shown)
    return ", ".join([*parts, f"rest {rest / per * unit:,.2f}"])
