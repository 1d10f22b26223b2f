"""SQLite catalog store.

Why it is shaped like this:
- Reads are the hot path (the mobile app), so they run inline on a per-thread reader connection: an indexed
  lookup on a local WAL file takes microseconds, less than a hop to a thread pool would cost. Product JSON is
  precomputed at write time (``app.domain.documents``), so a read is a byte copy.
- All writes go through one dedicated writer thread with its own connection, so the event loop never waits on
  a write lock and batches commit in one transaction each. Other processes (the ``catalog`` CLI) may write the
  same file; ``BEGIN IMMEDIATE`` plus a busy timeout serialises them.
- Unification is incremental but must agree with ``app.domain.unify.unify`` over the whole set: each batch
  re-resolves every offer that shares a match key with a changed offer, then rebuilds the touched products.
- ``change_seq`` comes from one counter in ``meta`` read and advanced inside each write transaction, so it is
  monotonic across processes. Re-fetching an unchanged offer only refreshes ``fetched_at`` and takes no
  sequence number: it is bookkeeping, not a change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
import sqlite3
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from app.domain import documents
from app.domain.cursor import Cursor, decode_cursor, encode_cursor, fingerprint
from app.domain.models import Availability, Offer, Vendor, VendorKind, utcnow
from app.domain.money import Rates
from app.domain.normalize import brand_key
from app.domain.queries import (
    OfferFreshness,
    OfferRef,
    ProductPage,
    ProductQuery,
    Sort,
    StoredProduct,
    SyncProgress,
    UpsertResult,
    VendorSyncStatus,
)
from app.domain.unify import build_product, key_for, match_key, product_id
from app.errors import Conflict, NotFound
from app.store.sqlite.transaction import immediate

log = logging.getLogger(__name__)

T = TypeVar("T")
CHUNK = 500

_OFFER_COLUMNS = (
    "vendor_id, vendor_product_id, product_id, parent_id, title, description, price, currency, images, sku, "
    "gtin, brand, category, availability, stock, url, vendor_updated_at, fetched_at, match_key, content_hash, "
    "change_seq"
)
OFFER_READ = (
    "vendor_id, vendor_product_id, parent_id, title, description, price, currency, images, sku, gtin, brand, "
    "category, availability, stock, url, vendor_updated_at, fetched_at, product_id"
)


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _content_hash(wire: dict[str, Any], offer: Offer) -> bytes:
    """What identifies an offer's content: its wire form plus its description (``fetched_at`` is not content)."""
    return hashlib.blake2b(orjson.dumps(wire) + offer.description.encode(), digest_size=16).digest()


def row_to_offer(row: sqlite3.Row | tuple[Any, ...]) -> Offer:
    return Offer(
        vendor_id=row[0],
        vendor_product_id=row[1],
        parent_id=row[2],
        title=row[3],
        description=row[4],
        price=Decimal(row[5]),
        currency=row[6],
        images=tuple(orjson.loads(row[7])),
        sku=row[8],
        gtin=row[9],
        brand=row[10],
        category=row[11],
        availability=Availability(row[12]),
        stock=row[13],
        url=row[14],
        vendor_updated_at=_dt(row[15]),
        fetched_at=datetime.fromisoformat(row[16]),
    )


def base_price(rates: Rates | None, prices: Iterable[tuple[Decimal, str]], fallback: Decimal) -> float:
    """The lowest of per-currency minimum prices, in the rates' base currency: one value every product compares by.

    Currencies the rates do not know are left out; with no rates, or none known, ``fallback`` (the main-currency
    minimum) is used unconverted, which still orders single-currency catalogs correctly.
    """
    if rates is not None:
        known = [rates.exact(amount, cur, rates.base) for amount, cur in prices if rates.knows(cur)]
        if known:
            return float(min(known))
    return float(fallback)


def _rates_version(rates: Rates | None) -> int:
    text = rates.fingerprint if rates is not None else "none"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "big")


_FTS_TOKEN = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """User text to a safe FTS5 query: every word must match, the last one as a prefix (search-as-you-type)."""
    tokens = _FTS_TOKEN.findall(text)[:16]
    if not tokens:
        return None
    quoted = [f'"{t}"' for t in tokens]
    quoted[-1] += "*"
    return " ".join(quoted)


