"""Re-clustering what a write touched from its neighbourhood, not from its whole connected component.

Why: in a catalog of look-alikes (one maker's range in colours and sizes, sold by many shops), the edges that the
conflict rules then refuse chain products into components that grow with the catalog (over a thousand offers at
20k products), and re-clustering a component whole on every part a sync writes made each offer cost more as the
store grew. The products a write can change are far fewer, and this module finds them exactly.

The argument (``app.domain.matching.clustering`` runs Kruskal's algorithm with cannot-link checks over a total
order of edges; every decision reads only the two groups an edge touches):

- A *unit* is a set of stored offers that move together whatever the edges say: whole products as stored, grown
  by shared GTINs and match keys (identifier groups, and the GTINs that name a match key's group) and by pins.
- The *inside* is the units of what the write touched (its offers, their old products, products that lost
  an edge). Every other product as stored is the result of the algorithm on its own offers and edges alone: it is
  a whole group of the last complete run, and a group's history is decided by its own edges, since any edge out of
  it was refused.
- Run the algorithm on the inside, each far end of its edges alone (with only its edges to the inside), and the
  *ring*: the units read whole so far, with every edge among them. An edge from the inside that a far end alone
  refuses is refused by the far end's product too (that product, at any moment, holds the far end). Until the
  first decision that differs from the stored products, the ring's products form exactly as they did: an edge
  between two ring products, or from one to a product not read, meets the same two groups as before and is
  refused again. So the first difference can only be an edge from the inside that is now taken.
- If a far end joins the inside, its unit is read whole into the ring and it runs again; if a ring product joins
  the inside or forms otherwise, its unit becomes inside and it runs again (over the grown inside's far ends).
  When neither happens, every product outside the inside is as stored, and the inside's groups are what a run
  over the whole catalog gives.
- So a write reads the products around it and their edges, a few dozen offers, whatever the catalog's size;
  the cost grows only when a write really does change products further away.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from app.domain.matching import Edge, Matcher, Overrides, cluster, explain, from_offer
from app.domain.matching.clustering import Group, OfferKey, offer_key_text, root_of
from app.domain.matching.records import MatchRecord
from app.domain.matching.scoring import gtin_conflict
from app.domain.models import Offer
from app.domain.unify import matched_key, product_id
from app.store.sqlite.connection import chunks, marks, next_seq


@dataclass(slots=True)
class Row:
    rowid: int
    key: OfferKey
    gtin: str | None
    match_key: str | None
    product_id: str


ROW = "rowid, vendor_id, vendor_product_id, gtin, match_key, product_id"


def row_of(r: tuple[Any, ...]) -> Row:
    return Row(int(r[0]), (str(r[1]), str(r[2])), r[3], r[4], str(r[5]))


def default_key(gtin: str | None, mk: str | None, key: OfferKey) -> str:
    """The key an offer names on its own (``unify.key_for`` with no linked GTINs)."""
    if gtin:
        return f"gtin:{gtin}"
    if mk is not None:
        return f"bs:{mk}"
    return offer_key_text(key)


class View:
    """The offers and stored edges a settle has read so far, and the reads that grow it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        overrides: Overrides,
        known: Mapping[OfferKey, Offer],
        read_records: Callable[[sqlite3.Connection, list[int]], dict[OfferKey, MatchRecord]],
    ) -> None:
        self.conn = conn
        self.overrides = overrides
        self.rows: dict[int, Row] = {}
        self.by_key: dict[OfferKey, Row] = {}
        self.edges: dict[tuple[int, int], tuple[float, str]] = {}
        self._known = known
        self.records: dict[OfferKey, MatchRecord] = {}
        self._read_records = read_records
        self._edges_read: set[int] = set()
        self._ends: dict[int, list[int]] = defaultdict(list)
        self._edge_objects: dict[tuple[int, int], Edge] = {}
        # The same offers meet again in each run of a settle: their conflicts are asked once.
        self.conflicts: dict[tuple[OfferKey, OfferKey], bool] = {}
        self.can_conflict: dict[OfferKey, bool] = {}
        # Each connected part's groups, by its offers and edges: a settle runs again over all it read, and most
        # parts come out of every run as they went in (``_clustered``).
        self.clustered: dict[tuple[frozenset[OfferKey], frozenset[Edge]], list[Group]] = {}
        self._found: dict[str, dict[str, list[Row]]] = {"product_id": {}, "gtin": {}, "match_key": {}}
        self.pins_of: dict[OfferKey, list[OfferKey]] = defaultdict(list)
        for x, y in overrides.pins:
            self.pins_of[x].append(y)
            self.pins_of[y].append(x)

    def _add(self, found: Iterable[tuple[Any, ...]]) -> list[Row]:
        """The rows found, read before or not (one object per offer)."""
        out = []
        for r in found:
            row = self.rows.get(int(r[0]))
            if row is None:
                row = row_of(r)
                self.rows[row.rowid] = self.by_key[row.key] = row
            out.append(row)
        return out

    def _where(self, column: str, values: Iterable[str]) -> list[Row]:
        """Every offer with one of these values in ``column`` (``product_id``, ``gtin`` or ``match_key``), each
        value read once: nothing writes while a view reads."""
        found = self._found[column]
        wanted = sorted(set(values))
        out = [r for v in wanted if v in found for r in found[v]]
        missing = [v for v in wanted if v not in found]
        for v in missing:
            found[v] = []
        for chunk in chunks(missing):
            rows = self._add(
                self.conn.execute(f"SELECT {ROW} FROM offers WHERE {column} IN ({marks(len(chunk))})", chunk)
            )
            for r in rows:
                found[str(getattr(r, column))].append(r)
            out += rows
        return out

    def _by_keys(self, keys: Iterable[OfferKey]) -> list[Row]:
        wanted = set(keys)
        out = [self.by_key[k] for k in wanted if k in self.by_key]
        by_vendor: dict[str, list[str]] = defaultdict(list)
        for v, p in sorted(wanted - self.by_key.keys()):
            by_vendor[v].append(p)
        for vendor, ids in by_vendor.items():
            for chunk in chunks(ids):
                out += self._add(
                    self.conn.execute(
                        f"SELECT {ROW} FROM offers WHERE vendor_id = ? AND vendor_product_id IN ({marks(len(chunk))})",
                        (vendor, *chunk),
                    )
                )
        return out

    def units(
        self,
        products: Iterable[str] = (),
        match_keys: Iterable[str] = (),
        offers: Iterable[OfferKey] = (),
        rowids: Iterable[int] = (),
    ) -> set[int]:
        """The rows of these, grown to whole units (whole products, identifier groups, pins); ``rowids`` must be
        read already, and their units may be read in part (as far ends only)."""
        frontier = self._where("product_id", products) + self._where("match_key", match_keys)
        frontier += self._by_keys(offers) + [self.rows[i] for i in rowids]
        reached: set[int] = set()
        pids, mks = set(products), set(match_keys)  # values followed already, in this call
        gtins: set[str] = set()
        while frontier:
            frontier = [r for r in frontier if r.rowid not in reached]
            reached.update(r.rowid for r in frontier)
            new_pids = {r.product_id for r in frontier} - pids
            new_gtins = {r.gtin for r in frontier if r.gtin} - gtins
            new_mks = {r.match_key for r in frontier if r.match_key} - mks
            pids |= new_pids
            gtins |= new_gtins
            mks |= new_mks
            partners = [p for r in frontier for p in self.pins_of.get(r.key, ())]
            frontier = self._where("product_id", new_pids) + self._where("gtin", new_gtins)
            frontier += self._where("match_key", new_mks) + self._by_keys(partners)
        return reached

    def read_edges(self, rowids: Iterable[int]) -> set[int]:
        """Read the stored edges of these offers (once each); returns the rowids at their other ends."""
        ids = set(rowids)
        wanted = sorted(ids - self._edges_read)
        self._edges_read.update(wanted)
        for part in chunks(wanted):
            m = marks(len(part))
            for a, b, score, reasons in self.conn.execute(
                f"SELECT a, b, score, reasons FROM match_edges WHERE a IN ({m}) "
                f"UNION SELECT a, b, score, reasons FROM match_edges WHERE b IN ({m})",
                (*part, *part),
            ):
                if (a, b) not in self.edges:
                    self.edges[(a, b)] = (score, reasons)  # parsed when a run takes it (``edge``)
                    self._ends[a].append(b)
                    self._ends[b].append(a)
        return {e for i in ids for e in self._ends.get(i, ())} - ids

    def ends_of(self, rowid: int) -> set[int]:
        """The other ends of this offer's edges (read with ``read_edges``)."""
        return set(self._ends.get(rowid, ()))

    def rows_of(self, rowids: Iterable[int]) -> None:
        """Read these offers alone (an edge's far end), without their units."""
        wanted = sorted(set(rowids) - self.rows.keys())
        for chunk in chunks(wanted):
            self._add(self.conn.execute(f"SELECT {ROW} FROM offers WHERE rowid IN ({marks(len(chunk))})", chunk))

    def edge(self, a: int, b: int) -> Edge:
        found = self._edge_objects.get((a, b))
        if found is None:
            score, reasons = self.edges[(a, b)]
            found = Edge.of(self.rows[a].key, self.rows[b].key, score, tuple(orjson.loads(reasons)))
            self._edge_objects[(a, b)] = found
        return found

    def record(self, x: OfferKey) -> MatchRecord:
        """Read on first use, for every row read so far (a part without edges to weigh needs none); the offers
        the write holds are taken as they are."""
        found = self.records.get(x)
        if found is None:
            missing = []
            for r in self.rows.values():
                if r.key not in self.records:
                    offer = self._known.get(r.key)
                    if offer is None:
                        missing.append(r.rowid)
                    else:
                        self.records[r.key] = from_offer(offer)
            self.records.update(self._read_records(self.conn, sorted(missing)))
            found = self.records[x]
        return found


