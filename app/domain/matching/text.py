"""Reading a listing's text the way a person comparing two listings would.

Vendors spell one product many ways: "Sony Cyber-shot DSC-W120/P", "sony dscw120p pink", "DSC W120 P". What
decides identity is rarely the wording and mostly a few things inside it: model or part numbers, the brand, and
variant attributes (capacity, colour, pack count, year) that make two otherwise identical titles two products.
This module turns text into those things; it knows nothing of pairs or scores.

Everything is ASCII-folded and lower-cased first, so "Nestlé" and "NESTLE" read alike, as ``normalize`` does for
brands.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")

# Words for similarity: letters/digits runs; a decimal number stays one word ("7.2"), "#5" keeps its number.
_WORD = re.compile(r"[0-9]+(?:[.,][0-9]+)?|[a-z]+")
# Candidate codes: whitespace-delimited chunks of letters, digits and the separators vendors put inside model
# numbers ("dsc-w120/p", "lm-af30u3", "966193-0403", "t9161ll/a").
_CHUNK = re.compile(r"[0-9a-z]+(?:[-/._][0-9a-z]+)*")

_UNITS = {
    # capacity / storage
    "gb": "capacity",
    "tb": "capacity",
    "mb": "capacity",
    "gig": "capacity",
    "gigabyte": "capacity",
    "terabyte": "capacity",
    # electrical, optical and physical quantities: part of the spec, a different value is a different product
    "mp": "resolution",
    "megapixel": "resolution",
    "megapixels": "resolution",
    "mah": "battery",
    "w": "power",
    "watt": "power",
    "watts": "power",
    "ml": "volume",
    "l": "volume",
    "oz": "volume",
    "floz": "volume",
    "g": "weight",
    "kg": "weight",
    "mg": "weight",
    "lb": "weight",
    "lbs": "weight",
    "in": "length",
    "inch": "length",
    "inches": "length",
    "cm": "length",
    "mm": "length",
    "ft": "length",
    "feet": "length",
    "m": "length",
    "ghz": "frequency",
    "mhz": "frequency",
    "hz": "frequency",
    "x": "zoom",
    "p": "video",
    "k": "video",
    "v": "voltage",
    "user": "pack",
    "users": "pack",
    "lic": "pack",
    "license": "pack",
    "licenses": "pack",
    "pack": "pack",
    "pk": "pack",
    "pcs": "pack",
    "pieces": "pack",
    "count": "pack",
    "ct": "pack",
    "u": "pack",
}
# Units that are also ordinary words or model-number suffixes only count when glued to the number ("64gb" or
# "5 gb" both count, but "3 in 1" or "2 x" must not read as a length or a zoom).
_GLUED_ONLY = frozenset({"in", "x", "p", "k", "v", "m", "l", "g", "w", "u"})
# Operating systems listed after a platform ("win 98 me 2000 xp"): requirements, not versions or years.
_OS_WORDS = frozenset({"95", "98", "me", "nt", "2000", "2003", "xp", "vista", "x", "os", "osx", "10", "7", "8"})
_VERSION = re.compile(r"v[0-9]+(?:\.[0-9]+)*")
_HAS_DIGIT = re.compile(r"[0-9]")
_ATTRIBUTE_TOKEN = re.compile(r"[0-9]+(?:\.[0-9]+)?[a-z]*|[a-z]+|#")
_GENERATION_WORDS = frozenset({"edition", "ed", "generation", "gen", "series"})
_ORDINAL = re.compile(r"[0-9]+(?:st|nd|rd|th)")
_NUMBER_UNIT = re.compile(r"([0-9]+(?:\.[0-9]+)?)([a-z]+)")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# A token of ``_ATTRIBUTE_TOKEN`` that starts with a digit: its number and the letters glued to it ("64", "gb").
_LEADING_NUMBER = re.compile(r"([0-9]+(?:\.[0-9]+)?)([a-z]*)")
_ORDINAL_SUFFIXES = frozenset({"st", "nd", "rd", "th"})
_SMALL_NUMBERS = {
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "twelve": "12",
    "single": "1",
    "double": "2",
    "twin": "2",
    "triple": "3",
}
_PACK_WORDS = frozenset({"pack", "pk", "count", "ct", "pcs", "pieces", "set"})

COLOURS = frozenset(
    {
        "black",
        "white",
        "silver",
        "grey",
        "gray",
        "gold",
        "golden",
        "red",
        "blue",
        "green",
        "yellow",
        "pink",
        "purple",
        "orange",
        "brown",
        "beige",
        "ivory",
        "navy",
        "teal",
        "bronze",
        "titanium",
        "graphite",
        "charcoal",
        "champagne",
        "plum",
        "violet",
        "cream",
        "starlight",
        "midnight",
        "rose",
        "copper",
    }
)
# Colours vendors abbreviate inside codes or titles; mapped so "blk" and "black" agree.
_COLOUR_ALIASES = {"blk": "black", "wht": "white", "slv": "silver", "gry": "grey", "gray": "grey", "golden": "gold"}

SIZES = frozenset({"xxs", "xs", "s", "m", "l", "xl", "xxl", "xxxl", "2xl", "3xl", "4xl", "small", "medium", "large"})
_SIZE_ALIASES = {"small": "s", "medium": "m", "large": "l", "2xl": "xxl", "3xl": "xxxl"}

PLATFORMS = {
    "mac": "mac",
    "macintosh": "mac",
    "osx": "mac",
    "win": "win",
    "windows": "win",
    "pc": "win",
    "linux": "linux",
}
# Words that name an edition or licence of the same title: a different one is a different thing to buy.
EDITIONS = {
    "upgrade": "upgrade",
    "upg": "upgrade",
    "academic": "academic",
    "education": "academic",
    "educational": "academic",
    "student": "academic",
    "teacher": "academic",
    "edu": "academic",
    "oem": "oem",
    "trial": "trial",
    "subscription": "subscription",
    "renewal": "subscription",
}
TIERS = frozenset(
    {
        "standard",
        "std",
        "professional",
        "pro",
        "premium",
        "premier",
        "deluxe",
        "ultimate",
        "home",
        "business",
        "enterprise",
        "basic",
        "plus",
        "lite",
        "express",
        "elements",
        "suite",
        "max",
        "mini",
        "ultra",
        "extended",
        "small",
    }
)
_TIER_ALIASES = {"std": "standard", "pro": "professional"}


def fold(text: str | None) -> str:
    """Lower-case ASCII: accents dropped, compatibility forms (full-width digits, "™") unified."""
    if not text:
        return ""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


_PLUS = re.compile(r"(?<=[0-9a-z])\+")


def plus_words(folded: str) -> str:
    """ "S8+" and "Pro+" are "S8 Plus" and "Pro Plus"."""
    return _PLUS.sub(" plus", folded) if "+" in folded else folded


# Every ASCII byte but digits and lower-case letters: what ``alnum`` deletes from folded text.
_NOT_ALNUM_BYTES = bytes(c for c in range(128) if not (48 <= c <= 57 or 97 <= c <= 122))


def alnum(text: str) -> str:
    """The letters and digits only: how model numbers and brands are compared (``DSC-W120/P`` = ``dscw120p``)."""
    return alnum_folded(fold(text))


def alnum_folded(folded: str) -> str:
    """``alnum`` of text ``fold`` returned (ASCII, lower-case): one C pass deleting bytes, where the regular
    expression cost a tenth of a profile on a description's 80 words."""
    return folded.encode("ascii").translate(None, _NOT_ALNUM_BYTES).decode("ascii")


