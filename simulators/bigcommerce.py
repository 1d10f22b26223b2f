"""BigCommerce v3 catalog (``/stores/{store_hash}/v3/catalog/...``): a BigCommerce store, as a client sees it.

Lists are ``{"data": [...], "meta": {"pagination": {...}}}`` with ``page``/``limit`` (default 50, at most 250),
single products ``{"data": {...}, "meta": {}}``; ``include=variants,images`` adds the sub-resources. Every
product has a base variant, and products with options have one variant per option value. Products name their
brand by ``brand_id`` and their categories by id only, so ``/brands`` and ``/categories`` are served as well.
``date_modified:min`` is inclusive. Errors are RFC 7807-ish ``{"status", "title", "type"}`` bodies, and the
token (``X-Auth-Token``) and the store hash in the path are both checked; dates are UTC with an offset.
"""

from __future__ import annotations

import html
import math
from datetime import UTC
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from simulators.base import Simulator
from simulators.common import (
    cents,
    dumps,
    humanize,
    iso_offset,
    json_response,
    parse_iso8601,
    pick,
    raw_json_response,
    slugify,
    unit,
    valid_gtin13,
)
from simulators.config import USD_RATES, SimConfig

DEFAULT_LIMIT = 50
MAX_LIMIT = 250
ERROR_TYPE = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"
_PREFIX = "/stores/{store_hash}/v3/catalog"

_ID_BASE = 111
_VARIANT_BASE = 100_000_000  # above any product id, so a variant id never resolves as a product
_SALT_OPTIONS = 0xB1C0
_SALT_GTIN = 0xB1C1
_SALT_BAD_UPC = 0xB1C2
_SALT_SALE = 0xB1C3
_SALT_TRACKING = 0xB1C4
_SALT_PREORDER = 0xB1C5
_SALT_DISABLED = 0xB1C6
_SALT_SOLD = 0xB1C7
_SIZES = (("S", "L"), ("Small", "Large"), ("250 ml", "500 ml"), ("Black", "White"))


def _error(status: int, title: str, **extra: Any) -> Response:
    return json_response({"status": status, "title": title, "type": ERROR_TYPE, **extra}, status_code=status)


def _not_found() -> Response:
    return _error(404, "The requested resource was not found.")


def _number(amount: Decimal) -> float:
    """BigCommerce sends prices as JSON numbers."""
    return float(cents(amount))


