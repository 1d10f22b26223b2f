"""Unification in the store: identifier groups, the matcher's edges and people's overrides, kept incrementally.

Why it is shaped like this:
- Candidates come from a persisted blocking index (``match_keys``: a 64-bit hash of each blocking key -> the
  offer's rowid), so matching a new offer costs a few indexed lookups and scoring the few offers of other vendors
  that share a key, whatever the catalog's size.
- Scored pairs at or above the merge threshold are stored (``match_edges``). An edge is a function of its two
  offers alone, and an offer's edges are recomputed whenever it changes, so the edge set depends only on the set of
  offers, never on the order they arrived in.
- Products are ``app.domain.matching.cluster`` over what a write touched and its neighbourhood
  (``neighbourhood``: grown only as far as products really change), which gives exactly what a whole-catalog run
  gives, so re-syncs and other arrival orders give the same products and ids.
- rowids only address rows (they differ from node to node); offer keys, scores and overrides decide.
- Without a matcher (``CATALOG_MATCHING=false``, the benchmark's baseline) the same code runs with no edges: the
  identifier rules and the overrides alone.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from decimal import Decimal
from typing import Any

import orjson

from app.domain.matching import Matcher, OverrideChange, Overrides, from_offer
from app.domain.matching.blocking import max_block
from app.domain.matching.clustering import OfferKey
from app.domain.matching.records import MatchRecord
from app.domain.matching.screen import Screen, dumps, loads, refused
from app.domain.models import Offer
from app.store.sqlite import neighbourhood
from app.store.sqlite.connection import chunks, marks

_MODEL_META = "match_model"
#: The blocking scheme's version: part of ``model_version``, so a store indexed with other keys re-indexes at start.
BLOCKING = 6  # 4: word keys capped at 50 offers (100 before); 5: screens (match_screens) kept with the keys;
# 6: no edge merges two groups holding offers of one vendor (``cluster``), so stores re-cluster


@functools.lru_cache(maxsize=1 << 15)
def _hash(key: str) -> int:
    """A blocking key as SQLite's signed 64-bit integer: a quarter of the text's index size, and just as exact in
    practice (a collision only adds a candidate, which the matcher then scores)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def model_version(matcher: Matcher | None) -> int:
    if matcher is None:
        return 0
    m = matcher.model
    text = orjson.dumps(
        {"meta": m.metadata, "trees": m.trees, "t": [m.thresholds.match, m.thresholds.merge], "keys": BLOCKING},
        option=orjson.OPT_SORT_KEYS,
    )
    return 1 + int.from_bytes(hashlib.blake2b(text, digest_size=7).digest(), "big")


# What the matcher reads of a stored offer (``from_offer`` of ``row_to_offer``, without decoding the columns it
# does not read: images, timestamps, availability), after its rowid and key.
_RECORD = "rowid, vendor_id, vendor_product_id, title, description, brand, category, price, currency, sku, gtin"


def _record(r: tuple[Any, ...]) -> MatchRecord:
    """The record of a row selected with ``_RECORD``: what ``from_offer(row_to_offer(row))`` gives."""
    return MatchRecord(
        title=r[3],
        description=r[4],
        brand=r[5],
        category=r[6],
        price=Decimal(r[7]),
        currency=r[8],
        sku=r[9],
        mpn=None,
        gtin=r[10],
    )


