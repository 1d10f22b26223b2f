"""What the catalog hands the search index and what it gets back, free of any engine's types."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.domain.queries import Sort


@dataclass(frozen=True, slots=True)
class SearchDoc:
    """One product as search sees it: the text it is found by and the values it is filtered, sorted and counted by.

    ``min_price_base`` is the product's lowest offer price in the rates' base currency (the store's
    ``products.min_price_base``), so price filters, sorts and bands compare across currencies.
    """

    id: str
    name: str
    description: str
    brand: str | None
    category: str | None
    vendors: tuple[str, ...]
    min_price_base: float
    in_stock: bool
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Exact filters, as the list endpoint has them. ``brand``/``category`` are matched by their key
    (``brand_key``), so "Nestlé" finds "NESTLE"; prices are inclusive bounds in the base currency."""

    vendor: str | None = None
    brand: str | None = None
    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    in_stock: bool | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """Product ids in order. ``next_after`` is the position to pass as ``after`` for the next page (``None``:
    this was the last one); it is plain JSON data, ready to go into the API's cursor as its position."""

    ids: list[str]
    next_after: tuple[Any, ...] | None


@dataclass(frozen=True, slots=True)
class PriceBand:
    """Half-open ``[low, high)`` in the base currency; ``high`` None is open-ended."""

    key: str
    low: float
    high: float | None


# Bands a shop's price filter shows; fixed rather than computed from the data so counts are comparable between
# searches and the app can label them once.
PRICE_BANDS: tuple[PriceBand, ...] = (
    PriceBand("0-10", 0.0, 10.0),
    PriceBand("10-25", 10.0, 25.0),
    PriceBand("25-50", 25.0, 50.0),
    PriceBand("50-100", 50.0, 100.0),
    PriceBand("100-250", 100.0, 250.0),
    PriceBand("250-500", 250.0, 500.0),
    PriceBand("500-1000", 500.0, 1000.0),
    PriceBand("1000+", 1000.0, None),
)


@dataclass(frozen=True, slots=True)
class FacetValue:
    """``key`` is what the filter takes (a brand or category key, a vendor id, a band key); ``label`` is what a
    screen shows (the most common spelling of the brand or category)."""

    key: str
    label: str
    count: int


@dataclass(frozen=True, slots=True)
class Facets:
    """Counts of the products a search with these filters returns, grouped by each filterable value.

    ``total`` is the number of products matched; ``brand``/``category``/``vendor`` hold the most frequent values
    first (at most the ``size`` asked for) and ``*_other`` the products counted under values left out.
    """

    total: int
    brand: list[FacetValue] = field(default_factory=list)
    category: list[FacetValue] = field(default_factory=list)
    vendor: list[FacetValue] = field(default_factory=list)
    price: list[FacetValue] = field(default_factory=list)
    in_stock: dict[bool, int] = field(default_factory=dict)
    brand_other: int = 0
    category_other: int = 0
    vendor_other: int = 0


__all__ = ["PRICE_BANDS", "FacetValue", "Facets", "PriceBand", "SearchDoc", "SearchFilters", "SearchPage", "Sort"]
