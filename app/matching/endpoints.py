"""Unification overrides (admin): split an offer out of its product, pin two offers together, clear both."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import AdminDep, MatchingDep
from app.api.errors import errors
from app.domain.matching import OverrideChange
from app.matching.schemas import OfferRefIn, OverrideOut, PinIn, SplitIn

router = APIRouter(tags=["matching"])

RESPONSES = {
    **errors(
        401,
        403,
        404,
        409,
        422,
        503,
        s404="No such offer.",
        s409="An offer pinned to itself.",
        s503="The changelog's broker is away (kafka runtime).",
    ),
}


def _out(change: OverrideChange, product_id: str | None, applied: bool) -> OverrideOut:
    named = [change.offer] if change.other is None else [change.offer, change.other]
    return OverrideOut(
        kind=change.kind,
        offers=[OfferRefIn(vendor_id=v, vendor_product_id=p) for v, p in named],
        applied=applied,
        product_id=product_id,
    )


async def _apply(matching: MatchingDep, change: OverrideChange) -> OverrideOut:
    product_id = await matching.override(change)
    return _out(change, product_id, matching.publisher is None)


@router.post("/matching/split", operation_id="splitOffer", dependencies=[AdminDep], responses=RESPONSES)
async def split_offer(matching: MatchingDep, body: SplitIn) -> OverrideOut:
    """Take an offer out of its product into a product of its own, whatever identifiers or the matcher say;
    kept across re-syncs until cleared (a later pin of the offer replaces it)."""
    return await _apply(matching, OverrideChange("split", (body.offer.vendor_id, body.offer.vendor_product_id)))


@router.post("/matching/pin", operation_id="pinOffers", dependencies=[AdminDep], responses=RESPONSES)
async def pin_offers(matching: MatchingDep, body: PinIn) -> OverrideOut:
    """Keep two offers in one product, whatever the matcher says (a split of either is dropped); kept across
    re-syncs until cleared."""
    a, b = ((o.vendor_id, o.vendor_product_id) for o in body.offers)
    return await _apply(matching, OverrideChange("pin", a, b))


@router.post("/matching/clear", operation_id="clearOfferOverrides", dependencies=[AdminDep], responses=RESPONSES)
async def clear_overrides(matching: MatchingDep, body: SplitIn) -> OverrideOut:
    """Drop every split and pin naming this offer: identifiers and the matcher decide again."""
    return await _apply(matching, OverrideChange("clear", (body.offer.vendor_id, body.offer.vendor_product_id)))
