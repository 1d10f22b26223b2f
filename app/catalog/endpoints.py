"""Catalog reads: the unified products the mobile app browses and searches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from app.api.deps import CatalogDep
from app.api.errors import ERROR_RESPONSES
from app.api.responses import json_with_etag
from app.catalog.schemas import ProductDetail, ProductList
from app.catalog.service import Served
from app.domain import documents
from app.domain.cursor import InvalidCursor
from app.domain.money import Rates
from app.domain.normalize import parse_currency
from app.domain.queries import ProductQuery, Sort
from app.errors import InvalidInput

router = APIRouter(tags=["products"])

NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (`If-None-Match` matched the `ETag`)."}
}


class ProductFilters(BaseModel):
    """Query parameters of product lists, validated in one pydantic call (see ``query_model``)."""

    q: str | None = Field(None, max_length=200, description="Full-text search over name, description, brand.")
    brand: str | None = Field(None, max_length=100, description="Brand, matched case- and accent-insensitively.")
    category: str | None = Field(None, max_length=100)
    min_price: Decimal | None = Field(
        None,
        ge=0,
        le=10**12,
        description="Lowest offer price at least this: in `currency` when given, else in the rates' base currency "
        "(EUR by default); compared across all offers' currencies.",
    )
    max_price: Decimal | None = Field(None, ge=0, le=10**12, description="Like `min_price`, an upper bound.")
    currency: str | None = Field(
        None,
        max_length=10,
        description="ISO 4217 code: adds prices converted to it (`display`), and `min_price`/`max_price` are in it.",
    )
    in_stock: bool | None = None
    sort: Sort = Field(
        Sort.RELEVANCE,
        description="`relevance` needs `q`; without it, `updated` is used. `price`/`-price` compare each "
        "product's lowest offer price converted to the rates' base currency.",
    )
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=500, description="`next_cursor` of the previous page.")

    def to_query(self, vendor: str | None) -> ProductQuery:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise InvalidInput("min_price is greater than max_price", details={"parameter": "min_price"})
        return ProductQuery(
            q=self.q,
            vendor=vendor,
            brand=self.brand,
            category=self.category,
            min_price=self.min_price,
            max_price=self.max_price,
            price_currency=self.currency.strip().upper() if self.currency is not None else None,
            in_stock=self.in_stock,
            sort=self.sort,
            limit=self.limit,
            cursor=self.cursor,
        )


class CatalogFilters(ProductFilters):
    vendor: str | None = Field(None, max_length=63, description="Only products this vendor offers.")


M = TypeVar("M", bound=BaseModel)


def query_model(model: type[M]) -> tuple[Callable[[Request], Awaitable[M]], dict[str, Any]]:
    """A dependency that validates the query string as ``model``, and the OpenAPI parameters describing it.

    FastAPI resolves declared query parameters one field at a time in Python: on a cached list page that was
    a third of the request's cost. Validating the whole query string in one pydantic call is far cheaper; the
    schema keeps documenting every parameter.
    """

    async def parse(request: Request) -> M:
        try:
            return model.model_validate(request.query_params)
        except ValidationError as exc:
            errors = [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(errors) from None

    schema = model.model_json_schema()
    defs = schema.get("$defs", {})

    def inline(prop: dict[str, Any]) -> dict[str, Any]:
        """Parameters stand alone in OpenAPI: replace references to the model's own definitions (enums)."""
        ref = prop.get("$ref", "")
        if ref.startswith("#/$defs/"):
            rest = {k: v for k, v in prop.items() if k != "$ref"}
            return {**defs[ref.removeprefix("#/$defs/")], **rest}
        return prop

    parameters = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": inline(prop),
            "description": prop.get("description", ""),
        }
        for name, prop in schema["properties"].items()
    ]
    return parse, {"parameters": parameters}


parse_catalog_filters, CATALOG_FILTER_PARAMS = query_model(CatalogFilters)
parse_product_filters, PRODUCT_FILTER_PARAMS = query_model(ProductFilters)


