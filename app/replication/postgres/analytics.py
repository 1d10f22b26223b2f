"""Analytics read from PostgreSQL (the long-term store), never from the serving SQLite.

An ``AsyncConnectionPool`` opened without waiting: the API starts even while PostgreSQL is down, and each query then
fails fast with ``ServiceUnavailable`` (503) instead of hanging a request.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.errors import NotFound, ServiceUnavailable

log = logging.getLogger(__name__)


class PostgresAnalytics:
    def __init__(self, url: str, *, schema: str, max_size: int = 4, timeout_s: float = 3.0) -> None:
        self.schema = schema
        self._timeout_s = timeout_s
        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            configure=self._configure,
            kwargs={"connect_timeout": max(1, int(timeout_s))},
            name="analytics",
        )

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        await conn.execute("SET default_transaction_read_only = on")
        await conn.commit()

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def _query(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            async with (
                self._pool.connection(timeout=self._timeout_s) as conn,
                conn.cursor(row_factory=dict_row) as cur,
            ):
                await cur.execute(query.encode(), params)
                return await cur.fetchall()
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise ServiceUnavailable("the analytics database (PostgreSQL) is unavailable", retry_after=5) from exc
        except psycopg.errors.UndefinedTable as exc:
            raise ServiceUnavailable(
                "the analytics database has no catalog tables yet (nothing pushed; run `catalog db upgrade`)",
                retry_after=30,
            ) from exc

    async def price_history(
        self, product_id: str, since: datetime | None, until: datetime | None
    ) -> list[dict[str, Any]]:
        """Every recorded price/availability of the product's offers, oldest first; NotFound if never seen."""
        rows = await self._query(
            """SELECT h.vendor_id, h.vendor_product_id, h.price, h.currency, h.availability, h.changed_at,
                      (o.vendor_id IS NOT NULL) AS current
               FROM price_history h
               LEFT JOIN offers o ON o.vendor_id = h.vendor_id AND o.vendor_product_id = h.vendor_product_id
                                 AND o.product_id = h.product_id
               WHERE h.product_id = %(pid)s
                 AND (%(since)s::timestamptz IS NULL OR h.changed_at >= %(since)s)
                 AND (%(until)s::timestamptz IS NULL OR h.changed_at <= %(until)s)
               ORDER BY h.vendor_id, h.vendor_product_id, h.changed_at, h.src_seq""",
            {"pid": product_id, "since": since, "until": until},
        )
        if not rows:
            # Every offer ever pushed has history (its first image is a change), so this index says it all.
            known = await self._query(
                "SELECT 1 FROM price_history WHERE product_id = %(pid)s LIMIT 1", {"pid": product_id}
            )
            if not known:
                raise NotFound(f"product {product_id!r} is not in the long-term store", details={"id": product_id})
        return rows

    async def vendors(self) -> list[dict[str, Any]]:
        return await self._query(
            """SELECT v.id AS vendor_id, v.name, v.kind, v.enabled::int::boolean AS enabled,
                      coalesce(o.offers, 0) AS offers, coalesce(o.products, 0) AS products,
                      coalesce(o.in_stock, 0) AS in_stock_offers,
                      s.state, s.last_success_at::timestamptz AS last_success_at,
                      s.last_error, s.last_error_at::timestamptz AS last_error_at,
                      coalesce(s.syncs_ok, 0) AS syncs_ok, coalesce(s.syncs_failed, 0) AS syncs_failed,
                      o.last_change_at
               FROM vendors v
               LEFT JOIN (SELECT vendor_id, count(*) AS offers, count(DISTINCT product_id) AS products,
                                 count(*) FILTER (WHERE availability = 'in_stock') AS in_stock,
                                 max(changed_at) AS last_change_at
                          FROM offers GROUP BY vendor_id) o ON o.vendor_id = v.id
               LEFT JOIN vendor_sync s ON s.vendor_id = v.id
               ORDER BY v.id""",
            {},
        )