@dataclass(slots=True)
class Outcome:
    """One run of the clustering over some rows of a view."""

    groups: list[Group]
    base: dict[OfferKey, str]
    edges: list[Edge]
    local: Overrides


def run(
    view: View, matcher: Matcher | None, threshold: float, inside: set[int], ring: set[int], ends: set[int]
) -> Outcome:
    """The clustering of the inside and the ring with every stored edge among them, and of the far ``ends`` of
    the inside's edges, each alone, with those edges only (``unify_explained``'s rules)."""
    core = inside | ring
    rows = {i: view.rows[i] for i in (*core, *ends)}
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
        view.edge(a, b)
        for a, b in view.edges
        if (a in core and b in core) or (a in inside and b in ends) or (b in inside and a in ends)
    ]
    keys = {r.key for r in rows.values()}
    ov = view.overrides
    local = Overrides(
        frozenset(k for k in ov.splits if k in keys), frozenset(p for p in ov.pins if p[0] in keys and p[1] in keys)
    )

    def conflict(x: OfferKey, y: OfferKey) -> bool:
        pair = (x, y) if x < y else (y, x)
        found = view.conflicts.get(pair)
        if found is None:
            rx, ry = view.record(x), view.record(y)
            found = view.conflicts[pair] = gtin_conflict(rx, ry) if matcher is None else matcher.conflict(rx, ry)
        return found

    def can_conflict(x: OfferKey) -> bool:
        found = view.can_conflict.get(x)
        if found is None:
            r = view.record(x)
            found = view.can_conflict[x] = r.gtin is not None if matcher is None else matcher.can_conflict(r)
        return found

    groups = _clustered(
        view, rows.values(), base, edges, local, lambda b, e, o: cluster(b, e, conflict, threshold, o, can_conflict)
    )
    return Outcome(groups, base, edges, local)


