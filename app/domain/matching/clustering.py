"""From scored pairs to products: which offers end up together, and under which stable key.

The rule, written once for the whole catalog and for any part of it:

1. Start from today's identifier groups (``unify.assign_products``: same GTIN, or same brand + SKU), so every
   product today's rules form is formed again, under the same key and so the same ``product_id``.
2. Take the matcher's edges at or above the merge threshold in one total order: score descending, then the
   two offer keys. Merge the two groups of an edge unless that would put two conflicting offers in one product
   (two different valid GTINs, or a variant conflict such as 128 GB against 256 GB), or two offers of one vendor
   (a shop's two look-alike listings are two items). This is Kruskal's
   algorithm with cannot-link constraints: evidence links like single linkage, conflicts veto like complete
   linkage, so a chain of plausible edges can never carry a 128 GB phone into the 256 GB one's product.
3. A group's key is its smallest GTIN key, else its smallest brand+SKU key, else its smallest offer key: the
   key of the strongest identifier, which keeps ids stable when offers join or leave.

People overrule it (``Overrides``): a *split* offer leaves its identifier group and takes no edge, so it is a
product of its own (``offer:`` key); a *pin* joins two offers before any edge is looked at, and a person's pin is
not vetoed by conflicts. Both are sets, applied in a fixed order, so the result still depends on the set alone.

Why the result depends only on the set of offers (and edges), never on the order they arrived in: the initial
groups are a partition computed from the set; edges are processed in an order defined by their own values;
every decision (merge or refuse) depends only on the two groups the edge touches at that moment. Those groups
only ever grow by edges of the same connected component of the graph whose links are the above-threshold
edges and the identifier groups, so running the algorithm on one component alone makes exactly the decisions
it makes there when run on the whole catalog. A store can therefore recompute only the component around a
changed offer and get the same products as a full recomputation; and since a product's history is decided by its
own edges alone (an edge out of it was refused), less than the component will do: see
``app.store.sqlite.neighbourhood``.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.domain.matching import blocking
from app.domain.matching.records import MatchRecord, from_offer
from app.domain.matching.scoring import Matcher, ThresholdName, gtin_conflict
from app.domain.models import Offer
from app.domain.unify import assign_products

OfferKey = tuple[str, str]
_KIND_ORDER = {"gtin": 0, "bs": 1, "offer": 2}


@dataclass(frozen=True, slots=True, order=True)
class Edge:
    """A scored pair; ``a < b`` always, so an edge has one spelling."""

    a: OfferKey
    b: OfferKey
    score: float
    reasons: tuple[str, ...] = ()

    @staticmethod
    def of(x: OfferKey, y: OfferKey, score: float, reasons: tuple[str, ...] = ()) -> Edge:
        return Edge(x, y, score, reasons) if x < y else Edge(y, x, score, reasons)


@dataclass(frozen=True, slots=True)
class Group:
    key: str
    members: tuple[OfferKey, ...]


@dataclass(frozen=True, slots=True)
class Overrides:
    """What people decided: offers split out of their product, and pairs of offers pinned together."""

    splits: frozenset[OfferKey] = frozenset()
    pins: frozenset[tuple[OfferKey, OfferKey]] = frozenset()  # each pair (smaller, larger)

    def __bool__(self) -> bool:
        return bool(self.splits or self.pins)


NO_OVERRIDES = Overrides()


@dataclass(frozen=True, slots=True)
class OverrideChange:
    """One decision as it travels (API -> store, or through the changelog to every node).

    ``split``: ``offer`` leaves its product (and any pin of it goes); ``pin``: ``offer`` and ``other`` share a
    product from now on (a split of either goes); ``clear``: every override naming ``offer`` goes.
    """

    kind: str  # "split" | "pin" | "clear"
    offer: OfferKey
    other: OfferKey | None = None


def offer_key_text(offer: OfferKey) -> str:
    return f"offer:{offer[0]}:{offer[1]}"


def root_of(parent: dict[OfferKey, OfferKey], x: OfferKey) -> OfferKey:
    """The root of ``x`` in a union-find forest (``parent``), halving the path on the way."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def key_rank(key: str) -> tuple[int, str]:
    """GTIN keys first, then brand+SKU keys, then offer keys; within a kind, the smallest."""
    return (_KIND_ORDER.get(key.split(":", 1)[0], 3), key)


