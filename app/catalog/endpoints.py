"""Catalog reads: the unified products the mobile app browses and searches."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from app.api.deps import CatalogDep, TokensDep
from app.api.errors import errors
from app.catalog.params import (
    CATALOG_FILTER_PARAMS,
    CURRENCY_ENUM,
    DETAIL_FIELDS,
    DETAIL_FIELDS_PATTERN,
    CatalogFilters,
    fields_of,
    parse_catalog_filters,
)
from app.catalog.schemas import ProductBatch, ProductDetail, ProductList
from app.catalog.views import View, display_rates, page_response, served_response, verified_cursor
from app.errors import NotFound

router = APIRouter(tags=["products"])

NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (`If-None-Match` matched the `ETag`)."}
}

PRODUCT_ID = r"[A-Za-z0-9_-]{1,64}"
BATCH_MAX = 100

CurrencyParam = Annotated[
    str | None,
    Query(
        description="ISO 4217 code the rates file lists: adds prices converted to it (`display`, `display_price`).",
        json_schema_extra={CURRENCY_ENUM: True},
    ),
]
DetailFieldsParam = Annotated[
    str | None,
    Query(
        pattern=DETAIL_FIELDS_PATTERN,
        description="Fields the product keeps (sparse fields), comma-separated, e.g. `id,name,min_price,offers`; "
        "default all.",
        json_schema_extra={"x-catalog-list": list(DETAIL_FIELDS)},
    ),
]
IdsParam = Annotated[
    str,
    Query(
        pattern=f"^{PRODUCT_ID}(?:,{PRODUCT_ID}){{0,{BATCH_MAX - 1}}}$",
        description=f"Product ids, comma-separated (`ids=p_1,p_2`), at most {BATCH_MAX}; each answered once.",
        json_schema_extra={"x-catalog-ids": {"pattern": f"^{PRODUCT_ID}$", "maxItems": BATCH_MAX}},
    ),
]


@router.get(
    "/products",
    operation_id="listProducts",
    response_model=ProductList,
    responses={
        **NOT_MODIFIED,
        **errors(400, 422, 503, s503="`facets=` while the search index is being rebuilt."),
    },
    openapi_extra=CATALOG_FILTER_PARAMS,
)
async def list_products(
    request: Request,
    catalog: CatalogDep,
    tokens: TokensDep,
    filters: Annotated[CatalogFilters, Depends(parse_catalog_filters)],
) -> Response:
    """Browse and search the unified catalog, newest first by default; cursor-paginated."""
    view = View(display_rates(catalog, filters.currency), fields_of(filters.fields))
    query = filters.to_query(filters.vendor, verified_cursor(tokens, filters.cursor))
    return await page_response(request, catalog, tokens, query, view, filters.facet_request())


@router.get(
    "/products:batch",
    operation_id="batchGetProducts",
    response_model=ProductBatch,
    responses=errors(422),
)
async def batch_get_products(
    catalog: CatalogDep,
    ids: IdsParam,
    currency: CurrencyParam = None,
    fields: DetailFieldsParam = None,
) -> Response:
    """Several products in one call (a cart, a wishlist), in the order asked; ids with no product are listed
    in `missing`. Served from the local store only: a missing id is never fetched from a vendor."""
    wanted = list(dict.fromkeys(ids.split(",")))
    view = View(display_rates(catalog, currency), fields_of(fields))
    items: list[bytes] = []
    missing: list[str] = []
    found = await catalog.off_loop(lambda: [catalog.store.get_product(pid) for pid in wanted])
    for pid, stored in zip(wanted, found, strict=True):
        try:
            items.append(view.render(catalog.served(pid, stored).product.doc))
        except NotFound:
            missing.append(pid)
    body = b"".join((b'{"items":[', b",".join(items), b'],"missing":', orjson.dumps(missing), b"}"))
    return Response(content=body, media_type="application/json")


@router.get(
    "/products/{product_id}",
    operation_id="getProduct",
    response_model=ProductDetail,
    responses={
        **NOT_MODIFIED,
        **errors(404, 422),
        200: {
            "description": "The product. `X-Data-Age`: seconds since its oldest offer was fetched; "
            "`X-Data-Stale: true` when a refresh was requested."
        },
    },
)
async def get_product(
    request: Request,
    catalog: CatalogDep,
    product_id: str,
    currency: CurrencyParam = None,
    fields: DetailFieldsParam = None,
) -> Response:
    """One unified product with all its offers."""
    view = View(display_rates(catalog, currency), fields_of(fields))
    return served_response(request, await catalog.product_read(product_id), view)