def _clustered(
    view: View,
    rows: Iterable[Row],
    base: Mapping[OfferKey, str],
    edges: list[Edge],
    local: Overrides,
    run_part: Callable[[Mapping[OfferKey, str], list[Edge], Overrides], list[Group]],
) -> list[Group]:
    """``cluster`` over all of ``base``, one connected part at a time, each part's groups taken from the view
    when an earlier run of this settle met the same offers and edges (``clustering``: a part's decisions are
    those of a run over everything). Parts are linked by edges, pins, identifier groups and match keys (a match
    key's GTINs name its base keys), so a part's groups depend on its own offers and edges alone."""
    parent: dict[OfferKey, OfferKey] = {k: k for k in base}
    find = functools.partial(root_of, parent)

    def link(x: OfferKey, y: OfferKey) -> None:
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)

    first: dict[str, OfferKey] = {}
    for r in rows:
        for value in (base[r.key], r.match_key and f"mk:{r.match_key}"):
            if value:
                seen = first.setdefault(value, r.key)
                if seen != r.key:
                    link(seen, r.key)
    for e in edges:
        link(e.a, e.b)
    for x, y in local.pins:
        link(x, y)
    members: dict[OfferKey, list[OfferKey]] = defaultdict(list)
    for k in base:
        members[find(k)].append(k)
    part_edges: dict[OfferKey, list[Edge]] = defaultdict(list)
    for e in edges:
        part_edges[find(e.a)].append(e)
    groups: list[Group] = []
    for root, keys in members.items():
        found = part_edges.get(root, [])
        if not found and not local.pins:  # nothing joins its identifier groups: they are its products
            by_key: dict[str, list[OfferKey]] = defaultdict(list)
            for k in keys:
                by_key[offer_key_text(k) if k in local.splits else base[k]].append(k)
            groups += [Group(key, tuple(sorted(same))) for key, same in by_key.items()]
            continue
        cache_key = (frozenset(keys), frozenset(found))
        done = view.clustered.get(cache_key)
        if done is None:
            part = set(keys)
            done = view.clustered[cache_key] = run_part(
                {k: base[k] for k in keys},
                found,
                Overrides(
                    frozenset(k for k in local.splits if k in part),
                    frozenset(p for p in local.pins if p[0] in part),
                ),
            )
        groups += done
    return sorted(groups, key=lambda g: g.key)


