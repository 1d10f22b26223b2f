"""DummyJSON (dummyjson.com): the open test API whose data the catalog is made of.

Mirrors its products controller: ``limit`` defaults to 30 and ``0`` means everything, the response's
``limit`` is the number of items actually returned, ``select`` keeps ``id`` plus the named fields, and a miss is
``404 {"message": "Product with id '<id>' not found"}``. No auth, prices in USD as JSON numbers.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from simulators.base import Simulator
from simulators.common import cents, dumps, join_json_array, json_response, raw_json_response
from simulators.config import USD_RATES

_DEFAULT_LIMIT = 30


def _iso_ms(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _availability(stock: int) -> str:
    if stock <= 0:
        return "Out of Stock"
    return "Low Stock" if stock < 7 else "In Stock"


def _message(text: str, status_code: int, headers: dict[str, str] | None = None) -> Response:
    return json_response({"message": text}, status_code=status_code, headers=headers)


def _non_negative_int(value: str | None, default: int) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        return None
    if math.isnan(number) or number < 0:
        return None
    return int(number)


class DummyJsonSimulator(Simulator):
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/products", self.endpoint(self.list_products), methods=["GET"]),
            Route("/products/{product_id}", self.endpoint(self.get_product), methods=["GET"]),
        ]

    def public_id(self, pos: int) -> int:
        return pos + 1

    def render(self, pos: int) -> dict[str, Any]:
        state = self.state
        item = state.catalog[pos]
        product = dict(item.source)
        price = cents(state.price(pos) * USD_RATES[state.config.currency])
        stock = state.stock(pos)
        changed = pos in state.overrides
        if item.clone or changed:
            product["id"] = item.id
            product["title"] = item.title
            product["price"] = float(price)
            product["stock"] = stock
            product["sku"] = item.sku
            product["availabilityStatus"] = _availability(stock)
            meta = dict(product["meta"])
            meta["barcode"] = item.barcode
            if changed:
                meta["updatedAt"] = _iso_ms(state.updated_at(pos))
            product["meta"] = meta
        elif state.config.currency != "USD":
            product["price"] = float(price)
        bad = state.bad_field(pos)
        if bad == "price":
            product["price"] = "N/A"
        elif bad == "title":
            del product["title"]
        return product

    async def list_products(self, request: Request) -> Response:
        query = request.query_params
        limit = _non_negative_int(query.get("limit"), _DEFAULT_LIMIT)
        if limit is None:
            return _message("Invalid 'limit' - should be a positive number", 400)
        skip = _non_negative_int(query.get("skip"), 0)
        if skip is None:
            return _message("Invalid 'skip' - should be a positive number", 400)
        carried = self.state.carried
        end = len(carried) if limit == 0 else skip + limit
        positions = carried[skip:end]
        select = _select(query.get("select"))
        if select is None:
            products = join_json_array(self.items_json(positions))
        else:
            products = dumps([_subset(self.render(pos), select) for pos in positions])
        head = b'{"products":'
        tail = b',"total":%d,"skip":%d,"limit":%d}' % (len(carried), skip, len(positions))
        return raw_json_response(head + products + tail)

    async def get_product(self, request: Request) -> Response:
        raw_id = request.path_params["product_id"]
        pos = int(raw_id) - 1 if raw_id.isdigit() else -1
        if not self.state.carries(pos) or str(pos + 1) != raw_id:
            return _message(f"Product with id '{raw_id}' not found", 404)
        select = _select(request.query_params.get("select"))
        if select is None:
            return raw_json_response(self.item_json(pos))
        return json_response(_subset(self.render(pos), select))

    def server_error(self) -> Response:
        return _message("Internal Server Error", 500)

    def rate_limited(self) -> Response:
        retry_after = str(math.ceil(self.config.retry_after_s))
        return _message("request limit exceeded, please wait a few seconds", 429, {"Retry-After": retry_after})


def _select(value: str | None) -> list[str] | None:
    if not value:
        return None
    return ["id", *(field for field in value.split(",") if field)]


def _subset(product: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    # Like DummyJSON's getObjectSubset: absent fields are left out (JSON.stringify drops undefined).
    return {field: product[field] for field in fields if field in product}
