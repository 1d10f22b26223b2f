"""What one simulated vendor is: its platform, its shop, its catalog and how badly it behaves.

The config is immutable; ``PATCH /_sim/config`` swaps in a new one, so a request in flight always sees one
consistent set of knobs. Only the fields in ``SimConfigPatch`` may change at run time: the others decide which
items the store carries and what they look like, and changing them would silently re-key the whole catalog.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.domain.models import VendorKind

FailureMode = Literal["500", "429", "hang", "malformed"]
FAILURE_MODES: tuple[FailureMode, ...] = ("500", "429", "hang", "malformed")

# Fixed demo rates from USD: the simulators need stable prices, not live ones.
USD_RATES: dict[str, Decimal] = {
    "USD": Decimal("1"),
    "EUR": Decimal("0.92"),
    "TRY": Decimal("34.5"),
    "GBP": Decimal("0.79"),
}

DEFAULT_CURRENCY = {
    VendorKind.DUMMYJSON: "USD",
    VendorKind.SHOPIFY: "EUR",
    VendorKind.WOOCOMMERCE: "TRY",
    VendorKind.BIGCOMMERCE: "GBP",
    VendorKind.MAGENTO: "EUR",
}
DEFAULT_NAME = {
    VendorKind.DUMMYJSON: "DummyJSON",
    VendorKind.SHOPIFY: "Demo Shop",
    VendorKind.WOOCOMMERCE: "Demo Store",
    VendorKind.BIGCOMMERCE: "Demo Emporium",
    VendorKind.MAGENTO: "Demo Market",
}
# Shop time zones as fixed offsets (minutes east of UTC). DummyJSON speaks UTC ("Z"); the Shopify shop is on
# Central European time (DST not modelled); Istanbul has been UTC+3 all year since 2016, so that one is exact.
# BigCommerce and Magento answer in UTC whatever the store's own time zone.
DEFAULT_UTC_OFFSET_MIN = {
    VendorKind.DUMMYJSON: 0,
    VendorKind.SHOPIFY: 60,
    VendorKind.WOOCOMMERCE: 180,
    VendorKind.BIGCOMMERCE: 0,
    VendorKind.MAGENTO: 0,
}


class SimConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: VendorKind
    name: str = ""
    seed: int = 0
    size: int = Field(194, ge=0, le=5_000_000)
    currency: str = ""
    utc_offset_min: int | None = Field(None, ge=-720, le=840)
    latency_ms: float = Field(0.0, ge=0)
    error_rate: float = Field(0.0, ge=0, le=1)
    failure_modes: tuple[FailureMode, ...] = FAILURE_MODES
    retry_after_s: float = Field(1.0, ge=0)
    hang_s: float = Field(30.0, ge=0)
    change_interval_s: float = Field(0.0, ge=0)
    bad_item_rate: float = Field(0.0, ge=0, le=1)
    access_token: str = "shpat_demo"
    consumer_key: str = "ck_demo"
    consumer_secret: str = "cs_demo"
    store_hash: str = "abc123"
    bigcommerce_token: str = "bc_demo"
    magento_token: str = "mg_demo"

    @model_validator(mode="before")
    @classmethod
    def _platform_defaults(cls, data: Any) -> Any:
        # Filled before validation so the frozen model never holds a half-defaulted value.
        if not isinstance(data, dict) or "kind" not in data:
            return data
        try:
            kind = VendorKind(data["kind"])
        except ValueError:
            return data
        data = dict(data)
        if not data.get("name"):
            data["name"] = DEFAULT_NAME[kind]
        data["currency"] = str(data.get("currency") or DEFAULT_CURRENCY[kind]).upper()
        if data.get("utc_offset_min") is None:
            data["utc_offset_min"] = DEFAULT_UTC_OFFSET_MIN[kind]
        return data

    @model_validator(mode="after")
    def _known_currency(self) -> SimConfig:
        if self.currency not in USD_RATES:
            raise ValueError(f"currency must be one of {sorted(USD_RATES)}")
        return self

    @property
    def offset_min(self) -> int:
        return self.utc_offset_min or 0


class SimConfigPatch(BaseModel):
    """The knobs tests and demos turn while a simulator runs; anything else in the body is refused."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(None, ge=0)
    error_rate: float | None = Field(None, ge=0, le=1)
    failure_modes: tuple[FailureMode, ...] | None = None
    retry_after_s: float | None = Field(None, ge=0)
    hang_s: float | None = Field(None, ge=0)
    change_interval_s: float | None = Field(None, ge=0)
    bad_item_rate: float | None = Field(None, ge=0, le=1)

    def apply(self, config: SimConfig) -> SimConfig:
        changes = self.model_dump(exclude_none=True)
        return SimConfig.model_validate({**config.model_dump(), **changes})
