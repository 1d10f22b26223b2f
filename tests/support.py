"""Shared helpers for the API tests: the app over real HTTP in a thread, simulators with their knobs, polling.

``ApiServer`` mirrors ``simulators.server.SimulatorServer``: the socket is bound here (so the port is known
before the server starts and nobody can take it in between), uvicorn runs in a daemon thread with its own loop
and leaves signal handling to the main thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

from app.domain.models import VendorKind
from app.main import create_app
from app.serving import ThreadedServer
from app.settings import Settings
from simulators.config import SimConfig
from simulators.server import SimulatorServer

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "test-admin-key"
#: The tests' simulators listen on loopback, which the outbound policy admits only when told to.
LOOPBACK = "127.0.0.0/8"
ERROR_KEYS = {"code", "message", "details"}

# Distinctive secrets: if one of them shows up in a response body, credentials leaked.
SHOPIFY_TOKEN = "shpat_never_shown_7f3a"
WOO_KEY = "ck_never_shown_91b2"
WOO_SECRET = "cs_never_shown_c44e"
BIGCOMMERCE_TOKEN = "bc_never_shown_5d1e"
BIGCOMMERCE_STORE = "s7q2x9"
MAGENTO_TOKEN = "mg_never_shown_0e8b"
SECRETS = (SHOPIFY_TOKEN, WOO_KEY, WOO_SECRET, BIGCOMMERCE_TOKEN, MAGENTO_TOKEN)

CREDENTIALS: dict[VendorKind, dict[str, str]] = {
    VendorKind.DUMMYJSON: {},
    VendorKind.SHOPIFY: {"access_token": SHOPIFY_TOKEN},
    VendorKind.WOOCOMMERCE: {"consumer_key": WOO_KEY, "consumer_secret": WOO_SECRET},
    VendorKind.BIGCOMMERCE: {"store_hash": BIGCOMMERCE_STORE, "access_token": BIGCOMMERCE_TOKEN},
    VendorKind.MAGENTO: {"access_token": MAGENTO_TOKEN},
}

# Seeds as in the demo set, so the stores carry overlapping but different subsets.
SEEDS = {
    VendorKind.DUMMYJSON: 1,
    VendorKind.SHOPIFY: 2,
    VendorKind.WOOCOMMERCE: 3,
    VendorKind.BIGCOMMERCE: 4,
    VendorKind.MAGENTO: 5,
}


def fast_settings(db_path: Path, **overrides: Any) -> Settings:
    """Settings for a test app: no scheduler, quick retries, short vendor timeouts."""
    values: dict[str, Any] = {
        "db_path": db_path,
        "admin_key": ADMIN_KEY,
        "outbound_allow_private": [LOOPBACK],
        "env": "development",
        # One test server takes thousands of calls from one address: the rate limits have tests of their own.
        "rate_limit_misses_per_min": 0,
        "rate_limit_thumbnails_per_min": 0,
        "rate_limit_admin_failures_per_min": 0,
        "log_level": "warning",
        "scheduler_enabled": False,
        "scheduler_tick_s": 0.2,
        "vendor_timeout_s": 3.0,
        "vendor_max_attempts": 2,
        "vendor_backoff_base_s": 0.01,
        "vendor_backoff_max_s": 0.05,
        "vendor_max_retry_after_s": 1.0,
        "page_attempts": 1,
        "retry_failed_sync_s": 1.0,
        "wait_ms_default": 1500,
        "wait_ms_max": 5000,
    }
    values.update(overrides)
    return Settings(**values)


class ApiServer(ThreadedServer):
    """The real app (lifespan, middleware, error handlers) on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1") -> None:
        super().__init__(create_app(settings), host=host, name="api")
        self.settings = settings

    def __enter__(self) -> ApiServer:
        self.start()
        return self


