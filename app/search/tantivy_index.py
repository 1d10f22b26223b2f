"""The catalog's search index on Tantivy (through tantivy-py): an on-disk, memory-mapped index beside the store.

Why Tantivy: at a million products it answers a distinct search in about a millisecond where SQLite FTS5, even
with its top-k form, ranks every matching row (``python -m bench.search`` has the table). Its segments are files
the OS maps and pages in, so the index costs the API process page cache, not Python heap.

Writes come from one thread (the store's writer), reads from any number of threads: Tantivy releases the GIL
while it searches, and each read takes its own searcher (a consistent snapshot of the segments, cheap to get).
Nothing written is visible until ``commit``, which is atomic; the writer reloads the reader right after, so a
search that starts after ``commit`` returns sees the write. Another process (the CLI's rebuild) is seen on
Tantivy's own reload on commit, which watches the index's meta file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tantivy import Document, Index, IndexWriter, Order, Query, Schema, SchemaBuilder, Searcher

from app.domain.normalize import brand_key, clean_text
from app.domain.queries import Sort
from app.search.model import PRICE_BANDS, FacetValue, Facets, SearchDoc, SearchFilters, SearchPage
from app.search.query import TOKENIZER, analyzer, combine, filter_queries, float_key, text_query

# Writer memory: Tantivy flushes a segment when its buffer is full. The API process keeps one small writer (its
# writes come in store transactions of at most a few thousand products); a rebuild may pass more.
WRITER_HEAP = 48_000_000
# Enough for any brand, category or vendor list a catalog has: each segment then reports all its values, so the
# merged counts are exact (Tantivy's terms aggregation is approximate when a segment's list is cut).
FACET_SEGMENT_SIZE = 1_000_000


def _schema() -> Schema:
    b = SchemaBuilder()
    b.add_text_field("id", stored=True, fast=True, tokenizer_name="raw", index_option="basic")
    for name in ("name", "brand", "description"):
        b.add_text_field(name, tokenizer_name=TOKENIZER, index_option="freq")
    # Exact filters and facets: keys as the store computes them, labels as shown.
    for name in ("brand_key", "category_key", "vendor", "brand_label", "category_label"):
        b.add_text_field(name, fast=True, tokenizer_name="raw", index_option="basic")
    b.add_float_field("price", indexed=True, fast=True)
    b.add_boolean_field("in_stock", indexed=True, fast=True)
    # Sort keys with the id appended, so ordering by one field is total and a cursor is one string.
    b.add_text_field("price_key", fast=True, tokenizer_name="raw", index_option="basic")
    b.add_text_field("updated_key", fast=True, tokenizer_name="raw", index_option="basic")
    # The id's first 16 bytes as two numbers: breaks relevance ties by id without reading stored documents.
    b.add_unsigned_field("id_hi", fast=True)
    b.add_unsigned_field("id_lo", fast=True)
    return b.build()


def _id_words(pid: str) -> tuple[int, int]:
    raw = pid.encode()[:16].ljust(16, b"\0")
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")


def _updated_key(moment: datetime) -> str:
    micros = int(moment.astimezone(UTC).timestamp() * 1_000_000) if moment.tzinfo else int(moment.timestamp() * 1e6)
    return f"{micros + (1 << 62):016x}"


def to_document(schema: Schema, doc: SearchDoc) -> Document:
    fields: dict[str, Any] = {
        "id": doc.id,
        "name": doc.name,
        "description": doc.description,
        "price": float(doc.min_price_base),
        "in_stock": bool(doc.in_stock),
        "price_key": float_key(doc.min_price_base) + doc.id,
        "updated_key": _updated_key(doc.updated_at) + doc.id,
    }
    fields["id_hi"], fields["id_lo"] = _id_words(doc.id)
    if doc.vendors:
        fields["vendor"] = list(doc.vendors)
    for name, value in (("brand", doc.brand), ("category", doc.category)):
        key = brand_key(value)
        if key:
            fields[f"{name}_key"] = key
            fields[f"{name}_label"] = clean_text(value) or key
    if doc.brand:
        fields["brand"] = doc.brand
    return Document.from_dict(fields, schema)


class TantivyIndex:
    """Create or open the index in ``path`` (``None``: in memory, for tests that need no files)."""

    def __init__(self, path: Path | None, *, writer_heap: int = WRITER_HEAP, writer_threads: int = 1) -> None:
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._index = Index(_schema(), path=str(path) if path is not None else None, reuse=True)
        self._index.register_tokenizer(TOKENIZER, analyzer())
        self._analyzer = analyzer()
        self._schema = self._index.schema
        self._writer_heap = writer_heap
        self._writer_threads = writer_threads
        self._writer: IndexWriter | None = None
        self._write_lock = threading.Lock()

    # -- writes: one thread at a time ------------------------------------------------------------------------

    def _w(self) -> IndexWriter:
        if self._writer is None:
            # Tantivy allows one writer per index (a lock file): only the process that writes opens one.
            self._writer = self._index.writer(heap_size=self._writer_heap, num_threads=self._writer_threads)
        return self._writer

    def upsert(self, docs: Iterable[SearchDoc]) -> int:
        """Replace these products' documents (or add them); visible at the next ``commit``."""
        with self._write_lock:
            writer = self._w()
            n = 0
            for doc in docs:
                writer.delete_documents_by_term("id", doc.id)
                writer.add_document(to_document(self._schema, doc))
                n += 1
            return n

    def delete(self, ids: Iterable[str]) -> None:
        with self._write_lock:
            writer = self._w()
            for pid in ids:
                writer.delete_documents_by_term("id", pid)

    def commit(self) -> None:
        """Make every write since the last commit visible, atomically; call once per store transaction."""
        with self._write_lock:
            if self._writer is None:
                return
            self._writer.commit()
        self._index.reload()

    def rollback(self) -> None:
        """Drop the writes since the last commit (the store's transaction they belonged to rolled back)."""
        with self._write_lock:
            if self._writer is not None:
                self._writer.rollback()

    def rebuild(self, docs: Iterable[SearchDoc]) -> int:
        """Replace the whole index with ``docs`` in one commit: searches see the old index until it is done."""
        with self._write_lock:
            writer = self._w()
            writer.delete_all_documents()
            n = 0
            for doc in docs:
                writer.add_document(to_document(self._schema, doc))
                n += 1
            writer.commit()
            writer.wait_merging_threads()
            self._writer = None
        self._index.reload()
        return n

    def close(self) -> None:
        """Wait for background merges and release the writer's lock; uncommitted writes are dropped."""
        with self._write_lock:
            if self._writer is not None:
                self._writer.rollback()
                self._writer.wait_merging_threads()
                self._writer = None

    # -- reads: any thread -----------------------------------------------------------------------------------

    def words(self, text: str) -> list[str]:
        return self._analyzer.analyze(text)

    def _query(self, text: str | None, filters: SearchFilters) -> Query | None:
        """``None`` when the text has no searchable word: such a search matches nothing, as it did in FTS5."""
        main = None
        if text is not None and text.strip():
            words = self.words(text)
            if not words:
                return None
            main = text_query(self._schema, words)
        return combine(main, filter_queries(self._schema, filters))

    def count(self, text: str | None = None, filters: SearchFilters | None = None) -> int:
        query = self._query(text, filters or SearchFilters())
        if query is None:
            return 0
        return int(self._index.searcher().search(query, limit=1, count=True).count)

    def search(
        self,
        text: str | None = None,
        filters: SearchFilters | None = None,
        sort: Sort = Sort.RELEVANCE,
        limit: int = 20,
        after: Sequence[Any] | None = None,
    ) -> SearchPage:
        """One page of product ids; ``after`` is the previous page's ``next_after``.

        Relevance pages go by position (score ties broken by id, so the order is the same on every call and
        after a rebuild); the other sorts go by key (price or update time, then id), so a page continues exactly
        after the last product shown even when products were added in between.
        """
        filters = filters or SearchFilters()
        if sort is Sort.RELEVANCE and not (text and text.strip()):
            sort = Sort.UPDATED
        query = self._query(text, filters)
        if query is None or limit <= 0:
            return SearchPage(ids=[], next_after=None)
        searcher = self._index.searcher()
        if sort is Sort.RELEVANCE:
            offset = int(after[0]) if after else 0
            return self._by_relevance(searcher, query, offset, limit)
        return self._by_key(searcher, query, sort, limit, str(after[0]) if after else None)

    def _by_key(self, searcher: Searcher, query: Query, sort: Sort, limit: int, after: str | None) -> SearchPage:
        field = "updated_key" if sort is Sort.UPDATED else "price_key"
        ascending = sort is Sort.PRICE
        if after is not None:
            bound = Query.range_query(
                self._schema,
                field,
                _TEXT,
                lower_bound=after if ascending else None,
                upper_bound=None if ascending else after,
                include_lower=False,
                include_upper=False,
            )
            query = combine(query, [Query.const_score_query(bound, 0.0)])
        hits = searcher.search(
            query, limit=limit + 1, count=False, order_by_field=field, order=Order.Asc if ascending else Order.Desc
        ).hits
        keys = [str(key) for key, _ in hits]
        more = len(keys) > limit
        keys = keys[:limit]
        # The key is 16 hex digits of price or time, then the id: no stored document to read.
        return SearchPage(ids=[k[16:] for k in keys], next_after=(keys[-1],) if more else None)

    def _by_relevance(self, searcher: Searcher, query: Query, offset: int, limit: int) -> SearchPage:
        wanted = offset + limit + 1
        fetch = wanted
        hits = searcher.search(query, limit=fetch, count=False).hits
        # Tantivy orders equal scores by segment and document number, which merges change. Fetch until the
        # score at the page's end is passed, then order that tied group by id.
        if len(hits) == wanted:
            boundary = hits[wanted - 1][0]
            while len(hits) == fetch and hits[-1][0] == boundary:
                fetch *= 4
                hits = searcher.search(query, limit=fetch, count=False).hits
            hits = [h for h in hits if h[0] >= boundary]
        ties = [addr for score, addr in hits if score == hits[-1][0]] if hits else []
        order: dict[int, tuple[int, int]] = {}
        if len(ties) > 1:
            his = searcher.fast_field_values("id_hi", ties)
            los = searcher.fast_field_values("id_lo", ties)
            for addr, hi, lo in zip(ties, his, los, strict=True):
                order[id(addr)] = (int(hi or 0), int(lo or 0))
        ranked = sorted(hits, key=lambda h: (-h[0], order.get(id(h[1]), (0, 0))))
        # Ids equal in their first 16 bytes still need the stored id to be ordered; rare, so done per page.
        page = ranked[offset : offset + limit]
        ids = [str(searcher.doc(addr).get_first("id")) for _, addr in page]
        ids = _settle_long_ties(page, order, ids)
        more = len(ranked) > offset + limit
        return SearchPage(ids=ids, next_after=(offset + limit,) if more else None)

    def facets(self, text: str | None = None, filters: SearchFilters | None = None, size: int = 50) -> Facets:
        """Counts of what ``search(text, filters)`` returns, by brand, category, vendor, price band and stock."""
        query = self._query(text, filters or SearchFilters())
        if query is None:
            return Facets(total=0)

        def terms(field: str, label: str | None) -> dict[str, Any]:
            agg: dict[str, Any] = {"terms": {"field": field, "size": size, "segment_size": FACET_SEGMENT_SIZE}}
            if label:
                agg["aggs"] = {"label": {"terms": {"field": label, "size": 1}}}
            return agg

        ranges = [{"key": b.key, "from": b.low} | ({"to": b.high} if b.high is not None else {}) for b in PRICE_BANDS]
        spec = {
            "brand": terms("brand_key", "brand_label"),
            "category": terms("category_key", "category_label"),
            "vendor": terms("vendor", None),
            "price": {"range": {"field": "price", "ranges": ranges}},
            "in_stock": {"terms": {"field": "in_stock", "size": 2}},
            "total": {"value_count": {"field": "price"}},
        }
        result = self._index.searcher().aggregate(query, spec)
        return _facets_from(result)


