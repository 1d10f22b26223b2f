"""Analytics from the PostgreSQL long-term store: price history per product, per-vendor health.

Business data, so admin-only (header `X-API-Key`) like the other admin routes. 503 in the one error shape when
DATABASE_URL is not set or PostgreSQL does not answer; the catalog itself keeps serving from SQLite either way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.analytics.schemas import ProductPriceHistory, VendorAnalyticsList
from app.analytics.service import AnalyticsService
from app.api.deps import AdminDep, ContainerDep
from app.api.errors import errors
from app.bootstrap import Container
from app.errors import ServiceUnavailable

router = APIRouter(prefix="/analytics", tags=["analytics"], dependencies=[AdminDep])


def analytics_of(container: Container) -> AnalyticsService:
    """Called in the handler, not as a dependency: an invalid query stays a 422 without DATABASE_URL too."""
    if container.replication is None:
        raise ServiceUnavailable(
            "analytics need the PostgreSQL long-term store: DATABASE_URL is not set", retry_after=60
        )
    return container.replication.analytics


@router.get(
    "/products/{product_id}/prices",
    operation_id="getProductPriceHistory",
    responses=errors(401, 403, 404, 422, 503, s503="`DATABASE_URL` is not set, or PostgreSQL does not answer."),
)
async def product_prices(
    container: ContainerDep,
    product_id: str,
    since: Annotated[datetime | None, Query(alias="from", description="Changes at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="Changes at or before (ISO 8601).")] = None,
) -> ProductPriceHistory:
    """Every price or availability change of each of the product's offers, oldest first (times without an offset
    are UTC). 404 if the long-term store never saw the product."""
    return await analytics_of(container).product_prices(product_id, since, until)


@router.get(
    "/vendors",
    operation_id="listVendorAnalytics",
    responses=errors(401, 403, 503, s503="`DATABASE_URL` is not set, or PostgreSQL does not answer."),
)
async def vendors(container: ContainerDep) -> VendorAnalyticsList:
    """Per vendor: products, offers, in-stock share, data freshness (last successful sync), failed syncs."""
    return await analytics_of(container).vendors()
