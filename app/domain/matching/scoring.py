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
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from app.domain.matching import blocking, text
from app.domain.matching.features import FEATURES, Profile, measure_conflicts, pair_features, profile
from app.domain.matching.model import Model, load_model
from app.domain.matching.records import MatchRecord

ThresholdName = Literal["match", "merge"]
# Profiles kept per process: a page of candidates re-reads the same stored offers again and again. A profile
# holds ~11 KB of sets and strings, so this is ~45 MB at most: 65,536 of them held 700 MB, most of them the
# profiles of offers nobody compared again (a single-vendor sync has no candidates at all). Measured on 20k offers
# of two vendors, one after the other: 4,096 and 8,192 both cost 29% more CPU than keeping all 20k (the second
# vendor's candidates were evicted either way), for 146 MB (and 107 MB) less.
_PROFILE_CACHE = 4_096


@dataclass(frozen=True, slots=True)
class MatchDecision:
    score: float
    match: bool
    reasons: tuple[str, ...]


def variant_conflicts(a: Profile, b: Profile) -> list[str]:
    """What both titles state differently, by name; empty when nothing conflicts."""
    x, y = a.attrs, b.attrs
    found = measure_conflicts(x, y)
    for name, left, right in (
        ("colour", x.colours, y.colours),
        ("size", x.sizes, y.sizes),
        ("pack", x.packs, y.packs),
        ("year", x.years, y.years),
        ("platform", x.platforms, y.platforms),
        ("edition", x.editions, y.editions),
        ("tier", x.tiers, y.tiers),
        ("generation", x.generations, y.generations),
    ):
        if left and right and left.isdisjoint(right):
            found.append(name)
    if _number_conflict(a, b):
        found.append("number")
    if _model_conflict(a, b):
        found.append("model")
    return found


_DIGIT = re.compile(r"[0-9]")


def _model_conflict(a: Profile, b: Profile) -> bool:
    """Model numbers of one shape with other digits ("dscw120p" / "dscw130p", "ln22a451" / "ln22a450") and no
    code in common: on the benchmarks ~1,000 such pairs are different products for 3 that are not."""
    if not a.title_codes or not b.title_codes or a.codes & b.codes or a.stems & b.stems or _contained(a, b):
        return False
    shapes = {_DIGIT.sub("#", c) for c in a.title_codes if len(c) >= 4 and not c.isdigit()}
    return any(_DIGIT.sub("#", c) in shapes for c in b.title_codes if len(c) >= 4 and not c.isdigit())


def _number_conflict(a: Profile, b: Profile) -> bool:
    """Each title has a whole number the other lacks ("XPS 13 9300" / "XPS 13 9310", "iPhone 12" / "13", "#2" /
    "#3") and no model number ties them: a shared code outweighs the spec numbers long titles carry."""
    only_a = [n for n in a.attrs.numbers - b.attrs.numbers if n.isdigit()]
    if not only_a or not any(n.isdigit() for n in b.attrs.numbers - a.attrs.numbers):
        return False
    return not (a.codes & b.codes or a.stems & b.stems or _contained(a, b))


def _contained(a: Profile, b: Profile) -> bool:
    return any(len(c) >= 4 and c in b.code_text for c in a.title_codes) or any(
        len(c) >= 4 and c in a.code_text for c in b.title_codes
    )


def _tied(a: Profile, b: Profile) -> bool:
    """A model number in common (or one's inside the other's text): it outweighs what the numbers say."""
    return bool(a.codes & b.codes or a.stems & b.stems or _contained(a, b))


def rule_decision(a: Profile, b: Profile) -> MatchDecision | None:
    """Rules 1 to 3 of the module docstring, and titles with nothing in common; ``None`` leaves it to the model."""
    ra, rb = a.record, b.record
    if ra.gtin is not None and rb.gtin is not None:
        if ra.gtin == rb.gtin:
            return MatchDecision(1.0, True, ("gtin",))
        return MatchDecision(0.0, False, ("gtin_conflict",))
    if a.sku and a.sku == b.sku and a.brand and a.brand == b.brand:
        return MatchDecision(1.0, True, ("brand_sku",))
    conflicts = variant_conflicts(a, b)
    if conflicts:
        return MatchDecision(0.0, False, tuple(f"variant_conflict:{c}" for c in conflicts))
    if _nothing_in_common(a, b):
        return MatchDecision(0.0, False, ("no_common_words",))
    return None


