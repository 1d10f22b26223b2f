"""Query parameters of the product reads, and the OpenAPI parameters that describe them exactly.

Generated clients are only as good as the schema, and a fuzzer (schemathesis) holds the API to it both ways:
everything the schema allows must be accepted, everything else refused. So each parameter here is validated
by the very rule its schema states: decimals are strings matching one pattern (not ``anyOf(number, string)``,
which generators turn into wrapper classes), currencies are an enum of the codes the rates file lists, a
field list is an enum of field names, and ``min_price`` above ``max_price`` is an empty page, not an error.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError, field_validator

from app.domain.cursor import TOKEN_MAX_LENGTH, TOKEN_PATTERN
from app.domain.queries import ProductQuery, Sort

#: An exact decimal amount, as a string: at most 12 integer and 64 fractional digits (below 10^12).
DECIMAL_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,64})?$"

#: The fields of a list item, and those a detail adds (``fields=``).
SUMMARY_FIELDS = (
    "id",
    "name",
    "brand",
    "category",
    "gtin",
    "image",
    "thumbnail",
    "placeholder",
    "currency",
    "min_price",
    "max_price",
    "prices",
    "in_stock",
    "offer_count",
    "vendors",
    "updated_at",
    "display",
)
DETAIL_FIELDS = (*SUMMARY_FIELDS, "description", "images", "thumbnails", "offers")

#: Facet groups ``facets=`` may ask for (``app.search.Facets``).
FACET_NAMES = ("brand", "category", "vendor", "price", "in_stock")

#: Marks a parameter whose enum is the rates file's currencies, filled in when the schema is built.
CURRENCY_ENUM = "x-catalog-currencies"


_INT = re.compile(r"^-?(?:0|[1-9][0-9]{0,17})$")


def exact_bool(value: object) -> object:
    """Only what the schema's ``boolean`` serialises to in a query (pydantic alone also takes yes/on/1/t...)."""
    if isinstance(value, str):
        if value in ("true", "false"):
            return value == "true"
        raise ValueError("must be true or false")
    return value


def exact_int(value: object) -> object:
    """Only a canonical integer (pydantic alone also takes " 5", "+5", "5_0" and "5.0")."""
    if isinstance(value, str):
        if _INT.match(value):
            return int(value)
        raise ValueError("must be an integer")
    return value


def field_list_pattern(names: tuple[str, ...]) -> str:
    one = "(?:" + "|".join(names) + ")"
    return f"^{one}(?:,{one})*$"


SUMMARY_FIELDS_PATTERN = field_list_pattern(SUMMARY_FIELDS)
DETAIL_FIELDS_PATTERN = field_list_pattern(DETAIL_FIELDS)


