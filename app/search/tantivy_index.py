"""The catalog's search index on Tantivy (through tantivy-py): an on-disk, memory-mapped index beside the store.

Why Tantivy: at a million products a distinct search takes a few milliseconds (p99 tens) where SQLite FTS5, even in
its top-k form, ranks every matching row and takes up to half a second, and FTS5 has no typo tolerance of its own
(``python -m bench.search`` has the table). Its segments are files the OS maps, so the index costs the API process
page cache, not Python heap.

Writes come from one thread (the store's writer), after the store's own commit, so the index never holds what
the store rolled back; reads from any number of threads: Tantivy releases the GIL while it searches, and each
read takes its own searcher (a consistent snapshot of the segments; getting one costs 0.2 us). Nothing written is
visible until ``commit``, which is atomic and reloads the reader, so a search that starts after ``commit`` returns
sees the write. Another process's commits (the CLI's rebuild) are seen on Tantivy's own reload, which watches
the index's meta file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tantivy import Document, FieldType, Index, IndexWriter, Order, Query, Schema, SchemaBuilder, Searcher

from app.domain.normalize import brand_key, clean_text
from app.domain.queries import Sort
from app.search.model import PRICE_BANDS, Facets, FacetValue, SearchDoc, SearchFilters, SearchPage
from app.search.query import TOKENIZER, analyzer, combine, filter_queries, text_query

log = logging.getLogger(__name__)

# How long a write may wait to share an index commit with others (see commit_soon).
COMMIT_WITHIN = 0.1
WATERMARK_FILE = "catalog-watermark.json"
# Writer memory: Tantivy flushes a segment when its buffer is full. The API process keeps one small writer (its
# writes come in store transactions of at most a few thousand products, a few MB of text): 24 MB added ~24 MB of
# heap to the process, where 48 MB added ~40 MB for no faster writes (bench.search). A rebuild may pass more.
WRITER_HEAP = 24_000_000
# Facets ask for every brand, category and vendor (Tantivy's terms aggregation is approximate once a segment's
# list is cut), then keep the most frequent ones.
FACET_VALUES = 65_536
# Relevance ties. BM25 gives many products the very same score (all of one brand for the brand's name, all typo or
# prefix matches of a word), and Tantivy orders equal scores by segment and document number, which merges change.
# Each product's score is multiplied by log2(2 + nudge), nudge falling with its id from NUDGE to 0: at most 0.1%
# more for the smallest ids. Equal scores thereby split into ~5,800 groups in id order (f32 resolution), and the
# few products left equal at a page's end are fetched whole and ordered by id. The price: products whose scores
# differ by less than 0.1% may come in id order rather than score order.
NUDGE = 2**1.001 - 2
# A safety bound on fetching a group tied at a page's end (a few products in practice, see NUDGE).
TIE_FETCH = 65_536


def _schema() -> Schema:
    b = SchemaBuilder()
    b.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    for name in ("name", "brand", "description"):
        b.add_text_field(name, tokenizer_name=TOKENIZER, index_option="freq")
    # Exact filters and facets: keys as the store computes them, labels as shown.
    for name in ("brand_key", "category_key"):
        b.add_text_field(name, tokenizer_name="raw", index_option="basic")
    for name in ("vendor", "brand_label", "category_label"):
        b.add_text_field(name, fast=True, tokenizer_name="raw", index_option="basic")
    b.add_float_field("price", indexed=True, fast=True)
    b.add_boolean_field("in_stock", indexed=True, fast=True)
    # Sort keys: price in cents or update time in seconds, then 30 bits of the id (see sort_key). Not indexed:
    # a cursor's range is read from the column, and a term per product would double the term dictionary.
    b.add_unsigned_field("price_key", fast=True)
    b.add_unsigned_field("updated_key", fast=True)
    # The id's first 24 bytes as three numbers: ids of a page without reading stored documents (the store's ids
    # have 22; longer ones are read from the stored field).
    for name in ID_WORDS:
        b.add_unsigned_field(name, fast=True)
    b.add_float_field("nudge", fast=True)
    return b.build()


ID_WORDS = ("id_0", "id_1", "id_2")
_ID_BYTES = 8 * len(ID_WORDS)


def _id_words(pid: str) -> list[int]:
    raw = pid.encode()[:_ID_BYTES].ljust(_ID_BYTES, b"\0")
    return [int.from_bytes(raw[i : i + 8], "big") for i in range(0, _ID_BYTES, 8)]


def _ids(searcher: Searcher, addrs: list[Any]) -> list[str]:
    """The products' ids from their id words; an id that fills all 24 bytes may be longer: read it whole."""
    columns = [searcher.fast_field_values(name, addrs) for name in ID_WORDS]
    ids = []
    for addr, *words in zip(addrs, *columns, strict=True):
        raw = b"".join(int(w or 0).to_bytes(8, "big") for w in words).rstrip(b"\0")
        ids.append(raw.decode() if len(raw) < _ID_BYTES else str(searcher.doc(addr).get_first("id")))
    return ids


