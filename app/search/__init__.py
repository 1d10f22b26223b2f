"""Product search: a Tantivy index beside the store, kept in step by the store's writes (see ``tantivy_index``)."""

from app.search.model import PRICE_BANDS, Facets, FacetValue, PriceBand, SearchDoc, SearchFilters, SearchPage
from app.search.tantivy_index import TantivyIndex

__all__ = [
    "PRICE_BANDS",
    "FacetValue",
    "Facets",
    "PriceBand",
    "SearchDoc",
    "SearchFilters",
    "SearchPage",
    "TantivyIndex",
]