_TEXT = __import__("tantivy").FieldType.Text


def _settle_long_ties(page: list[tuple[Any, Any]], order: dict[int, tuple[int, int]], ids: list[str]) -> list[str]:
    """Reorder neighbours whose score and first 16 id bytes are equal by their full id."""
    keyed = [(-score, order.get(id(addr), (0, 0)), pid) for (score, addr), pid in zip(page, ids, strict=True)]
    return [pid for *_, pid in sorted(keyed)]


def _buckets(result: dict[str, Any], name: str) -> tuple[list[FacetValue], int]:
    agg = result.get(name) or {}
    values = []
    for b in agg.get("buckets", []):
        labels = (b.get("label") or {}).get("buckets") or []
        key = str(b["key"])
        values.append(FacetValue(key=key, label=str(labels[0]["key"]) if labels else key, count=int(b["doc_count"])))
    return values, int(agg.get("sum_other_doc_count", 0))


def _facets_from(result: dict[str, Any]) -> Facets:
    brand, brand_other = _buckets(result, "brand")
    category, category_other = _buckets(result, "category")
    vendor, vendor_other = _buckets(result, "vendor")
    price = [
        FacetValue(key=str(b["key"]), label=str(b["key"]), count=int(b["doc_count"]))
        for b in result["price"]["buckets"]
    ]
    in_stock = {bool(b["key"]) if not isinstance(b["key"], str) else b["key"] == "true": int(b["doc_count"])
                for b in result["in_stock"]["buckets"]}
    return Facets(
        total=int(result["total"]["value"]),
        brand=brand,
        category=category,
        vendor=vendor,
        price=price,
        in_stock=in_stock,
        brand_other=brand_other,
        category_other=category_other,
        vendor_other=vendor_other,
    )
