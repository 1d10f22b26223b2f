"""A candidate pair refused before either record is read: the few facts most merge refusals rest on (issue 13).

A store finds a new offer's candidates in its blocking index and used to read and profile every one of them. In a
large catalog of look-alikes (the search bench's 24 vendors varying the same items) ~95% of those pairs are then
refused by rules, three in four of them by ``scoring.one_sided``'s tests of tier, edition, size, measure and brand
alone, while reading a candidate's record and profiling it cost ~60-100 µs, and with a catalog far larger than the
profile cache most candidates missed it: matching slowed as the catalog grew. A ``Screen`` is those facts, a few
dozen bytes a store keeps beside the index, so such pairs end without their records.

``refused`` is exact: it only says yes where ``Matcher.score(a, b, "merge")`` refuses too (the identifier rules
that could accept the pair cannot apply, and ``one_sided``, which asks ``differs``, names a difference), so a store
that screens finds the same edges as one that scores every pair (``tests/unit/test_matching_screen.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

_FIELD = "\x1f"
_ITEM = "\x1e"


@dataclass(frozen=True, slots=True)
class Screen:
    gtin: bool  # the record carries a GTIN
    brand_given: bool  # the record names a brand (not inferred from the title)
    brand: str | None  # the profile's brand key, given or inferred
    head: str | None  # the brand's first word
    sku: str | None  # normalised
    tiers: frozenset[str]
    editions: frozenset[str]
    sized: bool  # the title states a size
    measures: frozenset[str]  # the dimensions it states a measure of: capacity, length, ...


def differs(a: Screen, b: Screen) -> list[str]:
    """``one_sided``'s differences that a screen can tell, in the order its reasons name them."""
    out = []
    if a.tiers != b.tiers:
        out.append("tier")
    if a.editions != b.editions:
        out.append("edition")
    if a.sized != b.sized:
        out.append("size")
    if a.measures != b.measures:
        out.append("measure")
    if two_brands(a, b):
        out.append("brand")
    return out


def two_brands(a: Screen, b: Screen) -> bool:
    """Both records name a brand, and not the same one ("Prada" / "Heshe"; "Apple" / "Apple Inc." agree)."""
    return a.brand_given and b.brand_given and a.brand != b.brand and a.head != b.head


def refused(a: Screen, b: Screen) -> bool:
    """True only where merging refuses the pair whatever else the two records say: neither identifier rule can
    accept it (two GTINs decide on their own; one brand and one SKU is a match), and a difference ``one_sided``
    refuses is there. Symmetric, like the rules it stands for."""
    if a.gtin and b.gtin:
        return False
    if a.sku and a.sku == b.sku and a.brand and a.brand == b.brand:
        return False
    return bool(differs(a, b))


def dumps(s: Screen) -> str | None:
    """A screen as short text for a store; None when the text would not read back as the same screen (a value
    holding a separator: none is expected, as keys, words and names are letters and digits), and such an offer is
    then scored as before."""
    text = _FIELD.join(
        (
            "1" if s.gtin else "",
            "1" if s.brand_given else "",
            s.brand or "",
            s.head or "",
            s.sku or "",
            _ITEM.join(sorted(s.tiers)),
            _ITEM.join(sorted(s.editions)),
            "1" if s.sized else "",
            _ITEM.join(sorted(s.measures)),
        )
    )
    return text if _parse(text) == s else None


@functools.lru_cache(maxsize=8192)
def loads(text: str) -> Screen | None:
    """The screen ``dumps`` wrote (None for text it did not write). Cached: screens carry no title words, so a
    catalog has few distinct ones."""
    return _parse(text)


def _parse(text: str) -> Screen | None:
    parts = text.split(_FIELD)
    if len(parts) != 9:
        return None
    gtin, given, brand, head, sku, tiers, editions, sized, measures = parts
    return Screen(
        gtin=bool(gtin),
        brand_given=bool(given),
        brand=brand or None,
        head=head or None,
        sku=sku or None,
        tiers=_set(tiers),
        editions=_set(editions),
        sized=bool(sized),
        measures=_set(measures),
    )


_EMPTY: frozenset[str] = frozenset()


def _set(text: str) -> frozenset[str]:
    return frozenset(text.split(_ITEM)) if text else _EMPTY
