"""Vendor sources: one adapter per platform behind the ``VendorSource`` port, sharing one HTTP wrapper.

``SOURCES`` is the only place that knows which class serves which ``VendorKind``; everything else holds
a ``VendorSource`` (and walks its catalog with ``app.ingest.pages.walk_pages``).
"""

from __future__ import annotations

from app.domain.models import Vendor, VendorKind
from app.sources.base import MappingError
from app.sources.bigcommerce import BigCommerceSource, map_bigcommerce_product
from app.sources.dummyjson import DummyJsonSource, map_dummyjson_item
from app.sources.generic import GenericSource, parse_mapping, validate_generic
from app.sources.http import HttpPolicy, HttpStats, VendorHttp, parse_retry_after
from app.sources.magento import MagentoSource, map_magento_product
from app.sources.port import VendorSource
from app.sources.shopify import ShopifySource, map_shopify_product
from app.sources.woocommerce import WooCommerceSource, map_woocommerce_product

__all__ = [
    "SOURCES",
    "BigCommerceSource",
    "DummyJsonSource",
    "GenericSource",
    "HttpPolicy",
    "HttpStats",
    "MagentoSource",
    "MappingError",
    "ShopifySource",
    "VendorHttp",
    "WooCommerceSource",
    "build_source",
    "map_bigcommerce_product",
    "map_dummyjson_item",
    "map_magento_product",
    "map_shopify_product",
    "map_woocommerce_product",
    "parse_mapping",
    "parse_retry_after",
    "supports_changes_since",
    "validate_generic",
]


SourceClass = (
    type[DummyJsonSource]
    | type[ShopifySource]
    | type[WooCommerceSource]
    | type[BigCommerceSource]
    | type[MagentoSource]
    | type[GenericSource]
)

#: Which class serves which platform.
SOURCES: dict[VendorKind, SourceClass] = {
    VendorKind.DUMMYJSON: DummyJsonSource,
    VendorKind.SHOPIFY: ShopifySource,
    VendorKind.WOOCOMMERCE: WooCommerceSource,
    VendorKind.BIGCOMMERCE: BigCommerceSource,
    VendorKind.MAGENTO: MagentoSource,
    VendorKind.GENERIC: GenericSource,
}


def build_source(vendor: Vendor, http: VendorHttp) -> VendorSource:
    return SOURCES[VendorKind(vendor.kind)](vendor, http)


def supports_changes_since(kind: VendorKind) -> bool:
    """Whether the platform's API filters by change time (incremental syncs): no vendor client needed to know."""
    return SOURCES[kind].supports_changes_since