CurrencyParam = Annotated[
    str | None,
    Query(max_length=10, description="ISO 4217 code: adds prices converted to it (`display`, `display_price`)."),
]


def display_rates(catalog: CatalogDep, currency: str | None) -> tuple[Rates, str] | None:
    """The rates and validated code for ``?currency=``; checked before any lookup so a typo never costs a fetch."""
    if currency is None:
        return None
    try:
        code = parse_currency(currency)
    except ValueError:
        raise InvalidInput(
            f"currency {currency!r} is not an ISO 4217 code", details={"parameter": "currency"}
        ) from None
    rates = catalog.store.rates
    if rates is None or not rates.knows(code):
        raise InvalidInput(
            f"no exchange rate for {code}: the rates file does not list it",
            details={"parameter": "currency", "rates_date": rates.date.isoformat() if rates else None},
        )
    return rates, code


def _with_display(raw: bytes, rates: Rates, currency: str) -> bytes:
    """Converted prices next to the originals; only this path decodes the precomputed document."""
    doc = orjson.loads(raw)
    converted = [
        (
            rates.convert(Decimal(p["min"]), p["currency"], currency),
            rates.convert(Decimal(p["max"]), p["currency"], currency),
        )
        for p in doc["prices"]
        if rates.knows(p["currency"])
    ]
    doc["display"] = {
        "currency": currency,
        "min_price": str(min(c[0] for c in converted)) if converted else None,
        "max_price": str(max(c[1] for c in converted)) if converted else None,
        "rates_date": rates.date.isoformat(),
    }
    for offer in doc.get("offers", ()):
        known = rates.knows(offer["currency"])
        offer["display_price"] = (
            str(rates.convert(Decimal(offer["price"]), offer["currency"], currency)) if known else None
        )
    return orjson.dumps(doc)


def _display_etag(etag: str, rates: Rates, currency: str) -> str:
    """Differs per currency and per rates date, so a cache never serves one currency's body for another."""
    return documents.etag_of(f"{etag}|{currency}|{rates.date.isoformat()}".encode())


def page_response(request: Request, catalog: CatalogDep, query: ProductQuery) -> Response:
    display = display_rates(catalog, query.price_currency)
    try:
        page = catalog.store.list_products(query)
    except InvalidCursor as exc:
        raise InvalidInput(str(exc), details={"parameter": "cursor"}) from None
    items, etag = page.items, page.etag
    if display is not None:
        items = [_with_display(item, *display) for item in items]
        etag = _display_etag(etag, *display)
    body = b"".join((b'{"items":[', b",".join(items), b'],"next_cursor":', orjson.dumps(page.next_cursor), b"}"))
    return json_with_etag(request, body, etag)


def served_response(request: Request, served: Served, display: tuple[Rates, str] | None = None) -> Response:
    headers = {"X-Data-Age": str(int(served.age_s))}
    if served.stale:
        headers["X-Data-Stale"] = "true"
    if display is not None:
        body = _with_display(served.product.doc, *display)
        return json_with_etag(request, body, _display_etag(served.product.etag, *display), headers)
    return json_with_etag(request, served.product.doc, served.product.etag, headers)


@router.get(
    "/products",
    response_model=ProductList,
    responses={**NOT_MODIFIED, **ERROR_RESPONSES},
    openapi_extra=CATALOG_FILTER_PARAMS,
)
async def list_products(
    request: Request, catalog: CatalogDep, filters: Annotated[CatalogFilters, Depends(parse_catalog_filters)]
) -> Response:
    """Browse and search the unified catalog, newest first by default; cursor-paginated."""
    return page_response(request, catalog, filters.to_query(filters.vendor))


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
async def get_product(
    request: Request, catalog: CatalogDep, product_id: str, currency: CurrencyParam = None
) -> Response:
    """One unified product with all its offers."""
    display = display_rates(catalog, currency)
    return served_response(request, catalog.product(product_id), display)
