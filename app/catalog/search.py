"""``q=`` through the search index: the index ranks and filters, the store hands over the documents.

Why: at a million products SQLite FTS5 ranks every matching row before it can return the first page (p99 near
half a second, ``python -m bench.search``), where the index's top-k takes milliseconds, and only the index has
typo tolerance and facet counts. The index holds ids and what filters, sorts and counts need; the list documents
stay in the store, which already precomputed them. While the index is being (re)built, searches go to FTS5 as
they did before, so a rebuild never takes search away; facets need the index and answer 503 meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from app.domain import documents
from app.domain.cursor import Cursor, decode_cursor, encode_cursor, filters_fingerprint
from app.domain.money import Rates
from app.domain.queries import ProductPage, ProductQuery
from app.errors import ServiceUnavailable
from app.search import Facets, SearchFilters, TantivyIndex

INDEX_MARK = "t"

Summaries = Callable[[Sequence[str]], list[tuple[bytes, str]]]


def bound_in_base(rates: Rates | None, amount: Decimal, currency: str | None) -> float:
    """A price bound in ``currency`` (None: the base) as the base-currency value the index and store compare."""
    if rates is None or currency is None:
        return float(amount)
    return float(rates.exact(amount, currency, rates.base))


class CatalogSearch:
    def __init__(
        self, index: Callable[[], TantivyIndex], summaries: Summaries, ready: Callable[[], bool], rates: Rates | None
    ) -> None:
        """``index``: the index once open; ``summaries``: the store's list documents and ETags by id; ``ready``:
        whether the index may be used; ``rates``: the store's, which its base prices (the index's) were
        computed with."""
        self._index = index
        self._summaries = summaries
        self._ready = ready
        self.rates = rates

    @property
    def ready(self) -> bool:
        return self._ready()

    def filters(self, query: ProductQuery) -> SearchFilters:
        return SearchFilters(
            vendor=query.vendor,
            brand=query.brand,
            category=query.category,
            min_price=bound_in_base(self.rates, query.min_price, query.price_currency)
            if query.min_price is not None
            else None,
            max_price=bound_in_base(self.rates, query.max_price, query.price_currency)
            if query.max_price is not None
            else None,
            in_stock=query.in_stock,
        )

    def page(self, query: ProductQuery) -> ProductPage:
        """One page of ``query`` (which has ``q``), in the store's page shape and cursor format. Raises
        ``InvalidCursor`` for a cursor of another query."""
        # Positions of the index's pages are not the store's (keys, not columns): a cursor from a page FTS5
        # answered while the index was rebuilt is refused, not misread.
        fp = filters_fingerprint(query) + INDEX_MARK
        sort = query.sort
        cursor = decode_cursor(query.cursor, sort=sort.value, fingerprint=fp) if query.cursor else None
        result = self._index().search(
            query.q, self.filters(query), sort, limit=query.limit, after=cursor.position if cursor else None
        )
        rows = self._summaries(result.ids)
        next_cursor = (
            encode_cursor(Cursor(sort.value, tuple(result.next_after), fp)) if result.next_after is not None else None
        )
        tag = documents.etag_of("".join([etag for _, etag in rows] + [next_cursor or ""]).encode())
        return ProductPage(items=[doc for doc, _ in rows], next_cursor=next_cursor, etag=tag)

    def facets(self, query: ProductQuery, size: int) -> Facets:
        if not self.ready:
            raise ServiceUnavailable(
                "facet counts need the search index, which is being rebuilt; try again shortly",
                details={"parameter": "facets"},
            )
        return self._index().facets(query.q, self.filters(query), size=size)
