"""Product response models: they document the API (OpenAPI). Product bodies are served as precomputed
bytes; these models describe that JSON for the schema.

Only ``id`` is required in a product: with ``fields=`` (sparse fields) a response carries just the fields
asked for. Without it every field is present.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
    # Every field but the id may be left out by ``fields=``: the schema must not promise them.
    model_config = ConfigDict(json_schema_extra={"required": ["id"]})

    id: str
    name: str = ""
    brand: str | None = None
    category: str | None = None
    gtin: str | None = Field(None, description="GTIN-14, check digit verified.")
    image: str | None = Field(None, description="The lead image: the vendor's original, full size.")
    thumbnail: str | None = Field(
        None,
        description="Path of the lead image's thumbnail (`getImage`): add `?w=&h=&format=`, e.g. "
        "`/images/i_...?w=200&format=webp`.",
    )
    placeholder: str | None = Field(
        None,
        description="BlurHash of the lead image, to paint while the thumbnail loads; null until the image was "
        "first thumbnailed on this node (computed then, not at ingest).",
    )
    currency: str = Field("", description="The currency most of the product's offers use.")
    min_price: str = Field("", description="Lowest offer price in `currency` (exact decimal as a string).")
    max_price: str = ""
    prices: list[PriceRangeOut] = Field([], description="Price range per currency the offers are listed in.")
    in_stock: bool = False
    offer_count: int = 0
    vendors: list[str] = []
    updated_at: str = ""
    display: DisplayPrices | None = Field(
        None, description="Only with `?currency=`: prices converted for display; the originals stay as they are."
    )


class OfferMatch(BaseModel):
    """Why the offer is in this product (issue 10)."""

    by: Literal["key", "score", "pin", "split"] = Field(
        description="`key`: an identifier names the product (`key`: `gtin:...`, `bs:<brand>|<sku>` or "
        "`offer:<vendor>:<id>`); `score`: the matcher linked it (`score`, `reasons`); `pin`: an admin pinned it "
        "to another offer of the product; `split`: an admin split it out into a product of its own."
    )
    key: str | None = Field(None, description="Only with `by: key`.")
    score: float | None = Field(None, description="Only with `by: score`: the matcher's probability, 0 to 1.")
    reasons: list[str] | None = Field(
        None, description="Only with `by: score`: the evidence, e.g. `model:dscw120p`, `brand`, `title:0.91`."
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
    match: OfferMatch


class ProductDetail(ProductSummary):
    description: str = ""
    images: list[str] = []
    thumbnails: list[str] = Field([], description="Thumbnail paths of `images`, in the same order.")
    offers: list[OfferOut] = []


class FacetValueOut(BaseModel):
    key: str = Field(description="What the filter takes: a brand or category (`brand=`), a vendor id, a price band.")
    label: str = Field(description="What a screen shows: the most common spelling, or the band (`10-25`, `1000+`).")
    count: int


class StockCounts(BaseModel):
    true: int
    false: int


class FacetCounts(BaseModel):
    """Counts of the products the list's filters and `q` return; only the groups asked for are present. Price
    bands are half-open `[low, high)` in the rates' base currency, over each product's lowest price."""

    total: int = Field(description="Products matched.")
    brand: list[FacetValueOut] | None = None
    brand_other: int | None = Field(None, description="Products under brands beyond `facet_size`.")
    category: list[FacetValueOut] | None = None
    category_other: int | None = None
    vendor: list[FacetValueOut] | None = None
    vendor_other: int | None = None
    price: list[FacetValueOut] | None = None
    in_stock: StockCounts | None = None


class ProductList(BaseModel):
    items: list[ProductSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    facets: FacetCounts | None = Field(None, description="Only with `facets=`.")


class ProductBatch(BaseModel):
    items: list[ProductDetail] = Field(description="The products found, in the order asked.")
    missing: list[str] = Field(description="Ids asked for that name no product here.")