_ID_BITS = 30
_HEX = frozenset("0123456789abcdef")


def id_bits(pid: str) -> int:
    """30 bits that sort as the id does: the leading hex digits of the store's ids (``p_`` + hex, see
    ``app.domain.unify.product_id``), otherwise the id's first bytes. Equal bits are ordered by the whole id."""
    digits = pid[2:10]
    if pid.startswith("p_") and len(digits) == 8 and _HEX.issuperset(digits):
        return int(digits, 16) >> (32 - _ID_BITS)
    return int.from_bytes(pid.encode()[:4].ljust(4, b"\0"), "big") >> (32 - _ID_BITS)


def sort_key(value: int, pid: str) -> int:
    """One unsigned number per product that orders by ``value`` then id, for Tantivy's single-field sort.

    ``value`` is the price in cents or the update time in seconds (34 bits: $171M, the year 2514), so products
    whose prices differ by less than a cent sort by id, as if they cost the same.
    """
    return (min(max(value, 0), (1 << 34) - 1) << _ID_BITS) | id_bits(pid)


def _seconds(moment: datetime) -> int:
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def to_document(schema: Schema, doc: SearchDoc) -> Document:
    fields: dict[str, Any] = {
        "id": doc.id,
        "name": doc.name,
        "description": doc.description,
        "price": float(doc.min_price_base),
        "in_stock": bool(doc.in_stock),
        "price_key": sort_key(round(doc.min_price_base * 100), doc.id),
        "updated_key": sort_key(_seconds(doc.updated_at), doc.id),
    }
    fields.update(zip(ID_WORDS, _id_words(doc.id), strict=True))
    fields["nudge"] = NUDGE * (1.0 - id_bits(doc.id) / (1 << _ID_BITS))
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
        self.path = path
        self.recreated = False
        if path is None:
            self._index = Index(_schema())
        else:
            self._index = self._open_or_recreate(path)
        self._index.register_tokenizer(TOKENIZER, analyzer())
        self._analyzer = analyzer()
        self._schema = self._index.schema
        self._writer_heap = writer_heap
        self._writer_threads = writer_threads
        self._writer: IndexWriter | None = None
        self._write_lock = threading.Lock()
        self._memory_watermark: int | None = None
        self._pending_watermark: int | None = None
        self._timer: threading.Timer | None = None

    def _open_or_recreate(self, path: Path) -> Index:
        """The index in ``path`` (a directory of its own); one of another schema or an older Tantivy format is
        replaced by an empty one. The index is derived data: ``recreated`` (and a ``watermark`` of None) tells the
        store to rebuild it.
        """
        path.mkdir(parents=True, exist_ok=True)
        exists = Index.exists(str(path))
        try:
            if exists and not Index.is_compatible(str(path)):
                raise ValueError("index format of another Tantivy version")
            return Index(_schema(), path=str(path), reuse=True)
        except ValueError as exc:
            if not exists:  # not an index we may replace: whatever is there is someone else's
                raise
            log.warning("search index in %s cannot be used (%s); starting an empty one to rebuild", path, exc)
        shutil.rmtree(path)
        path.mkdir(parents=True)
        self.recreated = True
        return Index(_schema(), path=str(path), reuse=True)

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

    def commit(self, watermark: int | None = None) -> None:
        """Make every write so far visible, atomically, then record ``watermark`` (or a pending one).

        ``watermark`` is the store's position these writes bring the index up to (its ``change_seq``): a
        process that stopped between the store's commit and this one finds the index behind and catches up from
        there. Recorded after the index's own commit, so it can lag the index (a catch-up rewrites a few
        products) but never run ahead of it.
        """
        with self._write_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            watermark = watermark if watermark is not None else self._pending_watermark
            self._pending_watermark = None
            if self._writer is not None:
                self._writer.commit()
            self._index.reload()
            if watermark is not None:
                self._save_watermark(watermark)

    def commit_soon(self, watermark: int | None = None, within: float = COMMIT_WITHIN) -> None:
        """Commit at most ``within`` seconds from now, together with whatever else is written meanwhile.

        A commit costs ~20 ms at a million products (a new segment, fsyncs, reopening the searcher), and a busy
        store commits many small transactions a second; they then share one index commit per window.
        """
        with self._write_lock:
            if watermark is not None:
                self._pending_watermark = watermark
            if self._timer is None:
                self._timer = threading.Timer(within, self._commit_due)
                self._timer.daemon = True
                self._timer.start()

    def _commit_due(self) -> None:
        try:
            self.commit()
        except Exception:  # on a timer thread: nobody else would hear of it
            log.exception("search index commit failed; the next commit retries it")

    @property
    def watermark(self) -> int | None:
        """The last ``watermark`` committed, ``None`` for a new index (or one in memory)."""
        if self.path is None or not (self.path / WATERMARK_FILE).exists():
            return self._memory_watermark
        return int(json.loads((self.path / WATERMARK_FILE).read_text())["watermark"])

    def _save_watermark(self, watermark: int) -> None:
        if self.path is None:
            self._memory_watermark = watermark
            return
        tmp = self.path / (WATERMARK_FILE + ".tmp")
        tmp.write_text(json.dumps({"watermark": watermark}))
        os.replace(tmp, self.path / WATERMARK_FILE)

    def rebuild(
        self, docs: Iterable[SearchDoc], watermark: int | None = None, *, writer_heap: int | None = None
    ) -> int:
        """Replace the whole index with ``docs`` in one commit: searches see the old index until it is done.

        ``watermark`` as for ``commit``: where the store stood when ``docs`` were read from it. ``writer_heap``:
        a larger buffer for this one bulk write, with a thread per core (100k products: 31 s with the small
        writer, 12 s with 128 MB and two threads); the writer is let go afterwards either way.
        """
        with self._write_lock:
            if writer_heap is not None:
                if self._writer is not None:
                    self._writer.commit()
                    self._writer.wait_merging_threads()
                    self._writer = None
                self._writer = self._index.writer(heap_size=writer_heap, num_threads=min(4, os.cpu_count() or 1))
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
            if watermark is not None:
                self._save_watermark(watermark)
        return n

    def close(self) -> None:
        """Commit what was written (the store has committed it), wait for merges, release the writer's lock."""
        if self._writer is not None or self._timer is not None:
            self.commit()
        with self._write_lock:
            if self._writer is not None:
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
        result = self._index.searcher().aggregate(query, {"n": {"value_count": {"field": "price"}}})
        return int(result["n"]["value"])

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
        return self._by_key(searcher, query, sort, limit, (int(after[0]), str(after[1])) if after else None)

    def _by_key(
        self, searcher: Searcher, query: Query, sort: Sort, limit: int, after: tuple[int, str] | None
    ) -> SearchPage:
        field = "updated_key" if sort is Sort.UPDATED else "price_key"
        ascending = sort is Sort.PRICE
        if after is not None:
            # Inclusive: products sharing the cursor's key (a sub-cent price difference, a rare id collision) are
            # told apart by id below.
            low, high = (after[0], None) if ascending else (None, after[0])
            bound = Query.range_query(self._schema, field, FieldType.Unsigned, lower_bound=low, upper_bound=high)
            query = combine(query, [Query.const_score_query(bound, 0.0)])
        order = Order.Asc if ascending else Order.Desc
        fetch = limit + 2
        while True:
            hits = searcher.search(query, limit=fetch, count=False, order_by_field=field, order=order).hits
            complete = len(hits) < fetch
            if not complete:
                # The last key's group may continue past what was fetched: leave it for a larger fetch.
                last = hits[-1][0]
                hits = [h for h in hits if h[0] != last]
            rows = list(zip((int(key) for key, _ in hits), _ids(searcher, [addr for _, addr in hits]), strict=True))
            if after is not None:
                rows = [r for r in rows if (r > after if ascending else r < after)]
            if complete or len(rows) > limit:
                break
            fetch *= 4
        rows.sort(reverse=not ascending)
        more = len(rows) > limit
        rows = rows[:limit]
        return SearchPage(ids=[pid for _, pid in rows], next_after=rows[-1] if more else None)

    def _by_relevance(self, searcher: Searcher, query: Query, offset: int, limit: int) -> SearchPage:
        wanted = offset + limit + 1
        fetch = wanted + 1
        hits = searcher.search(query, limit=fetch, count=False, weight_by_field="nudge").hits
        if len(hits) == fetch and hits[-1][0] == hits[wanted - 1][0]:
            # The group tied at the page's end goes on: fetch until it ends, so it can be ordered by id whole.
            boundary = hits[wanted - 1][0]
            while len(hits) == fetch and hits[-1][0] == boundary and fetch < TIE_FETCH:
                fetch *= 4
                hits = searcher.search(query, limit=fetch, count=False, weight_by_field="nudge").hits
            hits = [h for h in hits if h[0] >= boundary]
        else:
            hits = hits[:wanted]
        ids = _ids(searcher, [addr for _, addr in hits])
        ranked = sorted(zip((-float(score) for score, _ in hits), ids, strict=True))
        more = len(ranked) > offset + limit
        return SearchPage(
            ids=[pid for _, pid in ranked[offset : offset + limit]], next_after=(offset + limit,) if more else None
        )

    def facets(self, text: str | None = None, filters: SearchFilters | None = None, size: int = 50) -> Facets:
        """Counts of what ``search(text, filters)`` returns, by brand, category, vendor, price band and stock."""
        query = self._query(text, filters or SearchFilters())
        if query is None:
            return Facets(total=0)

        def terms(field: str) -> dict[str, Any]:
            # Every value, so the counts merged per key below are exact; a catalog has thousands of brands at most.
            return {"terms": {"field": field, "size": FACET_VALUES, "segment_size": FACET_VALUES}}

        ranges = [{"key": b.key, "from": b.low} | ({"to": b.high} if b.high is not None else {}) for b in PRICE_BANDS]
        spec = {
            "brand": terms("brand_label"),
            "category": terms("category_label"),
            "vendor": terms("vendor"),
            "price": {"range": {"field": "price", "ranges": ranges}},
            "in_stock": {"terms": {"field": "in_stock", "size": 2}},
            "total": {"value_count": {"field": "price"}},
        }
        result = self._index.searcher().aggregate(query, spec)
        return _facets_from(result, size)


