"""Shopify Admin REST (``/admin/api/<version>/products.json``): a merchant's store, as a client sees it.

Faithful where clients trip: cursor pagination only through the ``Link`` header (``page_info`` may be
accompanied by ``limit``/``fields`` only, filters travel inside the cursor), ``limit`` capped at 250, the
``X-Shopify-Access-Token`` header, ``X-Shopify-Shop-Api-Call-Limit`` on every response, a float
``Retry-After`` on 429, prices as strings in the shop currency, timestamps in the shop's offset. The merchant
data is realistically untidy: titles in the shop's own spelling (``listing.retitle``), SKUs re-spelled, barcodes on
~40 % of first variants (then valid GTIN-13s), brand-less products filed under the shop's own name, every phone,
tablet and laptop in two capacities and ~1 other product in 5 in two sizes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import math
import re
import time
from bisect import bisect_left, bisect_right
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from simulators.base import Simulator
from simulators.common import (
    cents,
    iso_offset,
    join_json_array,
    json_response,
    money,
    parse_iso8601,
    pick,
    raw_json_response,
    shop_tz,
    slugify,
    unit,
    valid_gtin13,
)
from simulators.config import USD_RATES, SimConfig
from simulators.listing import retitle
from simulators.webhooks import SHOPIFY_TOPICS, shopify_headers

MEDIA_TYPE = "application/json; charset=utf-8"
DEFAULT_LIMIT = 50
MAX_LIMIT = 250
CALL_LIMIT = 40
LEAK_PER_S = 2.0
UNAUTHORIZED = "[API] Invalid API key or access token (unrecognized login or wrong password)"

_VERSION = re.compile(r"^(\d{4}-\d{2}|unstable)$")
_PAGE_INFO_COMPANIONS = frozenset({"page_info", "limit", "fields"})

# Ids look like Shopify's (13-14 digits) and grow with the catalog position, so "order by id" is catalog
# order; a per-item jitter below the stride keeps them from looking generated.
_PRODUCT_BASE = 7_000_000_000_000
_VARIANT_BASE = 42_000_000_000_000
_IMAGE_BASE = 33_000_000_000_000
_INVENTORY_BASE = 45_000_000_000_000
_OPTION_BASE = 9_000_000_000_000
_STRIDE = 1000

_SALT_PID = 0x51D1
_SALT_VID = 0x51D2
_SALT_IMG = 0x51D3
_SALT_TWO = 0x2FA7
_SALT_SKU = 0x5C0
_SALT_GTIN = 0x6713
_SALT_NO_GTIN = 0x6714
_SALT_TAG_LIST = 0x7A65
_SALT_OWN_IMAGES = 0x1A6E
_SALT_DUP_IMAGE = 0xD0B1
_SALT_COMPARE = 0xC0A9
_SALT_POLICY = 0x9011
_SALT_XL_STOCK = 0x0E15

_XL_MARKUP = Decimal("1.15")
_CAPACITY_CATEGORIES = frozenset({"smartphones", "tablets", "laptops"})


def respell_sku(sku: str, style: int) -> str:
    """How a merchant might have typed the supplier's SKU: as-is, lower-case, spaced, or run together."""
    if style == 1:
        return sku.lower()
    if style == 2:
        return sku.replace("-", " ")
    if style == 3:
        return sku.replace("-", "")
    return sku


def _errors(errors: Any, status_code: int, headers: dict[str, str] | None = None) -> Response:
    return json_response({"errors": errors}, status_code=status_code, headers=headers, media_type=MEDIA_TYPE)


def _encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def _decode_cursor(token: str) -> dict[str, Any] | None:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        return None
    if (
        not isinstance(data, dict)
        or data.get("direction") not in ("next", "prev")
        or not isinstance(data.get("last_id"), int)
    ):
        return None
    return data


