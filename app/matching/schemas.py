"""Bodies of the unification overrides (admin)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_ID = Field(min_length=1, max_length=256)


class OfferRefIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vendor_id: str = _ID
    vendor_product_id: str = _ID


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    offer: OfferRefIn = Field(description="The offer to take out of its product.")


class PinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    offers: list[OfferRefIn] = Field(
        min_length=2, max_length=2, description="The two offers that must share a product (of any two vendors)."
    )


class OverrideOut(BaseModel):
    kind: Literal["split", "pin", "clear"]
    offers: list[OfferRefIn]
    applied: bool = Field(
        description="True: this node's store has it (the embedded runtime). False: published to every node "
        "through the changelog (runtime kafka); it shows moments later."
    )
    product_id: str | None = Field(
        None, description="The first offer's product once applied here (null when only published)."
    )