def _buckets(result: dict[str, Any], name: str, size: int, keyed: bool) -> tuple[list[FacetValue], int]:
    """Buckets by label, merged by key (spellings of one brand share it), most frequent first, then by key."""
    merged: dict[str, list[Any]] = {}
    for b in result[name]["buckets"]:
        label, count = str(b["key"]), int(b["doc_count"])
        key = (brand_key(label) or label) if keyed else label
        entry = merged.setdefault(key, [0, label, 0])
        entry[0] += count
        if count > entry[2]:
            entry[1], entry[2] = label, count
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1][0], kv[0]))
    values = [FacetValue(key=k, label=v[1], count=v[0]) for k, v in ranked[:size]]
    return values, sum(v[0] for _, v in ranked[size:])


def _facets_from(result: dict[str, Any], size: int) -> Facets:
    brand, brand_other = _buckets(result, "brand", size, keyed=True)
    category, category_other = _buckets(result, "category", size, keyed=True)
    vendor, vendor_other = _buckets(result, "vendor", size, keyed=False)
    bands = {b.key for b in PRICE_BANDS}
    price = [
        FacetValue(key=str(b["key"]), label=str(b["key"]), count=int(b["doc_count"]))
        for b in result["price"]["buckets"]
        if b["key"] in bands
    ]
    in_stock = {_as_bool(b["key"]): int(b["doc_count"]) for b in result["in_stock"]["buckets"]}
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


def _as_bool(key: Any) -> bool:
    return key in (True, 1, "true")