class StoreUnifier:
    """Keeps the blocking index and edges of written offers, and re-clusters what a write touched."""

    def __init__(self, matcher: Matcher | None) -> None:
        self.matcher = matcher
        self.threshold = matcher.threshold("merge") if matcher is not None else 1.0

    # -- the index ---------------------------------------------------------------------------------------------

    def forget(self, conn: sqlite3.Connection, rowids: Collection[int]) -> None:
        """Drop the keys, edges and explanations of these offers (changed or about to be deleted)."""
        ids = sorted(rowids)
        for chunk in chunks(ids):
            m = marks(len(chunk))
            conn.execute(f"DELETE FROM match_keys WHERE offer IN ({m})", chunk)
            conn.execute(f"DELETE FROM match_screens WHERE offer IN ({m})", chunk)
            conn.execute(f"DELETE FROM match_edges WHERE a IN ({m})", chunk)
            conn.execute(f"DELETE FROM match_edges WHERE b IN ({m})", chunk)
            conn.execute(f"DELETE FROM match_why WHERE offer IN ({m})", chunk)

    def index(
        self, conn: sqlite3.Connection, written: Mapping[OfferKey, Offer], rowids: Mapping[OfferKey, int]
    ) -> set[str]:
        """Index the written offers (already ``forget``-ed) and store their edges to every candidate; returns the
        products of stored offers that lost an edge (a key of theirs went over its cap: ``_stop``)."""
        matcher = self.matcher
        if matcher is None or not written:
            return set()
        records = {key: from_offer(o) for key, o in written.items()}
        cap: dict[int, int] = {}
        hashes: dict[OfferKey, list[int]] = {}
        screens: dict[int, Screen | None] = {}
        for key, rec in records.items():
            screens[rowids[key]] = matcher.screen(rec)  # with its keys, while its profile is at hand
            mine = set()
            for block in matcher.blocking_keys(rec):
                h = _hash(block)
                cap[h] = max_block(block)
                mine.add(h)
            hashes[key] = sorted(mine)
        stopped = _stopped(conn, cap)
        stored, sizes = _blocks(conn, hashes, stopped)
        # In key order: the index's B-tree takes sorted rows for a fraction of the page writes of random ones.
        conn.executemany(
            "INSERT OR IGNORE INTO match_keys (k, vendor_id, offer) VALUES (?, ?, ?)",
            sorted((h, key[0], rowids[key]) for key, hs in hashes.items() for h in hs),
        )
        conn.executemany(
            "INSERT OR REPLACE INTO match_screens (offer, screen) VALUES (?, ?)",
            [(rowid, text) for rowid, s in sorted(screens.items()) if s is not None and (text := dumps(s)) is not None],
        )
        for hs in hashes.values():
            for h in hs:
                sizes[h] = sizes.get(h, 0) + 1
        # The sizes are counted before the insert plus this write's rows (its offers have no keys yet: new, or
        # ``forget``-ed), so a key can only be over its cap if this says so; the few that are get counted.
        over = _over_cap(conn, {h: cap[h] for h, n in sizes.items() if n > cap[h] and h not in stopped})
        lost = self._stop(conn, over, set(rowids.values())) if over else set()
        stopped |= over
        usable = {key: [h for h in hs if h not in stopped] for key, hs in hashes.items()}
        pairs = _screened(conn, _pairs(usable, rowids, stored), screens)
        if not pairs:
            return lost
        by_rowid: dict[int, tuple[OfferKey, MatchRecord]] = {rowids[k]: (k, r) for k, r in records.items()}
        missing = sorted({x for pair in pairs for x in pair if x not in by_rowid})
        for chunk in chunks(missing):
            for row in conn.execute(f"SELECT {_RECORD} FROM offers WHERE rowid IN ({marks(len(chunk))})", chunk):
                by_rowid[int(row[0])] = ((row[1], row[2]), _record(row))
        edges = []
        for x, y in sorted(pairs):
            (kx, rx), (ky, ry) = by_rowid[x], by_rowid[y]
            # One orientation (the smaller offer key first), so the score is the same whoever arrived first.
            decision = matcher.score(rx, ry, "merge") if kx < ky else matcher.score(ry, rx, "merge")
            if decision.match and decision.score >= self.threshold:
                edges.append((x, y, decision.score, orjson.dumps(list(decision.reasons)).decode()))
        conn.executemany("INSERT OR REPLACE INTO match_edges (a, b, score, reasons) VALUES (?, ?, ?, ?)", edges)
        return lost

    @staticmethod
    def _stop(conn: sqlite3.Connection, keys: set[int], writing: set[int]) -> set[str]:
        """Record ``keys`` as over their caps, and drop the stored edges they alone made: an edge stays when its
        two offers still share a key below its cap, which is exactly the edge set of the whole-set reference (an
        edge is kept by any usable key it has, whenever it was found). Returns the products of the offers whose
        edges went (``writing``: offers of this write, re-clustered anyway)."""
        conn.executemany("INSERT OR IGNORE INTO match_stop_keys (k) VALUES (?)", [(k,) for k in sorted(keys)])
        members: set[int] = set()
        for chunk in chunks(sorted(keys)):
            members.update(
                r[0] for r in conn.execute(f"SELECT offer FROM match_keys WHERE k IN ({marks(len(chunk))})", chunk)
            )
        ids = sorted(members - writing)  # this write's offers have no edges yet (``forget``)
        edges: set[tuple[int, int]] = set()
        for chunk in chunks(ids):
            m = marks(len(chunk))
            for a, b in conn.execute(
                f"SELECT a, b FROM match_edges WHERE a IN ({m}) UNION SELECT a, b FROM match_edges WHERE b IN ({m})",
                (*chunk, *chunk),
            ):
                if a in members and b in members:
                    edges.add((a, b))
        if not edges:
            return set()
        ends = sorted({x for edge in edges for x in edge})
        keys_of: dict[int, set[int]] = defaultdict(set)
        for chunk in chunks(ends):
            for k, offer in conn.execute(
                f"SELECT k, offer FROM match_keys WHERE offer IN ({marks(len(chunk))})"
                " AND k NOT IN (SELECT k FROM match_stop_keys)",
                chunk,
            ):
                keys_of[offer].add(k)
        gone = sorted(edge for edge in edges if not keys_of[edge[0]] & keys_of[edge[1]])
        conn.executemany("DELETE FROM match_edges WHERE a = ? AND b = ?", gone)
        touched = sorted({x for edge in gone for x in edge})
        products: set[str] = set()
        for chunk in chunks(touched):
            products.update(
                r[0] for r in conn.execute(f"SELECT product_id FROM offers WHERE rowid IN ({marks(len(chunk))})", chunk)
            )
        return products

    # -- clustering --------------------------------------------------------------------------------------------

    def settle(
        self,
        conn: sqlite3.Connection,
        products: Iterable[str],
        match_keys: Iterable[str] = (),
        offers: Iterable[OfferKey] = (),
        known: Mapping[OfferKey, Offer] | None = None,
    ) -> set[str]:
        """Re-cluster around these products' offers, match keys and offers, reading only their neighbourhood
        (``neighbourhood``: exactly what re-clustering the whole catalog gives); returns the product ids whose
        membership or explanations changed (all need a rebuild)."""
        view = neighbourhood.View(conn, _load_overrides(conn), known or {}, _records)
        inside = view.units(products, match_keys, offers)
        if not inside:
            return set()
        outcome = neighbourhood.settle(view, self.matcher, self.threshold, inside)
        return neighbourhood.write(conn, view, outcome, inside)

    # -- whole catalog -----------------------------------------------------------------------------------------

    def reindex_if_stale(self, conn: sqlite3.Connection) -> set[str] | None:
        """Rebuild index and edges of every offer when the model changed (or the store predates matching);
        returns the products to re-cluster, or None when the index is current."""
        version = model_version(self.matcher)
        (stored,) = conn.execute(f"SELECT value FROM meta WHERE key = '{_MODEL_META}'").fetchone()
        if stored == version:
            return None
        from app.store.sqlite.offers import OFFER_READ, row_to_offer

        conn.execute("DELETE FROM match_keys")
        conn.execute("DELETE FROM match_edges")
        conn.execute("DELETE FROM match_stop_keys")
        conn.execute("DELETE FROM match_screens")
        products: set[str] = set()
        batch: dict[OfferKey, Offer] = {}
        rowids: dict[OfferKey, int] = {}
        for row in conn.execute(f"SELECT rowid, {OFFER_READ} FROM offers ORDER BY rowid").fetchall():
            offer = row_to_offer(row[1:])
            batch[offer.key] = offer
            rowids[offer.key] = int(row[0])
            products.add(str(row[18]))
            if len(batch) >= 500:
                products |= self.index(conn, batch, rowids)
                batch, rowids = {}, {}
        products |= self.index(conn, batch, rowids)
        conn.execute(f"UPDATE meta SET value = ? WHERE key = '{_MODEL_META}'", (version,))
        return products