def cluster(
    base_keys: Mapping[OfferKey, str],
    edges: Iterable[Edge],
    conflict: Callable[[OfferKey, OfferKey], bool],
    threshold: float,
    overrides: Overrides = NO_OVERRIDES,
    can_conflict: Callable[[OfferKey], bool] | None = None,
    same_vendor: bool = False,
) -> list[Group]:
    """Groups of ``base_keys``' offers (see the module docstring), sorted by key; members sorted.

    ``base_keys`` is today's product key of each offer; edges whose ends are not in it are ignored, and of
    several edges for one pair the highest scored counts.
    ``conflict(x, y)`` says two offers may never share a product; ``can_conflict(x)`` False says ``conflict`` is
    False for x and any offer (no identifier and no variant stated), so its pairs are never asked.
    Unless ``same_vendor``, two groups that both hold an offer of one vendor never merge through an edge: a shop
    listing two look-alikes sells two items (its offers are never compared for the same reason), and without
    this a chain of plausible edges gathered one shop's whole range into one product. Identifiers (a shared GTIN,
    brand + SKU) and pins still put one vendor's offers together.
    """
    if overrides.splits:
        base_keys = {o: offer_key_text(o) if o in overrides.splits else k for o, k in base_keys.items()}
        edges = [e for e in edges if e.a not in overrides.splits and e.b not in overrides.splits]
    parent: dict[OfferKey, OfferKey] = {}
    members: dict[OfferKey, list[OfferKey]] = {}
    by_base: dict[str, list[OfferKey]] = defaultdict(list)
    for offer, key in base_keys.items():
        by_base[key].append(offer)
    for group in by_base.values():
        root = min(group)
        members[root] = sorted(group)
        for offer in group:
            parent[offer] = root

    find = functools.partial(root_of, parent)

    for x, y in sorted(overrides.pins):
        if x in parent and y in parent:
            rx, ry = find(x), find(y)
            if rx != ry:
                root, other = (rx, ry) if rx < ry else (ry, rx)
                parent[other] = root
                members[root] = sorted(members[root] + members.pop(other))

    chosen: dict[tuple[OfferKey, OfferKey], Edge] = {}
    for e in edges:  # one edge per pair, the best one whatever order they came in
        if e.score >= threshold and e.a in parent and e.b in parent:
            seen = chosen.get((e.a, e.b))
            if seen is None or (e.score, e.reasons) > (seen.score, seen.reasons):
                chosen[(e.a, e.b)] = e
    # Groups found to conflict, by root: groups only grow, so two that conflict always will, and the next edge
    # between them is refused without comparing their members again (a look-alike catalog's components have
    # many edges between the same two groups, and comparing every member pair was most of a write's time).
    enemies: dict[OfferKey, set[OfferKey]] = defaultdict(set)
    # Each group's members that can conflict at all, found when first needed (a third to a half of a look-alike
    # catalog's members state nothing a conflict could rest on, and each merge compared every pair of members).
    active: dict[OfferKey, list[OfferKey]] = {}
    vendors = {root: frozenset(m[0] for m in group) for root, group in members.items()}

    def active_of(root: OfferKey) -> list[OfferKey]:
        found = active.get(root)
        if found is None:
            found = active[root] = [m for m in members[root] if can_conflict is None or can_conflict(m)]
        return found

    for edge in sorted(chosen.values(), key=lambda e: (-e.score, e.a, e.b)):
        ra, rb = find(edge.a), find(edge.b)
        if ra == rb or rb in enemies[ra]:
            continue
        refused = not same_vendor and not vendors[ra].isdisjoint(vendors[rb])  # one shop on both sides
        if not refused:
            xs, ys = active_of(ra), active_of(rb)
            refused = any(conflict(x, y) for x in xs for y in ys)
        if refused:
            enemies[ra].add(rb)
            enemies[rb].add(ra)
            continue
        root, other = (ra, rb) if ra < rb else (rb, ra)
        parent[other] = root
        members[root] = sorted(members[root] + members.pop(other))
        active[root] = xs + ys
        active.pop(other, None)
        vendors[root] = vendors[root] | vendors.pop(other)
        gone = enemies.pop(other, set())
        for enemy in gone:
            enemies[enemy].discard(other)
            enemies[enemy].add(root)
        enemies[root] |= gone
    groups = [Group(min((base_keys[m] for m in group), key=key_rank), tuple(group)) for group in members.values()]
    return sorted(groups, key=lambda g: g.key)


