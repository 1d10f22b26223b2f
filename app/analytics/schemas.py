"""Analytics bodies (served from PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class PricePoint(BaseModel):
    at: datetime = Field(description="When the change was captured on the node that wrote it.")
    price: str = Field(description="Exact decimal, in `currency`.")
    currency: str
    availability: str


class OfferPriceHistory(BaseModel):
    vendor_id: str
    vendor_product_id: str
    current: bool = Field(description="The offer still belongs to this product.")
    points: list[PricePoint]


class ProductPriceHistory(BaseModel):
    product_id: str
    offers: list[OfferPriceHistory]


class VendorAnalytics(BaseModel):
    vendor_id: str
    name: str
    kind: str
    enabled: bool
    products: int = Field(description="Distinct products the vendor has offers in.")
    offers: int
    in_stock_share: float | None = Field(description="Share of the vendor's offers in stock (null: no offers).")
    state: str | None = Field(description="Last sync state.")
    last_success_at: datetime | None
    freshness_s: float | None = Field(description="Seconds since the last successful sync.")
    last_change_at: datetime | None = Field(description="Last time one of its offers changed.")
    syncs_ok: int
    syncs_failed: int
    last_error: str | None
    last_error_at: datetime | None


class VendorAnalyticsList(BaseModel):
    items: list[VendorAnalytics]