def fields_of(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(dict.fromkeys(value.split(",")))


class ProductFilters(BaseModel):
    """Query parameters of product lists, validated in one pydantic call (see ``query_model``)."""

    q: str | None = Field(None, max_length=200, description="Full-text search over name, description, brand.")
    brand: str | None = Field(None, max_length=100, description="Brand, matched case- and accent-insensitively.")
    category: str | None = Field(None, max_length=100, description="Category, matched like `brand`.")
    min_price: str | None = Field(
        None,
        pattern=DECIMAL_PATTERN,
        description="Lowest offer price at least this (an exact decimal): in `currency` when given, else in the "
        "rates' base currency (EUR by default); compared across all offers' currencies. Above `max_price`, the "
        "page is empty.",
        examples=["19.99"],
    )
    max_price: str | None = Field(
        None, pattern=DECIMAL_PATTERN, description="Like `min_price`, an upper bound.", examples=["250"]
    )
    currency: str | None = Field(
        None,
        description="ISO 4217 code the rates file lists: adds prices converted to it (`display`), and "
        "`min_price`/`max_price` are in it.",
        json_schema_extra={CURRENCY_ENUM: True},
    )
    in_stock: bool | None = Field(None, description="Only products some offer has in stock (or none has).")
    sort: Sort = Field(
        Sort.RELEVANCE,
        description="`relevance` needs `q`; without it, `updated` is used. `price`/`-price` compare each "
        "product's lowest offer price converted to the rates' base currency.",
    )
    limit: int = Field(20, ge=1, le=100, description="Items per page.")
    cursor: str | None = Field(
        None,
        max_length=TOKEN_MAX_LENGTH,
        pattern=TOKEN_PATTERN,
        description="`next_cursor` of the previous page, as it came (signed: anything else answers 400).",
    )
    fields: str | None = Field(
        None,
        pattern=SUMMARY_FIELDS_PATTERN,
        description="Comma-separated fields each item keeps (sparse fields), e.g. "
        "`id,name,min_price,thumbnail,placeholder`; "
        "default all.",
        json_schema_extra={"x-catalog-list": list(SUMMARY_FIELDS)},
    )

    @field_validator("in_stock", mode="before")
    @classmethod
    def _exact_bool(cls, value: object) -> object:
        return exact_bool(value)

    @field_validator("limit", mode="before")
    @classmethod
    def _exact_int(cls, value: object) -> object:
        return exact_int(value)

    def to_query(self, vendor: str | None, cursor: str | None) -> ProductQuery | None:
        """The store query (``cursor`` already verified), or None when the bounds leave nothing to find."""
        low = Decimal(self.min_price) if self.min_price is not None else None
        high = Decimal(self.max_price) if self.max_price is not None else None
        if low is not None and high is not None and low > high:
            return None
        return ProductQuery(
            q=self.q,
            vendor=vendor,
            brand=self.brand,
            category=self.category,
            min_price=low,
            max_price=high,
            price_currency=self.currency,
            in_stock=self.in_stock,
            sort=self.sort,
            limit=self.limit,
            cursor=cursor,
        )


class CatalogFilters(ProductFilters):
    vendor: str | None = Field(None, max_length=63, description="Only products this vendor offers.")
    facets: str | None = Field(
        None,
        pattern=field_list_pattern(FACET_NAMES),
        description="Facet groups to count, comma-separated (`facets=brand,price,in_stock`): the page gets "
        "`facets`, counts of the products all these filters (and `q`) return, by each value of the group.",
        json_schema_extra={"x-catalog-list": list(FACET_NAMES)},
    )
    facet_size: int = Field(20, ge=1, le=100, description="Values each of brand, category, vendor keeps at most.")

    @field_validator("facet_size", mode="before")
    @classmethod
    def _exact_facet_size(cls, value: object) -> object:
        return exact_int(value)

    def facet_request(self) -> tuple[tuple[str, ...], int] | None:
        return (fields_of(self.facets) or (), self.facet_size) if self.facets is not None else None


M = TypeVar("M", bound=BaseModel)


def parameter_schema(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One query parameter's schema: the model's definitions inlined, an optional value's ``null`` branch
    dropped (a missing parameter is how a query says "none"), list parameters as comma-separated arrays."""
    prop = dict(prop)
    ref = prop.pop("$ref", "")
    if ref.startswith("#/$defs/"):
        prop = {**defs[ref.removeprefix("#/$defs/")], **prop}
    branches = [b for b in prop.pop("anyOf", ()) if b.get("type") != "null"]
    if len(branches) == 1:
        prop = {**branches[0], **prop}
    if prop.get("default", ...) is None:
        del prop["default"]
    prop.pop("title", None)
    prop.pop("description", None)
    names = prop.pop("x-catalog-list", None)
    if names is not None:
        return {"type": "array", "items": {"type": "string", "enum": names}, "minItems": 1}
    return prop


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
    parameters = []
    for name, prop in schema["properties"].items():
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": False,
            "schema": parameter_schema(prop, defs),
            "description": prop.get("description", ""),
        }
        if parameter["schema"].get("type") == "array":
            parameter |= {"style": "form", "explode": False}
        parameters.append(parameter)
    return parse, {"parameters": parameters}


parse_catalog_filters, CATALOG_FILTER_PARAMS = query_model(CatalogFilters)
parse_product_filters, PRODUCT_FILTER_PARAMS = query_model(ProductFilters)
