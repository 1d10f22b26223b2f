"""Catalog reads: the unified products the mobile app browses and searches."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response

from app.api.deps import CatalogDep
from app.api.errors import ERROR_RESPONSES
from app.api.responses import json_with_etag
from app.api.schemas import ProductDetail, ProductList
from app.domain.cursor import InvalidCursor
from app.domain.queries import ProductQuery, Sort
from app.errors import InvalidInput
from app.services.catalog import Served

router = APIRouter(tags=["products"])

NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (`If-None-Match` matched the `ETag`)."}
}

Q = Annotated[str | None, Query(max_length=200, description="Full-text search over name, description, brand.")]
Brand = Annotated[str | None, Query(max_length=100, description="Brand, matched case- and accent-insensitively.")]
Category = Annotated[str | None, Query(max_length=100)]
Price = Annotated[Decimal | None, Query(ge=0, le=10**12, description="In the product's main currency.")]
InStock = Annotated[bool | None, Query()]
SortQ = Annotated[Sort, Query(description="`relevance` needs `q`; without it, `updated` is used.")]
Limit = Annotated[int, Query(ge=1, le=100)]
CursorQ = Annotated[str | None, Query(max_length=500, description="`next_cursor` of the previous page.")]


def product_query(
    q: str | None,
    vendor: str | None,
    brand: str | None,
    category: str | None,
    min_price: Decimal | None,
    max_price: Decimal | None,
    in_stock: bool | None,
    sort: Sort,
    limit: int,
    cursor: str | None,
) -> ProductQuery:
    if min_price is not None and max_price is not None and min_price > max_price:
        raise InvalidInput("min_price is greater than max_price", details={"parameter": "min_price"})
    return ProductQuery(
        q=q,
        vendor=vendor,
        brand=brand,
        category=category,
        min_price=min_price,
        max_price=max_price,
        in_stock=in_stock,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )


def page_response(request: Request, catalog: CatalogDep, query: ProductQuery) -> Response:
    try:
        page = catalog.store.list_products(query)
    except InvalidCursor as exc:
        raise InvalidInput(str(exc), details={"parameter": "cursor"}) from None
    body = b"".join((b'{"items":[', b",".join(page.items), b'],"next_cursor":', orjson.dumps(page.next_cursor), b"}"))
    return json_with_etag(request, body, page.etag)


def served_response(request: Request, served: Served) -> Response:
    headers = {"X-Data-Age": str(int(served.age_s))}
    if served.stale:
        headers["X-Data-Stale"] = "true"
    return json_with_etag(request, served.product.doc, served.product.etag, headers)


@router.get("/products", response_model=ProductList, responses={**NOT_MODIFIED, **ERROR_RESPONSES})
async def list_products(
    request: Request,
    catalog: CatalogDep,
    q: Q = None,
    vendor: Annotated[str | None, Query(max_length=63, description="Only products this vendor offers.")] = None,
    brand: Brand = None,
    category: Category = None,
    min_price: Price = None,
    max_price: Price = None,
    in_stock: InStock = None,
    sort: SortQ = Sort.RELEVANCE,
    limit: Limit = 20,
    cursor: CursorQ = None,
) -> Response:
    """Browse and search the unified catalog, newest first by default; cursor-paginated."""
    query = product_query(q, vendor, brand, category, min_price, max_price, in_stock, sort, limit, cursor)
    return page_response(request, catalog, query)


@router.get(
    "/products/{product_id}",
    response_model=ProductDetail,
    responses={
        **NOT_MODIFIED,
        **ERROR_RESPONSES,
        200: {
            "description": "The product. `X-Data-Age`: seconds since its oldest offer was fetched; "
            "`X-Data-Stale: true` when a refresh was requested."
        },
    },
)
async def get_product(request: Request, catalog: CatalogDep, product_id: str) -> Response:
    """One unified product with all its offers."""
    return served_response(request, catalog.product(product_id))
