"""A realistic catalog of any size for the search benchmark, and the queries shoppers would type into it.

The 194 real DummyJSON products are the seed. Each generated product takes a real product of some category and
varies it the way a large catalog does: another brand (the real ones plus invented ones, a few big and many
small), a model line, a colour, a size or a pack, sometimes a word of another product of the same category; the
description is rebuilt from real sentences of that category. Word frequencies therefore look like a catalog's
(a few very common words, a long tail), not like a million copies of one title, which would make every posting
list either empty or complete.

Deterministic: the same ``count`` and ``seed`` give the same products and queries.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.domain.unify import product_id
from app.search import SearchDoc
from simulators.catalog import load_raw_products

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]*")
_COLOURS = (
    "Black",
    "White",
    "Red",
    "Blue",
    "Green",
    "Grey",
    "Silver",
    "Gold",
    "Rose",
    "Navy",
    "Beige",
    "Brown",
    "Pink",
    "Purple",
    "Yellow",
    "Orange",
    "Teal",
    "Ivory",
    "Charcoal",
    "Olive",
    "Burgundy",
    "Turquoise",
    "Coral",
    "Mint",
    "Lavender",
)
_ADJECTIVES = (
    "Classic",
    "Premium",
    "Deluxe",
    "Compact",
    "Portable",
    "Wireless",
    "Organic",
    "Natural",
    "Vintage",
    "Modern",
    "Slim",
    "Ultra",
    "Professional",
    "Essential",
    "Lightweight",
    "Waterproof",
    "Ergonomic",
    "Luxury",
    "Everyday",
    "Sport",
    "Eco",
    "Mini",
    "Smart",
    "Original",
    "Soft",
    "Heavy-Duty",
    "Adjustable",
    "Foldable",
    "Rechargeable",
    "Stainless",
    "Handmade",
    "Fresh",
    "Limited",
    "Edition",
    "Travel",
    "Kids",
    "Family",
)
_SIZES = (
    "XS",
    "S",
    "M",
    "L",
    "XL",
    "XXL",
    "100ml",
    "250ml",
    "500ml",
    "1L",
    "2L",
    "50g",
    "250g",
    "500g",
    "1kg",
    "2kg",
    "6-Pack",
    "12-Pack",
    "32GB",
    "64GB",
    "128GB",
    "256GB",
    "512GB",
    "1TB",
    "13-inch",
    "15-inch",
    "17-inch",
    "Set of 2",
    "Set of 4",
    "Twin",
    "Queen",
    "King",
)
_LINES = (
    "Pro",
    "Max",
    "Plus",
    "Lite",
    "Air",
    "Neo",
    "Prime",
    "Edge",
    "One",
    "Go",
    "Flex",
    "Core",
    "Elite",
    "Mini",
    "X",
    "S",
    "Ultra",
)
_SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ra",
    "ven",
    "tor",
    "zen",
    "lux",
    "nor",
    "vel",
    "ard",
    "ion",
    "bel",
    "cor",
    "das",
    "fin",
    "gal",
    "hav",
    "jet",
    "kor",
    "lim",
    "mar",
    "nex",
    "ost",
    "pal",
    "qui",
    "rin",
    "sol",
    "tav",
    "ul",
    "vio",
    "wex",
    "yar",
    "zor",
    "bri",
    "cla",
    "dro",
    "fle",
    "gri",
    "pla",
    "sta",
    "tri",
)
_SENTENCES = (
    "Made from durable materials for years of use.",
    "Backed by a two-year warranty and free returns.",
    "Available in several colours and sizes.",
    "Easy to clean and simple to maintain.",
    "A favourite of customers who value quality.",
    "Designed for comfort during long days.",
    "Ships in recyclable packaging.",
    "Energy efficient and quiet in operation.",
    "Perfect as a gift for friends and family.",
    "Tested to meet strict safety standards.",
)


@dataclass(frozen=True, slots=True)
class _Seed:
    title_words: tuple[str, ...]
    category: str
    price: float
    brand: str | None
    sentences: tuple[str, ...]
    tags: tuple[str, ...]


def _seeds() -> list[_Seed]:
    seeds = []
    for raw in load_raw_products():
        sentences = tuple(s.strip() + "." for s in raw["description"].split(".") if s.strip())
        seeds.append(
            _Seed(
                title_words=tuple(raw["title"].split()),
                category=raw["category"],
                price=float(raw["price"]),
                brand=raw.get("brand") or None,
                sentences=sentences,
                tags=tuple(raw.get("tags") or ()),
            )
        )
    return seeds


def _invented_brands(rng: random.Random, n: int) -> list[str]:
    brands: set[str] = set()
    while len(brands) < n:
        name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 2, 3))))
        suffix = rng.choice(("", "", "", " Co.", " Labs", " Home", " Studio", " & Sons", " Gear"))
        brands.add(name.capitalize() + suffix)
    return sorted(brands)


class CatalogGenerator:
    """Products and queries from one seed; built once, then ``products(count)`` streams as many as asked."""

    def __init__(self, seed: int = 13) -> None:
        self.seed = seed
        rng = random.Random(seed)
        self._seeds = _seeds()
        real_brands = sorted({s.brand for s in self._seeds if s.brand})
        invented = _invented_brands(rng, 1500)
        # A few big brands and a long tail: Zipf-like weights over the brand list.
        self.brands = real_brands + invented
        self._brand_weights = [1.0 / (i + 1) ** 0.9 for i in range(len(self.brands))]
        rng.shuffle(self._brand_weights)
        self.vendors = [f"vendor-{i:02d}" for i in range(24)]
        by_category: dict[str, list[_Seed]] = defaultdict(list)
        for s in self._seeds:
            by_category[s.category].append(s)
        self.categories = sorted(by_category)
        self._by_category = dict(by_category)
        self._category_words = {
            c: sorted({w for s in seeds for w in s.title_words if len(w) > 2}) for c, seeds in by_category.items()
        }

    def products(self, count: int) -> Iterator[SearchDoc]:
        rng = random.Random(self.seed * 1_000_003 + 1)
        epoch = datetime(2025, 1, 1, tzinfo=UTC)
        brands = rng.choices(self.brands, weights=self._brand_weights, k=min(count, 200_000))
        for n in range(count):
            category = self.categories[int(rng.paretovariate(0.8)) % len(self.categories)]
            seed = rng.choice(self._by_category[category])
            brand = brands[n % len(brands)] if rng.random() < 0.92 else None
            words = list(seed.title_words)
            if seed.brand and words[0] == seed.brand.split()[0]:
                words = words[1:] or list(seed.title_words)
            roll = rng.random()
            if roll < 0.35:
                words.insert(0, rng.choice(_ADJECTIVES))
            if roll > 0.25:
                words.append(rng.choice(_LINES) if rng.random() < 0.5 else str(rng.randint(2, 990)))
            if rng.random() < 0.4:
                words.append(rng.choice(_COLOURS))
            if rng.random() < 0.3:
                words.append(rng.choice(_SIZES))
            if rng.random() < 0.2:
                words.insert(rng.randrange(len(words) + 1), rng.choice(self._category_words[category]))
            name = " ".join(([brand] if brand and rng.random() < 0.6 else []) + words)
            pool = seed.sentences or (_SENTENCES[0],)
            body = rng.sample(pool, k=min(len(pool), rng.randint(1, 3)))
            body += rng.sample(_SENTENCES, k=rng.randint(0, 2))
            if seed.tags:
                body.append(f"Great for {' and '.join(seed.tags)}.")
            price = round(max(0.49, seed.price * rng.lognormvariate(0.0, 0.45)), 2)
            vendor_count = 1 if rng.random() < 0.7 else rng.randint(2, 4)
            yield SearchDoc(
                id=product_id(f"bench:{self.seed}:{n}"),
                name=name,
                description=" ".join(body),
                brand=brand,
                category=category,
                vendors=tuple(sorted(rng.sample(self.vendors, vendor_count))),
                min_price_base=price,
                in_stock=rng.random() < 0.85,
                updated_at=epoch + timedelta(seconds=rng.randrange(365 * 86400)),
            )

    def queries(self, count: int, sample: int = 20_000) -> list[tuple[str, str]]:
        """Distinct queries of the kinds people type, as (kind, text): a word, two words, a prefix as typed (the
        last word cut short), a typo (one edit in a word of 5+ letters), brand + type.

        Words are drawn by their frequency in a sample of the catalog, so popular words are asked more often,
        as in a real search log.
        """
        rng = random.Random(self.seed * 7 + 3)
        words: Counter[str] = Counter()
        pairs: list[tuple[str, str]] = []
        brand_types: list[str] = []
        for doc in self.products(sample):
            tokens = [w.lower() for w in _WORD.findall(doc.name) if len(w) > 2 and not w[0].isdigit()]
            words.update(tokens)
            if len(tokens) >= 2:
                pairs.append((tokens[-2], tokens[-1]) if rng.random() < 0.5 else (tokens[0], tokens[1]))
            if doc.brand and tokens:
                brand_types.append(f"{doc.brand.lower()} {tokens[-1]}")
        vocab = list(words)
        weights = [float(words[w]) ** 0.7 for w in vocab]
        out: list[tuple[str, str]] = []
        seen: set[str] = set()

        def add(q: str) -> None:
            q = " ".join(q.split())
            if q and q not in seen:
                seen.add(q)
                out.append((kind, q))

        kinds = ("word", "word", "two", "two", "prefix", "prefix", "typo", "typo", "brand")
        attempts = 0
        while len(out) < count and attempts < count * 50:
            attempts += 1
            kind = kinds[len(out) % len(kinds)]
            word = rng.choices(vocab, weights=weights)[0]
            if kind == "word":
                add(word)
            elif kind == "two":
                a, b = rng.choice(pairs)
                add(f"{a} {b}")
            elif kind == "prefix":
                # As typed: the first words complete, the last cut short.
                a, b = rng.choice(pairs) if rng.random() < 0.5 else ("", word)
                if len(b) >= 3:
                    add(f"{a} {b[: rng.randint(2, len(b) - 1)]}")
            elif kind == "typo":
                if len(word) >= 5:
                    add(_typo(rng, word))
            else:
                add(rng.choice(brand_types))
        return out


def _typo(rng: random.Random, word: str) -> str:
    """One edit, away from the first letter (people rarely miss that one)."""
    i = rng.randrange(1, len(word) - 1)
    letters = "abcdefghijklmnopqrstuvwxyz"
    match rng.randrange(4):
        case 0:
            return word[:i] + word[i + 1 :]
        case 1:
            return word[:i] + rng.choice(letters) + word[i + 1 :]
        case 2:
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        case _:
            return word[:i] + rng.choice(letters) + word[i:]
