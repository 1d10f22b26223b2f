"""Analytics from the PostgreSQL long-term store: price history per product, per-vendor health.

Business data, so admin-only (header `X-API-Key`) like the other admin routes. 503 in the one error shape when
DATABASE_URL is not set or PostgreSQL does not answer; the catalog itself keeps serving from SQLite either way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.analytics.schemas import (
    OfferPriceHistory,
    PricePoint,
    ProductPriceHistory,
    VendorAnalytics,
    VendorAnalyticsList,
)
from app.api.deps import AdminDep, ContainerDep
from app.api.errors import ERROR_RESPONSES
from app.bootstrap import Container
from app.errors import InvalidInput, ServiceUnavailable
from app.replication.postgres.analytics import PostgresAnalytics

router = APIRouter(prefix="/analytics", tags=["analytics"], dependencies=[AdminDep])


def analytics_of(container: Container) -> PostgresAnalytics:
    if container.replication is None:
        raise ServiceUnavailable(
            "analytics need the PostgreSQL long-term store: DATABASE_URL is not set", retry_after=60
        )
    return container.replication.analytics


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@router.get("/products/{product_id}/prices", responses=ERROR_RESPONSES)
async def product_prices(
    container: ContainerDep,
    product_id: str,
    since: Annotated[datetime | None, Query(alias="from", description="Changes at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="Changes at or before (ISO 8601).")] = None,
) -> ProductPriceHistory:
    """Every price or availability change of each of the product's offers, oldest first (times without an offset
    are UTC). 404 if the long-term store never saw the product."""
    since, until = _aware(since), _aware(until)
    if since is not None and until is not None and since > until:
        raise InvalidInput(
            "`from` must not be after `to`", details={"from": since.isoformat(), "to": until.isoformat()}
        )
    rows = await analytics_of(container).price_history(product_id, since, until)
    offers: dict[tuple[str, str], OfferPriceHistory] = {}
    for r in rows:
        key = (r["vendor_id"], r["vendor_product_id"])
        offer = offers.get(key)
        if offer is None:
            offer = offers[key] = OfferPriceHistory(
                vendor_id=key[0], vendor_product_id=key[1], current=r["current"], points=[]
            )
        offer.points.append(
            PricePoint(at=r["changed_at"], price=r["price"], currency=r["currency"], availability=r["availability"])
        )
    return ProductPriceHistory(product_id=product_id, offers=list(offers.values()))


@router.get("/vendors", responses=ERROR_RESPONSES)
async def vendors(container: ContainerDep) -> VendorAnalyticsList:
    """Per vendor: products, offers, in-stock share, data freshness (last successful sync), failed syncs."""
    now = datetime.now(UTC)
    items = []
    for r in await analytics_of(container).vendors():
        offers = int(r["offers"])
        last_success = r["last_success_at"]
        items.append(
            VendorAnalytics(
                vendor_id=r["vendor_id"],
                name=r["name"],
                kind=r["kind"],
                enabled=r["enabled"],
                products=int(r["products"]),
                offers=offers,
                in_stock_share=round(int(r["in_stock_offers"]) / offers, 4) if offers else None,
                state=r["state"],
                last_success_at=last_success,
                freshness_s=round((now - last_success).total_seconds(), 3) if last_success else None,
                last_change_at=r["last_change_at"],
                syncs_ok=int(r["syncs_ok"]),
                syncs_failed=int(r["syncs_failed"]),
                last_error=r["last_error"],
                last_error_at=r["last_error_at"],
            )
        )
    return VendorAnalyticsList(items=items)