class Split(NamedTuple):
    """A folded text cut once, for every reader of it (words, codes, attributes, brand) to share; each used to
    cut the title again, and the regular expressions were most of the cost of reading a record."""

    text: str
    plain: list[str]  # _WORD runs, in order: "cyber-shot dsc-w120/p" -> cyber, shot, dsc, w, 120, p
    parts: list[str]  # _CHUNK runs at odd indices, the text between them at even ones (``re.split``)

    @property
    def chunks(self) -> list[str]:
        """The _CHUNK runs, in order: "cyber-shot", "dsc-w120/p"."""
        return self.parts[1::2]


_CHUNKS = re.compile(f"({_CHUNK.pattern})")


def chunks(folded: str) -> list[str]:
    """The _CHUNK runs of a text (``Split.chunks`` without the rest)."""
    return _CHUNK.findall(folded)


def split(folded: str) -> Split:
    return Split(folded, _WORD.findall(folded), _CHUNKS.split(folded))


def words(folded: str) -> list[str]:
    """Similarity words, plus the joined form of hyphenated words ("cyber-shot" also gives "cybershot")."""
    return words_of(split(folded))


def words_of(cut: Split) -> list[str]:
    """``words`` of a text already cut."""
    if "-" not in cut.text and "/" not in cut.text:
        return list(cut.plain)
    return cut.plain + _joined(cut.chunks)