K = TypeVar("K")
V = TypeVar("V")


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

    def clear(self) -> None:
        self._entries.clear()


class SqliteCatalog:
    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = 10.0,
        cache_mb: int = 32,
        page_cache_size: int = 256,
        rates: Rates | None = None,
    ) -> None:
        self.path = Path(path)
        # Converts prices to the base currency for sorting and price filters; None compares main-currency prices.
        self.rates = rates
        self._pages: _ReadCache[ProductQuery, ProductPage] = _ReadCache(page_cache_size)
        self._products: _ReadCache[str, StoredProduct | None] = _ReadCache(4 * page_cache_size)
        self._busy_timeout_s = busy_timeout_s
        self._cache_mb = cache_mb
        self._writer: ThreadPoolExecutor | None = None
        self._w: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the file if needed and bring its schema up to date (blocking; run once at start-up)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._writer.submit(self._open_writer).result()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA cache_size = -{self._cache_mb * 1024}")
        conn.execute("PRAGMA temp_store = MEMORY")
        return conn

    def _open_writer(self) -> None:
        conn = self._connect()
        # 8 KiB pages hold three ~2.3 KiB product rows where 4 KiB pages held one: the file is a fifth smaller and
        # list scans touch fewer pages. Only takes effect on a new file (WAL fixes the page size).
        conn.execute("PRAGMA page_size = 8192")
        conn.execute("PRAGMA journal_mode = WAL")
        # Checkpoints fsync; on bulk ingests the default (every 1000 pages) made them a third of the write time.
        conn.execute("PRAGMA wal_autocheckpoint = 5000")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate(conn)
        self._refresh_base_prices(conn)
        self._w = conn

    def _refresh_base_prices(self, conn: sqlite3.Connection) -> None:
        """Fill ``min_price_base`` where a migration left it NULL, or everywhere when the rates changed since."""
        version = _rates_version(self.rates)
        conn.execute("BEGIN IMMEDIATE")
        try:
            (stored,) = conn.execute("SELECT value FROM meta WHERE key = 'rates_version'").fetchone()
            where = "" if stored != version else " WHERE min_price_base IS NULL"
            updates = []
            for pid, summary, min_price in conn.execute(f"SELECT id, summary, min_price FROM products{where}"):
                prices = orjson.loads(summary)["prices"]
                pairs = [(Decimal(p["min"]), p["currency"]) for p in prices]
                updates.append((base_price(self.rates, pairs, Decimal(str(min_price))), pid))
            conn.executemany("UPDATE products SET min_price_base = ? WHERE id = ?", updates)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'rates_version'", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
        folder = resources.files("app.store.sqlite") / "migrations"
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".sql") or entry.name in done:
                continue
            log.info("applying migration %s", entry.name)
            script = entry.read_text(encoding="utf-8")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (entry.name, documents.iso(utcnow())))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        if self._writer is not None:
            if self._w is not None:
                w = self._w
                self._writer.submit(w.close).result()
                self._w = None
            self._writer.shutdown(wait=True)
            self._writer = None
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._local = threading.local()
        # Versions name a connection by its id(); a reopened store could reuse one, so forget them all.
        self._pages.clear()
        self._products.clear()

    @property
    def _r(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._w
        assert conn is not None
        return immediate(conn, fn)

    @staticmethod
    def next_seq(conn: sqlite3.Connection, n: int) -> int:
        """Reserve ``n`` sequence numbers; returns the first. Only call inside a write transaction."""
        (last,) = conn.execute(
            "UPDATE meta SET value = value + ? WHERE key = 'change_seq' RETURNING value - ?", (n, n)
        ).fetchone()
        return int(last) + 1

    def ping(self) -> bool:
        try:
            self._r.execute("SELECT 1 FROM meta LIMIT 1").fetchone()
            return self._writer is not None
        except sqlite3.Error:
            return False

    def change_seq(self) -> int:
        (value,) = self._r.execute("SELECT value FROM meta WHERE key = 'change_seq'").fetchone()
        return int(value)

    # -- vendors ---------------------------------------------------------------------------------------------

    async def add_vendor(self, vendor: Vendor) -> None:
        await self._write(self._tx, lambda c: self._put_vendor(c, vendor, create=True))

    async def update_vendor(self, vendor: Vendor) -> None:
        await self._write(self._tx, lambda c: self._put_vendor(c, vendor, create=False))

    def _put_vendor(self, conn: sqlite3.Connection, vendor: Vendor, *, create: bool) -> None:
        exists = conn.execute("SELECT 1 FROM vendors WHERE id = ?", (vendor.id,)).fetchone() is not None
        if create and exists:
            raise Conflict(f"vendor {vendor.id!r} already exists", details={"vendor_id": vendor.id})
        if not create and not exists:
            raise NotFound(f"vendor {vendor.id!r} does not exist", details={"vendor_id": vendor.id})
        now = documents.iso(utcnow())
        seq = self.next_seq(conn, 1)
        conn.execute(
            """INSERT INTO vendors (id, name, kind, base_url, currency, credentials, refresh_interval_s, enabled,
                                    mapping, created_at, updated_at, change_seq)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind,
                   base_url = excluded.base_url, currency = excluded.currency,
                   credentials = excluded.credentials, refresh_interval_s = excluded.refresh_interval_s,
                   enabled = excluded.enabled, mapping = excluded.mapping, updated_at = excluded.updated_at,
                   change_seq = excluded.change_seq""",
            (
                vendor.id,
                vendor.name,
                vendor.kind.value,
                vendor.base_url,
                vendor.currency,
                orjson.dumps(dict(vendor.credentials)).decode(),
                vendor.refresh_interval_s,
                int(vendor.enabled),
                None if vendor.mapping is None else orjson.dumps(vendor.mapping).decode(),
                now,
                now,
                seq,
            ),
        )
        conn.execute("INSERT OR IGNORE INTO vendor_sync (vendor_id) VALUES (?)", (vendor.id,))

    async def delete_vendor(self, vendor_id: str) -> None:
        """Remove a vendor and its offers; products it shared with other vendors are rebuilt from the rest."""

        def run(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM vendors WHERE id = ?", (vendor_id,)).fetchone() is None:
                raise NotFound(f"vendor {vendor_id!r} does not exist", details={"vendor_id": vendor_id})
            affected = {r[0] for r in conn.execute("SELECT product_id FROM offers WHERE vendor_id = ?", (vendor_id,))}
            matches = {
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT match_key FROM offers WHERE vendor_id = ? AND match_key IS NOT NULL",
                    (vendor_id,),
                )
            }
            conn.execute("DELETE FROM offers WHERE vendor_id = ?", (vendor_id,))
            conn.execute("DELETE FROM vendors WHERE id = ?", (vendor_id,))
            affected |= self._resolve_matches(conn, matches)
            self._rebuild_products(conn, affected)

        await self._write(self._tx, run)

    def _vendor_from_row(self, row: tuple[Any, ...]) -> Vendor:
        return Vendor(
            id=row[0],
            name=row[1],
            kind=VendorKind(row[2]),
            base_url=row[3],
            currency=row[4],
            credentials=orjson.loads(row[5]),
            refresh_interval_s=row[6],
            enabled=bool(row[7]),
            mapping=None if row[8] is None else orjson.loads(row[8]),
        )

    _VENDOR_COLS = "id, name, kind, base_url, currency, credentials, refresh_interval_s, enabled, mapping"

    def get_vendor(self, vendor_id: str) -> Vendor | None:
        row = self._r.execute(f"SELECT {self._VENDOR_COLS} FROM vendors WHERE id = ?", (vendor_id,)).fetchone()
        return self._vendor_from_row(row) if row else None

    def list_vendors(self) -> list[Vendor]:
        rows = self._r.execute(f"SELECT {self._VENDOR_COLS} FROM vendors ORDER BY id").fetchall()
        return [self._vendor_from_row(r) for r in rows]

    def vendor_status(self, vendor_id: str) -> VendorSyncStatus:
        row = self._r.execute(
            """SELECT state, started_at, finished_at, last_success_at, last_full_sync_at, last_error,
                      last_error_at, pages, items_seen, items_skipped, items_total, skip_reasons, syncs_ok,
                      syncs_failed
               FROM vendor_sync WHERE vendor_id = ?""",
            (vendor_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"vendor {vendor_id!r} does not exist", details={"vendor_id": vendor_id})
        (offers,) = self._r.execute("SELECT count(*) FROM offers WHERE vendor_id = ?", (vendor_id,)).fetchone()
        (products,) = self._r.execute(
            "SELECT count(*) FROM product_vendors WHERE vendor_id = ?", (vendor_id,)
        ).fetchone()
        return VendorSyncStatus(
            state=row[0],
            started_at=_dt(row[1]),
            finished_at=_dt(row[2]),
            last_success_at=_dt(row[3]),
            last_full_sync_at=_dt(row[4]),
            last_error=row[5],
            last_error_at=_dt(row[6]),
            progress=SyncProgress(
                pages=row[7],
                items_seen=row[8],
                items_skipped=row[9],
                items_total=row[10],
                skip_reasons=orjson.loads(row[11]),
            ),
            syncs_ok=row[12],
            syncs_failed=row[13],
            offers=offers,
            products=products,
        )

    async def mark_interrupted_syncs(self) -> None:
        """A sync still 'running' at start-up died with the previous process; say so, so it is rescheduled."""
        await self._write(
            self._tx,
            lambda c: c.execute(
                "UPDATE vendor_sync SET state = 'interrupted', finished_at = ? WHERE state = 'running'",
                (documents.iso(utcnow()),),
            ),
        )

    async def sync_interrupted(self, vendor_id: str) -> None:
        await self._write(
            self._tx,
            lambda c: c.execute(
                "UPDATE vendor_sync SET state = 'interrupted', finished_at = ? WHERE vendor_id = ?",
                (documents.iso(utcnow()), vendor_id),
            ),
        )

    async def sync_started(self, vendor_id: str) -> None:
        await self._write(
            self._tx,
            lambda c: c.execute(
                """UPDATE vendor_sync SET state = 'running', started_at = ?, pages = 0, items_seen = 0,
                   items_skipped = 0, items_total = NULL, skip_reasons = '{}' WHERE vendor_id = ?""",
                (documents.iso(utcnow()), vendor_id),
            ),
        )

    async def sync_progress(self, vendor_id: str, progress: SyncProgress) -> None:
        await self._write(
            self._tx,
            lambda c: c.execute(
                """UPDATE vendor_sync SET pages = ?, items_seen = ?, items_skipped = ?, items_total = ?,
                   skip_reasons = ? WHERE vendor_id = ?""",
                (
                    progress.pages,
                    progress.items_seen,
                    progress.items_skipped,
                    progress.items_total,
                    orjson.dumps(progress.skip_reasons).decode(),
                    vendor_id,
                ),
            ),
        )

    async def sync_finished(self, vendor_id: str, *, error: str | None, full: bool) -> None:
        now = documents.iso(utcnow())
        if error is None:
            sql = """UPDATE vendor_sync SET state = 'ok', finished_at = ?1, last_success_at = ?1,
                         last_full_sync_at = CASE WHEN ?2 THEN ?1 ELSE last_full_sync_at END,
                         syncs_ok = syncs_ok + 1 WHERE vendor_id = ?3"""
            args: tuple[Any, ...] = (now, full, vendor_id)
        else:
            sql = """UPDATE vendor_sync SET state = 'failed', finished_at = ?1, last_error = ?2,
                         last_error_at = ?1, syncs_failed = syncs_failed + 1 WHERE vendor_id = ?3"""
            args = (now, error[:2000], vendor_id)
        await self._write(self._tx, lambda c: c.execute(sql, args))

    # -- offers and products: writes -------------------------------------------------------------------------

    async def upsert_offers(self, offers: Iterable[Offer]) -> UpsertResult:
        batch = list({o.key: o for o in offers}.values())
        if not batch:
            return UpsertResult()
        return await self._write(self._tx, lambda c: self._upsert(c, batch))

    def _upsert(self, conn: sqlite3.Connection, batch: list[Offer]) -> UpsertResult:
        existing: dict[tuple[str, str], tuple[bytes, str, str | None]] = {}
        by_vendor: dict[str, list[str]] = defaultdict(list)
        for o in batch:
            by_vendor[o.vendor_id].append(o.vendor_product_id)
        for vendor_id, ids in by_vendor.items():
            for chunk in _chunks(ids):
                for vpid, h, pid, mk in conn.execute(
                    f"SELECT vendor_product_id, content_hash, product_id, match_key FROM offers "
                    f"WHERE vendor_id = ? AND vendor_product_id IN ({_marks(len(chunk))})",
                    (vendor_id, *chunk),
                ):
                    existing[(vendor_id, vpid)] = (h, pid, mk)

        touched: list[tuple[str | None, str, str]] = []
        changed: list[tuple[Offer, bytes]] = []
        wires: dict[tuple[str, str], dict[str, Any]] = {}
        for o in batch:
            wire = wires[o.key] = documents.offer_dict(o)
            h = _content_hash(wire, o)
            old = existing.get(o.key)
            if old is not None and old[0] == h:
                touched.append((documents.iso(o.fetched_at), o.vendor_id, o.vendor_product_id))
            else:
                changed.append((o, h))
        if touched:
            conn.executemany("UPDATE offers SET fetched_at = ? WHERE vendor_id = ? AND vendor_product_id = ?", touched)
        if not changed:
            return UpsertResult(unchanged=len(touched))

        first = self.next_seq(conn, len(changed))
        affected_products: set[str] = set()
        affected_matches: set[str] = set()
        rows = []
        for i, (o, h) in enumerate(changed):
            mk = match_key(o)
            pid = product_id(key_for(o, mk))
            old = existing.get(o.key)
            if old is not None:
                affected_products.add(old[1])
                if old[2]:
                    affected_matches.add(old[2])
            if mk:
                affected_matches.add(mk)
            affected_products.add(pid)
            rows.append(
                (
                    o.vendor_id,
                    o.vendor_product_id,
                    pid,
                    o.parent_id,
                    o.title,
                    o.description,
                    str(o.price),
                    o.currency,
                    orjson.dumps(list(o.images)).decode(),
                    o.sku,
                    o.gtin,
                    o.brand,
                    o.category,
                    o.availability.value,
                    o.stock,
                    o.url,
                    documents.iso(o.vendor_updated_at),
                    documents.iso(o.fetched_at),
                    mk,
                    h,
                    first + i,
                )
            )
        conn.executemany(
            f"""INSERT INTO offers ({_OFFER_COLUMNS}) VALUES ({_marks(21)})
                ON CONFLICT (vendor_id, vendor_product_id) DO UPDATE SET
                    product_id = excluded.product_id, parent_id = excluded.parent_id, title = excluded.title,
                    description = excluded.description, price = excluded.price, currency = excluded.currency,
                    images = excluded.images, sku = excluded.sku, gtin = excluded.gtin, brand = excluded.brand,
                    category = excluded.category, availability = excluded.availability, stock = excluded.stock,
                    url = excluded.url, vendor_updated_at = excluded.vendor_updated_at,
                    fetched_at = excluded.fetched_at, match_key = excluded.match_key,
                    content_hash = excluded.content_hash, change_seq = excluded.change_seq""",
            rows,
        )
        affected_products |= self._resolve_matches(conn, affected_matches)
        products_changed = self._rebuild_products(conn, affected_products, {o.key: o for o, _ in changed}, wires)
        inserted = sum(1 for o, _ in changed if o.key not in existing)
        return UpsertResult(
            inserted=inserted,
            updated=len(changed) - inserted,
            unchanged=len(touched),
            products_changed=products_changed,
        )

    async def run_in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction on the writer thread (the replication initial load uses it)."""
        return await self._write(self._tx, fn)

    def upsert_in(self, conn: sqlite3.Connection, offers: Iterable[Offer]) -> UpsertResult:
        """``upsert_offers`` inside a transaction the caller already holds (``run_in_transaction``)."""
        batch = list({o.key: o for o in offers}.values())
        return self._upsert(conn, batch) if batch else UpsertResult()

    async def mark_unlisted(self, vendor_id: str, before: datetime) -> int:
        """Mark the vendor's offers not fetched since ``before`` discontinued; returns how many changed.

        Called after a full sync that started at ``before`` completed: every listed offer was re-fetched by
        then, so the older ones are those the vendor stopped listing. One transaction, so readers never see
        half of them; each is a real content change (new hash and ``change_seq``) and its product is rebuilt.
        """

        def run(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                f"SELECT {OFFER_READ} FROM offers WHERE vendor_id = ? AND fetched_at < ? AND availability != ?",
                (vendor_id, documents.iso(before), Availability.DISCONTINUED.value),
            ).fetchall()
            if not rows:
                return 0
            known: dict[tuple[str, str], Offer] = {}
            wires: dict[tuple[str, str], dict[str, Any]] = {}
            updates = []
            first = self.next_seq(conn, len(rows))
            for i, row in enumerate(rows):
                offer = dataclasses.replace(row_to_offer(row), availability=Availability.DISCONTINUED)
                wire = wires[offer.key] = documents.offer_dict(offer)
                known[offer.key] = offer
                h = _content_hash(wire, offer)
                updates.append((offer.availability.value, h, first + i, vendor_id, offer.vendor_product_id))
            conn.executemany(
                "UPDATE offers SET availability = ?, content_hash = ?, change_seq = ? "
                "WHERE vendor_id = ? AND vendor_product_id = ?",
                updates,
            )
            self._rebuild_products(conn, {row[17] for row in rows}, known, wires)
            return len(rows)

        return await self._write(self._tx, run)

    async def delete_offers_of(self, vendor_id: str, product_or_parent_id: str, keep: Sequence[str] = ()) -> int:
        """Remove the vendor's offer with this id and every variant whose parent has it; returns how many went.

        A vendor deletes a product, not its variants one by one, so one id reaches both. ``keep`` spares the
        variants a product update still lists (the others were removed at the vendor). Products are re-unified
        exactly as after ``delete_vendor``, in the same transaction, so readers never see a half-removed product.
        """
        spared = set(keep)

        def run(conn: sqlite3.Connection) -> int:
            rows = [
                row
                for row in conn.execute(
                    "SELECT vendor_product_id, product_id, match_key FROM offers "
                    "WHERE vendor_id = ? AND (vendor_product_id = ? OR parent_id = ?)",
                    (vendor_id, product_or_parent_id, product_or_parent_id),
                )
                if row[0] not in spared
            ]
            if not rows:
                return 0
            conn.executemany(
                "DELETE FROM offers WHERE vendor_id = ? AND vendor_product_id = ?", [(vendor_id, r[0]) for r in rows]
            )
            # A removal is a change even when it leaves no product to rebuild: it takes a sequence number.
            self.next_seq(conn, 1)
            affected = {r[1] for r in rows} | self._resolve_matches(conn, {r[2] for r in rows if r[2]})
            self._rebuild_products(conn, affected)
            return len(rows)

        return await self._write(self._tx, run)

    def _resolve_matches(self, conn: sqlite3.Connection, matches: set[str]) -> set[str]:
        """Move GTIN-less offers of these match keys to the product the rules now give; returns moved ids."""
        moved: set[str] = set()
        keys = sorted(matches)
        for chunk in _chunks(keys):
            gtins: dict[str, set[str]] = defaultdict(set)
            for mk, gtin in conn.execute(
                f"SELECT match_key, gtin FROM offers WHERE match_key IN ({_marks(len(chunk))}) AND gtin IS NOT NULL",
                chunk,
            ):
                gtins[mk].add(gtin)
            updates = []
            for vendor_id, vpid, mk, pid in conn.execute(
                f"SELECT vendor_id, vendor_product_id, match_key, product_id FROM offers "
                f"WHERE match_key IN ({_marks(len(chunk))}) AND gtin IS NULL",
                chunk,
            ):
                linked = gtins.get(mk, set())
                want = product_id(f"gtin:{next(iter(linked))}" if len(linked) == 1 else f"bs:{mk}")
                if want != pid:
                    updates.append((want, vendor_id, vpid))
                    moved.update((want, pid))
            if updates:
                seq = self.next_seq(conn, len(updates))
                conn.executemany(
                    "UPDATE offers SET product_id = ?, change_seq = ? WHERE vendor_id = ? AND vendor_product_id = ?",
                    [(want, seq + i, v, p) for i, (want, v, p) in enumerate(updates)],
                )
        return moved

    def _rebuild_products(
        self,
        conn: sqlite3.Connection,
        product_ids: set[str],
        known: dict[tuple[str, str], Offer] | None = None,
        wires: dict[tuple[str, str], dict[str, Any]] | None = None,
    ) -> int:
        """Recompute the given products from their offers; returns how many actually changed.

        ``known`` are offers this transaction just wrote (used as they are instead of decoding their rows again),
        ``wires`` their already built wire forms.
        """
        known = known or {}
        changed = 0
        ids = sorted(product_ids)
        for chunk in _chunks(ids):
            groups: dict[str, list[Offer]] = defaultdict(list)
            unknown: list[int] = []
            # Keys first (from the covering index): offers written by this transaction are not read back.
            for rowid, vendor_id, vpid, pid in conn.execute(
                f"SELECT rowid, vendor_id, vendor_product_id, product_id FROM offers "
                f"WHERE product_id IN ({_marks(len(chunk))})",
                chunk,
            ):
                offer = known.get((vendor_id, vpid))
                if offer is None:
                    unknown.append(rowid)
                else:
                    groups[pid].append(offer)
            for part in _chunks(unknown):
                for row in conn.execute(f"SELECT {OFFER_READ} FROM offers WHERE rowid IN ({_marks(len(part))})", part):
                    groups[row[17]].append(row_to_offer(row))
            etags = dict(
                conn.execute(f"SELECT id, etag FROM products WHERE id IN ({_marks(len(chunk))})", chunk).fetchall()
            )
            gone = [pid for pid in chunk if pid not in groups and pid in etags]
            if gone:
                self._fts_remove(conn, gone)
                conn.execute(f"DELETE FROM products WHERE id IN ({_marks(len(gone))})", gone)
                conn.execute(f"DELETE FROM product_vendors WHERE product_id IN ({_marks(len(gone))})", gone)
                changed += len(gone)
            rows = []
            vendor_rows: list[tuple[str, str]] = []
            for pid, offers in groups.items():
                product = build_product(pid, offers)
                summary, doc = documents.render(product, wires)
                etag = documents.etag_of(doc)
                if etags.get(pid) == etag:
                    continue
                rows.append(
                    (
                        pid,
                        product.name,
                        product.description,
                        product.brand,
                        brand_key(product.brand),
                        product.category,
                        brand_key(product.category),
                        product.gtin,
                        product.currency,
                        float(product.min_price),
                        float(product.max_price),
                        base_price(self.rates, [(p.min, p.currency) for p in product.prices], product.min_price),
                        int(product.in_stock),
                        len(product.offers),
                        documents.iso(product.updated_at),
                        summary,
                        doc,
                        etag,
                    )
                )
                vendor_rows.extend((v, pid) for v in {o.vendor_id for o in offers})
            if not rows:
                continue
            rebuilt = [r[0] for r in rows]
            self._fts_remove(conn, [pid for pid in rebuilt if pid in etags])
            first = self.next_seq(conn, len(rows))
            conn.executemany(
                f"""INSERT INTO products (id, name, description, brand, brand_key, category, category_key, gtin,
                        currency, min_price, max_price, min_price_base, in_stock, offer_count, updated_at, summary,
                        doc, etag, change_seq)
                    VALUES ({_marks(19)})
                    ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description,
                        brand = excluded.brand, brand_key = excluded.brand_key, category = excluded.category,
                        category_key = excluded.category_key, gtin = excluded.gtin, currency = excluded.currency,
                        min_price = excluded.min_price, max_price = excluded.max_price,
                        min_price_base = excluded.min_price_base, in_stock = excluded.in_stock,
                        offer_count = excluded.offer_count,
                        updated_at = excluded.updated_at, summary = excluded.summary, doc = excluded.doc,
                        etag = excluded.etag, change_seq = excluded.change_seq""",
                [(*r, first + i) for i, r in enumerate(rows)],
            )
            conn.execute(
                f"INSERT INTO products_fts (rowid, name, description, brand) "
                f"SELECT rowid, name, description, brand FROM products WHERE id IN ({_marks(len(rebuilt))})",
                rebuilt,
            )
            conn.execute(f"DELETE FROM product_vendors WHERE product_id IN ({_marks(len(rebuilt))})", rebuilt)
            conn.executemany("INSERT INTO product_vendors (vendor_id, product_id) VALUES (?, ?)", vendor_rows)
            changed += len(rows)
        return changed

    @staticmethod
    def _fts_remove(conn: sqlite3.Connection, pids: Sequence[str]) -> None:
        """Take products out of the external-content FTS index; must run while their old row is still there."""
        if pids:
            conn.execute(
                f"INSERT INTO products_fts (products_fts, rowid, name, description, brand) "
                f"SELECT 'delete', rowid, name, description, brand FROM products WHERE id IN ({_marks(len(pids))})",
                list(pids),
            )

    # -- offers and products: reads --------------------------------------------------------------------------

    def get_product(self, pid: str) -> StoredProduct | None:
        """The product's document with its offers' freshness; cached until the next write like list pages."""
        return self._products.get(pid, self._version(), lambda: self._query_product(pid))

    def _query_product(self, pid: str) -> StoredProduct | None:
        rows = self._r.execute(
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

    def find_offer(self, vendor_id: str, vendor_product_id: str) -> OfferRef | None:
        """The offer with this id, or else the oldest-fetched variant whose parent has this id."""
        conn = self._r
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

    def get_offers(self, vendor_id: str) -> list[Offer]:
        return [
            row_to_offer(r)
            for r in self._r.execute(
                f"SELECT {OFFER_READ} FROM offers WHERE vendor_id = ? ORDER BY vendor_product_id",
                (vendor_id,),
            )
        ]

    def count_products(self) -> int:
        (n,) = self._r.execute("SELECT count(*) FROM products").fetchone()
        return int(n)

    def _version(self) -> tuple[int, int]:
        """Moves whenever anyone else commits to the file (our writer thread, the CLI, another process)."""
        conn = self._r
        return (id(conn), conn.execute("PRAGMA data_version").fetchone()[0])

    def list_products(self, query: ProductQuery) -> ProductPage:
        """One page of products. Raises ``InvalidCursor`` for a cursor from another query.

        Pages are cached until the next write: a few pages (the first page of the catalog, of a category, of a
        popular search) take most of the traffic, and checking the file's version costs a microsecond.
        """
        return self._pages.get(query, self._version(), lambda: self._query_products(query))

    def _query_products(self, query: ProductQuery) -> ProductPage:
        where: list[str] = []
        params: list[Any] = []
        sort = query.sort
        if sort is Sort.RELEVANCE and not query.q:
            sort = Sort.UPDATED
        filters = {
            "q": query.q,
            "vendor": query.vendor,
            "brand": brand_key(query.brand),
            "category": brand_key(query.category),
            "min_price": str(query.min_price) if query.min_price is not None else None,
            "max_price": str(query.max_price) if query.max_price is not None else None,
            "price_currency": query.price_currency,
            "in_stock": query.in_stock,
        }
        fp = fingerprint(filters)
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
        if filters["brand"]:
            where.append("p.brand_key = ?")
            params.append(filters["brand"])
        if filters["category"]:
            where.append("p.category_key = ?")
            params.append(filters["category"])
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
        rows = self._r.execute(sql, (*params, query.limit + 1, offset)).fetchall()
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


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (which contain ';') whole."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        text = "\n".join(current)
        if stripped.endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    if current and "\n".join(current).strip():
        statements.append("\n".join(current))
    return statements
