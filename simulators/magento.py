"""Magento 2 REST (``/rest/V1/products``): an Adobe Commerce / Magento Open Source store, as a client sees it.

Mirrors ``Magento\\Catalog\\Api\\ProductRepositoryInterface::getList``: ``{"items", "search_criteria",
"total_count"}``, ``searchCriteria[pageSize]``/``[currentPage]`` (no page size means every item, and a page past
the end is the last page again, as Magento's collection clamps it), filter groups on ``updated_at``. Products
are keyed by SKU (``GET /V1/products/{sku}``), attributes are EAV ``custom_attributes``, images are paths under
``/media/catalog/product``, stock is ``extension_attributes.stock_item``, dates are UTC "YYYY-MM-DD HH:MM:SS".
The manufacturer is an option id; its labels are at ``/V1/products/attributes/manufacturer/options`` and the
category names in the ``/V1/categories`` tree. Errors are ``{"message", "parameters"?}`` bodies.
"""

from __future__ import annotations

import html
import math
import operator
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from simulators.base import Simulator
from simulators.common import cents, dumps, humanize, json_response, raw_json_response, unit, valid_gtin13
from simulators.config import USD_RATES, SimConfig

NOT_FOUND = "The product that was requested doesn't exist. Verify the product and try again."
_CONDITIONS: dict[str, Callable[[datetime, datetime], bool]] = {
    "eq": operator.eq,
    "gt": operator.gt,
    "gteq": operator.ge,
    "lt": operator.lt,
    "lteq": operator.le,
}
_FILTER_KEY = re.compile(r"^searchCriteria\[filter_groups\]\[(\d+)\]\[filters\]\[(\d+)\]\[(\w+)\]$")

_SALT_DISABLED = 0x3A60
_SALT_EAN = 0x3A61
_SALT_SPECIAL = 0x3A62
_SALT_MANAGE = 0x3A63
_SALT_BACKORDERS = 0x3A64


