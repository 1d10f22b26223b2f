"""The demo vendors `make run` registers: one per simulator of the demo set, on the simulators' own ports."""

from __future__ import annotations

from app.domain.models import Vendor, VendorKind


def demo_vendors(host: str = "127.0.0.1") -> list[Vendor]:
    """Vendors for ``DEMO_SIMULATORS``, built from the simulators' own settings so the two cannot drift apart."""
    from simulators.server import DEMO_SIMULATORS  # lazily: the API only needs the simulators for the demo

    vendors = []
    for config, port in DEMO_SIMULATORS:
        credentials = {
            VendorKind.DUMMYJSON: {},
            VendorKind.SHOPIFY: {"access_token": config.access_token},
            VendorKind.WOOCOMMERCE: {"consumer_key": config.consumer_key, "consumer_secret": config.consumer_secret},
            VendorKind.BIGCOMMERCE: {"store_hash": config.store_hash, "access_token": config.bigcommerce_token},
            VendorKind.MAGENTO: {"access_token": config.magento_token},
        }[config.kind]
        vendors.append(
            Vendor(
                id=config.name.split()[0].lower(),
                name=config.name,
                kind=config.kind,
                base_url=f"http://{host}:{port}",
                currency=config.currency,
                credentials=credentials,
                refresh_interval_s=300 if config.kind is VendorKind.DUMMYJSON else 120,
            )
        )
    return vendors
