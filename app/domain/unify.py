"""Unification: which offers are the same product, and what that product shows.

Rules (deterministic, so product ids never depend on the order offers arrive in or on a re-sync):

1. An offer with a valid GTIN belongs to the product of that GTIN.
2. Otherwise, an offer with a brand and a SKU is matched on ``brand_key|sku_key``. If the offers sharing that
   match key carry exactly one GTIN between them, the offer joins that GTIN's product (a vendor that omits the
   barcode still lands with the vendors that send it). If they carry none, the match key is the product. If
   they carry several different GTINs the match is ambiguous, so the offer is not guessed into any of them and
   the match key is its product.
3. Otherwise the offer is a product of its own.

The product id is a hash of the winning key (``gtin:…``, ``bs:…``, ``offer:…``): the same set of offers always
gives the same ids.

What the product shows comes from its *lead offer*: the offer with the richest content (a description, then
more images, then a brand), ties broken by the smallest ``(vendor_id, vendor_product_id)``. Name and
description come from the lead offer; brand and category from the first offer in that order that has one;
images are the union of all offers' images in that order, de-duplicated.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal

from app.domain.models import Availability, Offer, PriceRange, Product
from app.domain.normalize import brand_key, sku_key


def match_key(offer: Offer) -> str | None:
    """``brand_key|sku_key`` when the offer has both, else ``None``."""
    b = brand_key(offer.brand)
    s = sku_key(offer.sku)
    if b is None or s is None:
        return None
    return f"{b}|{s}"


def product_key(offer: Offer, linked_gtins: Iterable[str] = ()) -> str:
    """The key of the product an offer belongs to.

    ``linked_gtins`` are the GTINs carried by the offers that share this offer's match key (including itself);
    the store looks them up, ``unify`` computes them from the whole set.
    """
    return key_for(offer, match_key(offer), linked_gtins)


def key_for(offer: Offer, mk: str | None, linked_gtins: Iterable[str] = ()) -> str:
    """``product_key`` with the offer's match key already computed (hot path of bulk ingests)."""
    if offer.gtin:
        return f"gtin:{offer.gtin}"
    if mk is not None:
        return matched_key(mk, linked_gtins)
    return f"offer:{offer.vendor_id}:{offer.vendor_product_id}"


def matched_key(mk: str, linked_gtins: Iterable[str]) -> str:
    """Rule 2 alone: the key of a GTIN-less offer with match key ``mk``.

    The store re-resolves GTIN-less offers by match key when a barcode arrives or leaves, holding only the
    key and its linked GTINs, not the offers; it must land them where ``key_for`` would.
    """
    gtins = set(linked_gtins)
    if len(gtins) == 1:
        return f"gtin:{gtins.pop()}"
    return f"bs:{mk}"


def product_id(key: str) -> str:
    """80 bits of the key's hash: collisions are negligible at catalog sizes, and the id stays short."""
    return "p_" + hashlib.sha256(key.encode()).hexdigest()[:20]


def _lead_order(offer: Offer) -> tuple[int, int, int, str, str]:
    return (
        0 if offer.description else 1,
        -min(len(offer.images), 10),
        0 if offer.brand else 1,
        offer.vendor_id,
        offer.vendor_product_id,
    )


def build_product(pid: str, offers: Sequence[Offer]) -> Product:
    """The unified view of a non-empty group of offers (see the module docstring for the rule)."""
    if not offers:
        raise ValueError("a product needs at least one offer")
    if len(offers) == 1:  # most products; the general path below gives the same result, slower
        only = offers[0]
        price = PriceRange(only.currency, only.price, only.price)
        return Product(
            id=pid,
            name=only.title,
            description=only.description,
            brand=only.brand,
            category=only.category,
            images=tuple(dict.fromkeys(only.images)),
            gtin=only.gtin,
            offers=(only,),
            currency=only.currency,
            min_price=only.price,
            max_price=only.price,
            prices=(price,),
            in_stock=only.availability is Availability.IN_STOCK,
            updated_at=only.vendor_updated_at or only.fetched_at,
        )
    ordered = sorted(offers, key=_lead_order)
    lead = ordered[0]
    images: dict[str, None] = {}
    for offer in ordered:
        for url in offer.images:
            images.setdefault(url, None)
    by_currency: dict[str, list[Decimal]] = defaultdict(list)
    for offer in ordered:
        by_currency[offer.currency].append(offer.price)
    counts = Counter({cur: len(prices) for cur, prices in by_currency.items()})
    main_currency = min(counts, key=lambda cur: (-counts[cur], cur))
    prices = tuple(PriceRange(cur, min(ps), max(ps)) for cur, ps in sorted(by_currency.items()))
    main = next(p for p in prices if p.currency == main_currency)
    times = [o.vendor_updated_at or o.fetched_at for o in ordered]
    return Product(
        id=pid,
        name=lead.title,
        description=next((o.description for o in ordered if o.description), ""),
        brand=next((o.brand for o in ordered if o.brand), None),
        category=next((o.category for o in ordered if o.category), None),
        images=tuple(images),
        gtin=next((o.gtin for o in ordered if o.gtin), None),
        offers=tuple(sorted(offers, key=lambda o: (o.price, o.vendor_id, o.vendor_product_id))),
        currency=main_currency,
        min_price=main.min,
        max_price=main.max,
        prices=prices,
        in_stock=any(o.availability is Availability.IN_STOCK for o in offers),
        updated_at=max(times),
    )


def assign_products(offers: Iterable[Offer]) -> dict[tuple[str, str], str]:
    """Product key of every offer in a complete set (the reference the incremental store must agree with)."""
    offers = list(offers)
    gtins_by_match: dict[str, set[str]] = defaultdict(set)
    for offer in offers:
        mk = match_key(offer)
        if mk is not None and offer.gtin:
            gtins_by_match[mk].add(offer.gtin)
    result: dict[tuple[str, str], str] = {}
    for offer in offers:
        mk = match_key(offer)
        result[offer.key] = key_for(offer, mk, gtins_by_match.get(mk, ()) if mk else ())
    return result


def unify(offers: Iterable[Offer]) -> list[Product]:
    """All products of a complete set of offers, sorted by id."""
    offers = list(offers)
    groups: dict[str, list[Offer]] = defaultdict(list)
    keys = assign_products(offers)
    for offer in offers:
        groups[product_id(keys[offer.key])].append(offer)
    return [build_product(pid, group) for pid, group in sorted(groups.items())]
