"""The product reader: list pages (filters, FTS search, keyset cursors), single products and offer look-ups.

Why it is shaped like this:
- Reads are the hot path, so they run inline on the calling thread's reader connection and return the JSON
  the offer writer precomputed: a read is an index walk plus a byte copy.
- A few pages (the first page of the catalog, of a category, of a popular search) take most of the traffic, so
  answers are cached until the file's ``data_version`` moves, which any commit by any process does; checking it
  costs a microsecond.
- Price filters and price sorting compare ``min_price_base`` (the lowest price in the rates' base currency), so a
  bound given in another currency is converted with the same rates first.
"""

from __future__ import annotations

import re
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from app.domain import documents
from app.domain.cursor import Cursor, decode_cursor, encode_cursor, filters_fingerprint
from app.domain.money import Rates
from app.domain.normalize import brand_key
from app.domain.queries import OfferFreshness, OfferRef, ProductPage, ProductQuery, Sort, StoredProduct
from app.store.sqlite.connection import Connections, chunks, marks

K = TypeVar("K")
V = TypeVar("V")

_FTS_TOKEN = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """User text to a safe FTS5 query: every word must match, the last one as a prefix (search-as-you-type)."""
    tokens = _FTS_TOKEN.findall(text)[:16]
    if not tokens:
        return None
    quoted = [f'"{t}"' for t in tokens]
    quoted[-1] += "*"
    return " ".join(quoted)


def product_on(conn: sqlite3.Connection, pid: str) -> StoredProduct | None:
    """The product's document with its offers' freshness, as ``conn`` sees it."""
    rows = conn.execute(
        "SELECT p.doc, p.etag, o.vendor_id, o.vendor_product_id, o.fetched_at, v.refresh_interval_s, v.enabled "
        "FROM products p JOIN offers o ON o.product_id = p.id JOIN vendors v ON v.id = o.vendor_id "
        "WHERE p.id = ?",
        (pid,),
    ).fetchall()
    if not rows:
        return None
    offers = tuple(
        OfferFreshness(vendor_id, vpid, datetime.fromisoformat(fetched), interval, bool(enabled))
        for _, _, vendor_id, vpid, fetched, interval, enabled in rows
    )
    return StoredProduct(doc=rows[0][0], etag=rows[0][1], offers=offers)


def offer_on(conn: sqlite3.Connection, vendor_id: str, vendor_product_id: str) -> OfferRef | None:
    """The offer with this id, or else the oldest-fetched variant whose parent has this id, as ``conn`` sees it."""
    row = conn.execute(
        "SELECT product_id, fetched_at FROM offers WHERE vendor_id = ? AND vendor_product_id = ?",
        (vendor_id, vendor_product_id),
    ).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT product_id, fetched_at FROM offers WHERE vendor_id = ? AND parent_id = ? "
            "ORDER BY fetched_at, vendor_product_id LIMIT 1",
            (vendor_id, vendor_product_id),
        ).fetchone()
    return OfferRef(row[0], datetime.fromisoformat(row[1])) if row else None


