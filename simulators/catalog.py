"""The one product catalog every simulator renders from.

The 194 real DummyJSON products (MIT, see ``data/SOURCES.md``) come first, unchanged, so demos show real data.
Benchmarks need far more, so past them the catalog continues with deterministic clones: same product, a
``" #n"`` title suffix and a distinct id, SKU and barcode, so 100k items can be served and told apart.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from importlib import resources
from typing import Any, NamedTuple

import orjson

from simulators.common import pick, slugify

_DATA_FILE = "dummyjson_products.json"
_SALT_CLONE_STOCK = 0x5D0C
_SALT_CLONE_CHECK = 0xC4EC


class BaseItem(NamedTuple):
    """A product as the simulators know it, before any platform's spelling is applied.

    A NamedTuple rather than a frozen dataclass: just as immutable, and several times cheaper to build when
    a benchmark asks for 100k clones. ``source`` is the DummyJSON object from the data file (shared by an
    item's clones) so the DummyJSON simulator can serve every field it has, not only those the others need.
    """

    id: int
    title: str
    slug: str
    description: str
    category: str
    price: Decimal  # USD
    discount_percentage: float
    rating: float
    stock: int
    brand: str | None
    sku: str
    barcode: str
    weight: int
    images: tuple[str, ...]
    thumbnail: str
    tags: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    clone: int
    source: Mapping[str, Any]


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def load_raw_products() -> list[dict[str, Any]]:
    """The data file as shipped; read through importlib.resources so it works from an installed wheel too."""
    data = resources.files("simulators").joinpath("data").joinpath(_DATA_FILE).read_bytes()
    products: list[dict[str, Any]] = orjson.loads(data)
    return products


@functools.cache
def load_base_items() -> tuple[BaseItem, ...]:
    items = []
    for raw in load_raw_products():
        meta = raw["meta"]
        items.append(
            BaseItem(
                id=int(raw["id"]),
                title=raw["title"],
                slug=slugify(raw["title"]),
                description=raw["description"],
                category=raw["category"],
                price=Decimal(str(raw["price"])),
                discount_percentage=float(raw["discountPercentage"]),
                rating=float(raw["rating"]),
                stock=int(raw["stock"]),
                brand=raw.get("brand"),
                sku=raw["sku"],
                barcode=meta["barcode"],
                weight=int(raw["weight"]),
                images=tuple(raw["images"]),
                thumbnail=raw["thumbnail"],
                tags=tuple(raw["tags"]),
                created_at=_parse_time(meta["createdAt"]),
                updated_at=_parse_time(meta["updatedAt"]),
                clone=0,
                source=raw,
            )
        )
    return tuple(items)


def _clone(base: BaseItem, pos: int, n: int) -> BaseItem:
    item_id = pos + 1
    # Real SKUs end in the zero-padded id (BEA-ESS-ESS-001), so swapping in the new id keeps them unique.
    prefix = base.sku.rsplit("-", 1)[0]
    # An affine map with a multiplier coprime to 10 is a bijection on 12-digit numbers: no two clones collide.
    body = (pos * 982_451_653 + 271_828_182_845) % 10**12
    # Like the real data, the last digit is not a computed check digit; only ~1 in 10 happens to be valid.
    barcode = f"{body:012d}{pick(0, item_id, _SALT_CLONE_CHECK, 10)}"
    return BaseItem(
        id=item_id,
        title=f"{base.title} #{n}",
        slug=f"{base.slug}-{n}",
        description=base.description,
        category=base.category,
        price=base.price,
        discount_percentage=base.discount_percentage,
        rating=base.rating,
        stock=pick(0, item_id, _SALT_CLONE_STOCK, 150),
        brand=base.brand,
        sku=f"{prefix}-{item_id:03d}",
        barcode=barcode,
        weight=base.weight,
        images=base.images,
        thumbnail=base.thumbnail,
        tags=base.tags,
        created_at=base.created_at,
        updated_at=base.updated_at,
        clone=n,
        source=base.source,
    )


@functools.lru_cache(maxsize=4)
def _catalog(size: int) -> tuple[BaseItem, ...]:
    real = load_base_items()
    if size <= len(real):
        return real[:size]
    clones = (_clone(real[pos % len(real)], pos, pos // len(real)) for pos in range(len(real), size))
    return real + tuple(clones)


def build_catalog(size: int = 194) -> list[BaseItem]:
    """The first ``size`` items, ids 1..size in order; the same list for the same size, every time."""
    if size < 0:
        raise ValueError("size must be >= 0")
    return list(_catalog(size))
