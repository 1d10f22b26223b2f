"""The offer writer: offers in, unified products out, in the caller's write transaction.

Why it is shaped like this:
- Product JSON is precomputed here, at write time (``app.domain.documents``), so a read is a byte copy.
- Unification is incremental but must agree with ``app.domain.unify.unify`` over the whole set: each batch
  re-resolves every offer that shares a match key with a changed offer (``Unifier``), then rebuilds the touched
  products. The ``Unifier`` is the one place that decides which product an offer joins, so matching can replace
  it without touching the writer.
- Re-fetching an unchanged offer only refreshes ``fetched_at`` and takes no sequence number: it is
  bookkeeping, not a change.
- Products keep a comparable price in the rates' base currency (``min_price_base``) for sorting and price
  filters; it is computed with the product and recomputed everywhere when the rates change.
- Per offer, a bulk write costs what SQLite must do and little more: rows go in multi-row statements
  (``connection.insert_rows``: with triggers on a table, one statement per row journaled every page it touched),
  the guard's read of the stored rows is the writer's too, and a rebuilt product's FTS entry, vendors and lead
  image are written only when they change. ``python -m bench.write_path`` measures it, and ``--check`` proves the
  stored bytes the same as before such a change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from app.domain import documents
from app.domain.images import image_id
from app.domain.matching import Matcher
from app.domain.models import Availability, Offer, Product
from app.domain.money import Rates
from app.domain.normalize import brand_key
from app.domain.queries import StoredImage, UpsertResult
from app.domain.unify import build_product, key_for, match_key, product_id
from app.store.sqlite.connection import chunks, dt, insert_rows, marks, next_seq
from app.store.sqlite.matching import StoreUnifier, read_why
from app.store.sqlite.ordering import Stored, observed_before, touch_fetched
from app.store.sqlite.transaction import immediate

_OFFER_COLUMNS = (
    "vendor_id, vendor_product_id, product_id, parent_id, title, description, price, currency, images, sku, "
    "gtin, brand, category, availability, stock, url, vendor_updated_at, fetched_at, match_key, content_hash, "
    "change_seq"
)
# The columns ``row_to_offer`` decodes, then the offer's product id (index 17).
OFFER_READ = (
    "vendor_id, vendor_product_id, parent_id, title, description, price, currency, images, sku, gtin, brand, "
    "category, availability, stock, url, vendor_updated_at, fetched_at, product_id"
)

OfferKey = tuple[str, str]


def row_to_offer(row: sqlite3.Row | tuple[Any, ...]) -> Offer:
    """An offer from a row selected with ``OFFER_READ``."""
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
        vendor_updated_at=dt(row[15]),
        fetched_at=datetime.fromisoformat(row[16]),
    )


def unique(offers: Iterable[Offer]) -> list[Offer]:
    """One offer per key, the newest observation winning (``ordering``; of equals, the last one given): a batch
    writes each row once."""
    newest: dict[OfferKey, Offer] = {}
    for o in offers:
        kept = newest.get(o.key)
        if kept is None or not observed_before(o, kept.vendor_updated_at, kept.fetched_at):
            newest[o.key] = o
    return list(newest.values())


def _content_hash(wire: dict[str, Any], offer: Offer) -> bytes:
    """What identifies an offer's content: its wire form plus its description (``fetched_at`` is not content)."""
    return hashlib.blake2b(orjson.dumps(wire) + offer.description.encode(), digest_size=16).digest()


# -- base prices -------------------------------------------------------------------------------------------------


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
    """The rates' fingerprint as an integer ``meta`` can hold (7 bytes: fits SQLite's signed 64 bits)."""
    text = rates.fingerprint if rates is not None else "none"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "big")


def refresh_base_prices(conn: sqlite3.Connection, rates: Rates | None) -> None:
    """Fill ``min_price_base`` where a migration left it NULL, or everywhere when the rates changed since."""
    version = _rates_version(rates)

    def run(c: sqlite3.Connection) -> None:
        (stored,) = c.execute("SELECT value FROM meta WHERE key = 'rates_version'").fetchone()
        where = "" if stored != version else " WHERE min_price_base IS NULL"
        updates = []
        for pid, summary, min_price in c.execute(f"SELECT id, summary, min_price FROM products{where}"):
            prices = orjson.loads(summary)["prices"]
            pairs = [(Decimal(p["min"]), p["currency"]) for p in prices]
            updates.append((base_price(rates, pairs, Decimal(str(min_price))), pid))
        c.executemany("UPDATE products SET min_price_base = ? WHERE id = ?", updates)
        c.execute("UPDATE meta SET value = ? WHERE key = 'rates_version'", (version,))

    immediate(conn, run)