def _nothing_in_common(a: Profile, b: Profile) -> bool:
    """No title word but the brand's, no code, under half the letter trigrams: "Realme X" and "Realme XT". On the
    benchmarks such pairs are different products 683 times out of 684; the model was never shown them."""
    if a.core_words & b.core_words or a.codes & b.codes:
        return False
    return len(a.grams & b.grams) < 0.5 * min(len(a.grams), len(b.grams))


# Words a vendor adds or drops when it retitles a listing without naming another product.
# Titles of at most this many words are one shop range's short names, where one word tells two items apart;
# longer ones (the benchmarks' electronics and software) differ by words vendors add or drop.
_SHORT_TITLE = 5
_FILLER = frozenset({"a", "an", "and", "by", "for", "from", "in", "of", "the", "w", "with", "new"})


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
    x, y = a.attrs, b.attrs
    out = [
        name for name, left, right in (("tier", x.tiers, y.tiers), ("edition", x.editions, y.editions)) if left != right
    ]
    if bool(x.sizes) != bool(y.sizes):
        out.append("size")
    if {d for d, _ in x.measures} != {d for d, _ in y.measures}:
        out.append("measure")
    ra, rb = a.record, b.record
    if ra.brand and rb.brand and a.brand != b.brand and a.brand_head != b.brand_head:
        out.append("brand")
    if sku_conflict(a, b):
        out.append("sku")
    if bool(blocking.whole_numbers(a)) != bool(blocking.whole_numbers(b)) and not _tied(a, b):
        out.append("number")
    short = max(len(a.core_words), len(b.core_words)) <= _SHORT_TITLE
    if short and not (a.codes & b.codes or a.stems & b.stems or _contained(a, b)) and not _same_words(a, b):
        out.append("words")
    return out


def _same_words(a: Profile, b: Profile) -> bool:
    """The titles' own words agree once filler and either side's brand words are set aside ("Mascara Lash
    Princess by Essence" is "Essence Mascara Lash Princess")."""
    brand_words = _brand_words(a.record.brand) | _brand_words(b.record.brand) | {a.brand, b.brand} | _FILLER
    return all(_said(w, b) for w in a.core_words - brand_words - b.core_words) and all(
        _said(w, a) for w in b.core_words - brand_words - a.core_words
    )


def _said(word: str, other: Profile) -> bool:
    """The other title says this word too, spelled apart or run together ("Red/Black" and "Red And Black")."""
    if word in other.words or word in other.title_alnum:
        return True
    return any(word[:i] in other.words and word[i:] in other.words for i in range(2, len(word) - 1))


@functools.lru_cache(maxsize=4096)
def _brand_words(brand: str | None) -> frozenset[str | None]:
    return frozenset(text.words(text.fold(brand))) if brand else frozenset()


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

    def _profile(self, record: MatchRecord) -> Profile:
        return profile(record, self.model.vocabulary)

    def blocking_keys(self, record: MatchRecord) -> frozenset[str]:
        return blocking.blocking_keys(self.profile(record), self.model.vocabulary)

    def conflict(self, a: MatchRecord, b: MatchRecord) -> bool:
        """Two records that must never share a product, whatever links them: different GTINs, variants, or SKUs
        of one brand."""
        if gtin_conflict(a, b):
            return True
        pa, pb = self.profile(a), self.profile(b)
        return sku_conflict(pa, pb) or bool(variant_conflicts(pa, pb))

    def threshold(self, name: ThresholdName) -> float:
        return self.model.thresholds.match if name == "match" else self.model.thresholds.merge

    def score(self, a: MatchRecord, b: MatchRecord, threshold: ThresholdName = "match") -> MatchDecision:
        return self._decide(self.profile(a), self.profile(b), threshold)

    def score_many(
        self, a: MatchRecord, candidates: Iterable[MatchRecord], threshold: ThresholdName = "match"
    ) -> list[MatchDecision]:
        """One new record against its candidates (ingest): its profile is read once."""
        pa = self.profile(a)
        return [self._decide(pa, self.profile(c), threshold) for c in candidates]

    def _decide(self, a: Profile, b: Profile, threshold: ThresholdName) -> MatchDecision:
        ruled = rule_decision(a, b)
        if ruled is not None:
            return ruled
        if threshold == "merge":
            # Before the model: most candidates a store's blocking finds are refused here, for a tenth of the cost.
            differs = one_sided(a, b)
            if differs:
                return MatchDecision(0.0, False, tuple(f"variant_differs:{d}" for d in differs))
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
