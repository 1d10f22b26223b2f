"""Unification in the store: identifier groups, the matcher's edges and people's overrides, kept incrementally.

Why it is shaped like this:
- Candidates come from a persisted blocking index (``match_keys``: a 64-bit hash of each blocking key -> the
  offer's rowid), so matching a new offer costs a few indexed lookups and scoring the few offers of other vendors
  that share a key, whatever the catalog's size.
- Scored pairs at or above the merge threshold are stored (``match_edges``). An edge is a function of its two
  offers alone, and an offer's edges are recomputed whenever it changes, so the edge set depends only on the set of
  offers, never on the order they arrived in.
- Products are ``app.domain.matching.cluster`` over the connected component of what a write touched (identifier
  groups, edges, pins): the domain shows that this gives exactly what a whole-catalog run gives there, so re-syncs
  and other arrival orders give the same products and ids.
- rowids only address rows (they differ from node to node); offer keys, scores and overrides decide.
- Without a matcher (``CATALOG_MATCHING=false``, the benchmark's baseline) the same code runs with no edges: the
  identifier rules and the overrides alone.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from app.domain.matching import Edge, Matcher, OverrideChange, Overrides, cluster, explain, from_offer
from app.domain.matching.blocking import max_block
from app.domain.matching.clustering import OfferKey, offer_key_text
from app.domain.matching.records import MatchRecord
from app.domain.matching.scoring import gtin_conflict
from app.domain.matching.screen import Screen, dumps, loads, refused
from app.domain.models import Offer
from app.domain.unify import matched_key, product_id
from app.store.sqlite.connection import chunks, marks, next_seq

_MODEL_META = "match_model"
#: The blocking scheme's version: part of ``model_version``, so a store indexed with other keys re-indexes at start.
BLOCKING = 5  # 4: word keys capped at 50 offers (100 before); 5: screens (match_screens) kept with the keys


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


@dataclass(slots=True)
class _Row:
    rowid: int
    key: OfferKey
    gtin: str | None
    match_key: str | None
    product_id: str


_ROW = "rowid, vendor_id, vendor_product_id, gtin, match_key, product_id"


def _row(r: tuple[Any, ...]) -> _Row:
    return _Row(int(r[0]), (str(r[1]), str(r[2])), r[3], r[4], str(r[5]))


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


def default_key(gtin: str | None, mk: str | None, key: OfferKey) -> str:
    """The key an offer names on its own (``unify.key_for`` with no linked GTINs)."""
    if gtin:
        return f"gtin:{gtin}"
    if mk is not None:
        return f"bs:{mk}"
    return offer_key_text(key)


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
        """Re-cluster the component of these products' offers, match keys and offers; returns the product ids
        whose membership or explanations changed (all need a rebuild)."""
        rows: dict[int, _Row] = {}
        by_key: dict[OfferKey, _Row] = {}
        edges: dict[tuple[int, int], tuple[float, str]] = {}
        overrides = _load_overrides(conn)
        pins_of: dict[OfferKey, list[OfferKey]] = defaultdict(list)
        for x, y in overrides.pins:
            pins_of[x].append(y)
            pins_of[y].append(x)
        seen_gtins: set[str] = set()
        seen_mks: set[str] = set()

        def add(found: Iterable[tuple[Any, ...]]) -> list[_Row]:
            fresh = []
            for r in found:
                if int(r[0]) not in rows:
                    row = _row(r)
                    rows[row.rowid] = by_key[row.key] = row
                    fresh.append(row)
            return fresh

        frontier: list[_Row] = []
        for chunk in chunks(sorted(set(products))):
            frontier += add(conn.execute(f"SELECT {_ROW} FROM offers WHERE product_id IN ({marks(len(chunk))})", chunk))
        mks = sorted(set(match_keys))
        seen_mks.update(mks)
        for chunk in chunks(mks):
            frontier += add(conn.execute(f"SELECT {_ROW} FROM offers WHERE match_key IN ({marks(len(chunk))})", chunk))
        frontier += self._by_keys(conn, [k for k in offers if k not in by_key], add)
        while frontier:
            gtins = sorted({r.gtin for r in frontier if r.gtin and r.gtin not in seen_gtins})
            seen_gtins.update(gtins)
            mks = sorted({r.match_key for r in frontier if r.match_key and r.match_key not in seen_mks})
            seen_mks.update(mks)
            ids = [r.rowid for r in frontier]
            keys = [r.key for r in frontier]
            frontier = []
            for chunk in chunks(gtins):
                frontier += add(conn.execute(f"SELECT {_ROW} FROM offers WHERE gtin IN ({marks(len(chunk))})", chunk))
            for chunk in chunks(mks):
                frontier += add(
                    conn.execute(f"SELECT {_ROW} FROM offers WHERE match_key IN ({marks(len(chunk))})", chunk)
                )
            if self.matcher is not None:
                linked: set[int] = set()
                for part in chunks(ids):
                    m = marks(len(part))
                    for a, b, score, reasons in conn.execute(
                        f"SELECT a, b, score, reasons FROM match_edges WHERE a IN ({m}) "
                        f"UNION SELECT a, b, score, reasons FROM match_edges WHERE b IN ({m})",
                        (*part, *part),
                    ):
                        edges[(a, b)] = (score, reasons)
                        linked.update((a, b))
                unseen = sorted(linked - rows.keys())
                for part in chunks(unseen):
                    frontier += add(
                        conn.execute(f"SELECT {_ROW} FROM offers WHERE rowid IN ({marks(len(part))})", part)
                    )
            partners = [p for k in keys for p in pins_of.get(k, ()) if p not in by_key]
            frontier += self._by_keys(conn, partners, add)
        if not rows:
            return set()
        return self._assign(conn, rows, by_key, edges, overrides, known or {})

    @staticmethod
    def _by_keys(
        conn: sqlite3.Connection, keys: Iterable[OfferKey], add: Callable[[Iterable[tuple[Any, ...]]], list[_Row]]
    ) -> list[_Row]:
        out: list[_Row] = []
        by_vendor: dict[str, list[str]] = defaultdict(list)
        for v, p in sorted(set(keys)):
            by_vendor[v].append(p)
        for vendor, ids in by_vendor.items():
            for chunk in chunks(ids):
                found = conn.execute(
                    f"SELECT {_ROW} FROM offers WHERE vendor_id = ? AND vendor_product_id IN ({marks(len(chunk))})",
                    (vendor, *chunk),
                )
                out += add(found)
        return out

    def _assign(
        self,
        conn: sqlite3.Connection,
        rows: dict[int, _Row],
        by_key: dict[OfferKey, _Row],
        stored_edges: dict[tuple[int, int], tuple[float, str]],
        overrides: Overrides,
        known: Mapping[OfferKey, Offer],
    ) -> set[str]:
        gtins_by_mk: dict[str, set[str]] = defaultdict(set)
        for r in rows.values():
            if r.match_key and r.gtin:
                gtins_by_mk[r.match_key].add(r.gtin)
        base: dict[OfferKey, str] = {}
        for r in rows.values():
            if r.gtin:
                base[r.key] = f"gtin:{r.gtin}"
            elif r.match_key is not None:
                base[r.key] = matched_key(r.match_key, gtins_by_mk.get(r.match_key, ()))
            else:
                base[r.key] = offer_key_text(r.key)
        edges = [
            Edge.of(rows[a].key, rows[b].key, score, tuple(orjson.loads(reasons)))
            for (a, b), (score, reasons) in stored_edges.items()
            if a in rows and b in rows
        ]
        local = Overrides(
            frozenset(k for k in overrides.splits if k in by_key),
            frozenset(p for p in overrides.pins if p[0] in by_key and p[1] in by_key),
        )
        records: dict[OfferKey, MatchRecord] = {}

        def record(x: OfferKey) -> MatchRecord:
            if not records:  # read on first use: a component without edges to weigh needs none
                records.update(self._records(conn, rows, known))
            return records[x]

        def conflict(x: OfferKey, y: OfferKey) -> bool:
            if self.matcher is None:
                return gtin_conflict(record(x), record(y))
            return self.matcher.conflict(record(x), record(y))

        def can_conflict(x: OfferKey) -> bool:
            if self.matcher is None:
                return record(x).gtin is not None
            return self.matcher.can_conflict(record(x))

        groups = cluster(base, edges, conflict, self.threshold, local, can_conflict)
        # Each group's own edges: ``explain`` reads only those, and handing it all of them is quadratic.
        group_of = {m: g.key for g in groups for m in g.members}
        edges_of: dict[str, list[Edge]] = defaultdict(list)
        for e in edges:
            if group_of.get(e.a) == group_of.get(e.b) is not None:
                edges_of[group_of[e.a]].append(e)
        moves: list[tuple[str, int]] = []
        changed: set[str] = set()
        why: dict[int, str] = {}
        for group in groups:
            pid = product_id(group.key)
            for m in group.members:
                row = by_key[m]
                if row.product_id != pid:
                    moves.append((pid, row.rowid))
                    changed.update((pid, row.product_id))
            if len(group.members) > 1 or local.splits.intersection(group.members):
                for m, reason in explain(group, base, edges_of.get(group.key, ()), local).items():
                    row = by_key[m]
                    if reason != {"by": "key", "key": default_key(row.gtin, row.match_key, m)}:
                        why[row.rowid] = orjson.dumps(reason, option=orjson.OPT_SORT_KEYS).decode()
        if moves:
            seq = next_seq(conn, len(moves))
            conn.executemany(
                "UPDATE offers SET product_id = ?, change_seq = ? WHERE rowid = ?",
                [(pid, seq + i, rowid) for i, (pid, rowid) in enumerate(moves)],
            )
        old: dict[int, str] = {}
        ids = sorted(rows)
        for chunk in chunks(ids):
            old.update(conn.execute(f"SELECT offer, why FROM match_why WHERE offer IN ({marks(len(chunk))})", chunk))
        gone = [rowid for rowid in old if rowid not in why]
        put = [(rowid, text) for rowid, text in why.items() if old.get(rowid) != text]
        for chunk in chunks(gone):
            conn.execute(f"DELETE FROM match_why WHERE offer IN ({marks(len(chunk))})", chunk)
        conn.executemany("INSERT OR REPLACE INTO match_why (offer, why) VALUES (?, ?)", put)
        final = {m: product_id(g.key) for g in groups for m in g.members}
        changed.update(final[rows[rowid].key] for rowid in (*gone, *(r for r, _ in put)))
        return changed

    @staticmethod
    def _records(
        conn: sqlite3.Connection, rows: Mapping[int, _Row], known: Mapping[OfferKey, Offer]
    ) -> dict[OfferKey, MatchRecord]:
        out = {r.key: from_offer(known[r.key]) for r in rows.values() if r.key in known}
        missing = sorted(r.rowid for r in rows.values() if r.key not in known)
        for chunk in chunks(missing):
            for row in conn.execute(f"SELECT {_RECORD} FROM offers WHERE rowid IN ({marks(len(chunk))})", chunk):
                out[(row[1], row[2])] = _record(row)
        return out

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
        for h in hs:
            in_batch[h].append((mine, me))
            found = theirs.get(h)
            if found is not None:
                for other in found:
                    add((me, other) if me < other else (other, me))
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