class _ReadCache(Generic[K, V]):
    """Answers kept while the file's version stays the same; least recently used ones go first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, tuple[tuple[int, int], V]] = OrderedDict()

    def get(self, key: K, version: tuple[int, int], compute: Callable[[], V]) -> V:
        if self._size <= 0:
            return compute()
        hit = self._entries.get(key)
        if hit is not None and hit[0] == version:
            self._entries.move_to_end(key)
            return hit[1]
        value = compute()
        self._entries[key] = (version, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return value

    def peek(self, key: K, version: tuple[int, int]) -> tuple[V] | None:
        """The answer kept for ``key`` if still current (in a 1-tuple: the answer may be None), else None."""
        hit = self._entries.get(key)
        if hit is None or hit[0] != version:
            return None
        self._entries.move_to_end(key)
        return (hit[1],)

    def clear(self) -> None:
        self._entries.clear()


class ProductReader:
    """The catalog's read side (see the module docstring), called inline on the caller's thread."""

    def __init__(self, db: Connections, rates: Rates | None, *, page_cache_size: int) -> None:
        self._db = db
        # Converts price bounds to the base currency ``min_price_base`` holds; None: bounds are taken as they are.
        self.rates = rates
        self._pages: _ReadCache[ProductQuery, ProductPage] = _ReadCache(page_cache_size)
        self._products: _ReadCache[str, StoredProduct | None] = _ReadCache(4 * page_cache_size)

    def clear(self) -> None:
        """Forget every cached answer (on close: versions name a connection by its id(), which a reopened store
        could reuse)."""
        self._pages.clear()
        self._products.clear()

    def _version(self) -> tuple[int, int]:
        """Moves whenever anyone else commits to the file (our writer thread, the CLI, another process)."""
        return self._db.data_version()

    def count_products(self) -> int:
        (n,) = self._db.reader.execute("SELECT count(*) FROM products").fetchone()
        return int(n)

    def cached_product(self, pid: str) -> tuple[StoredProduct | None] | None:
        """``get_product``'s answer if it is cached and current, without a query (see ``CatalogService``)."""
        return self._products.peek(pid, self._version())

    def cached_page(self, query: ProductQuery) -> ProductPage | None:
        hit = self._pages.peek(query, self._version())
        return hit[0] if hit is not None else None

    def get_product(self, pid: str) -> StoredProduct | None:
        """The product's document with its offers' freshness; cached until the next write like list pages."""
        return self._products.get(pid, self._version(), lambda: self._query_product(pid))

    def _query_product(self, pid: str) -> StoredProduct | None:
        return product_on(self._db.reader, pid)

    def find_offer(self, vendor_id: str, vendor_product_id: str) -> OfferRef | None:
        """The offer with this id, or else the oldest-fetched variant whose parent has this id."""
        return offer_on(self._db.reader, vendor_id, vendor_product_id)

    def summaries(self, ids: Sequence[str]) -> list[tuple[bytes, str]]:
        found: dict[str, tuple[bytes, str]] = {}
        for chunk in chunks(ids):
            for pid, summary, etag in self._db.reader.execute(
                f"SELECT id, summary, etag FROM products WHERE id IN ({marks(len(chunk))})", chunk
            ):
                found[pid] = (summary, etag)
        return [found[pid] for pid in ids if pid in found]

    def list_products(self, query: ProductQuery) -> ProductPage:
        """One page of products, cached until the next write. Raises ``InvalidCursor`` for a cursor from another
        query."""
        return self._pages.get(query, self._version(), lambda: self._query_products(query))

    def _query_products(self, query: ProductQuery) -> ProductPage:
        where: list[str] = []
        params: list[Any] = []
        sort = query.sort
        if sort is Sort.RELEVANCE and not query.q:
            sort = Sort.UPDATED
        fp = filters_fingerprint(query)
        cursor = decode_cursor(query.cursor, sort=sort.value, fingerprint=fp) if query.cursor else None

        source = "products p"
        if query.q:
            match = fts_query(query.q)
            if match is None:
                return ProductPage(items=[], next_cursor=None)
            source = "products_fts f JOIN products p ON p.rowid = f.rowid"
            where.append("products_fts MATCH ?")
            params.append(match)
        if query.vendor:
            where.append("p.id IN (SELECT product_id FROM product_vendors WHERE vendor_id = ?)")
            params.append(query.vendor)
        brand, category = brand_key(query.brand), brand_key(query.category)
        if brand:
            where.append("p.brand_key = ?")
            params.append(brand)
        if category:
            where.append("p.category_key = ?")
            params.append(category)
        if query.min_price is not None:
            where.append("p.min_price_base >= ?")
            params.append(self._bound_in_base(query.min_price, query.price_currency))
        if query.max_price is not None:
            where.append("p.min_price_base <= ?")
            params.append(self._bound_in_base(query.max_price, query.price_currency))
        if query.in_stock is not None:
            where.append("p.in_stock = ?")
            params.append(int(query.in_stock))

        offset = 0
        if sort is Sort.RELEVANCE:
            order = "bm25(products_fts, 10.0, 1.0, 5.0), p.id"
            if cursor:
                offset = int(cursor.position[0])
        else:
            column, direction, op = {
                Sort.UPDATED: ("p.updated_at", "DESC", "<"),
                Sort.PRICE: ("p.min_price_base", "ASC", ">"),
                Sort.PRICE_DESC: ("p.min_price_base", "DESC", "<"),
            }[sort]
            order = f"{column} {direction}, p.id {direction}"
            if cursor:
                where.append(f"({column}, p.id) {op} (?, ?)")
                params.extend(cursor.position)
        sql = (
            f"SELECT p.summary, p.updated_at, p.min_price_base, p.id, p.etag FROM {source}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {order} LIMIT ? OFFSET ?"
        )
        rows = self._db.reader.execute(sql, (*params, query.limit + 1, offset)).fetchall()
        next_cursor = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            last = rows[-1]
            if sort is Sort.RELEVANCE:
                position: tuple[Any, ...] = (offset + query.limit,)
            elif sort is Sort.UPDATED:
                position = (last[1], last[3])
            else:
                position = (last[2], last[3])
            next_cursor = encode_cursor(Cursor(sort.value, position, fp))
        tag = documents.etag_of("".join([r[4] for r in rows] + [next_cursor or ""]).encode())
        return ProductPage(items=[r[0] for r in rows], next_cursor=next_cursor, etag=tag)

    def _bound_in_base(self, amount: Decimal, currency: str | None) -> float:
        """A price bound in ``currency`` (None: the base) as the base-currency value ``min_price_base`` holds."""
        if self.rates is None or currency is None:
            return float(amount)
        return float(self.rates.exact(amount, currency, self.rates.base))