def _records(conn: sqlite3.Connection, rowids: list[int]) -> dict[OfferKey, MatchRecord]:
    out: dict[OfferKey, MatchRecord] = {}
    for chunk in chunks(rowids):
        for row in conn.execute(f"SELECT {_RECORD} FROM offers WHERE rowid IN ({marks(len(chunk))})", chunk):
            out[(row[1], row[2])] = _record(row)
    return out


def _blocks(
    conn: sqlite3.Connection, hashes: Mapping[OfferKey, list[int]], stopped: Collection[int]
) -> tuple[dict[str, dict[int, list[int]]], dict[int, int]]:
    """By vendor of the written offers, the stored offers of other vendors under each of their usable keys, and
    how many offers each key holds.

    One grouped read per vendor and chunk of keys walks each block once (a block is at most its cap: larger ones
    are stopped) and hands back only the other vendors' offers: a vendor's own look-alikes (one shop's clones,
    sizes, colours) are counted in SQLite and never become Python objects. Kept by vendor, so a write of several
    vendors' offers pairs none of them with a stored offer of its own vendor."""
    by_vendor: dict[str, set[int]] = defaultdict(set)
    for key, hs in hashes.items():
        by_vendor[key[0]].update(h for h in hs if h not in stopped)
    stored: dict[str, dict[int, list[int]]] = {}
    sizes: dict[int, int] = {}
    for vendor_id, wanted in by_vendor.items():
        theirs = stored[vendor_id] = {}
        for chunk in chunks(sorted(wanted)):
            for k, n, others in conn.execute(
                "SELECT k, count(*), group_concat(offer) FILTER (WHERE vendor_id != ?) FROM match_keys "
                f"WHERE k IN ({marks(len(chunk))}) GROUP BY k",
                (vendor_id, *chunk),
            ):
                sizes[k] = n
                if others is not None:
                    theirs[k] = [int(x) for x in others.split(",")]
    return stored, sizes