def _joined(chunks: Iterable[str]) -> list[str]:
    """ "cyber-shot" -> "cybershot": hyphenated or slashed words, run together, when they are letters only."""
    out = []
    for chunk in chunks:
        if "-" in chunk or "/" in chunk:
            joined = alnum_folded(chunk)
            if joined.isalpha():
                out.append(joined)
    return out


# Characters of a long text read for its first words: enough for ``leading_words``' n words of most texts, so
# a 5,000-word description is cut no further than a short one.
_CHARS_PER_WORD = 16


def leading_words(folded: str, n: int) -> list[str]:
    """``words(folded)[:n]``, reading only the start of a long text.

    ``findall`` up to ``endpos`` sees the text as if it ended there, so only its last matches may differ from the
    whole text's (a run cut short, or "7." whose ".2" lies beyond); with n + 2 matches found, the first n end
    at least two characters before ``endpos`` and are the whole text's. The joined hyphenated words ``words``
    appends come after every plain word, so they only count when the text has fewer than n of those.
    """
    end = n * _CHARS_PER_WORD
    if len(folded) > end:
        head = _WORD.findall(folded, 0, end)
        if len(head) >= n + 2:
            return head[:n]
    plain = _WORD.findall(folded)
    if len(plain) >= n or ("-" not in folded and "/" not in folded):
        return plain[:n]
    # No chunk spans a space, so the hyphenated ones are those of the pieces with a hyphen or slash.
    pieces = [piece for piece in folded.split() if "-" in piece or "/" in piece]
    return (plain + _joined(c for piece in pieces for c in _CHUNK.findall(piece)))[:n]


def _is_measure(token: str) -> bool:
    m = _NUMBER_UNIT.fullmatch(token)
    return bool(m and (m.group(2) in _UNITS or _ORDINAL.fullmatch(token)))


def codes(folded: str, brand_words: Iterable[str] = ()) -> frozenset[str]:
    """Model and part numbers: chunks mixing letters and digits, or long digit runs (``966193-0403``).

    Measures ("64gb", "1080p", "4th") are attributes, not codes. Brand words and keys (``brand_words``) are
    skipped, so the brand "7-Eleven" is no model number.
    """
    return codes_of(_CHUNK.findall(folded), frozenset(brand_words))


def codes_of(chunks: Iterable[str], skip: frozenset[str]) -> frozenset[str]:
    """``codes`` of a text's chunks (``Split.chunks``), ``skip`` its brand words. Most chunks are words of
    letters only, told apart by ``isalpha`` before any regular expression looks at them."""
    found: set[str] = set()
    for chunk in chunks:
        if chunk.isalpha() or chunk in skip or not _HAS_DIGIT.search(chunk) or _VERSION.fullmatch(chunk):
            continue
        key = chunk if chunk.isalnum() else alnum_folded(chunk)
        if len(key) < 3 or key in skip or _is_measure(key):
            continue
        if key.isdigit():
            if len(key) >= 5 and not ("." in chunk and len(chunk.split(".")[-1]) <= 2):
                found.add(key)
            continue
        if not _only_unit_parts(chunk):
            found.add(key)
    return frozen(found)


_SEPARATOR = re.compile(r"[-/._]")


def _only_unit_parts(chunk: str) -> bool:
    """ "4.0-cu" or "2.26ghz/4gb": every part is a measure, so the chunk is no model number."""
    parts = [p for p in _SEPARATOR.split(chunk) if p]
    return all(p.isdigit() or _is_measure(p) or p in _UNITS for p in parts)


# The empty set every reader returns for "none stated", rather than a new one each time: a profile holds some
# twenty sets, mostly empty, and the profile cache keeps thousands of profiles, so new empty sets were most of
# the objects the garbage collector walked on every full pass (a tenth of an ingest's matching time).
EMPTY: frozenset[Any] = frozenset()


def frozen(items: set[T]) -> frozenset[T]:
    """``frozenset(items)``, the shared ``EMPTY`` when there are none."""
    return frozenset(items) if items else EMPTY