def _message(message: str, status: int, **parameters: str) -> Response:
    body: dict[str, Any] = {"message": message}
    if parameters:
        body["parameters"] = parameters
    return json_response(body, status_code=status)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class MagentoSimulator(Simulator):
    carried_fraction = 0.70

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        base = self.state.catalog
        self._category_ids = {c: 3 + i for i, c in enumerate(sorted({b.category for b in base}))}
        self._brand_ids = {b: 200 + i for i, b in enumerate(sorted({b.brand for b in base if b.brand}))}
        self._by_sku = {item.sku: pos for pos, item in enumerate(base)}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/rest/V1/products", self.endpoint(self.list_products), methods=["GET"]),
            Route(
                "/rest/V1/products/attributes/manufacturer/options",
                self.endpoint(self.manufacturer_options),
                methods=["GET"],
            ),
            Route("/rest/V1/products/{sku:path}", self.endpoint(self.get_product), methods=["GET"]),
            Route("/rest/V1/categories", self.endpoint(self.category_tree), methods=["GET"]),
        ]

    def public_id(self, pos: int) -> int:
        return pos + 1

    def sku(self, pos: int) -> str:
        return self.state.catalog[pos].sku

    def enabled(self, pos: int) -> bool:
        return unit(self.config.seed, pos + 1, _SALT_DISABLED) >= 0.04

    # -- rendering ----------------------------------------------------------------------------------------

    def render(self, pos: int) -> dict[str, Any]:
        state = self.state
        config = state.config
        item = state.catalog[pos]
        seed, iid = config.seed, item.id
        price = cents(state.price(pos) * USD_RATES[config.currency])
        stock = state.stock(pos)
        manage = unit(seed, iid, _SALT_MANAGE) < 0.9
        backorders = 1 if unit(seed, iid, _SALT_BACKORDERS) < 0.15 else 0
        attrs: list[dict[str, Any]] = [
            {"attribute_code": "description", "value": f"<p>{html.escape(item.description, quote=False)}</p>"},
            {"attribute_code": "short_description", "value": ""},
            {"attribute_code": "url_key", "value": item.slug},
            {"attribute_code": "meta_title", "value": item.title},
            {"attribute_code": "category_ids", "value": [str(self._category_ids[item.category])]},
            {"attribute_code": "options_container", "value": "container2"},
            {"attribute_code": "required_options", "value": "0"},
            {"attribute_code": "has_options", "value": "0"},
            {"attribute_code": "tax_class_id", "value": "2"},
        ]
        if item.brand:
            attrs.append({"attribute_code": "manufacturer", "value": str(self._brand_ids[item.brand])})
        if unit(seed, iid, _SALT_EAN) < 0.6:
            attrs.append({"attribute_code": "ean", "value": valid_gtin13(item.barcode)})
        if unit(seed, iid, _SALT_SPECIAL) < 0.15 and item.discount_percentage > 0:
            special = cents(price * (1 - Decimal(str(item.discount_percentage)) / 100))
            attrs.append({"attribute_code": "special_price", "value": f"{special:.6f}"})
            attrs.append({"attribute_code": "special_from_date", "value": _stamp(item.created_at)})
        product: dict[str, Any] = {
            "id": self.public_id(pos),
            "sku": item.sku,
            "name": item.title,
            "attribute_set_id": 4,
            "price": float(price),
            "status": 1 if self.enabled(pos) else 2,
            "visibility": 4,
            "type_id": "simple",
            "created_at": _stamp(item.created_at),
            "updated_at": _stamp(state.updated_at(pos)),
            "weight": float(item.weight),
            "extension_attributes": {
                "website_ids": [1],
                "category_links": [{"position": 0, "category_id": str(self._category_ids[item.category])}],
                "stock_item": {
                    "item_id": self.public_id(pos),
                    "product_id": self.public_id(pos),
                    "stock_id": 1,
                    "qty": stock if manage else 0,
                    "is_in_stock": not manage or stock > 0 or backorders > 0,
                    "is_qty_decimal": False,
                    "manage_stock": manage,
                    "use_config_manage_stock": manage,
                    "backorders": backorders,
                    "use_config_backorders": backorders == 0,
                    "min_sale_qty": 1,
                    "max_sale_qty": 10000,
                    "low_stock_date": None,
                    "stock_status_changed_auto": 0,
                },
            },
            "product_links": [],
            "options": [],
            "media_gallery_entries": [
                {
                    "id": pos * 10 + k + 1,
                    "media_type": "image",
                    "label": None,
                    "position": k + 1,
                    "disabled": False,
                    "types": ["image", "small_image", "thumbnail"] if k == 0 else [],
                    "file": f"/{item.slug[0]}/{item.slug[1:2] or '_'}/{item.slug}-{k + 1}.{src.rsplit('.', 1)[-1]}",
                }
                for k, src in enumerate(item.images)
            ],
            "tier_prices": [],
            "custom_attributes": attrs,
        }
        bad = state.bad_field(pos)
        if bad == "price":
            product["price"] = None
        elif bad == "title":
            del product["name"]
        return product

    # -- endpoints ----------------------------------------------------------------------------------------

    async def list_products(self, request: Request) -> Response:
        query = request.query_params
        numbers: dict[str, int | None] = {}
        for name in ("pageSize", "currentPage"):
            raw = query.get(f"searchCriteria[{name}]")
            if raw is not None and not raw.isdigit():
                return _message('"%fieldName" has an invalid value.', 400, fieldName=name)
            numbers[name] = int(raw) if raw is not None else None
        filters: dict[tuple[str, str], dict[str, str]] = {}
        for key, value in query.multi_items():
            match = _FILTER_KEY.match(key)
            if match:
                filters.setdefault((match[1], match[2]), {})[match[3]] = value
        matching = self.state.carried
        echo_groups: list[dict[str, Any]] = []
        for spec in filters.values():
            field, value, condition = spec.get("field"), spec.get("value", ""), spec.get("condition_type", "eq")
            if field != "updated_at":
                return _message('"%fieldName" cannot be used in this filter.', 400, fieldName=str(field))
            compare = _CONDITIONS.get(condition)
            try:
                moment = datetime.fromisoformat(value.strip()).replace(tzinfo=UTC)
            except ValueError:
                return _message("Invalid date %1", 400, **{"1": value})
            if compare is None:
                return _message('Invalid condition type "%1".', 400, **{"1": condition})
            if condition in ("gt", "gteq") and matching is self.state.carried:
                matching = self.state.updated_since(moment, strict=condition == "gt")  # cached between pages
            else:
                matching = [p for p in matching if compare(self.state.updated_at(p), moment)]
            echo_groups.append({"filters": [{"field": field, "value": value, "condition_type": condition}]})
        total = len(matching)
        page_size = numbers["pageSize"]
        current = numbers["currentPage"] or 1
        criteria: dict[str, Any] = {"filter_groups": echo_groups}
        if page_size:
            # Magento clamps a page past the end to the last page rather than answering an empty one.
            last = max(1, math.ceil(total / page_size))
            start = (min(current, last) - 1) * page_size
            positions = matching[start : start + page_size]
            criteria.update(page_size=page_size, current_page=current)
        else:
            positions = matching
        body = b'{"items":[' + b",".join(self.items_json(positions)) + b"],"
        tail = dumps({"search_criteria": criteria, "total_count": total})
        return raw_json_response(body + tail[1:])

    async def get_product(self, request: Request) -> Response:
        pos = self._by_sku.get(request.path_params["sku"])
        if pos is None or not self.state.carries(pos):
            return _message(NOT_FOUND, 404)
        return raw_json_response(self.item_json(pos))

    async def manufacturer_options(self, _request: Request) -> Response:
        options = [{"label": " ", "value": ""}]
        options += [{"label": name, "value": str(oid)} for name, oid in self._brand_ids.items()]
        return json_response(options)

    async def category_tree(self, _request: Request) -> Response:
        children = [
            {
                "id": cid,
                "parent_id": 2,
                "name": humanize(slug),
                "is_active": True,
                "position": i + 1,
                "level": 2,
                "product_count": 0,
                "children_data": [],
            }
            for i, (slug, cid) in enumerate(self._category_ids.items())
        ]
        default = {
            "id": 2,
            "parent_id": 1,
            "name": "Default Category",
            "is_active": True,
            "position": 1,
            "level": 1,
            "product_count": 0,
            "children_data": children,
        }
        root = {
            "id": 1,
            "parent_id": 0,
            "name": "Root Catalog",
            "is_active": None,
            "position": 0,
            "level": 0,
            "product_count": 0,
            "children_data": [default],
        }
        return json_response(root)

    # -- platform behaviour -------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() != "bearer " or auth[7:].strip() != self.config.magento_token:
            return _message(
                "The consumer isn't authorized to access %resources.", 401, resources="Magento_Catalog::products"
            )
        return None

    def server_error(self) -> Response:
        return _message("Internal Error. Details are available in Magento log file. Report ID: webapi-6634a1b2", 500)

    def rate_limited(self) -> Response:
        response = _message("Too many requests", 429)
        response.headers["Retry-After"] = str(math.ceil(self.config.retry_after_s))
        return response
