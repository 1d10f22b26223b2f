"""The demo set `make run` uses: its vendors' credentials and settings fit its simulators."""

from __future__ import annotations

import dataclasses

from app.bootstrap import make_source_factory
from app.cli import demo_settings
from app.settings import Settings
from simulators.demo import demo_vendors
from simulators.server import DEMO_SIMULATORS, SimulatorServer


async def test_every_demo_vendor_reads_its_simulator() -> None:
    vendors = demo_vendors()
    assert [v.id for v in vendors] == ["dummyjson", "northwind", "bazaar"]
    assert [v.base_url.rsplit(":", 1)[1] for v in vendors] == [str(port) for _, port in DEMO_SIMULATORS]
    for vendor, (config, _) in zip(vendors, DEMO_SIMULATORS, strict=True):
        assert vendor.kind == config.kind
        with SimulatorServer(config) as sim:  # a free port: the demo ports may be taken here
            source = make_source_factory(demo_settings(Settings()))(dataclasses.replace(vendor, base_url=sim.base_url))
            try:
                page = await source.fetch_page()
            finally:
                await source.aclose()
        assert page.offers and all(o.currency == vendor.currency for o in page.offers)