def explain(
    group: Group,
    base_keys: Mapping[OfferKey, str],
    edges: Iterable[Edge],
    overrides: Overrides = NO_OVERRIDES,
) -> dict[OfferKey, dict[str, object]]:
    """Why each member is in the product, as the product detail shows it (``match``).

    ``{"by": "key", "key": ...}``: the offer's own identifier names the product, or ties it to a member that
    does; ``{"by": "score", "score", "reasons"}``: the best edge from it to another member (its identifier group
    joined through it); ``{"by": "pin"}`` / ``{"by": "split"}``: a person decided.
    """
    inside = set(group.members)
    best: dict[OfferKey, Edge] = {}
    for e in edges:
        if e.a in inside and e.b in inside:
            for end in (e.a, e.b):
                seen = best.get(end)
                if seen is None or (e.score, e.reasons, e.a, e.b) > (seen.score, seen.reasons, seen.a, seen.b):
                    best[end] = e
    pinned = {o for pair in overrides.pins for o in pair if pair[0] in inside and pair[1] in inside}
    out: dict[OfferKey, dict[str, object]] = {}
    for m in group.members:
        own = offer_key_text(m) if m in overrides.splits else base_keys[m]
        if m in overrides.splits and len(group.members) == 1:
            out[m] = {"by": "split"}
        elif own == group.key:
            out[m] = {"by": "key", "key": own}
        elif m in pinned:
            out[m] = {"by": "pin"}
        elif m in best:
            e = best[m]
            out[m] = {"by": "score", "score": e.score, "reasons": list(e.reasons)}
        else:
            out[m] = {"by": "key", "key": own}
    return out


def candidate_edges(
    records: Mapping[OfferKey, MatchRecord],
    matcher: Matcher,
    threshold: ThresholdName = "merge",
    same_vendor: bool = False,
) -> list[Edge]:
    """Every pair sharing a blocking key of at most ``blocking.max_block`` offers, scored; above the threshold
    only. Offers of one vendor are not compared unless ``same_vendor``: a shop listing two near-identical items
    means two items."""
    index: dict[str, list[OfferKey]] = defaultdict(list)
    for key in sorted(records):
        for block in matcher.blocking_keys(records[key]):
            index[block].append(key)
    pairs: set[tuple[OfferKey, OfferKey]] = set()
    for block, block_members in index.items():
        if len(block_members) > blocking.max_block(block):
            continue  # purged: too common to say anything (the store stops such a key the same way)
        for i, x in enumerate(block_members):
            for y in block_members[i + 1 :]:
                if same_vendor or x[0] != y[0]:
                    pairs.add((x, y) if x < y else (y, x))
    cut = matcher.threshold(threshold)
    edges = []
    for x, y in sorted(pairs):
        decision = matcher.score(records[x], records[y], threshold)
        if decision.score >= cut and decision.match:
            edges.append(Edge.of(x, y, decision.score, decision.reasons))
    return edges


def unify_offers(
    offers: Sequence[Offer],
    matcher: Matcher,
    threshold: ThresholdName = "merge",
    same_vendor: bool = False,
    overrides: Overrides = NO_OVERRIDES,
) -> dict[OfferKey, str]:
    """Product key of every offer of a complete set: the reference an incremental store must agree with."""
    return unify_explained(offers, matcher, overrides, threshold, same_vendor)[0]


def unify_explained(
    offers: Sequence[Offer],
    matcher: Matcher | None,
    overrides: Overrides = NO_OVERRIDES,
    threshold: ThresholdName = "merge",
    same_vendor: bool = False,
) -> tuple[dict[OfferKey, str], dict[OfferKey, dict[str, object]]]:
    """``unify_offers`` and every offer's ``explain``: what the store's products and their ``match`` must be.
    Without a matcher only identifiers and overrides decide (``CATALOG_MATCHING=false``)."""
    base = assign_products(offers)
    records = {o.key: from_offer(o) for o in offers}
    edges = candidate_edges(records, matcher, threshold, same_vendor) if matcher is not None else []

    def conflict(x: OfferKey, y: OfferKey) -> bool:
        if matcher is None:
            return gtin_conflict(records[x], records[y])
        return matcher.conflict(records[x], records[y])

    def can_conflict(x: OfferKey) -> bool:
        return records[x].gtin is not None if matcher is None else matcher.can_conflict(records[x])

    cut = matcher.threshold(threshold) if matcher is not None else 1.0
    groups = cluster(base, edges, conflict, cut, overrides, can_conflict, same_vendor)
    keys = {member: group.key for group in groups for member in group.members}
    why: dict[OfferKey, dict[str, object]] = {}
    for group in groups:
        why.update(explain(group, base, edges, overrides))
    return keys, why
