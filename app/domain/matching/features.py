"""From two records to the numbers the model weighs.

Each record is read once into a ``Profile`` (words, model numbers, brand, variant attributes, price); a pair's
features are then cheap set and string comparisons of two profiles, which is what keeps scoring a new offer
against its candidates inside the ingest budget. String similarity is rapidfuzz (C++); word weights are inverse
document frequencies from the training corpus, shipped with the model, so a word's weight never depends on what
the catalog happens to hold (scores stay a function of the two records alone).

Sums over sets use ``math.fsum``: it is exact, so the result does not depend on the set's iteration order, which
changes from one process to the next with string hashing. Without it a score could differ in its last bit
between two nodes, and a tree split could flip.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from rapidfuzz import fuzz
from rapidfuzz.distance import Indel

from app.domain.matching import text
from app.domain.matching.records import MatchRecord
from app.domain.matching.screen import Screen
from app.domain.normalize import brand_key, sku_key

# Description words read per record: enough for the model numbers and key terms Abt-style descriptions repeat,
# bounded so a 5,000-word description costs no more than a short one.
_DESCRIPTION_WORDS = 80
_MISSING = math.nan


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """What the model learnt about words: their IDF (rarer weighs more) and which words are brands."""

    idf: Mapping[str, float]
    default_idf: float
    brands: frozenset[str]

    def weight(self, word: str) -> float:
        return self.idf.get(word, self.default_idf)


@dataclass(frozen=True, slots=True)
class WordEvidence:
    """Learnt from labelled pairs: how a word present in only one title (or in both) moves the odds of a match.

    "upgrade", "extended" or "spanish" in one title only is strong evidence of two products; a rare series name
    in both is evidence of one. Log-odds relative to the base rate, smoothed, for words seen in >= 3 pairs.
    """

    one_side: Mapping[str, float]
    both: Mapping[str, float]
    swaps: Mapping[str, float]  # "2007|2008", "pro|professional": a word of one title against one of the other
    # ``swaps`` by word, both ways round: {"2007": {"2008": v}, "2008": {"2007": v}}. A pair looks up the words
    # only one title has instead of spelling every "x|y" of them, which was a tenth of a pair's features.
    by_word: Mapping[str, Mapping[str, float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_word: dict[str, dict[str, float]] = {}
        for key, value in self.swaps.items():
            x, bar, y = key.partition("|")
            if bar and "|" not in y and x < y:  # the spelling ``swap_keys`` looks up
                by_word.setdefault(x, {})[y] = value
                by_word.setdefault(y, {})[x] = value
        object.__setattr__(self, "by_word", by_word)


NO_EVIDENCE = WordEvidence({}, {}, {})


_MAX_SWAPS = 64


def swap_keys(only_a: frozenset[str], only_b: frozenset[str]) -> list[str]:
    """Word pairs (one from each title's own words), order-free: what one title says instead of the other."""
    if len(only_a) * len(only_b) > _MAX_SWAPS:
        return []
    return [f"{x}|{y}" if x < y else f"{y}|{x}" for x in only_a for y in only_b]


def swap_range(only_a: frozenset[str], only_b: frozenset[str], evidence: WordEvidence) -> tuple[float, float]:
    """The smallest and largest evidence of ``swap_keys(only_a, only_b)``, a key without any counting 0.0 (both
    0.0 when there are no keys): what the features take of them, read through ``WordEvidence.by_word``."""
    n = len(only_a) * len(only_b)
    if not n or n > _MAX_SWAPS:
        return 0.0, 0.0
    by_word = evidence.by_word
    found = []
    for x in only_a:
        row = by_word.get(x)
        if row is not None:
            found += [row[y] for y in only_b if y in row]
    if len(found) < n:
        found.append(0.0)
    return min(found), max(found)


@dataclass(frozen=True, slots=True)
class Profile:
    """One record, read: everything pair features need, computed once per record."""

    record: MatchRecord
    title: str  # folded
    title_alnum: str
    words: frozenset[str]
    word_weights: Mapping[str, float]
    weight: float  # their sum
    norm: float
    context: frozenset[str]  # title, description (truncated), brand, sku words
    title_codes: frozenset[str]
    codes: frozenset[str]  # title codes, mpn, sku and description codes
    code_text: str  # everything a code of the other record may be found in, letters and digits only
    code_weights: Mapping[str, float]  # a code's rarity: "cs3" names a product line, "dscw120p" one product
    stems: frozenset[str]  # title codes without a colour or region suffix: "yht390bk" -> "yht390"
    core: str  # the title without its brand and company words, for word-order similarity
    core_words: frozenset[str]
    grams: frozenset[str]  # letter trigrams of the core, spaces removed: "printshop" meets "print shop"
    brand: str | None
    brand_head: str | None  # first word of the brand: "webroot" of "Webroot Software Inc"
    attrs: text.Attributes
    price: float | None
    currency: str | None
    category: str | None
    sku: str | None
    gtin: str | None
    # Read once here for the pair rules (``scoring``), which run on every candidate pair a store's blocking finds
    # and refuse most of them: each is what a rule used to recompute from the fields above on every pair.
    long_title_codes: tuple[str, ...]  # title codes of 4+ characters, the ones looked for in the other's code_text
    code_shapes: frozenset[str]  # those not all digits, digits as "#": "dscw120p" -> "dscw###p"
    whole_numbers: frozenset[str]  # attrs.numbers that are whole: "13", not "2.5"
    measure_values: Mapping[str, frozenset[str]]  # attrs.measures by dimension: {"capacity": {"64gb"}}
    stated: tuple[tuple[str, int], ...]  # the VARIANTS this title states, in their order
    brand_words: frozenset[str]  # the brand's own words and key: set aside when comparing two titles' words
    plain_words: frozenset[str]  # core words without brand_words and text.FILLER
    screen: Screen  # what a store keeps of it to refuse pairs without reading the record (``screen``)


# The variant attributes whose disjoint values are a conflict, in the order reasons name them: (name, index into
# ``text.Attributes``). Measures, numbers and codes have rules of their own.
VARIANTS = (
    ("colour", 1),
    ("size", 2),
    ("pack", 3),
    ("year", 4),
    ("platform", 5),
    ("edition", 6),
    ("tier", 7),
    ("generation", 9),
)
_DIGIT = re.compile(r"[0-9]")
# Most records state no code, number or variant: their sets are this one, not one built from nothing.
_NONE: frozenset[str] = frozenset()


def profile(record: MatchRecord, vocab: Vocabulary) -> Profile:
    """Read one record. On the ingest path once per new offer, so each text is cut once (``text.split``) and
    only the first ``_DESCRIPTION_WORDS`` of a description are read."""
    title = text.plus_words(text.fold(record.title))
    cut = text.split(title)
    given, brand_list, brand_words = _brand(record.brand)
    brand = given or text.infer_brand_of(cut.plain, vocab.brands)
    # The brand's own words and key, with the brand read from the title when none was given.
    own_brand = brand_words if brand == given or not brand else _with(brand_words, brand)
    head = brand_list[0] if brand_list and len(brand_list[0]) >= 2 else brand
    title_words = text.words_of(cut)
    words = frozenset(title_words)
    core_list = text.core_words(title_words, own_brand, vocab.brands)
    # Weights of the core words only: a brand the vocabulary never saw would otherwise weigh most, and make
    # "Annibale Colombo Bed" and "Annibale Colombo Sofa" look alike.
    idf, default_idf = vocab.idf.get, vocab.default_idf
    weights = {w: idf(w, default_idf) for w in core_list}
    desc_words, desc_alnum, desc_chunks = _description(record.description)
    title_codes = text.codes_of(cut.chunks, brand_words)
    codes = set(title_codes)
    if desc_chunks:
        codes.update(text.codes_of(desc_chunks, brand_words))
    sku = sku_key(record.sku)
    mpn = text.alnum(record.mpn) if record.mpn else None
    for extra in (mpn, sku.lower() if sku else None):
        if extra and len(extra) >= 3 and any(c.isdigit() for c in extra):
            codes.add(extra)
    title_alnum = text.alnum_folded(title)
    attrs = text.attributes_of(cut, brand_words, title_codes)
    long_codes = tuple(c for c in title_codes if len(c) >= 4)
    measure_values: dict[str, set[str]] = {}
    for dim, value in attrs.measures:
        measure_values.setdefault(dim, set()).add(value)
    core = frozenset(core_list)
    return Profile(
        record=record,
        title=title,
        title_alnum=title_alnum,
        words=words,
        word_weights=weights,
        weight=math.fsum(weights.values()),
        norm=math.sqrt(math.fsum(v * v for v in weights.values())) or 1.0,
        # brand_words | {brand} is own_brand, as the brand read from the title is the given one when there is one
        context=frozenset(itertools.chain(words, desc_words, own_brand)),
        title_codes=title_codes,
        codes=text.frozen(codes),
        code_text=title_alnum + " " + desc_alnum + " " + (mpn or "") + " " + (sku or "").lower(),
        code_weights={c: idf(c, default_idf) / default_idf for c in codes},
        stems=frozenset([text.code_stem(c) for c in title_codes]) if title_codes else _NONE,
        core=" ".join(core_list),
        core_words=core,
        grams=_trigrams("".join(core_list)),
        brand=brand,
        brand_head=head,
        attrs=attrs,
        price=float(record.price) if record.price is not None and record.price > 0 else None,
        currency=record.currency,
        category=brand_key(record.category) if record.category else None,
        sku=sku,
        gtin=record.gtin,
        long_title_codes=long_codes,
        code_shapes=text.frozen({_DIGIT.sub("#", c) for c in long_codes if not c.isdigit()}) if long_codes else _NONE,
        whole_numbers=text.frozen({n for n in attrs.numbers if n.isdigit()}) if attrs.numbers else _NONE,
        measure_values={dim: frozenset(values) for dim, values in measure_values.items()},
        stated=tuple([(name, i) for name, i in VARIANTS if attrs[i]]) if attrs is not text.NO_ATTRIBUTES else (),
        brand_words=own_brand,
        plain_words=(core - own_brand - text.FILLER) or _NONE,
        screen=Screen(
            gtin=record.gtin is not None,
            brand_given=bool(record.brand),
            brand=brand,
            head=head,
            sku=sku,
            tiers=attrs.tiers,
            editions=attrs.editions,
            sized=bool(attrs.sizes),
            measures=frozenset(measure_values) if measure_values else _NONE,
        ),
    )


@functools.lru_cache(maxsize=4096)
def _brand(brand: str | None) -> tuple[str | None, tuple[str, ...], frozenset[str]]:
    """A brand's key, its words, and both as one set: a catalog has few brands, each read again for every offer
    of it (and every profile of a brand shares its set)."""
    if not brand:
        return None, (), _NONE
    key, words = brand_key(brand), tuple(text.words(text.fold(brand)))
    return key, words, frozenset(words) | ({key} if key else _NONE)


@functools.lru_cache(maxsize=4096)
def _with(words: frozenset[str], brand: str) -> frozenset[str]:
    """``words | {brand}``, shared by the profiles whose titles name the same brand."""
    return words | {brand}


@functools.lru_cache(maxsize=1024)
def _description(description: str) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    """What a profile reads of a description: its first ``_DESCRIPTION_WORDS`` words, those words' letters and
    digits (for codes of the other record), and the chunks of its words that may be codes. Cached: a vendor's
    variants (sizes, colours, pack counts) mostly share one description, and reading it was a sixth of a profile.
    """
    desc_words = tuple(text.leading_words(text.fold(description), _DESCRIPTION_WORDS))
    # The description's chunks are its words' own (spaces end a chunk), and a word of letters has no code.
    chunks = tuple(c for w in desc_words if not w.isalpha() for c in text.chunks(w))
    return desc_words, text.alnum_folded(" ".join(desc_words)), chunks


def _trigrams(joined: str) -> frozenset[str]:
    return frozenset(joined[i : i + 3] for i in range(len(joined) - 2)) if len(joined) >= 3 else frozenset({joined})


FEATURES = (
    "code_shared",
    "code_title_shared",
    "code_shared_weight",
    "stem_shared",
    "code_contained",
    "code_similarity",
    "code_conflict",
    "codes_min",
    "codes_max",
    "cosine",
    "jaccard",
    "missing_min",
    "missing_max",
    "context_cover_min",
    "context_cover_max",
    "token_set",
    "token_sort",
    "core_token_sort",
    "core_token_set",
    "core_jaccard",
    "trigram_jaccard",
    "trigram_containment",
    "partial",
    "alnum_ratio",
    "numbers_shared",
    "numbers_only_min",
    "numbers_only_max",
    "measure_shared",
    "edition_differs",
    "tier_differs",
    "brand_equal",
    "brand_mentioned",
    "price_log_ratio",
    "words_min",
    "words_max",
    "descriptions",
    "one_side_min",
    "one_side_sum",
    "both_max",
    "both_sum",
    "swap_min",
    "swap_max",
)


def _covered(p: Profile, other: Profile) -> float:
    """Share of p's title weight the other record mentions anywhere (title, description, brand, SKU)."""
    total = p.weight
    if not total:
        return _MISSING
    return math.fsum(w for word, w in p.word_weights.items() if word in other.context) / total


def _mentions(p: Profile, other: Profile) -> bool:
    """The other listing names p's brand (its key or first word) in its title or brand."""
    if not p.brand:
        return False
    return p.brand in other.title_alnum or bool(p.brand_head and p.brand_head in other.context)


def _code_contained(a: Profile, b: Profile) -> bool:
    """A title code of 4+ characters of one record inside the other's code text."""
    return any(map(b.code_text.__contains__, a.long_title_codes)) or any(
        map(a.code_text.__contains__, b.long_title_codes)
    )


def pair_features(a: Profile, b: Profile, evidence: WordEvidence = NO_EVIDENCE) -> list[float]:
    """The feature vector of a pair, in ``FEATURES`` order; symmetric in a and b."""
    shared_codes = a.codes & b.codes
    title_shared = a.title_codes & b.title_codes
    contained = bool(shared_codes) or _code_contained(a, b)
    if (a.title_codes and b.codes) or (b.title_codes and a.codes):
        best = 0.0
        for ca in a.title_codes or a.codes:
            for cb in b.title_codes or b.codes:
                r = Indel.normalized_similarity(ca, cb)
                if r > best:
                    best = r
        code_similarity = best
    else:
        code_similarity = _MISSING
    code_conflict = 1.0 if a.title_codes and b.title_codes and not contained else 0.0

    shared = a.words & b.words
    dot = math.fsum(a.word_weights[w] * b.word_weights[w] for w in a.core_words & b.core_words)
    cosine = dot / (a.norm * b.norm)
    union = len(a.words | b.words)
    jaccard = len(shared) / union if union else 0.0
    missing_a = math.fsum(w for word, w in a.word_weights.items() if word not in b.core_words) / a.norm
    missing_b = math.fsum(w for word, w in b.word_weights.items() if word not in a.core_words) / b.norm
    cover_a, cover_b = _covered(a, b), _covered(b, a)

    na, nb = a.attrs.numbers, b.attrs.numbers
    only_a, only_b = len(na - nb), len(nb - na)
    measure_shared = len(a.attrs.measures & b.attrs.measures)

    mentioned = _mentions(a, b) or _mentions(b, a)
    if a.brand and b.brand:
        brand_equal = 1.0 if a.brand == b.brand or a.brand_head == b.brand_head else 0.0
    else:
        brand_equal = _MISSING
    brand_mentioned = 1.0 if mentioned else (0.0 if a.brand or b.brand else _MISSING)
    if a.price and b.price and (a.currency == b.currency or not a.currency or not b.currency):
        price_log_ratio = abs(math.log(a.price / b.price))
    else:
        price_log_ratio = _MISSING

    core_union = len(a.core_words | b.core_words)
    shared_grams = len(a.grams & b.grams)
    one_side = [evidence.one_side.get(w, 0.0) for w in a.core_words ^ b.core_words]
    swap_min, swap_max = swap_range(a.core_words - b.core_words, b.core_words - a.core_words, evidence)
    both = [evidence.both.get(w, 0.0) for w in a.core_words & b.core_words]
    return [
        float(min(len(shared_codes), 3)),
        float(min(len(title_shared), 3)),
        max((a.code_weights[c] for c in shared_codes), default=0.0),
        1.0 if a.stems & b.stems else 0.0,
        1.0 if contained else 0.0,
        code_similarity,
        code_conflict,
        float(min(len(a.title_codes), len(b.title_codes))),
        float(max(len(a.title_codes), len(b.title_codes))),
        cosine,
        jaccard,
        min(missing_a, missing_b),
        max(missing_a, missing_b),
        _nanmin(cover_a, cover_b),
        _nanmax(cover_a, cover_b),
        fuzz.token_set_ratio(a.title, b.title) / 100.0,
        fuzz.token_sort_ratio(a.title, b.title) / 100.0,
        fuzz.token_sort_ratio(a.core, b.core) / 100.0,
        fuzz.token_set_ratio(a.core, b.core) / 100.0,
        len(a.core_words & b.core_words) / core_union if core_union else 0.0,
        shared_grams / (len(a.grams) + len(b.grams) - shared_grams),
        shared_grams / min(len(a.grams), len(b.grams)),
        fuzz.partial_ratio(a.title, b.title) / 100.0 if a.title and b.title else 0.0,
        Indel.normalized_similarity(a.title_alnum, b.title_alnum),
        float(len(na & nb)),
        float(min(only_a, only_b)),
        float(max(only_a, only_b)),
        float(measure_shared),
        1.0 if a.attrs.editions != b.attrs.editions else 0.0,
        1.0 if a.attrs.tiers != b.attrs.tiers else 0.0,
        brand_equal,
        brand_mentioned,
        price_log_ratio,
        float(min(len(a.words), len(b.words))),
        float(max(len(a.words), len(b.words))),
        float(bool(a.record.description)) + float(bool(b.record.description)),
        min(one_side, default=0.0),
        math.fsum(one_side),
        max(both, default=0.0),
        math.fsum(both),
        swap_min,
        swap_max,
    ]


def _nanmin(x: float, y: float) -> float:
    if math.isnan(x):
        return y
    if math.isnan(y):
        return x
    return min(x, y)


def _nanmax(x: float, y: float) -> float:
    if math.isnan(x):
        return y
    if math.isnan(y):
        return x
    return max(x, y)