class Sim:
    """A running simulator and the knobs its control endpoints turn."""

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.base_url = server.base_url

    @property
    def kind(self) -> VendorKind:
        return self.server.config.kind

    def _control(self, method: str, path: str, json: Any = None) -> Any:
        response = httpx.request(method, f"{self.base_url}{path}", json=json, timeout=5)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "/_sim/stats")
        return result

    def requests(self) -> int:
        return int(self.stats()["requests"])

    def items(self) -> int:
        return int(self.stats()["items"])

    def configure(self, **knobs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._control("PATCH", "/_sim/config", knobs)
        return result

    def tick(self) -> list[int]:
        ids: list[int] = self._control("POST", "/_sim/tick")["ids"]
        return ids

    def vendor_body(self, vendor_id: str, **overrides: Any) -> dict[str, Any]:
        """A POST /vendors body pointing at this simulator, with the credentials it accepts."""
        config = self.server.config
        body: dict[str, Any] = {
            "id": vendor_id,
            "name": config.name,
            "kind": str(config.kind),
            "base_url": self.base_url,
            "credentials": dict(CREDENTIALS[config.kind]),
            "currency": config.currency,
        }
        body.update(overrides)
        return body


def sim_config(kind: VendorKind | str, **overrides: Any) -> SimConfig:
    kind = VendorKind(kind)
    values: dict[str, Any] = {
        "kind": kind,
        "seed": SEEDS[kind],
        "access_token": SHOPIFY_TOKEN,
        "consumer_key": WOO_KEY,
        "consumer_secret": WOO_SECRET,
        "store_hash": BIGCOMMERCE_STORE,
        "bigcommerce_token": BIGCOMMERCE_TOKEN,
        "magento_token": MAGENTO_TOKEN,
    }
    values.update(overrides)
    return SimConfig.model_validate(values)


@contextlib.contextmanager
def running_sims(*configs: SimConfig) -> Iterator[list[Sim]]:
    with contextlib.ExitStack() as stack:
        yield [Sim(stack.enter_context(SimulatorServer(config))) for config in configs]


def wait_until(
    check: Callable[[], T | Literal[False] | None], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy; fail the test with ``what`` after ``timeout``.

    ``check`` may answer ``cond and value`` (False until ready, then the value returned here)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape, exactly: ``{"error": {"code", "message", "details"}}``; returns ``error``."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


def admin(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"X-API-Key": key}


def vendor_state(client: httpx.Client, vendor_id: str) -> dict[str, Any]:
    response = client.get(f"/vendors/{vendor_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_synced(client: httpx.Client, vendor_id: str, *, timeout: float = 20.0, syncs_ok: int = 1) -> dict[str, Any]:
    """Poll GET /vendors/{id} until its sync state is ok (and at least ``syncs_ok`` syncs succeeded)."""

    def check() -> dict[str, Any] | None:
        body = vendor_state(client, vendor_id)
        sync = body["sync"]
        assert sync["state"] != "failed", sync
        return body if sync["state"] == "ok" and sync["syncs_ok"] >= syncs_ok else None

    return wait_until(check, timeout=timeout, what=f"vendor {vendor_id} to sync")


def wait_request(client: httpx.Client, location: str, *, timeout: float = 15.0) -> dict[str, Any]:
    """Poll a /requests/{id} location until it is no longer pending."""

    def check() -> dict[str, Any] | None:
        response = client.get(location)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] != "pending" else None

    return wait_until(check, timeout=timeout, what=f"{location} to finish")


def all_products(client: httpx.Client, path: str = "/products", **params: Any) -> list[dict[str, Any]]:
    """Walk every page of a product list; fails on a repeated product."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(10_000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)), "a product was listed twice"
    return items


# -- the service as a subprocess ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(db_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of a service subprocess: no inherited CATALOG_* settings, ours instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
    env.update(
        {
            "CATALOG_DB_PATH": str(db_path),
            "CATALOG_ADMIN_KEY": ADMIN_KEY,
            "CATALOG_OUTBOUND_ALLOW_PRIVATE": LOOPBACK,
            "CATALOG_ENV": "development",
            "CATALOG_RATE_LIMIT_MISSES_PER_MIN": "0",
            "CATALOG_RATE_LIMIT_THUMBNAILS_PER_MIN": "0",
            "CATALOG_RATE_LIMIT_ADMIN_FAILURES_PER_MIN": "0",
            "CATALOG_LOG_LEVEL": "warning",
            "CATALOG_SCHEDULER_TICK_S": "1",
            "CATALOG_VENDOR_TIMEOUT_S": "2",
            "CATALOG_VENDOR_MAX_ATTEMPTS": "6",
            "CATALOG_VENDOR_BACKOFF_BASE_S": "0.01",
            "CATALOG_VENDOR_BACKOFF_MAX_S": "0.05",
            "CATALOG_VENDOR_MAX_RETRY_AFTER_S": "2",
            "CATALOG_RETRY_FAILED_SYNC_S": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


class ServiceProcess:
    """``python -m uvicorn app.main:app`` on a free port, its output in a log file."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> ServiceProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not answer /health:\n{self.log()}")
            time.sleep(0.05)

    def terminate(self, *, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
                raise
        self._close_log()
        return proc.returncode

    def kill(self) -> None:
        """Last resort for fixtures: make sure nothing outlives the test."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def run_cli(env: Mapping[str, str], *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """The ``catalog`` command, as a shell would run it (wide terminal so tables are not wrapped)."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**env, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def register(client: httpx.Client, sim: Sim, vendor_id: str, **overrides: Any) -> httpx.Response:
    """Register ``sim`` as vendor ``vendor_id`` over the API (201 asserted)."""
    response = client.post("/vendors", json=sim.vendor_body(vendor_id, **overrides), headers=admin())
    assert response.status_code == 201, response.text
    return response