def _pairs(
    hashes: Mapping[OfferKey, list[int]],
    rowids: Mapping[OfferKey, int],
    stored: Mapping[str, Mapping[int, list[int]]],
) -> set[tuple[int, int]]:
    """Pairs of other vendors sharing a key: the written offers with stored ones (``stored``: by vendor, the
    other vendors' offers under each key, as ``_blocks`` found them), and with each other (each pair once,
    smaller rowid first).

    The batch's offers under a key are grouped first and paired only when the group holds two vendors: a page of
    one vendor's look-alikes shares keys, and filtering them pair by pair made this quadratic in the page."""
    pairs: set[tuple[int, int]] = set()
    add = pairs.add
    in_batch: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for key, hs in hashes.items():
        me, mine = rowids[key], key[0]
        theirs = stored.get(mine, {})
        others: set[int] = set()  # a candidate under several keys is paired once
        for h in hs:
            in_batch[h].append((mine, me))
            found = theirs.get(h)
            if found is not None:
                others.update(found)
        if others:
            pairs.update([(me, other) if me < other else (other, me) for other in others])
    for members in in_batch.values():
        if len(members) < 2 or all(v == members[0][0] for v, _ in members):
            continue
        for i, (vx, x) in enumerate(members):
            for vy, y in members[i + 1 :]:
                if vx != vy:
                    add((x, y) if x < y else (y, x))
    return pairs


def _screened(
    conn: sqlite3.Connection, pairs: set[tuple[int, int]], screens: dict[int, Screen | None]
) -> set[tuple[int, int]]:
    """The pairs their screens do not refuse (``screen.refused``: merging would refuse them anyway), read for the
    stored offers among them into ``screens``; an offer without a screen is kept for scoring."""
    stored = sorted({x for pair in pairs for x in pair if x not in screens})
    for chunk in chunks(stored):
        for offer, text in conn.execute(
            f"SELECT offer, screen FROM match_screens WHERE offer IN ({marks(len(chunk))})", chunk
        ):
            screens[int(offer)] = loads(text)
    kept = set()
    for x, y in pairs:
        sx, sy = screens.get(x), screens.get(y)
        if sx is None or sy is None or not refused(sx, sy):
            kept.add((x, y))
    return kept


def _stopped(conn: sqlite3.Connection, keys: Collection[int]) -> set[int]:
    """Which of these keys are over their caps already (``match_stop_keys``)."""
    out: set[int] = set()
    for chunk in chunks(sorted(keys)):
        out.update(r[0] for r in conn.execute(f"SELECT k FROM match_stop_keys WHERE k IN ({marks(len(chunk))})", chunk))
    return out