class ShopifySimulator(Simulator):
    carried_fraction = 0.70
    webhook_topics = SHOPIFY_TOPICS

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        seed = config.seed
        self._seed_part = (seed % 97) * 10**10
        shop_path = f"{600 + seed % 300:04d}/{pick(seed, 0, 1, 10_000):04d}/{pick(seed, 0, 2, 10_000):04d}"
        self._cdn = f"https://cdn.shopify.com/s/files/1/{shop_path}"
        self._bucket = 0.0
        self._bucket_at = time.monotonic()

    def routes(self) -> list[BaseRoute]:
        api = "/admin/api/{version}"
        return [
            Route(f"{api}/products.json", self.endpoint(self.list_products), methods=["GET"]),
            Route(f"{api}/products/count.json", self.endpoint(self.count_products), methods=["GET"]),
            Route(f"{api}/products/{{product_id}}.json", self.endpoint(self.get_product), methods=["GET"]),
            Route(f"{api}/variants/{{variant_id}}.json", self.endpoint(self.get_variant), methods=["GET"]),
        ]

    # -- ids ----------------------------------------------------------------------------------------------

    def _jitter(self, pos: int, salt: int) -> int:
        return pick(self.config.seed, pos + 1, salt, 900)

    def public_id(self, pos: int) -> int:
        return _PRODUCT_BASE + self._seed_part + (pos + 1) * _STRIDE + self._jitter(pos, _SALT_PID)

    def variant_id(self, pos: int, index: int) -> int:
        return _VARIANT_BASE + self._seed_part + (pos + 1) * _STRIDE + self._jitter(pos, _SALT_VID) + index

    def _position_of(self, product_id: int) -> int:
        """Catalog position an id belongs to (exact or not): enough to resume a keyset page after it."""
        return (product_id - _PRODUCT_BASE - self._seed_part) // _STRIDE - 1

    def _product_at(self, raw_id: str) -> int | None:
        if not raw_id.isdigit():
            return None
        pos = self._position_of(int(raw_id))
        if self.state.carries(pos) and self.public_id(pos) == int(raw_id):
            return pos
        return None

    def _variant_at(self, raw_id: str) -> tuple[int, int] | None:
        if not raw_id.isdigit():
            return None
        offset = int(raw_id) - _VARIANT_BASE - self._seed_part
        pos = offset // _STRIDE - 1
        if not self.state.carries(pos):
            return None
        index = int(raw_id) - self.variant_id(pos, 0)
        if index == 0 or (index == 1 and self._has_xl(pos)):
            return pos, index
        return None

    def truth(self) -> dict[str, str]:
        """Listings are variants. A product of two variants (sizes M and XL, or 128 GB and 256 GB of a phone) is
        two items, neither the one other shops list without a size: near-duplicates that must stay apart."""
        out = {}
        for pos in self.state.carried:
            iid = self.state.catalog[pos].id
            two = self._variants(pos)
            if two is None:
                out[str(self.variant_id(pos, 0))] = str(iid)
            else:
                for index, label in enumerate(two):
                    out[str(self.variant_id(pos, index))] = f"{iid}/{label.replace(' ', '')}"
        return out

    def _has_xl(self, pos: int) -> bool:
        return self._variants(pos) is not None

    def _variants(self, pos: int) -> tuple[str, str] | None:
        """The two variants' titles of a product sold in two, else None: every phone, tablet and laptop in two
        capacities, ~1 other product in 5 in two sizes."""
        if self.state.catalog[pos].category in _CAPACITY_CATEGORIES:
            return ("128 GB", "256 GB")
        return ("M", "XL") if unit(self.config.seed, pos + 1, _SALT_TWO) < 0.2 else None

    # -- rendering ----------------------------------------------------------------------------------------

    def render(self, pos: int) -> dict[str, Any]:
        state = self.state
        config = state.config
        item = state.catalog[pos]
        seed, iid = config.seed, item.id
        tz = shop_tz(config.offset_min)
        pid = self.public_id(pos)
        created = iso_offset(item.created_at, tz)
        updated = iso_offset(state.updated_at(pos), tz)
        price = cents(state.price(pos) * USD_RATES[config.currency])
        stock = state.stock(pos)
        sku = respell_sku(item.sku, pick(seed, iid, _SALT_SKU, 4))
        barcode: str | None
        if unit(seed, iid, _SALT_GTIN) < 0.4:
            barcode = valid_gtin13(item.barcode)
        else:
            barcode = "" if unit(seed, iid, _SALT_NO_GTIN) < 0.5 else None
        compare_at = None
        if unit(seed, iid, _SALT_COMPARE) < 0.3:
            compare_at = money(price * (1 + Decimal(str(item.discount_percentage)) / 100))
        policy = "continue" if unit(seed, iid, _SALT_POLICY) < 0.1 else "deny"
        grams = item.weight * 1000

        def variant(
            index: int, title: str, amount: Decimal, qty: int, sku: str, barcode: str | None, compare_at: str | None
        ) -> dict[str, Any]:
            vid = self.variant_id(pos, index)
            return {
                "id": vid,
                "product_id": pid,
                "title": title,
                "price": money(amount),
                "position": index + 1,
                "inventory_policy": policy,
                "compare_at_price": compare_at,
                "option1": title,
                "option2": None,
                "option3": None,
                "created_at": created,
                "updated_at": updated,
                "taxable": True,
                "barcode": barcode,
                "fulfillment_service": "manual",
                "grams": grams,
                "inventory_management": "shopify",
                "requires_shipping": True,
                "sku": sku,
                "weight": float(item.weight),
                "weight_unit": "kg",
                "inventory_item_id": _INVENTORY_BASE + self._seed_part + iid * _STRIDE + index,
                "inventory_quantity": qty,
                "old_inventory_quantity": qty,
                "admin_graphql_api_id": f"gid://shopify/ProductVariant/{vid}",
                "image_id": None,
            }

        option_id = _OPTION_BASE + self._seed_part + iid * _STRIDE
        two = self._variants(pos)
        if two is not None:
            (first, second), name = two, ("Storage" if item.category in _CAPACITY_CATEGORIES else "Size")
            variants = [
                variant(
                    0,
                    first,
                    price,
                    stock,
                    sku=f"{sku}-{first.replace(' ', '')}",
                    barcode=None,  # each variant is an item of its own, not the unsized one the barcode names
                    compare_at=compare_at,
                ),
                variant(
                    1,
                    second,
                    cents(price * _XL_MARKUP),
                    (stock * 7 + pick(seed, iid, _SALT_XL_STOCK, 23)) % 41,
                    sku=f"{sku}-{second.replace(' ', '')}",
                    barcode=None,
                    compare_at=None,
                ),
            ]
            options = [{"id": option_id, "product_id": pid, "name": name, "position": 1, "values": [first, second]}]
        else:
            variants = [variant(0, "Default Title", price, stock, sku=sku, barcode=barcode, compare_at=compare_at)]
            options = [
                {"id": option_id, "product_id": pid, "name": "Title", "position": 1, "values": ["Default Title"]}
            ]

        body_html, body_with_tags, tags = _static_parts(item.source["id"], item.description, item.tags)
        if unit(seed, iid, _SALT_TAG_LIST) < 0.3:
            body_html = body_with_tags

        srcs = list(item.images)
        if unit(seed, iid, _SALT_OWN_IMAGES) < 0.5:
            version = int(item.created_at.timestamp())
            srcs = [f"{self._cdn}/products/{_cdn_file_name(src)}?v={version}" for src in srcs]
        if srcs and unit(seed, iid, _SALT_DUP_IMAGE) < 0.1:
            srcs.append(srcs[0])
        image_base = _IMAGE_BASE + self._seed_part + iid * _STRIDE + self._jitter(pos, _SALT_IMG)
        images: list[dict[str, Any]] = [
            {
                "id": image_base + k,
                "alt": None,
                "position": k + 1,
                "product_id": pid,
                "created_at": created,
                "updated_at": created,
                "admin_graphql_api_id": f"gid://shopify/ProductImage/{image_base + k}",
                "width": 1000,
                "height": 1000,
                "src": src,
                "variant_ids": [],
            }
            for k, src in enumerate(srcs)
        ]

        product: dict[str, Any] = {
            "id": pid,
            "title": retitle(item.title, item.brand, seed, iid),
            "body_html": body_html,
            "vendor": item.brand or config.name,
            "product_type": item.category,
            "created_at": created,
            "handle": item.slug,
            "updated_at": updated,
            "published_at": created,
            "template_suffix": None,
            "published_scope": "web",
            "tags": tags,
            "status": "active",
            "admin_graphql_api_id": f"gid://shopify/Product/{pid}",
            "variants": variants,
            "options": options,
            "images": images,
            "image": images[0] if images else None,
        }
        bad = state.bad_field(pos)
        if bad == "price":
            variants[0]["price"] = "N/A"
        elif bad == "title":
            del product["title"]
        return product

    # -- endpoints ----------------------------------------------------------------------------------------

    def _matching(self, updated_at_min: str | None, since_id: str | int | None) -> tuple[list[int], int] | Response:
        """The filtered, id-ordered positions and the index of the first one past ``since_id``."""
        matching = self.state.carried
        if updated_at_min:
            moment = parse_iso8601(updated_at_min, shop_tz(self.config.offset_min))
            if moment is None:
                return _errors({"updated_at_min": ["is invalid"]}, 400)
            matching = self.state.updated_since(moment)
        lo = 0
        if since_id is not None and since_id != "":
            if not str(since_id).isdigit():
                return _errors({"since_id": ["is invalid"]}, 400)
            lo = bisect_left(matching, self._position_of(int(since_id) + 1))
            while lo < len(matching) and self.public_id(matching[lo]) <= int(since_id):
                lo += 1
        return matching, lo

    async def list_products(self, request: Request) -> Response:
        if not _VERSION.match(request.path_params["version"]):
            return _errors("Not Found", 404)
        query = request.query_params
        limit_raw = query.get("limit")
        limit = DEFAULT_LIMIT
        if limit_raw is not None:
            if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_LIMIT:
                return _errors({"limit": [f"must be an integer between 1 and {MAX_LIMIT}"]}, 400)
            limit = int(limit_raw)
        fields = _fields(query.get("fields"))
        page_info = query.get("page_info")
        cursor: dict[str, Any] | None = None
        if page_info is not None:
            for key in query:
                if key not in _PAGE_INFO_COMPANIONS:
                    return _errors(
                        {
                            key: f"{key} cannot be passed when page_info is present. "
                            "See https://shopify.dev/api/usage/pagination-rest for more information."
                        },
                        400,
                    )
            cursor = _decode_cursor(page_info)
            if cursor is None:
                return _errors({"page_info": "Invalid value."}, 400)
            filters: dict[str, Any] = {k: cursor[k] for k in ("updated_at_min", "since_id") if k in cursor}
        else:
            filters = {k: query[k] for k in ("updated_at_min", "since_id") if query.get(k)}
        found = self._matching(filters.get("updated_at_min"), filters.get("since_id"))
        if isinstance(found, Response):
            return found
        matching, lo = found
        if cursor is None:
            start = lo
            end = min(len(matching), start + limit)
        elif cursor["direction"] == "next":
            start = max(lo, bisect_right(matching, self._position_of(cursor["last_id"])))
            end = min(len(matching), start + limit)
        else:
            end = max(lo, bisect_left(matching, self._position_of(cursor["last_id"])))
            start = max(lo, end - limit)
        positions = matching[start:end]

        if fields is None:
            body = b'{"products":' + join_json_array(self.items_json(positions)) + b"}"
        else:
            body = orjson.dumps({"products": [_subset(self.render(pos), fields) for pos in positions]})
        links = []
        page_url = f"{request.base_url}admin/api/{request.path_params['version']}/products.json"

        def link(direction: str, pos: int, rel: str) -> str:
            token = _encode_cursor({"direction": direction, "last_id": self.public_id(pos), **filters})
            params = {"limit": str(limit), "page_info": token}
            if fields is not None:
                params["fields"] = ",".join(fields)
            return f'<{page_url}?{urlencode(params)}>; rel="{rel}"'

        if positions and start > lo:
            links.append(link("prev", positions[0], "previous"))
        if positions and end < len(matching):
            links.append(link("next", positions[-1], "next"))
        headers = {"Link": ", ".join(links)} if links else None
        return raw_json_response(body, headers=headers, media_type=MEDIA_TYPE)

    async def count_products(self, request: Request) -> Response:
        if not _VERSION.match(request.path_params["version"]):
            return _errors("Not Found", 404)
        query = request.query_params
        found = self._matching(query.get("updated_at_min"), query.get("since_id"))
        if isinstance(found, Response):
            return found
        matching, lo = found
        return json_response({"count": len(matching) - lo}, media_type=MEDIA_TYPE)

    async def get_product(self, request: Request) -> Response:
        pos = self._product_at(request.path_params["product_id"])
        if pos is None or not _VERSION.match(request.path_params["version"]):
            return _errors("Not Found", 404)
        fields = _fields(request.query_params.get("fields"))
        if fields is not None:
            return json_response({"product": _subset(self.render(pos), fields)}, media_type=MEDIA_TYPE)
        return raw_json_response(b'{"product":' + self.item_json(pos) + b"}", media_type=MEDIA_TYPE)

    async def get_variant(self, request: Request) -> Response:
        found = self._variant_at(request.path_params["variant_id"])
        if found is None or not _VERSION.match(request.path_params["version"]):
            return _errors("Not Found", 404)
        pos, index = found
        return json_response({"variant": self.render(pos)["variants"][index]}, media_type=MEDIA_TYPE)

    # -- platform behaviour -------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        if request.headers.get("x-shopify-access-token") != self.config.access_token:
            return _errors(UNAUTHORIZED, 401)
        return None

    def server_error(self) -> Response:
        return _errors("Internal Server Error", 500)

    def rate_limited(self) -> Response:
        # Shopify sends seconds as a float string ("2.0"); clients that int() it break on the real thing too.
        return _errors(
            "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service.",
            429,
            {"Retry-After": f"{self.config.retry_after_s:.1f}"},
        )

    def webhook_headers(self, topic: str, body: bytes, secret: str, delivery_id: str) -> dict[str, str]:
        shop = slugify(self.config.name) or "shop"
        return shopify_headers(topic, body, secret, delivery_id, f"{shop}.myshopify.com")

    def finish(self, request: Request, response: Response) -> Response:
        # A leaky bucket like the real one (40 deep, 2/s), reported but never enforced: rate limiting is
        # injected through failure_modes so tests decide when it happens.
        now = time.monotonic()
        self._bucket = max(0.0, self._bucket - (now - self._bucket_at) * LEAK_PER_S) + 1
        self._bucket_at = now
        response.headers["X-Shopify-Shop-Api-Call-Limit"] = f"{min(CALL_LIMIT, math.ceil(self._bucket))}/{CALL_LIMIT}"
        version = request.path_params.get("version")
        if version and _VERSION.match(version):
            response.headers["X-Shopify-API-Version"] = version
        return response


@functools.lru_cache(maxsize=4096)
def _static_parts(_base_id: int, description: str, tags: tuple[str, ...]) -> tuple[str, str, str]:
    """body_html without and with the tag list, and the tags string: per real product, shared by its clones."""
    body = f"<p>{html.escape(description, quote=False)}</p>"
    tag_list = "".join(f"<li>{html.escape(t, quote=False)}</li>" for t in tags)
    return body, f"{body}<ul>{tag_list}</ul>" if tags else body, ", ".join(sorted(set(tags)))


@functools.lru_cache(maxsize=4096)
def _cdn_file_name(src: str) -> str:
    # .../product-images/beauty/essence-mascara-lash-princess/1.webp -> essence-mascara-lash-princess-1.webp
    parts = src.rsplit("/", 2)
    stem, _, ext = parts[-1].partition(".")
    return f"{slugify(parts[-2])}-{stem}.{ext}" if len(parts) == 3 else parts[-1]


def _fields(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [field.strip() for field in value.split(",") if field.strip()]


def _subset(product: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {field: product[field] for field in fields if field in product}