class Attributes(NamedTuple):
    """Variant attributes of one listing, each a frozenset of canonical values (empty: not stated)."""

    measures: frozenset[tuple[str, str]]  # (dimension, value with unit), e.g. ("capacity", "64gb")
    colours: frozenset[str]
    sizes: frozenset[str]
    packs: frozenset[str]
    years: frozenset[str]
    platforms: frozenset[str]
    editions: frozenset[str]
    tiers: frozenset[str]
    numbers: frozenset[str]  # bare numbers not part of a measure or code: versions, generations, "#5"
    generations: frozenset[str]  # "4th generation", "7th edition"


_CANONICAL_UNIT = {
    "tb": "gb",
    "terabyte": "gb",
    "gig": "gb",
    "gigabyte": "gb",
    "megapixel": "mp",
    "megapixels": "mp",
    "inch": "in",
    "inches": "in",
    "watt": "w",
    "watts": "w",
    "feet": "ft",
    "lbs": "lb",
    "floz": "oz",
}


NO_ATTRIBUTES = Attributes(EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY)


def _unit_value(number: str, unit: str) -> tuple[str, str]:
    """(dimension, canonical value): "1 TB" and "1000gb" agree, a pack of "3" is just "3"."""
    dim = _UNITS[unit]
    value = float(number) * (1000 if unit in ("tb", "terabyte") else 1)
    if dim == "pack":
        return ("pack", _fmt(value))
    return (dim, _fmt(value) + _CANONICAL_UNIT.get(unit, unit))


