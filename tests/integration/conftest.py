from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.store.sqlite.catalog import SqliteCatalog
from simulators.server import SimulatorServer
from tests.support import ApiServer, Sim, fast_settings, sim_config


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteCatalog]:
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    catalog.open()
    yield catalog
    catalog.close()


@pytest.fixture
def sims() -> Iterator[Callable[..., Sim]]:
    """Start simulators over real HTTP for one test: ``sims("dummyjson", size=20, latency_ms=...)``."""
    with contextlib.ExitStack() as stack:

        def start(kind: str, **overrides: Any) -> Sim:
            return Sim(stack.enter_context(SimulatorServer(sim_config(kind, **overrides))))

        yield start


@pytest.fixture
def service(sims: Callable[..., Sim], tmp_path: Path) -> Iterator[Callable[..., httpx.Client]]:
    """Start the API for one test (after, so before in teardown, the simulators): returns a client for it; each
    start has a catalog file of its own."""
    with contextlib.ExitStack() as stack:
        count = 0

        def start(**overrides: Any) -> httpx.Client:
            nonlocal count
            count += 1
            api = stack.enter_context(ApiServer(fast_settings(tmp_path / f"catalog-{count}.db", **overrides)))
            return stack.enter_context(httpx.Client(base_url=api.base_url, timeout=15))

        yield start