# -- unification -------------------------------------------------------------------------------------------------


def provisional(offer: Offer) -> tuple[str | None, str]:
    """The offer's match key and the key of the product its own fields give, until the ``StoreUnifier`` clusters
    it (the key is also what ``offers[].match`` names when nothing else explains the offer)."""
    mk = match_key(offer)
    return mk, key_for(offer, mk)


@dataclasses.dataclass(slots=True)
class Touched:
    """What a write leaves to settle: the products its offers were or are in, and the match keys they carry."""

    products: set[str]
    match_keys: set[str]


# -- the writer --------------------------------------------------------------------------------------------------


class OfferWriter:
    """Writes offers and rebuilds the products they touch. Every method runs inside the caller's write
    transaction, so readers see a batch's offers and products change together."""

    def __init__(self, rates: Rates | None, matcher: Matcher | None = None) -> None:
        # Converts prices to the base currency for ``min_price_base``; None compares main-currency prices.
        self.rates = rates
        # None: identifiers and overrides alone decide (CATALOG_MATCHING=false).
        self.unifier = StoreUnifier(matcher)

    def upsert(self, conn: sqlite3.Connection, batch: list[Offer], existing: Stored) -> UpsertResult:
        """Write offers (one per key: see ``unique``), re-unify and rebuild what they touch. ``existing``: the
        stored rows of these offers, as the ordering guard read them (``ordering.newer_only``)."""
        if not batch:
            return UpsertResult()

        touched: list[tuple[str | None, str, str]] = []
        changed: list[tuple[Offer, bytes]] = []
        wires: dict[OfferKey, dict[str, Any]] = {}
        for o in batch:
            wire = wires[o.key] = documents.offer_dict(o)
            h = _content_hash(wire, o)
            old = existing.get(o.key)
            if old is not None and old[0] == h:
                touched.append((documents.iso(o.fetched_at), o.vendor_id, o.vendor_product_id))
            else:
                changed.append((o, h))
        if touched:
            touch_fetched(conn, touched)
        if not changed:
            return UpsertResult(unchanged=len(touched))

        first = next_seq(conn, len(changed))
        affected_products: set[str] = set()
        affected_matches: set[str] = set()
        rows = []
        own_keys: dict[OfferKey, str] = {}
        for i, (o, h) in enumerate(changed):
            mk, key = provisional(o)
            pid = product_id(key)
            own_keys[o.key] = key
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
        insert_rows(
            conn,
            f"INSERT INTO offers ({_OFFER_COLUMNS})",
            21,
            rows,
            """ON CONFLICT (vendor_id, vendor_product_id) DO UPDATE SET
                    product_id = excluded.product_id, parent_id = excluded.parent_id, title = excluded.title,
                    description = excluded.description, price = excluded.price, currency = excluded.currency,
                    images = excluded.images, sku = excluded.sku, gtin = excluded.gtin, brand = excluded.brand,
                    category = excluded.category, availability = excluded.availability, stock = excluded.stock,
                    url = excluded.url, vendor_updated_at = excluded.vendor_updated_at,
                    fetched_at = excluded.fetched_at, match_key = excluded.match_key,
                    content_hash = excluded.content_hash, change_seq = excluded.change_seq""",
        )
        if self.unifier.matcher is not None:
            written = {o.key: o for o, _ in changed}
            rowids = _rowids(conn, written)
            self.unifier.forget(conn, [rowids[k] for k in written if k in existing])
            affected_products |= self.unifier.index(conn, written, rowids)
        products_changed = self.settle(
            conn, Touched(affected_products, affected_matches), {o.key: o for o, _ in changed}, wires, own_keys
        )
        inserted = sum(1 for o, _ in changed if o.key not in existing)
        return UpsertResult(
            inserted=inserted,
            updated=len(changed) - inserted,
            unchanged=len(touched),
            products_changed=products_changed,
        )

    def mark_unlisted(self, conn: sqlite3.Connection, vendor_id: str, before: datetime) -> int:
        """Mark the vendor's offers not fetched since ``before`` discontinued; returns how many changed.

        Called after a full sync that started at ``before`` completed: every listed offer was re-fetched by
        then, so the older ones are those the vendor stopped listing. Each is a real content change (new hash
        and ``change_seq``) and its product is rebuilt; availability plays no part in unification, so no
        offer changes product.
        """
        rows = conn.execute(
            f"SELECT {OFFER_READ} FROM offers WHERE vendor_id = ? AND fetched_at < ? AND availability != ?",
            (vendor_id, documents.iso(before), Availability.DISCONTINUED.value),
        ).fetchall()
        if not rows:
            return 0
        known: dict[OfferKey, Offer] = {}
        wires: dict[OfferKey, dict[str, Any]] = {}
        updates = []
        first = next_seq(conn, len(rows))
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
        self.rebuild(conn, {row[17] for row in rows}, known, wires)
        return len(rows)

    def delete_offers_of(
        self, conn: sqlite3.Connection, vendor_id: str, product_or_parent_id: str, keep: Sequence[str] = ()
    ) -> int:
        """Remove the vendor's offer with this id and every variant whose parent has it; returns how many went.

        A vendor deletes a product, not its variants one by one, so one id reaches both. ``keep`` spares the
        variants a product update still lists (the others were removed at the vendor). Products are re-unified
        exactly as after a vendor's removal, in the same transaction, so readers never see a half-removed product.
        """
        spared = set(keep)
        rows = [
            row
            for row in conn.execute(
                "SELECT vendor_product_id, product_id, match_key, rowid FROM offers "
                "WHERE vendor_id = ? AND (vendor_product_id = ? OR parent_id = ?)",
                (vendor_id, product_or_parent_id, product_or_parent_id),
            )
            if row[0] not in spared
        ]
        if not rows:
            return 0
        self.unifier.forget(conn, [r[3] for r in rows])
        conn.executemany(
            "DELETE FROM offers WHERE vendor_id = ? AND vendor_product_id = ?", [(vendor_id, r[0]) for r in rows]
        )
        # A removal is a change even when it leaves no product to rebuild: it takes a sequence number.
        next_seq(conn, 1)
        self.settle(conn, Touched({r[1] for r in rows}, {r[2] for r in rows if r[2]}))
        return len(rows)

    def remove_vendor_offers(self, conn: sqlite3.Connection, vendor_id: str) -> Touched:
        """Delete all of a vendor's offers; ``settle`` the result once the vendor row is gone too."""
        products = {r[0] for r in conn.execute("SELECT product_id FROM offers WHERE vendor_id = ?", (vendor_id,))}
        matches = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT match_key FROM offers WHERE vendor_id = ? AND match_key IS NOT NULL", (vendor_id,)
            )
        }
        mine = "SELECT rowid FROM offers WHERE vendor_id = ?"
        conn.execute(f"DELETE FROM match_keys WHERE offer IN ({mine})", (vendor_id,))
        conn.execute(f"DELETE FROM match_screens WHERE offer IN ({mine})", (vendor_id,))
        conn.execute(f"DELETE FROM match_edges WHERE a IN ({mine}) OR b IN ({mine})", (vendor_id, vendor_id))
        conn.execute(f"DELETE FROM match_why WHERE offer IN ({mine})", (vendor_id,))
        conn.execute("DELETE FROM offers WHERE vendor_id = ?", (vendor_id,))
        return Touched(products, matches)

    def settle(
        self,
        conn: sqlite3.Connection,
        touched: Touched,
        known: dict[OfferKey, Offer] | None = None,
        wires: dict[OfferKey, dict[str, Any]] | None = None,
        own_keys: dict[OfferKey, str] | None = None,
    ) -> int:
        """Re-cluster around the touched products and match keys, then rebuild every product touched or moved;
        returns how many of them changed (see ``rebuild`` for ``known``, ``wires`` and ``own_keys``)."""
        moved = self.unifier.settle(conn, touched.products, touched.match_keys, known=known)
        return self.rebuild(conn, touched.products | moved, known, wires, own_keys)

    def reunify(self, conn: sqlite3.Connection, offers: Iterable[OfferKey] = ()) -> int:
        """Re-cluster around these offers (an override changed), or everything when the matcher's model is not
        the one the index was built with; returns how many products changed."""
        products = set(self.unifier.reindex_if_stale(conn) or ())
        keys = list(offers)
        by_vendor: dict[str, list[str]] = defaultdict(list)
        for vendor_id, vpid in keys:
            by_vendor[vendor_id].append(vpid)
        for vendor_id, ids in by_vendor.items():  # their products now: a removed pin leaves no link to follow
            for chunk in chunks(ids):
                products.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT product_id FROM offers WHERE vendor_id = ? AND vendor_product_id IN "
                        f"({marks(len(chunk))})",
                        (vendor_id, *chunk),
                    )
                )
        if not products:
            return 0
        moved = self.unifier.settle(conn, products, offers=keys)
        return self.rebuild(conn, products | moved)

    def rebuild(
        self,
        conn: sqlite3.Connection,
        product_ids: set[str],
        known: dict[OfferKey, Offer] | None = None,
        wires: dict[OfferKey, dict[str, Any]] | None = None,
        own_keys: dict[OfferKey, str] | None = None,
    ) -> int:
        """Recompute the given products from their offers; returns how many actually changed.

        ``known`` are offers this transaction just wrote (used as they are instead of decoding their rows again),
        ``wires`` their already built wire forms, ``own_keys`` the product keys their own fields name
        (``provisional``: what ``offers[].match`` says of an offer nothing else explains).
        """
        known = known or {}
        own_keys = own_keys or {}
        changed = 0
        for chunk in chunks(sorted(product_ids)):
            groups: dict[str, list[Offer]] = defaultdict(list)
            unknown: list[int] = []
            rowid_of: dict[OfferKey, int] = {}
            # Keys first (from the covering index): offers written by this transaction are not read back.
            for rowid, vendor_id, vpid, pid in conn.execute(
                f"SELECT rowid, vendor_id, vendor_product_id, product_id FROM offers "
                f"WHERE product_id IN ({marks(len(chunk))})",
                chunk,
            ):
                rowid_of[(vendor_id, vpid)] = rowid
                offer = known.get((vendor_id, vpid))
                if offer is None:
                    unknown.append(rowid)
                else:
                    groups[pid].append(offer)
            for part in chunks(unknown):
                for row in conn.execute(f"SELECT {OFFER_READ} FROM offers WHERE rowid IN ({marks(len(part))})", part):
                    groups[row[17]].append(row_to_offer(row))
            # What each stored product's search entry was made from, beside its ETag: a rebuild that leaves name,
            # description and brand as they were leaves its FTS entry as it is (a re-price re-tokenised it twice).
            stored: dict[str, tuple[str, str, str, str | None]] = {
                pid: (etag, name, description, brand)
                for pid, etag, name, description, brand in conn.execute(
                    f"SELECT id, etag, name, description, brand FROM products WHERE id IN ({marks(len(chunk))})", chunk
                )
            }
            gone = [pid for pid in chunk if pid not in groups and pid in stored]
            if gone:
                _fts_remove(conn, gone)
                conn.execute(f"DELETE FROM products WHERE id IN ({marks(len(gone))})", gone)
                conn.execute(f"DELETE FROM product_vendors WHERE product_id IN ({marks(len(gone))})", gone)
                changed += len(gone)
            why = read_why(conn, rowid_of.values())
            matches: dict[OfferKey, dict[str, object]] = {}
            for key, rowid in rowid_of.items():
                if (reason := why.get(rowid)) is not None:
                    matches[key] = reason
                elif (own := own_keys.get(key)) is not None:  # ``documents.default_match``, its key known
                    matches[key] = {"by": "key", "key": own}
            rows = []
            vendor_rows: list[tuple[str, str]] = []
            products = {pid: build_product(pid, offers) for pid, offers in groups.items()}
            placeholders = _placeholders(conn, products.values())
            image_rows: dict[str, tuple[str, str]] = {}
            lead_rows: list[tuple[str, str]] = []
            for pid, offers in groups.items():
                product = products[pid]
                lead = documents.lead_image_id(product)
                summary, doc = documents.render(
                    product, wires, placeholders.get(lead) if lead else None, matches=matches
                )
                etag = documents.etag_of(doc)
                old = stored.get(pid)
                if old is not None and old[0] == etag:
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
                for o in offers:
                    for url in o.images:
                        image_rows.setdefault(image_id(url), (url, o.vendor_id))
                if lead is not None:
                    lead_rows.append((lead, pid))
            if gone:
                conn.execute(f"DELETE FROM product_images WHERE product_id IN ({marks(len(gone))})", gone)
            if not rows:
                continue
            rebuilt = [r[0] for r in rows]
            # Indexed anew: new products and those whose searched text changed (taken out first, while their old
            # row is there); the others keep their entry, the same rowid holding the same text.
            reindexed = [r[0] for r in rows if (old := stored.get(r[0])) is None or old[1:] != (r[1], r[2], r[3])]
            _fts_remove(conn, [pid for pid in reindexed if pid in stored])
            first = next_seq(conn, len(rows))
            insert_rows(
                conn,
                """INSERT INTO products (id, name, description, brand, brand_key, category, category_key, gtin,
                        currency, min_price, max_price, min_price_base, in_stock, offer_count, updated_at, summary,
                        doc, etag, change_seq)""",
                19,
                [(*r, first + i) for i, r in enumerate(rows)],
                """ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description,
                        brand = excluded.brand, brand_key = excluded.brand_key, category = excluded.category,
                        category_key = excluded.category_key, gtin = excluded.gtin, currency = excluded.currency,
                        min_price = excluded.min_price, max_price = excluded.max_price,
                        min_price_base = excluded.min_price_base, in_stock = excluded.in_stock,
                        offer_count = excluded.offer_count,
                        updated_at = excluded.updated_at, summary = excluded.summary, doc = excluded.doc,
                        etag = excluded.etag, change_seq = excluded.change_seq""",
            )
            if reindexed:
                conn.execute(
                    f"INSERT INTO products_fts (rowid, name, description, brand) "
                    f"SELECT rowid, name, description, brand FROM products WHERE id IN ({marks(len(reindexed))})",
                    reindexed,
                )
            _replace_pairs(conn, "product_vendors", "vendor_id", rebuilt, vendor_rows)
            conn.executemany(
                "INSERT OR IGNORE INTO images (id, url, vendor_id) VALUES (?, ?, ?)",
                [(iid, url, vid) for iid, (url, vid) in image_rows.items()],
            )
            _replace_pairs(conn, "product_images", "image_id", rebuilt, lead_rows)
            changed += len(rows)
        return changed