def _fmt(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def attributes(folded: str, brand_words: Iterable[str] = (), title_codes: frozenset[str] = frozenset()) -> Attributes:
    """Variant attributes stated in a title (descriptions mention too many unrelated quantities).

    Model numbers are taken out first: the "120" of "dsc-w120" is no version number.
    """
    return attributes_of(split(folded), frozenset(brand_words), title_codes)


def attributes_of(cut: Split, skip: frozenset[str], title_codes: frozenset[str]) -> Attributes:
    """``attributes`` of a title already cut, ``skip`` its brand words."""
    folded = cut.text
    if title_codes:
        parts = list(cut.parts)
        for i in range(1, len(parts), 2):
            if alnum_folded(parts[i]) in title_codes:
                parts[i] = " "
        folded = "".join(parts)
    tokens = [t for t in _ATTRIBUTE_TOKEN.findall(folded) if t not in skip]
    measures: set[tuple[str, str]] = set()
    colours: set[str] = set()
    sizes: set[str] = set()
    packs: set[str] = set()
    years: set[str] = set()
    platforms: set[str] = set()
    editions: set[str] = set()
    tiers: set[str] = set()
    numbers: set[str] = set()
    generations: set[str] = set()
    after_platform = False

    def add_unit(number: str, unit: str) -> None:
        """A number with its unit, glued ("64gb") or apart ("64 GB"): a pack count or a measure."""
        dim, value = _unit_value(number, unit)
        if dim == "pack":
            packs.add(value)
        else:
            measures.add((dim, value))

    for i, tok in enumerate(tokens):
        if after_platform and tok in _OS_WORDS:
            continue
        after_platform = False
        if tok[0].isalpha() and tok not in _ATTRIBUTE_WORDS:
            continue
        if tok == "#":  # nothing by itself, only the neighbour of a number ("#5")
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        prev = tokens[i - 1] if i else ""
        number = None
        led = _LEADING_NUMBER.fullmatch(tok) if tok[0].isdigit() else None
        if led is not None:
            # One match where an ordinal, a glued unit and a bare number used to be tried in turn.
            digits, glued = led.groups()
            if glued in _ORDINAL_SUFFIXES and "." not in digits:
                if nxt in _GENERATION_WORDS:
                    generations.add(tok[:-2])
                continue
            if glued in _UNITS:
                add_unit(digits, glued)
                continue
            if not glued:
                number = tok
        elif nxt in _PACK_WORDS:
            number = _SMALL_NUMBERS.get(tok)
        if number is not None:
            if nxt in _UNITS and nxt not in _GLUED_ONLY:
                add_unit(number, nxt)
                continue
            if nxt in _PACK_WORDS or (prev == "of" and i >= 2 and tokens[i - 2] in _PACK_WORDS):
                packs.add(_fmt(float(number)))
                continue
            if len(tok) == 4 and tok.isdigit() and 1980 <= int(tok) <= 2039:
                years.add(tok)
                continue
            if tok.isdigit() or "." in tok:
                numbers.add(_fmt(float(tok)) if len(tok) < 5 else tok)
            continue
        if tok in COLOURS or tok in _COLOUR_ALIASES:
            colours.add(_COLOUR_ALIASES.get(tok, tok))
        elif tok in SIZES and (prev == "size" or tok not in ("s", "m", "l", "small", "medium", "large")):
            sizes.add(_SIZE_ALIASES.get(tok, tok))
        elif tok == "size" and nxt and (nxt in SIZES or nxt.isdigit()):
            sizes.add(_SIZE_ALIASES.get(nxt, nxt))
        elif tok in PLATFORMS:
            platforms.add(PLATFORMS[tok])
            after_platform = True
        elif tok in EDITIONS:
            editions.add(EDITIONS[tok])
        elif tok in TIERS:
            tiers.add(_TIER_ALIASES.get(tok, tok))
    if not (measures or colours or sizes or packs or years or platforms or editions or tiers or numbers or generations):
        return NO_ATTRIBUTES
    return Attributes(
        frozen(measures),
        frozen(colours),
        frozen(sizes),
        frozen(packs),
        frozen(years),
        frozen(platforms),
        frozen(editions),
        frozen(tiers),
        frozen(numbers),
        frozen(generations),
    )


# Words the attribute reader looks at; any other word is skipped at the cost of one set lookup.
_ATTRIBUTE_WORDS = frozenset(
    {*COLOURS, *_COLOUR_ALIASES, *SIZES, "size", *PLATFORMS, *EDITIONS, *TIERS, *_SMALL_NUMBERS}
)


def infer_brand(folded_title: str, known: frozenset[str]) -> str | None:
    """The brand a title starts with (or ends with, "iPhone 9 by Apple"), when it is a known brand key.

    Tries the first one to three words joined ("dolce gabbana", "calvin klein"); only brands the model has seen
    (its vocabulary) or the caller passes in count, so "Red Lipstick" does not infer the brand "red".
    """
    return infer_brand_of(_WORD.findall(folded_title), known)


def infer_brand_of(ws: list[str], known: frozenset[str]) -> str | None:
    """``infer_brand`` of a title's plain words (``Split.plain``)."""
    for n in (3, 2, 1):
        if len(ws) >= n:
            head = "".join(ws[:n])
            if head in known:
                return head
    if len(ws) >= 2 and ws[-2] == "by" and ws[-1] in known:
        return ws[-1]
    for n in (2, 1):
        if len(ws) > n:
            tail = "".join(ws[-n:])
            if tail in known and ws[-n - 1] in ("by", "from"):
                return tail
    return None


_STEM = re.compile(r"(.*[0-9])[a-z]{1,4}")
# Words a vendor adds or drops when it retitles a listing without naming another product.
FILLER = frozenset({"a", "an", "and", "by", "for", "from", "in", "of", "the", "w", "with", "new"})
# Words that name the company rather than the product: "encore software inc", "magix entertainment corp".
COMPANY_WORDS = frozenset(
    {
        "inc",
        "corp",
        "corporation",
        "co",
        "ltd",
        "llc",
        "gmbh",
        "software",
        "entertainment",
        "interactive",
        "systems",
        "electronics",
        "international",
        "the",
        "by",
    }
)


def code_stem(code: str) -> str:
    """A code without its trailing letters ("yht390bk" -> "yht390"), for suffixes that only name a colour."""
    m = _STEM.fullmatch(code)
    return m.group(1) if m and len(m.group(1)) >= 3 else code


def core_words(title_words: list[str], brand: frozenset[str], brands: frozenset[str]) -> list[str]:
    """Title words without the brand's words, known brands and company words, in order: "encore software 10653
    hoyle" -> "10653 hoyle". A title that is nothing but those keeps all its words."""
    return [w for w in title_words if w not in brand and w not in COMPANY_WORDS and w not in brands] or title_words


def leading_number(value: str) -> str:
    """ "13.5mp" -> "13.5": the number of a canonical measure value."""
    m = _NUMBER.match(value)
    return m.group() if m else "0"
