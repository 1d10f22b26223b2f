"""The analytics answers over the PostgreSQL long-term store: the rules of each answer are here (times without an
offset are UTC, a range must not be inverted, history grouped per offer, in-stock share and freshness), the
queries in the adapter (``PostgresAnalytics``)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.analytics.schemas import (
    OfferPriceHistory,
    PricePoint,
    ProductPriceHistory,
    VendorAnalytics,
    VendorAnalyticsList,
)
from app.errors import InvalidInput
from app.replication.postgres.analytics import PostgresAnalytics


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class AnalyticsService:
    def __init__(self, db: PostgresAnalytics) -> None:
        self.db = db

    async def product_prices(
        self, product_id: str, since: datetime | None, until: datetime | None
    ) -> ProductPriceHistory:
        """Every price or availability change of each of the product's offers, oldest first; NotFound if the
        long-term store never saw the product."""
        since, until = _aware(since), _aware(until)
        if since is not None and until is not None and since > until:
            raise InvalidInput(
                "`from` must not be after `to`", details={"from": since.isoformat(), "to": until.isoformat()}
            )
        offers: dict[tuple[str, str], OfferPriceHistory] = {}
        for r in await self.db.price_history(product_id, since, until):
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

    async def vendors(self) -> VendorAnalyticsList:
        now = datetime.now(UTC)
        items = []
        for r in await self.db.vendors():
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