class BigCommerceSimulator(Simulator):
    carried_fraction = 0.65

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.cdn = f"https://cdn11.bigcommerce.com/s-{config.store_hash}"
        base = self.state.catalog
        self._category_ids = {c: 18 + i for i, c in enumerate(sorted({b.category for b in base}))}
        self._brand_ids = {b: 36 + i for i, b in enumerate(sorted({b.brand for b in base if b.brand}))}

    def routes(self) -> list[BaseRoute]:
        return [
            Route(f"{_PREFIX}/products", self.endpoint(self.list_products), methods=["GET"]),
            Route(f"{_PREFIX}/products/{{product_id}}", self.endpoint(self.get_product), methods=["GET"]),
            Route(f"{_PREFIX}/brands", self.endpoint(self.list_brands), methods=["GET"]),
            Route(f"{_PREFIX}/categories", self.endpoint(self.list_categories), methods=["GET"]),
        ]

    def public_id(self, pos: int) -> int:
        return _ID_BASE + pos

    def variant_id(self, pos: int, index: int) -> int:
        return _VARIANT_BASE + pos * 2 + index

    def has_options(self, pos: int) -> bool:
        """About a quarter of the products come in two options: two variants, and no base variant of their own."""
        return unit(self.config.seed, pos + 1, _SALT_OPTIONS) < 0.25

    def offer_count(self) -> int:
        return sum(2 if self.has_options(pos) else 1 for pos in self.state.carried)

    def _product_at(self, raw_id: str) -> int | None:
        pos = int(raw_id) - _ID_BASE
        return pos if self.state.carries(pos) else None

    # -- rendering ----------------------------------------------------------------------------------------

    def render(self, pos: int) -> dict[str, Any]:
        state = self.state
        config = state.config
        item = state.catalog[pos]
        seed, iid = config.seed, item.id
        pid = self.public_id(pos)
        currency = config.currency

        price = cents(state.price(pos) * USD_RATES[currency])
        sale = Decimal(0)
        if unit(seed, iid, _SALT_SALE) < 0.2 and item.discount_percentage > 0:
            sale = cents(price * (1 - Decimal(str(item.discount_percentage)) / 100))
        calculated = sale if sale > 0 else price

        stock = state.stock(pos)
        options = self.has_options(pos)
        tracking = "variant" if options else ("product" if unit(seed, iid, _SALT_TRACKING) < 0.85 else "none")
        availability = "preorder" if unit(seed, iid, _SALT_PREORDER) < 0.05 else "available"
        gtin = valid_gtin13(item.barcode) if unit(seed, iid, _SALT_GTIN) < 0.6 else ""
        # Some merchants type the printed barcode into `upc` as is; like the source data, it rarely checks out.
        upc = gtin or (item.barcode if unit(seed, iid, _SALT_BAD_UPC) < 0.3 else "")

        images = []
        for k, src in enumerate(item.images):
            image_id = pid * 10 + k
            file = f"{item.slug}-{k + 1}.{src.rsplit('.', 1)[-1]}"
            stencil = f"{self.cdn}/images/stencil/{{size}}/products/{pid}/{image_id}/{file}?c=2"
            images.append(
                {
                    "id": image_id,
                    "product_id": pid,
                    "is_thumbnail": k == 0,
                    "sort_order": k,
                    "description": "",
                    "image_file": f"a/{image_id % 1000:03d}/{file}",
                    "url_zoom": stencil.format(size="1280x1280"),
                    "url_standard": stencil.format(size="500x659"),
                    "url_thumbnail": stencil.format(size="220x290"),
                    "url_tiny": stencil.format(size="44x58"),
                    "date_modified": iso_offset(item.created_at, UTC),
                }
            )

        def variant(index: int, labels: tuple[str, ...] | None) -> dict[str, Any]:
            own_price: Decimal | None = None
            level = stock
            if labels is not None:
                own_price = None if index == 0 else cents(price * Decimal("1.2"))
                level = stock // 2 if index == 0 else stock - stock // 2
            vcalc = calculated if own_price is None else own_price
            vgtin = gtin if index == 0 or not gtin else valid_gtin13(f"{(int(item.barcode[:12]) + 1) % 10**12:012d}")
            return {
                "id": self.variant_id(pos, index),
                "product_id": pid,
                "sku": item.sku if labels is None else f"{item.sku}-{labels[index].upper().replace(' ', '')}",
                "sku_id": self.variant_id(pos, index) - _VARIANT_BASE + 1,
                "price": None if own_price is None else _number(own_price),
                "calculated_price": _number(vcalc),
                "sale_price": None,
                "retail_price": None,
                "map_price": None,
                "weight": None,
                "calculated_weight": float(item.weight),
                "width": None,
                "height": None,
                "depth": None,
                "is_free_shipping": False,
                "fixed_cost_shipping_price": None,
                "purchasing_disabled": labels is not None and index == 1 and unit(seed, iid, _SALT_DISABLED) < 0.1,
                "purchasing_disabled_message": "",
                "image_url": "",
                "cost_price": None,
                "upc": vgtin if labels is not None else "",
                "mpn": "",
                "gtin": "",
                "inventory_level": level,
                "inventory_warning_level": 0,
                "bin_picking_number": "",
                "option_values": (
                    []
                    if labels is None
                    else [
                        {
                            "id": 60 + index,
                            "label": labels[index],
                            "option_id": 200 + pos % 50,
                            "option_display_name": "Option",
                        }
                    ]
                ),
            }

        labels = _SIZES[pick(seed, iid, _SALT_OPTIONS, len(_SIZES))] if options else None
        variants = [variant(0, labels), variant(1, labels)] if labels else [variant(0, None)]

        product: dict[str, Any] = {
            "id": pid,
            "name": item.title,
            "type": "physical",
            "sku": item.sku,
            "description": f"<p>{html.escape(item.description, quote=False)}</p>",
            "weight": float(item.weight),
            "width": 0,
            "depth": 0,
            "height": 0,
            "price": _number(price),
            "cost_price": 0,
            "retail_price": 0,
            "sale_price": _number(sale),
            "map_price": 0,
            "tax_class_id": 0,
            "product_tax_code": "",
            "calculated_price": _number(calculated),
            "categories": [self._category_ids[item.category]],
            "brand_id": self._brand_ids.get(item.brand, 0) if item.brand else 0,
            "option_set_id": None,
            "option_set_display": "right",
            "inventory_level": stock if tracking != "none" else 0,
            "inventory_warning_level": 0,
            "inventory_tracking": tracking,
            "reviews_rating_sum": round(item.rating * 5),
            "reviews_count": 5,
            "total_sold": pick(seed, iid, _SALT_SOLD, 400),
            "fixed_cost_shipping_price": 0,
            "is_free_shipping": False,
            "is_visible": True,
            "is_featured": False,
            "related_products": [-1],
            "warranty": "",
            "bin_picking_number": "",
            "layout_file": "product.html",
            "upc": upc,
            "mpn": "",
            "gtin": gtin,
            "search_keywords": ", ".join(item.tags),
            "availability": availability,
            "availability_description": "",
            "gift_wrapping_options_type": "any",
            "gift_wrapping_options_list": [],
            "sort_order": 0,
            "condition": "New",
            "is_condition_shown": False,
            "order_quantity_minimum": 0,
            "order_quantity_maximum": 0,
            "page_title": "",
            "meta_keywords": [],
            "meta_description": "",
            "date_created": iso_offset(item.created_at, UTC),
            "date_modified": iso_offset(state.updated_at(pos), UTC),
            "view_count": 0,
            "preorder_release_date": None,
            "preorder_message": "",
            "is_preorder_only": availability == "preorder",
            "is_price_hidden": False,
            "price_hidden_label": "",
            "custom_url": {"url": f"/{item.slug}/", "is_customized": False},
            "base_variant_id": None if options else self.variant_id(pos, 0),
            "open_graph_type": "product",
            "open_graph_title": "",
            "open_graph_description": "",
            "open_graph_use_meta_description": True,
            "open_graph_use_product_name": True,
            "open_graph_use_image": True,
            "variants": variants,
            "images": images,
        }
        bad = state.bad_field(pos)
        if bad == "price":
            product["price"] = product["calculated_price"] = None
            for v in variants:
                v["price"] = v["calculated_price"] = None
        elif bad == "title":
            del product["name"]
        return product

    # -- endpoints ----------------------------------------------------------------------------------------

    def _paging(self, request: Request) -> tuple[int, int] | Response:
        query = request.query_params
        values = []
        for name, default, hi in (("page", 1, None), ("limit", DEFAULT_LIMIT, MAX_LIMIT)):
            raw = query.get(name)
            if raw is None:
                values.append(default)
                continue
            if not raw.isdigit() or int(raw) < 1 or (hi is not None and int(raw) > hi):
                bounds = f"between 1 and {hi}" if hi else "at least 1"
                return _error(422, f"Invalid {name}", errors={name: f"{name} must be an integer {bounds}"})
            values.append(int(raw))
        return values[0], values[1]

    @staticmethod
    def _meta(total: int, count: int, page: int, limit: int, extra: str) -> dict[str, Any]:
        pages = math.ceil(total / limit)
        links = {"current": f"?page={page}&limit={limit}{extra}"}
        if page > 1:
            links["previous"] = f"?page={page - 1}&limit={limit}{extra}"
        if page < pages:
            links["next"] = f"?page={page + 1}&limit={limit}{extra}"
        return {
            "pagination": {
                "total": total,
                "count": count,
                "per_page": limit,
                "current_page": page,
                "total_pages": pages,
                "links": links,
            }
        }

    def _product_bytes(self, pos: int, include: set[str]) -> bytes:
        cached = self.item_json(pos)
        if {"variants", "images"} <= include:
            return cached
        product = orjson.loads(cached)
        for sub in ("variants", "images"):
            if sub not in include:
                del product[sub]
        return dumps(product)

    async def list_products(self, request: Request) -> Response:
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        page, limit = paging
        query = request.query_params
        include = set(query.get("include", "").split(","))
        matching = self.state.carried
        extra = f"&include={query['include']}" if "include" in query else ""
        modified_min = query.get("date_modified:min")
        if modified_min:
            moment = parse_iso8601(modified_min, UTC)
            if moment is None:
                return _error(422, "Invalid date_modified:min", errors={"date_modified:min": "not a valid date"})
            matching = self.state.updated_since(moment)
            extra += f"&date_modified:min={modified_min}"
        start = (page - 1) * limit
        positions = matching[start : start + limit]
        meta = self._meta(len(matching), len(positions), page, limit, extra)
        body = b'{"data":[' + b",".join(self._product_bytes(p, include) for p in positions) + b'],"meta":'
        return raw_json_response(body + dumps(meta) + b"}")

    async def get_product(self, request: Request) -> Response:
        raw_id = request.path_params["product_id"]
        if not raw_id.isdigit():
            return _not_found()
        pos = self._product_at(raw_id)
        if pos is None:
            return _not_found()
        include = set(request.query_params.get("include", "").split(","))
        return raw_json_response(b'{"data":' + self._product_bytes(pos, include) + b',"meta":{}}')

    def _names(self, request: Request, entries: list[dict[str, Any]]) -> Response:
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        page, limit = paging
        chunk = entries[(page - 1) * limit : page * limit]
        return json_response({"data": chunk, "meta": self._meta(len(entries), len(chunk), page, limit, "")})

    async def list_brands(self, request: Request) -> Response:
        brands = [
            {
                "id": bid,
                "name": name,
                "page_title": name,
                "meta_keywords": [],
                "meta_description": "",
                "search_keywords": "",
                "image_url": "",
                "custom_url": {"url": f"/brands/{slugify(name)}.html", "is_customized": False},
            }
            for name, bid in self._brand_ids.items()
        ]
        return self._names(request, brands)

    async def list_categories(self, request: Request) -> Response:
        categories = [
            {
                "id": cid,
                "parent_id": 0,
                "name": humanize(slug),
                "description": "",
                "views": 0,
                "sort_order": 0,
                "page_title": "",
                "search_keywords": "",
                "meta_keywords": [],
                "meta_description": "",
                "layout_file": "category.html",
                "is_visible": True,
                "default_product_sort": "use_store_settings",
                "image_url": "",
                "custom_url": {"url": f"/{slug}/", "is_customized": False},
            }
            for slug, cid in self._category_ids.items()
        ]
        return self._names(request, categories)

    # -- platform behaviour -------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        token = request.headers.get("x-auth-token")
        if token != self.config.bigcommerce_token or request.path_params.get("store_hash") != self.config.store_hash:
            return _error(401, "No valid credentials were found in this request")
        return None

    def server_error(self) -> Response:
        return _error(500, "Internal Server Error")

    def rate_limited(self) -> Response:
        # BigCommerce says when the window resets in milliseconds; it sends no Retry-After.
        reset_ms = str(math.ceil(self.config.retry_after_s * 1000))
        response = _error(429, "Too many requests")
        response.headers.update(
            {
                "X-Rate-Limit-Time-Reset-Ms": reset_ms,
                "X-Rate-Limit-Time-Window-Ms": "30000",
                "X-Rate-Limit-Requests-Left": "0",
                "X-Rate-Limit-Requests-Quota": "150",
            }
        )
        return response