def _placeholders(conn: sqlite3.Connection, products: Iterable[Product]) -> dict[str, str]:
    """The known placeholders of these products' lead images."""
    leads = sorted({lead for p in products if (lead := documents.lead_image_id(p)) is not None})
    found: dict[str, str] = {}
    for chunk in chunks(leads):
        found.update(
            conn.execute(
                f"SELECT id, placeholder FROM images WHERE placeholder IS NOT NULL AND id IN ({marks(len(chunk))})",
                chunk,
            ).fetchall()
        )
    return found


def set_placeholder(conn: sqlite3.Connection, writer: OfferWriter, image: StoredImage, placeholder: str) -> int:
    """Record an image's placeholder and rebuild the products that lead with it; returns how many changed. The row
    is created when missing (a node may learn the placeholder before an offer listing the image reaches it)."""
    updated = conn.execute(
        "INSERT INTO images (id, url, vendor_id, placeholder) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET placeholder = excluded.placeholder "
        "WHERE images.placeholder IS NOT excluded.placeholder",
        (image.id, image.url, image.vendor_id, placeholder),
    ).rowcount
    if not updated:
        return 0
    pids = {pid for (pid,) in conn.execute("SELECT product_id FROM product_images WHERE image_id = ?", (image.id,))}
    return writer.rebuild(conn, pids)


