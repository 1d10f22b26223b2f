"""The SQLite side of the search benchmark: a products table as the store has it, and two ways to search it.

``today``: the store's relevance query as ``SqliteCatalog._query_products`` runs it (``products_fts MATCH``
joined to ``products``, ``ORDER BY bm25(...)``, ``LIMIT``), on the same FTS5 table definition (migration 0001).

``topk``: FTS5 used the fastest way we found: the match and ``ORDER BY rank LIMIT k`` on the FTS table alone
(FTS5 then keeps a k-row sorter and joins nothing), rows fetched afterwards by rowid, a prefix index for the
search-as-you-type word, and typo tolerance by expanding each word of 5+ letters to the index's own vocabulary
words one edit away (read once from ``fts5vocab``). Column filters would be applied after, on the k rows.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from app.domain.normalize import brand_key
from app.search import SearchDoc

SCHEMA = """
CREATE TABLE products (
    id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, brand TEXT, brand_key TEXT, category TEXT, category_key TEXT,
    min_price_base REAL NOT NULL, in_stock INTEGER NOT NULL, updated_at TEXT NOT NULL, etag TEXT NOT NULL,
    vendors TEXT NOT NULL, summary BLOB NOT NULL, description TEXT NOT NULL, doc BLOB NOT NULL
);
CREATE TABLE product_vendors (vendor_id TEXT NOT NULL, product_id TEXT NOT NULL,
    PRIMARY KEY (vendor_id, product_id)) WITHOUT ROWID;