def _alone(view: View, rows: set[int], inside: set[int]) -> bool:
    """Every one of these offers is a unit of its own (its stored product, identifier group and pins are just
    itself) and has stored edges to inside offers only."""
    view.read_edges(rows)
    return all(view.units(rowids=[i]) == {i} and view.ends_of(i) <= inside for i in rows)


def _reached(view: View, outcome: Outcome, inside: set[int], ring: set[int]) -> tuple[set[int], set[int]]:
    """The far ends this run joins with inside offers (their units must be read whole), and the ring rows whose
    products it changes: joined with inside offers, or formed other than as stored (never, when the stored
    products are a complete run's; counted all the same, which heals)."""
    by_key = view.by_key
    ends: set[int] = set()
    changed: set[int] = set()
    for group in outcome.groups:
        ids = [by_key[m].rowid for m in group.members]
        if len(ids) > 1 and any(i in inside for i in ids):
            ends.update(i for i in ids if i not in inside and i not in ring)
        outer = [i for i in ids if i in ring]
        if not outer:
            continue
        pid = product_id(group.key)
        if len(outer) < len(ids) or any(view.rows[i].product_id != pid for i in outer):
            changed.update(outer)
    return ends, changed


def settle(
    view: View,
    matcher: Matcher | None,
    threshold: float,
    inside: set[int],
) -> Outcome:
    """The run whose groups over ``inside`` are the whole catalog's; ``inside`` grows in place (as the module
    docstring says), and ``write`` stores its groups."""
    ring: set[int] = set()
    while True:
        ends = view.read_edges(inside) - ring if matcher is not None else set()
        view.rows_of(ends)
        outcome = run(view, matcher, threshold, inside, ring, ends)
        whole, changed = _reached(view, outcome, inside, ring)
        if whole and not changed and _alone(view, whole, inside):
            # Each far end taken is a product of its own with edges to the inside only: read whole and run
            # again, it would give this very run, then join the inside with no far end of its own.
            inside |= whole
            return outcome
        if whole:  # an edge an offer alone would take: its product's history decides, so read it whole
            fresh = view.units(rowids=whole) - inside - ring
            ring |= fresh
            view.read_edges(fresh)  # the ring's own edges: its products form as stored only with them
            continue
        if not changed:
            return outcome
        grown = view.units(rowids=changed)  # whole units, all in the ring (read from the view, not again)
        ring -= grown
        inside |= grown


def write(conn: sqlite3.Connection, view: View, outcome: Outcome, inside: set[int]) -> set[str]:
    """Store the inside's products and explanations; returns the product ids whose membership or explanations
    changed (all need a rebuild)."""
    by_key = view.by_key
    mine = [g for g in outcome.groups if by_key[g.members[0]].rowid in inside]
    edges_of: dict[str, list[Edge]] = defaultdict(list)
    group_of = {m: g.key for g in mine for m in g.members}
    for e in outcome.edges:
        if group_of.get(e.a) == group_of.get(e.b) is not None:
            edges_of[group_of[e.a]].append(e)
    moves: list[tuple[str, int]] = []
    changed: set[str] = set()
    why: dict[int, str] = {}
    local = outcome.local
    for group in mine:
        pid = product_id(group.key)
        for m in group.members:
            row = by_key[m]
            if row.product_id != pid:
                moves.append((pid, row.rowid))
                changed.update((pid, row.product_id))
        if len(group.members) > 1 or local.splits.intersection(group.members):
            for m, reason in explain(group, outcome.base, edges_of.get(group.key, ()), local).items():
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
    for chunk in chunks(sorted(inside)):
        old.update(conn.execute(f"SELECT offer, why FROM match_why WHERE offer IN ({marks(len(chunk))})", chunk))
    gone = [rowid for rowid in old if rowid not in why]
    put = [(rowid, text) for rowid, text in why.items() if old.get(rowid) != text]
    for chunk in chunks(gone):
        conn.execute(f"DELETE FROM match_why WHERE offer IN ({marks(len(chunk))})", chunk)
    conn.executemany("INSERT OR REPLACE INTO match_why (offer, why) VALUES (?, ?)", put)
    final = {m: product_id(g.key) for g in mine for m in g.members}
    changed.update(final[view.rows[rowid].key] for rowid in (*gone, *(r for r, _ in put)))
    return changed
