"""Fetch and normalise: the functions both runtimes run unchanged.

The embedded workers call them and write the result to SQLite; the Flink job of the distributed runtime (issue 4)
is to call the very same functions and publish the result to the changelog. They take a ``VendorSource`` (HTTP and the
platform mapping live there) and return plain outcomes; they never touch a store.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from app.domain.lanes import interactive_work
from app.domain.models import Offer, Page
from app.domain.queries import WARNING_PREFIX
from app.domain.requests import FetchRequest, RequestStatus
from app.errors import CatalogError, VendorError, VendorNotFound
from app.ingest.breaker import CircuitBreaker, Verdict
from app.sources.port import VendorSource

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProductOutcome:
    """The result of a product request: its offers, or why there are none."""

    request_id: str
    vendor_id: str
    vendor_product_id: str
    status: RequestStatus
    offers: tuple[Offer, ...] = ()
    error: str | None = None
    error_code: str | None = None
    #: The vendor itself failed (as opposed to not having the item): what a circuit breaker counts.
    vendor_failure: bool = False

    @property
    def verdict(self) -> Verdict:
        """What the outcome tells the vendor's breaker: a vendor 404 is neutral (see ``app.ingest.breaker``)."""
        if self.vendor_failure:
            return Verdict.FAILURE
        if self.error_code == VendorNotFound.code:
            return Verdict.NEUTRAL
        return Verdict.SUCCESS

    def offer_for_request(self) -> Offer | None:
        """The offer the client asked for: the exact id, else the first variant of that parent."""
        for offer in self.offers:
            if offer.vendor_product_id == self.vendor_product_id:
                return offer
        return self.offers[0] if self.offers else None


@dataclass(frozen=True, slots=True)
class PageOutcome:
    page: Page
    skip_reasons: dict[str, int] = field(default_factory=dict)


async def fetch_product(source: VendorSource, request: FetchRequest) -> ProductOutcome:
    """One product from its vendor. Vendor errors become a failed outcome; they never escape as exceptions."""
    vpid = request.vendor_product_id or ""
    try:
        offers = await source.fetch_product(vpid)
    except VendorNotFound as exc:
        return ProductOutcome(
            request.id,
            request.vendor_id,
            vpid,
            RequestStatus.NOT_FOUND,
            error=exc.message,
            error_code=exc.code,
        )
    except CatalogError as exc:
        log.warning("vendor %s: product %s failed: %s", request.vendor_id, vpid, exc.message)
        return ProductOutcome(
            request.id,
            request.vendor_id,
            vpid,
            RequestStatus.FAILED,
            error=exc.message,
            error_code=exc.code,
            vendor_failure=isinstance(exc, VendorError),
        )
    if not offers:
        return ProductOutcome(
            request.id,
            request.vendor_id,
            vpid,
            RequestStatus.NOT_FOUND,
            error="the vendor returned no usable offer for this product",
            error_code="vendor_item_unusable",
        )
    return ProductOutcome(request.id, request.vendor_id, vpid, RequestStatus.DONE, offers=tuple(offers))


async def guarded_fetch_product(source: VendorSource, request: FetchRequest, breaker: CircuitBreaker) -> ProductOutcome:
    """``fetch_product`` behind the vendor's breaker, the one rule of both runtimes (embedded workers, Flink job):
    an open breaker answers at once with a failed outcome (``vendor_unavailable``); otherwise the outcome's verdict is
    recorded (``ProductOutcome.verdict``)."""
    if not breaker.try_acquire():
        refusal = breaker.refusal()
        return ProductOutcome(
            request.id,
            request.vendor_id,
            request.vendor_product_id or "",
            RequestStatus.FAILED,
            error=refusal.message,
            error_code=refusal.code,
        )
    try:
        outcome = await fetch_product(source, request)
    except BaseException:
        breaker.release()
        raise
    breaker.record(outcome.verdict)
    return outcome


async def fetch_catalog_page(source: VendorSource, cursor: str | None, *, since: datetime | None = None) -> PageOutcome:
    """One page of a vendor's catalog; a page-level failure raises (the caller retries or fails the sync). A page
    is bulk work: it waits (briefly) while a shopper's miss runs in this process (``interactive_work``)."""
    await interactive_work.step_aside_async()
    page = await source.fetch_page(cursor, since=since if source.supports_changes_since else None)
    reasons = Counter(_reason_class(s.reason) for s in page.skipped)  # each was logged by the source
    reasons.update(f"{WARNING_PREFIX}{w}" for w in page.warnings)  # counted with the reasons, shown apart
    return PageOutcome(page=page, skip_reasons=dict(reasons))


def _reason_class(reason: str) -> str:
    """Group free-text skip reasons into countable classes ("price: 'N/A' is not a price" -> "price")."""
    head = reason.split(":", 1)[0].strip().lower()
    return head[:60] or "unknown"
