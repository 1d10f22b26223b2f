"""Serving simulators over real HTTP: one in a background thread for tests, or the demo set until Ctrl-C.

Real sockets rather than in-process transports, because what a vendor client must survive (timeouts, cut
connections, keep-alive, headers) only exists on the wire.
"""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType

from starlette.applications import Starlette

from app.domain.models import VendorKind
from app.serving import ThreadedServer, serve_until_signal, server_config
from simulators.base import Simulator
from simulators.bigcommerce import BigCommerceSimulator
from simulators.config import SimConfig
from simulators.dummyjson import DummyJsonSimulator
from simulators.magento import MagentoSimulator
from simulators.shopify import ShopifySimulator
from simulators.woocommerce import WooCommerceSimulator

_SIMULATORS: dict[VendorKind, type[Simulator]] = {
    VendorKind.DUMMYJSON: DummyJsonSimulator,
    VendorKind.SHOPIFY: ShopifySimulator,
    VendorKind.WOOCOMMERCE: WooCommerceSimulator,
    VendorKind.BIGCOMMERCE: BigCommerceSimulator,
    VendorKind.MAGENTO: MagentoSimulator,
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


class SimulatorServer:
    """One simulator on 127.0.0.1 and a free port, in a background thread, for as long as the ``with`` lasts.

    Usable as ``with`` and ``async with``; the server has its own loop, so async tests can call it freely.
    ``warm=True`` renders every item before serving, so benchmarks time the client, not first renders.
    """

    def __init__(self, config: SimConfig, *, host: str = "127.0.0.1", port: int = 0, warm: bool = False) -> None:
        self.simulator = build_simulator(config)
        self._warm = warm
        self._server = ThreadedServer(self.simulator.app, host=host, port=port, name=f"simulator-{config.kind}")

    @property
    def config(self) -> SimConfig:
        return self.simulator.config

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def start(self) -> SimulatorServer:
        if self._warm:
            self.simulator.warm()
        self._server.start()
        return self

    def stop(self) -> None:
        self.simulator.release_hangs_threadsafe()  # a sleeping "hang" would otherwise hold the shutdown
        self._server.stop()

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
    for sim, port in simulators:
        config = sim.config
        print(
            f"{config.kind:<12} {config.name!r:<24} http://{host}:{port}  "
            f"({len(sim.state.carried)} items, {config.currency})",
            file=sys.stderr,
            flush=True,
        )

    def release_hangs() -> None:
        for sim, _ in simulators:
            sim.release_hangs_threadsafe()

    serve_until_signal([server_config(sim.app, host, port) for sim, port in simulators], on_stop=release_hangs)
