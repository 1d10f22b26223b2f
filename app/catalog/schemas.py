"""Product response models: they document the API (OpenAPI). Product bodies are served as precomputed
bytes; these models describe that JSON for the schema."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PriceRangeOut(BaseModel):
    currency: str
    min: str
    max: str


class DisplayPrices(BaseModel):
    currency: str = Field(description="The currency asked for with `?currency=`.")
    min_price: str | None = Field(description="Lowest price over all offers, converted (null: no known rate).")
    max_price: str | None
    rates_date: str = Field(description="Date of the exchange rates used (`CATALOG_RATES_FILE`).")


class ProductSummary(BaseModel):
    id: str
    name: str
    brand: str | None
    category: str | None
    gtin: str | None = Field(description="GTIN-14, check digit verified.")
    image: str | None
    currency: str = Field(description="The currency most of the product's offers use.")
    min_price: str = Field(description="Lowest offer price in `currency` (exact decimal as a string).")
    max_price: str
    prices: list[PriceRangeOut] = Field(description="Price range per currency the offers are listed in.")
    in_stock: bool
    offer_count: int
    vendors: list[str]
    updated_at: str
    display: DisplayPrices | None = Field(
        None, description="Only with `?currency=`: prices converted for display; the originals stay as they are."
    )


class OfferOut(BaseModel):
    vendor_id: str
    vendor_product_id: str
    title: str
    price: str
    currency: str
    availability: str
    stock: int | None
    sku: str | None
    gtin: str | None
    brand: str | None
    category: str | None
    images: list[str]
    url: str | None
    parent_id: str | None
    vendor_updated_at: str | None
    display_price: str | None = Field(None, description="Only with `?currency=`: `price` converted to it.")


class ProductDetail(ProductSummary):
    description: str
    images: list[str]
    offers: list[OfferOut]


class ProductList(BaseModel):
    items: list[ProductSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
