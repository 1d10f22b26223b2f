"""The demo vendors `make run` registers: one per platform, served by the local simulators."""

from __future__ import annotations

from app.domain.models import Vendor, VendorKind

DEMO_PORTS = {"dummyjson": 9101, "northwind": 9102, "bazaar": 9103}


def demo_vendors(host: str = "127.0.0.1") -> list[Vendor]:
    return [
        Vendor(
            id="dummyjson",
            name="DummyJSON",
            kind=VendorKind.DUMMYJSON,
            base_url=f"http://{host}:{DEMO_PORTS['dummyjson']}",
            currency="USD",
            refresh_interval_s=300,
        ),
        Vendor(
            id="northwind",
            name="Northwind Outfitters",
            kind=VendorKind.SHOPIFY,
            base_url=f"http://{host}:{DEMO_PORTS['northwind']}",
            currency="EUR",
            credentials={"access_token": "shpat_demo"},
            refresh_interval_s=120,
        ),
        Vendor(
            id="bazaar",
            name="Bazaar Istanbul",
            kind=VendorKind.WOOCOMMERCE,
            base_url=f"http://{host}:{DEMO_PORTS['bazaar']}",
            currency="TRY",
            credentials={"consumer_key": "ck_demo", "consumer_secret": "cs_demo"},
            refresh_interval_s=120,
        ),
    ]
