"""Serving simulators over real HTTP: one in a background thread for tests, or the demo set until Ctrl-C.

Real sockets rather than in-process transports, because what a vendor client must survive (timeouts, cut
connections, keep-alive, headers) only exists on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
import time
from collections.abc import Generator
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from app.domain.models import VendorKind
from app.simulators.base import Simulator
from app.simulators.config import SimConfig
from app.simulators.dummyjson import DummyJsonSimulator
from app.simulators.shopify import ShopifySimulator
from app.simulators.woocommerce import WooCommerceSimulator

_SIMULATORS: dict[VendorKind, type[Simulator]] = {
    VendorKind.DUMMYJSON: DummyJsonSimulator,
    VendorKind.SHOPIFY: ShopifySimulator,
    VendorKind.WOOCOMMERCE: WooCommerceSimulator,
}

_DEMO_CHANGE_INTERVAL_S = 60.0

DEMO_SIMULATORS: list[tuple[SimConfig, int]] = [
    (SimConfig(kind=VendorKind.DUMMYJSON, name="DummyJSON", seed=1, change_interval_s=_DEMO_CHANGE_INTERVAL_S), 9101),
    (
        SimConfig(
            kind=VendorKind.SHOPIFY, name="Northwind Outfitters", seed=2, change_interval_s=_DEMO_CHANGE_INTERVAL_S
        ),
        9102,
    ),
    (
        SimConfig(
            kind=VendorKind.WOOCOMMERCE, name="Bazaar Istanbul", seed=3, change_interval_s=_DEMO_CHANGE_INTERVAL_S
        ),
        9103,
    ),
]


def build_simulator(config: SimConfig) -> Simulator:
    """The simulator object itself, for callers that want its state as well as its ASGI app."""
    return _SIMULATORS[config.kind](config)


def create_app(config: SimConfig) -> Starlette:
    return build_simulator(config).app


def _uvicorn_config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws="none",
        # Hanging requests are released on stop; this only bounds a handler that ignores that.
        timeout_graceful_shutdown=2,
    )


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to its owner: several share a loop, or it runs off the main thread."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class SimulatorServer:
    """One simulator on 127.0.0.1 and a free port, in a background thread, for as long as the ``with`` lasts.

    Usable as ``with`` and ``async with``; the server has its own loop, so async tests can call it freely.
    ``warm=True`` renders every item before serving, so benchmarks time the client, not first renders.
    """

    def __init__(self, config: SimConfig, *, host: str = "127.0.0.1", port: int = 0, warm: bool = False) -> None:
        self.simulator = build_simulator(config)
        self.host = host
        self.port = port
        self._warm = warm
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> SimConfig:
        return self.simulator.config

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SimulatorServer:
        if self._server is not None:
            raise RuntimeError("simulator server already started")
        if self._warm:
            self.simulator.warm()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        server = _Server(_uvicorn_config(self.simulator.app, self.host, self.port))
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"simulator-{self.config.kind}-{self.port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                self._server = self._thread = None
                sock.close()
                raise RuntimeError(f"{self.config.kind} simulator did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.simulator.release_hangs_threadsafe()
        server.should_exit = True
        thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SimulatorServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)


def run_simulators(
    configs_with_ports: list[tuple[SimConfig, int]], host: str = "127.0.0.1", *, warm: bool = True
) -> None:
    """Serve several simulators from one process and one loop until Ctrl-C (``catalog simulate``).

    Items are rendered before the ports open (``warm``), so a benchmark that waits for the port to answer
    starts its clock on a simulator that only has to send cached bytes.
    """
    simulators = [(build_simulator(config), port) for config, port in configs_with_ports]
    if warm:
        for sim, _ in simulators:
            sim.warm()
    servers = [_Server(_uvicorn_config(sim.app, host, port)) for sim, port in simulators]

    def stop() -> None:
        for sim, _ in simulators:
            sim.release_hangs_threadsafe()
        for server in servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    async def serve_all() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop)
        await asyncio.gather(*(server.serve() for server in servers))

    for sim, port in simulators:
        config = sim.config
        print(
            f"{config.kind:<12} {config.name!r:<24} http://{host}:{port}  "
            f"({len(sim.state.carried)} items, {config.currency})",
            file=sys.stderr,
            flush=True,
        )
    loop_factory = servers[0].config.get_loop_factory() if servers else None
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve_all())
