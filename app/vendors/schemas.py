"""Vendor request and response models: they document the API and validate admin input."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    RootModel,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from app.domain.models import Vendor, VendorKind
from app.domain.normalize import ISO_4217
from app.domain.queries import WARNING_PREFIX, VendorSyncStatus
from app.ingest.breaker import BreakerSnapshot
from app.sources.generic import MappingSpecError, parse_mapping
from app.sources.safety import without_userinfo

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _no_userinfo(url: HttpUrl | None) -> HttpUrl | None:
    """A ``user:password@`` in a URL is a credential stored and shown in clear: it belongs in ``credentials``."""
    if url is not None and (url.username or url.password):
        raise ValueError("base_url must not carry user info (user:password@): put secrets in credentials")
    return url


Slug = Annotated[str, Field(pattern=SLUG.pattern, description="Lower-case letters, digits, '-' and '_'.")]
# Strict types: the schema says boolean and integer, so 0, "yes" or "10" are refused rather than coerced.
RefreshInterval = Annotated[StrictInt, Field(ge=10, le=7 * 86_400)]
Currency = Annotated[str, Field(description="ISO 4217 code, upper case.", json_schema_extra={"enum": sorted(ISO_4217)})]


def _exact_currency(value: str | None) -> str | None:
    if value is not None and value not in ISO_4217:
        raise ValueError(f"not an ISO 4217 currency code: {value!r}")
    return value


class GenericMapping(RootModel[dict[str, Any]]):
    """A ``kind: generic`` vendor's mapping, checked for shape here; whether it fits the vendor's data is
    checked against a live page by the endpoint. See the README's "Declarative vendors" section."""

    @model_validator(mode="after")
    def _shape(self) -> GenericMapping:
        try:
            parse_mapping(self.root)
        except MappingSpecError as exc:
            raise ValueError(f"mapping.{exc.path}: {exc.reason}") from exc
        return self


class VendorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _base_url = field_validator("base_url")(_no_userinfo)

    id: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: VendorKind
    base_url: HttpUrl
    credentials: dict[str, str] = Field(default_factory=dict)
    currency: Currency
    refresh_interval_s: RefreshInterval | None = None
    enabled: StrictBool = True
    mapping: GenericMapping | None = Field(None, description="Required for kind `generic`, refused otherwise.")

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return str(_exact_currency(value))

    @model_validator(mode="after")
    def _mapping_for_generic(self) -> VendorIn:
        if self.kind is VendorKind.GENERIC and self.mapping is None:
            raise ValueError("a generic vendor needs a mapping")
        if self.kind is not VendorKind.GENERIC and self.mapping is not None:
            raise ValueError(f"a {self.kind.value} vendor takes no mapping (only kind generic does)")
        return self

    def to_vendor(self, default_refresh_interval_s: int) -> Vendor:
        return Vendor(
            id=self.id,
            name=self.name,
            kind=self.kind,
            base_url=str(self.base_url).rstrip("/"),
            currency=self.currency,
            credentials=self.credentials,
            refresh_interval_s=self.refresh_interval_s or default_refresh_interval_s,
            enabled=self.enabled,
            mapping=None if self.mapping is None else self.mapping.root,
        )


class VendorPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _base_url = field_validator("base_url")(_no_userinfo)

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    base_url: HttpUrl | None = None
    credentials: dict[str, str] | None = None
    currency: Currency | None = None
    refresh_interval_s: RefreshInterval | None = None
    enabled: StrictBool | None = None
    mapping: GenericMapping | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return _exact_currency(value)


class SyncOut(BaseModel):
    state: str = Field(description="never | running | ok | failed | interrupted")
    started_at: datetime | None
    finished_at: datetime | None
    last_success_at: datetime | None
    last_full_sync_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    pages: int
    items_seen: int
    items_skipped: int
    items_total: int | None
    skip_reasons: dict[str, int]
    warnings: list[str] = Field(
        default_factory=list,
        description="What the last sync could not read without failing (an auxiliary look-up: brand or category "
        "names); the fields it fills are empty meanwhile.",
    )
    syncs_ok: int
    syncs_failed: int


class BreakerOut(BaseModel):
    """The vendor's circuit breaker, so "why does this vendor answer 503" is visible."""

    state: str = Field(description="closed | open | half_open")
    consecutive_failures: int
    opened_at: datetime | None
    retry_at: datetime | None = Field(description="When an open breaker lets the next probe through.")

    @classmethod
    def of(cls, snapshot: BreakerSnapshot) -> BreakerOut:
        return cls(
            state=snapshot.state.value,
            consecutive_failures=snapshot.consecutive_failures,
            opened_at=snapshot.opened_at,
            retry_at=snapshot.retry_at,
        )


class VendorOut(BaseModel):
    """A vendor as the API shows it: credentials are never returned, only whether they are set."""

    id: str
    name: str
    kind: VendorKind
    base_url: str
    currency: str
    refresh_interval_s: int
    enabled: bool
    has_credentials: bool
    mapping: dict[str, Any] | None = Field(None, description="Kind `generic` only: where things are in its JSON.")
    offers: int | None = None
    products: int | None = None
    sync: SyncOut | None = None
    breaker: BreakerOut | None = None

    @classmethod
    def of(
        cls, vendor: Vendor, status: VendorSyncStatus | None = None, breaker: BreakerSnapshot | None = None
    ) -> VendorOut:
        out = cls(
            id=vendor.id,
            name=vendor.name,
            kind=vendor.kind,
            base_url=without_userinfo(vendor.base_url),
            currency=vendor.currency,
            refresh_interval_s=vendor.refresh_interval_s,
            enabled=vendor.enabled,
            has_credentials=bool(vendor.credentials),
            mapping=None if vendor.mapping is None else dict(vendor.mapping),
        )
        if status is not None:
            out.offers = status.offers
            out.products = status.products
            out.sync = SyncOut(
                state=status.state,
                started_at=status.started_at,
                finished_at=status.finished_at,
                last_success_at=status.last_success_at,
                last_full_sync_at=status.last_full_sync_at,
                last_error=status.last_error,
                last_error_at=status.last_error_at,
                pages=status.progress.pages,
                items_seen=status.progress.items_seen,
                items_skipped=status.progress.items_skipped,
                items_total=status.progress.items_total,
                skip_reasons={
                    k: v for k, v in status.progress.skip_reasons.items() if not k.startswith(WARNING_PREFIX)
                },
                warnings=sorted(
                    k[len(WARNING_PREFIX) :] for k in status.progress.skip_reasons if k.startswith(WARNING_PREFIX)
                ),
                syncs_ok=status.syncs_ok,
                syncs_failed=status.syncs_failed,
            )
        if breaker is not None:
            out.breaker = BreakerOut.of(breaker)
        return out


class VendorList(BaseModel):
    items: list[VendorOut]