CREATE VIRTUAL TABLE products_fts USING fts5 (
    name, description, brand, content = 'products', content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE products_fts_topk USING fts5 (
    name, description, brand, content = 'products', content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3 4'
);
"""

TODAY_SQL = (
    "SELECT p.summary, p.updated_at, p.min_price_base, p.id, p.etag FROM products_fts f "
    "JOIN products p ON p.rowid = f.rowid WHERE products_fts MATCH ? "
    "ORDER BY bm25(products_fts, 10.0, 1.0, 5.0), p.id LIMIT ? OFFSET 0"
)
TOPK_SQL = "SELECT rowid FROM products_fts_topk WHERE products_fts_topk MATCH ? ORDER BY rank LIMIT ?"
_TOKEN = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """The store's own translation (``app.adapters.sqlite.catalog.fts_query``), kept here so the baseline
    stays today's query while the store moves (issue 9)."""
    tokens = _TOKEN.findall(text)[:16]
    if not tokens:
        return None
    quoted = [f'"{t}"' for t in tokens]
    quoted[-1] += "*"
    return " ".join(quoted)


def product_row(doc: SearchDoc) -> tuple[object, ...]:
    """A row shaped like the store's, with a summary and document of realistic size (they are what a page reads)."""
    summary = orjson.dumps(
        {"id": doc.id, "name": doc.name, "brand": doc.brand, "category": doc.category, "price": doc.min_price_base}
    )
    body = orjson.dumps(
        {
            "id": doc.id,
            "name": doc.name,
            "description": doc.description,
            "brand": doc.brand,
            "category": doc.category,
            "vendors": doc.vendors,
            "price": doc.min_price_base,
            "in_stock": doc.in_stock,
            "updated_at": doc.updated_at.isoformat(),
        }
    )
    return (
        doc.id,
        doc.name,
        doc.brand,
        brand_key(doc.brand),
        doc.category,
        brand_key(doc.category),
        doc.min_price_base,
        int(doc.in_stock),
        doc.updated_at.isoformat(),
        f'"{doc.id[-12:]}"',
        orjson.dumps(doc.vendors).decode(),
        summary,
        doc.description,
        body,
    )


def build(path: Path, docs: Iterable[SearchDoc]) -> dict[str, float]:
    """Write the products, then each FTS index in one statement; returns seconds per step."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + SCHEMA)
    times: dict[str, float] = {}
    started = time.perf_counter()
    conn.execute("BEGIN")
    batch: list[tuple[object, ...]] = []
    for doc in docs:
        batch.append(product_row(doc))
        if len(batch) == 5000:
            _insert(conn, batch)
            batch = []
    _insert(conn, batch)
    conn.execute("COMMIT")
    times["rows"] = time.perf_counter() - started
    for table in ("products_fts", "products_fts_topk"):
        started = time.perf_counter()
        conn.execute(f"INSERT INTO {table} ({table}) VALUES ('rebuild')")
        conn.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
        times[table] = time.perf_counter() - started
    conn.execute("INSERT INTO products_fts_topk (products_fts_topk, rank) VALUES ('rank', 'bm25(10.0, 1.0, 5.0)')")
    conn.close()
    return times


def _insert(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    conn.executemany(
        "INSERT INTO products (id, name, brand, brand_key, category, category_key, min_price_base, in_stock, "
        "updated_at, etag, vendors, summary, description, doc) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.executemany(
        "INSERT INTO product_vendors (vendor_id, product_id) VALUES (?, ?)",
        [(v, r[0]) for r in rows for v in orjson.loads(str(r[10]))],
    )


def read_docs(path: Path) -> Iterator[SearchDoc]:
    """The store's products as documents for the index: what a rebuild from the store reads."""
    from datetime import datetime

    conn = sqlite3.connect(path)
    try:
        for row in conn.execute(
            "SELECT id, name, description, brand, category, vendors, min_price_base, in_stock, updated_at FROM products"
        ):
            yield SearchDoc(
                id=row[0],
                name=row[1],
                description=row[2],
                brand=row[3],
                category=row[4],
                vendors=tuple(orjson.loads(row[5])),
                min_price_base=row[6],
                in_stock=bool(row[7]),
                updated_at=datetime.fromisoformat(row[8]),
            )
    finally:
        conn.close()


class Fts5Search:
    """Both FTS5 searches over one connection; ``search_*`` return the page's summaries, as the store does."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False)
        self.conn.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, products_fts_topk, row)")
        self.conn.execute("PRAGMA query_only = 1")
        self._vocab: dict[int, set[str]] | None = None

    def today(self, text: str, limit: int = 20) -> list[bytes]:
        match = fts_query(text)
        if match is None:
            return []
        return [r[0] for r in self.conn.execute(TODAY_SQL, (match, limit + 1)).fetchall()]

    def vocabulary(self) -> dict[int, set[str]]:
        """The index's words by length, so a typo is expanded only to words that exist."""
        if self._vocab is None:
            vocab: dict[int, set[str]] = {}
            for (term,) in self.conn.execute("SELECT term FROM temp.vocab"):
                vocab.setdefault(len(term), set()).add(term)
            self._vocab = vocab
        return self._vocab

    def topk_query(self, text: str) -> str | None:
        tokens = [t.lower() for t in _TOKEN.findall(text)[:16]]
        if not tokens:
            return None
        vocab = self.vocabulary()
        parts = []
        for i, token in enumerate(tokens):
            options = {f'"{token}"' + ("*" if i == len(tokens) - 1 else "")}
            if len(token) >= 5:
                options |= {f'"{w}"' for w in _one_edit(token) if w in vocab.get(len(w), ())}
            parts.append("(" + " OR ".join(sorted(options)) + ")")
        return " AND ".join(parts)

    def topk(self, text: str, limit: int = 20) -> list[bytes]:
        match = self.topk_query(text)
        if match is None:
            return []
        rowids = [r[0] for r in self.conn.execute(TOPK_SQL, (match, limit + 1))]
        if not rowids:
            return []
        marks = ",".join("?" * len(rowids))
        rows = dict(
            self.conn.execute(f"SELECT rowid, summary FROM products WHERE rowid IN ({marks})", rowids).fetchall()
        )
        return [rows[r] for r in rowids]

    def summaries(self, ids: list[str]) -> list[bytes]:
        """What the store reads for a page the index ordered: summaries by id, kept in the index's order."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = dict(self.conn.execute(f"SELECT id, summary FROM products WHERE id IN ({marks})", ids).fetchall())
        return [rows[i] for i in ids if i in rows]


def _one_edit(word: str) -> set[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    replaces = {a + c + b[1:] for a, b in splits if b for c in letters}
    inserts = {a + c + b for a, b in splits for c in letters}
    return (deletes | swaps | replaces | inserts) - {word}
