"""Are two records the same product? Identifiers first, then variant attributes, then the model.

Order of the rules, each final when it applies:

1. Both carry a valid GTIN: equal is a match (``gtin``), different is not (``gtin_conflict``), whatever the text.
2. Same brand and same normalised SKU (today's unification key): a match (``brand_sku``).
3. A variant attribute both titles state with no common value (capacity, size, colour, pack count, year,
   platform, edition, tier, generation; whole numbers each title has and the other lacks, or model numbers of
   one shape with other digits, when no model number ties them): not a match (``variant_conflict:<what>``).
   "64GB" and "128GB" are two products however alike the rest reads. Titles sharing no word but the brand's, no
   code and few letter trigrams are not a match either (``no_common_words``).
4. Otherwise the model's probability, compared with a threshold: ``match`` (best F1, for ``catalog match``) by
   default, or ``merge`` (chosen for precision) when unification asks. ``merge`` also refuses pairs where only
   one title names a tier or edition (``variant_differs:tier``), see ``one_sided``; such a refusal is decided
   before the model and scores 0.

Reasons are short machine-readable strings a product page can show: ``gtin``, ``model:dscw120p``, ``brand``,
``title:0.91``, ``price:1.08``, ``variant_conflict:capacity``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from app.domain.matching import blocking, text
from app.domain.matching.features import FEATURES, Profile, pair_features, profile
from app.domain.matching.model import Model, load_model
from app.domain.matching.records import MatchRecord
from app.domain.matching.screen import Screen, differs, two_brands

ThresholdName = Literal["match", "merge"]
# Profiles kept per process: a page of candidates re-reads the same stored offers again and again. A profile
# holds ~11 KB of sets and strings, so this is ~45 MB at most: 65,536 of them held 700 MB, most of them the
# profiles of offers nobody compared again (a single-vendor sync has no candidates at all). Measured on 20k offers
# of two vendors, one after the other: 4,096 and 8,192 both cost 29% more CPU than keeping all 20k (the second
# vendor's candidates were evicted either way), for 146 MB (and 107 MB) less.
_PROFILE_CACHE = 4_096
# Record objects whose profile is found by identity (``Matcher._known``): a store's batch and its candidates.
# Their profiles are mostly the cache's too; those it evicted meanwhile add at most ~22 MB.
_SAME_OBJECTS = 2048


@dataclass(frozen=True, slots=True)
class MatchDecision:
    score: float
    match: bool
    reasons: tuple[str, ...]


def variant_conflicts(a: Profile, b: Profile) -> list[str]:
    """What both titles state differently, by name; empty when nothing conflicts.

    Runs on every candidate pair, so it reads what ``profile`` prepared (``stated``, ``measure_values``, ...)
    and tests the costlier rules (numbers, model numbers) only when their cheap preconditions hold."""
    found = _measure_conflicts(a, b) if a.measure_values and b.measure_values else []
    x, y = a.attrs, b.attrs
    for name, i in a.stated:
        if y[i] and x[i].isdisjoint(y[i]):
            found.append(name)
    if _number_conflict(a, b):
        found.append("number")
    if _model_conflict(a, b):
        found.append("model")
    return found


# Vendors round these ("13.5 megapixel" vs "13 megapixels"): values within 10% agree.
_ROUNDED = frozenset({"resolution"})


def _measure_conflicts(a: Profile, b: Profile) -> list[str]:
    """Dimensions (capacity, length, ...) both titles state with no common value: "64gb" vs "128gb"."""
    out = []
    for dim in sorted(a.measure_values.keys() & b.measure_values.keys()):
        va, vb = a.measure_values[dim], b.measure_values[dim]
        if va.isdisjoint(vb) and not (dim in _ROUNDED and any(_close(x, y) for x in va for y in vb)):
            out.append(dim)
    return out


def _close(x: str, y: str) -> bool:
    nx, ny = float(text.leading_number(x)), float(text.leading_number(y))
    return abs(nx - ny) <= 0.1 * max(nx, ny)


def _model_conflict(a: Profile, b: Profile) -> bool:
    """Model numbers of one shape with other digits ("dscw120p" / "dscw130p", "ln22a451" / "ln22a450") and no
    code in common: on the benchmarks ~1,000 such pairs are different products for 3 that are not."""
    if a.code_shapes.isdisjoint(b.code_shapes):
        return False
    return not _tied(a, b)


def _number_conflict(a: Profile, b: Profile) -> bool:
    """Each title has a whole number the other lacks ("XPS 13 9300" / "XPS 13 9310", "iPhone 12" / "13", "#2" /
    "#3") and no model number ties them: a shared code outweighs the spec numbers long titles carry."""
    if not a.whole_numbers or not b.whole_numbers:
        return False
    if a.whole_numbers <= b.attrs.numbers or b.whole_numbers <= a.attrs.numbers:
        return False
    return not _tied(a, b)


def _tied(a: Profile, b: Profile) -> bool:
    """A model number ties the two records (a code or a code stem in common, or a title code inside the other's
    text): it outweighs what the numbers say.

    Asked for most candidate pairs (a store's titles mostly carry numbers), hence ``map`` rather than a generator.
    """
    if not a.codes.isdisjoint(b.codes) or not a.stems.isdisjoint(b.stems):
        return True
    return any(map(b.code_text.__contains__, a.long_title_codes)) or any(
        map(a.code_text.__contains__, b.long_title_codes)
    )


def _by_gtins(a: MatchRecord, b: MatchRecord) -> MatchDecision | None:
    """Rule 1, on the records themselves: two GTINs decide whatever the text says. ``Matcher.score`` asks it before
    any profile is read, so a candidate with another GTIN (a store's look-alikes of one line mostly carry their own)
    costs no profile of it; ``rule_decision`` starts with it too."""
    if a.gtin is not None and b.gtin is not None:
        return _GTIN if a.gtin == b.gtin else _GTIN_CONFLICT
    return None


def rule_decision(a: Profile, b: Profile) -> MatchDecision | None:
    """Rules 1 to 3 of the module docstring, and titles with nothing in common; ``None`` leaves it to the model."""
    by_gtins = _by_gtins(a.record, b.record)
    if by_gtins is not None:
        return by_gtins
    if a.sku and a.sku == b.sku and a.brand and a.brand == b.brand:
        return _BRAND_SKU
    conflicts = variant_conflicts(a, b)
    if conflicts:
        return _refusal("variant_conflict", tuple(conflicts))
    if _nothing_in_common(a, b):
        return _NO_COMMON_WORDS
    return None


# Decisions the rules return, shared (they are immutable): building one costs more than the rules that chose it.
_GTIN = MatchDecision(1.0, True, ("gtin",))
_GTIN_CONFLICT = MatchDecision(0.0, False, ("gtin_conflict",))
_BRAND_SKU = MatchDecision(1.0, True, ("brand_sku",))
_NO_COMMON_WORDS = MatchDecision(0.0, False, ("no_common_words",))


@functools.lru_cache(maxsize=1024)
def _refusal(kind: str, names: tuple[str, ...]) -> MatchDecision:
    """The refusal naming these conflicts; few combinations occur, so each is built once."""
    return MatchDecision(0.0, False, tuple(f"{kind}:{name}" for name in names))


def _nothing_in_common(a: Profile, b: Profile) -> bool:
    """No title word but the brand's, no code, under half the letter trigrams: "Realme X" and "Realme XT". On the
    benchmarks such pairs are different products 683 times out of 684; the model was never shown them."""
    if not a.core_words.isdisjoint(b.core_words) or not a.codes.isdisjoint(b.codes):
        return False
    return len(a.grams & b.grams) < 0.5 * min(len(a.grams), len(b.grams))


# Titles of at most this many words are one shop range's short names, where one word tells two items apart;
# longer ones (the benchmarks' electronics and software) differ by words vendors add or drop.
_SHORT_TITLE = 5


def one_sided(a: Profile, b: Profile) -> list[str]:
    """What only unification refuses: evidence that often just means a vendor left a word out, which ``catalog
    match`` lets the model weigh, but which merging offers into one product does not risk, since a missed merge
    costs less than a wrong price.

    - tier or edition words only one title has ("iPhone 13 Pro" / "iPhone 13 Pro Max", "Photoshop" / "Photoshop
      Upgrade"); a size or a measured dimension (capacity, length) only one title states ("Shirt" / "Shirt - XL",
      "Galaxy S10" / "Galaxy S10 256 GB"): the listing without it may be any of the variants;
    - whole numbers only one title has ("Tennis Ball" / "Tennis Ball #4", "Sibelius" / "Sibelius 4") and no
      model number tying them: the listing without may be any of the numbered ones;
    - two brands given and different ("Prada Women Bag" / "Heshe Women's Leather Bag");
    - short titles (``_SHORT_TITLE``) with no model number in common and a word only one side has ("Cricket Bat" /
      "Cricket Ball", "Football" / "American Football"): one shop's range differs by a word, while a retitled
      listing (word order, brand moved, "&" for "and") keeps its words.
    """
    out = differs(a.screen, b.screen)  # tier, edition, size, measure, brand: what a store screens pairs by
    if sku_conflict(a, b):
        out.append("sku")
    if bool(a.whole_numbers) != bool(b.whole_numbers) and not _tied(a, b):
        out.append("number")
    short = max(len(a.core_words), len(b.core_words)) <= _SHORT_TITLE
    if short and not _same_words(a, b) and not _tied(a, b):
        out.append("words")
    return out


def _same_words(a: Profile, b: Profile) -> bool:
    """The titles' own words agree once filler and either side's brand words are set aside ("Mascara Lash
    Princess by Essence" is "Essence Mascara Lash Princess")."""
    return _all_said(a, b) and _all_said(b, a)


def _all_said(a: Profile, b: Profile) -> bool:
    """Every own word of a that b's title lacks is still said by b (``_said``)."""
    unsaid = a.plain_words - b.core_words
    return not unsaid or all(_said(w, b) for w in unsaid - b.brand_words)


def _said(word: str, other: Profile) -> bool:
    """The other title says this word too, spelled apart or run together ("Red/Black" and "Red And Black")."""
    words = other.words
    if word in words or word in other.title_alnum:
        return True
    return any(word[:i] in words and word[i:] in words for i in range(2, len(word) - 1))


def sku_conflict(a: Profile, b: Profile) -> bool:
    """One brand given on both, two different SKUs: the brand + SKU rule trusts a SKU as an identifier across
    vendors when they agree, so it trusts them when they disagree too ("Rolex Cellini Moonphase" is two watches,
    MEN-ROL-ROL-096 and WOM-ROL-ROL-191). Unification only: vendors' own SKUs would make this a guess elsewhere."""
    return bool(a.record.brand and b.record.brand and a.brand == b.brand and a.sku and b.sku and a.sku != b.sku)


def gtin_conflict(a: MatchRecord, b: MatchRecord) -> bool:
    return a.gtin is not None and b.gtin is not None and a.gtin != b.gtin


class Matcher:
    """Scores pairs with one model. Profiles of records are cached, so scoring a new offer against stored
    candidates reads each stored record once per process, not once per pair."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.profile = functools.lru_cache(maxsize=_PROFILE_CACHE)(self._profile)
        self._by_object: dict[int, tuple[MatchRecord, Profile]] = {}

    def _profile(self, record: MatchRecord) -> Profile:
        return profile(record, self.model.vocabulary)

    def _known(self, record: MatchRecord) -> Profile:
        """``profile(record)``, the record object's identity tried first.

        Scoring looks up two profiles per pair, mostly of the same record objects (a batch's offers, their
        candidates), and hashing a record's nine fields for the cache cost more than a refused pair's rules. An
        entry keeps its record alive, so its ``id`` cannot be reused while the entry exists."""
        hit = self._by_object.get(id(record))
        if hit is not None and hit[0] is record:
            return hit[1]
        found = self.profile(record)
        if len(self._by_object) >= _SAME_OBJECTS:
            self._by_object.clear()
        self._by_object[id(record)] = (record, found)
        return found

    def screen(self, record: MatchRecord) -> Screen:
        """What a store keeps of a record to refuse pairs without reading it again (``screen.refused``)."""
        return self._known(record).screen

    def blocking_keys(self, record: MatchRecord) -> frozenset[str]:
        return blocking.blocking_keys(self._known(record), self.model.vocabulary)

    def conflict(self, a: MatchRecord, b: MatchRecord) -> bool:
        """Two records that must never share a product, whatever links them: different GTINs, variants, two
        brands named, or SKUs of one brand. (A pair naming two brands is refused on its own too, ``one_sided``;
        without the rule here a brand-less listing linked to both carried one brand's item into the other's.)"""
        if gtin_conflict(a, b):
            return True
        pa, pb = self._known(a), self._known(b)
        return two_brands(pa.screen, pb.screen) or sku_conflict(pa, pb) or bool(variant_conflicts(pa, pb))

    def can_conflict(self, record: MatchRecord) -> bool:
        """False when ``conflict`` is False against any record whatever: no GTIN, no brand named, and no
        variant, measure, whole number or model number stated (each conflict needs its fact on both sides)."""
        if record.gtin is not None or record.brand:
            return True
        p = self._known(record)
        return bool(p.measure_values or p.stated or p.whole_numbers or p.code_shapes)

    def threshold(self, name: ThresholdName) -> float:
        return self.model.thresholds.match if name == "match" else self.model.thresholds.merge

    def score(self, a: MatchRecord, b: MatchRecord, threshold: ThresholdName = "match") -> MatchDecision:
        ruled = _by_gtins(a, b)
        return ruled if ruled is not None else self._decide(self._known(a), self._known(b), threshold)

    def score_many(
        self, a: MatchRecord, candidates: Iterable[MatchRecord], threshold: ThresholdName = "match"
    ) -> list[MatchDecision]:
        """One new record against its candidates (ingest): its profile is read once."""
        pa = self._known(a)
        out = []
        for c in candidates:
            ruled = _by_gtins(a, c)
            out.append(ruled if ruled is not None else self._decide(pa, self._known(c), threshold))
        return out

    def _decide(self, a: Profile, b: Profile, threshold: ThresholdName) -> MatchDecision:
        ruled = rule_decision(a, b)
        if ruled is not None:
            return ruled
        if threshold == "merge":
            # Before the model: most candidates a store's blocking finds are refused here, for a tenth of the cost.
            differs = one_sided(a, b)
            if differs:
                return _refusal("variant_differs", tuple(differs))
        features = pair_features(a, b, self.model.evidence)
        score = round(self.model.probability(features), 4)
        return MatchDecision(score, score >= self.threshold(threshold), _reasons(a, b, features))


def _reasons(a: Profile, b: Profile, features: Sequence[float]) -> tuple[str, ...]:
    """The evidence a person would check, strongest first; not an explanation of every tree."""
    reasons = [f"model:{c}" for c in sorted(a.codes & b.codes, key=lambda c: (-len(c), c))[:2]]
    if not reasons:
        stems = sorted(a.stems & b.stems)
        reasons += [f"model_stem:{s}" for s in stems[:1]]
    if a.sku and a.sku == b.sku:
        reasons.append("sku")
    if a.brand and b.brand and (a.brand == b.brand or a.brand_head == b.brand_head):
        reasons.append("brand")
    reasons.append(f"title:{features[_COSINE]:.2f}")
    if a.category and a.category == b.category:
        reasons.append("category")
    if a.price and b.price and a.currency == b.currency:
        high, low = max(a.price, b.price), min(a.price, b.price)
        reasons.append(f"price:{high / low:.2f}")
    return tuple(reasons)


_COSINE = FEATURES.index("cosine")


@functools.cache
def default_matcher() -> Matcher:
    """The matcher of the shipped model, built on first use (nothing is loaded at import)."""
    return Matcher(load_model())


def score(a: MatchRecord, b: MatchRecord, threshold: ThresholdName = "match") -> MatchDecision:
    return default_matcher().score(a, b, threshold)


def score_many(
    a: MatchRecord, candidates: Iterable[MatchRecord], threshold: ThresholdName = "match"
) -> list[MatchDecision]:
    return default_matcher().score_many(a, candidates, threshold)


def blocking_keys(record: MatchRecord) -> frozenset[str]:
    return default_matcher().blocking_keys(record)