def _over_cap(conn: sqlite3.Connection, caps: Mapping[int, int]) -> set[int]:
    """The keys whose blocks now hold more offers than their caps. Each count reads at most its cap plus this
    write's offers: a key over its cap is stopped and never counted again."""
    over: set[int] = set()
    for chunk in chunks(sorted(caps)):
        for k, n in conn.execute(
            f"SELECT k, count(*) FROM match_keys WHERE k IN ({marks(len(chunk))}) GROUP BY k", chunk
        ):
            if n > caps[k]:
                over.add(k)
    return over


def store_override(conn: sqlite3.Connection, change: OverrideChange, at: str) -> list[OfferKey]:
    """Record a decision (see ``OverrideChange``); returns the offers whose products must be re-clustered."""
    x = change.offer
    named = "(vendor_id = ? AND vendor_product_id = ?) OR (other_vendor_id = ? AND other_product_id = ?)"
    affected = [x]
    for v, p, ov, op in conn.execute(
        f"SELECT vendor_id, vendor_product_id, other_vendor_id, other_product_id FROM match_overrides WHERE {named}",
        (*x, *x),
    ):
        affected += [(v, p), (ov, op)] if ov else [(v, p)]
    if change.kind in ("split", "clear"):
        conn.execute(f"DELETE FROM match_overrides WHERE {named}", (*x, *x))
    if change.kind == "split":
        conn.execute(
            "INSERT OR IGNORE INTO match_overrides (vendor_id, vendor_product_id, kind, created_at) "
            "VALUES (?, ?, 'split', ?)",
            (*x, at),
        )
    elif change.kind == "pin" and change.other is not None and change.other != x:
        a, b = sorted((x, change.other))
        affected.append(change.other)
        conn.execute("DELETE FROM match_overrides WHERE kind = 'split' AND vendor_id = ? AND vendor_product_id = ?", a)
        conn.execute("DELETE FROM match_overrides WHERE kind = 'split' AND vendor_id = ? AND vendor_product_id = ?", b)
        conn.execute(
            "INSERT OR IGNORE INTO match_overrides VALUES (?, ?, 'pin', ?, ?, ?)",
            (*a, *b, at),
        )
    return sorted(set(affected))


def _load_overrides(conn: sqlite3.Connection) -> Overrides:
    """Every override (people make few; reading them all is one small scan per write)."""
    splits: set[OfferKey] = set()
    pins: set[tuple[OfferKey, OfferKey]] = set()
    for v, p, kind, ov, op in conn.execute(
        "SELECT vendor_id, vendor_product_id, kind, other_vendor_id, other_product_id FROM match_overrides"
    ):
        if kind == "split":
            splits.add((v, p))
        else:
            x, y = (v, p), (ov, op)
            pins.add((x, y) if x < y else (y, x))
    return Overrides(frozenset(splits), frozenset(pins))


def read_why(conn: sqlite3.Connection, rowids: Collection[int]) -> dict[int, dict[str, object]]:
    out: dict[int, dict[str, object]] = {}
    for chunk in chunks(sorted(rowids)):
        for rowid, text in conn.execute(
            f"SELECT offer, why FROM match_why WHERE offer IN ({marks(len(chunk))})", chunk
        ):
            out[int(rowid)] = orjson.loads(text)
    return out


def overrides_of(conn: sqlite3.Connection, offer: OfferKey) -> list[dict[str, str]]:
    out = []
    for v, p, kind, ov, op, at in conn.execute(
        "SELECT vendor_id, vendor_product_id, kind, other_vendor_id, other_product_id, created_at "
        "FROM match_overrides WHERE (vendor_id = ? AND vendor_product_id = ?) "
        "OR (other_vendor_id = ? AND other_product_id = ?) ORDER BY kind, vendor_id, vendor_product_id",
        (*offer, *offer),
    ):
        item = {"kind": kind, "vendor_id": v, "vendor_product_id": p, "created_at": at}
        if ov:
            item.update(other_vendor_id=ov, other_product_id=op)
        out.append(item)
    return out