def rebuild_all(conn: sqlite3.Connection, writer: OfferWriter) -> int:
    """Every product's documents again (their shape changed: ``documents.VERSION``)."""
    pids = {pid for (pid,) in conn.execute("SELECT id FROM products")}
    return writer.rebuild(conn, pids)


def _rowids(conn: sqlite3.Connection, keys: Iterable[OfferKey]) -> dict[OfferKey, int]:
    by_vendor: dict[str, list[str]] = defaultdict(list)
    for vendor_id, vpid in keys:
        by_vendor[vendor_id].append(vpid)
    out: dict[OfferKey, int] = {}
    for vendor_id, ids in by_vendor.items():
        for chunk in chunks(ids):
            for rowid, vpid in conn.execute(
                f"SELECT rowid, vendor_product_id FROM offers WHERE vendor_id = ? AND vendor_product_id IN "
                f"({marks(len(chunk))})",
                (vendor_id, *chunk),
            ):
                out[(vendor_id, vpid)] = rowid
    return out


def _replace_pairs(
    conn: sqlite3.Connection, table: str, column: str, pids: Sequence[str], wanted: Iterable[tuple[str, str]]
) -> None:
    """Make ``table``'s (``column``, product_id) rows of these products exactly ``wanted``, writing only the
    difference: a rebuild mostly leaves a product's vendors and lead image as they were."""
    have = set(conn.execute(f"SELECT {column}, product_id FROM {table} WHERE product_id IN ({marks(len(pids))})", pids))
    want = set(wanted)
    if have - want:
        conn.executemany(f"DELETE FROM {table} WHERE {column} = ? AND product_id = ?", sorted(have - want))
    if want - have:
        conn.executemany(f"INSERT INTO {table} ({column}, product_id) VALUES (?, ?)", sorted(want - have))


def _fts_remove(conn: sqlite3.Connection, pids: Sequence[str]) -> None:
    """Take products out of the external-content FTS index; must run while their old row is still there."""
    if pids:
        conn.execute(
            f"INSERT INTO products_fts (products_fts, rowid, name, description, brand) "
            f"SELECT 'delete', rowid, name, description, brand FROM products WHERE id IN ({marks(len(pids))})",
            list(pids),
        )
