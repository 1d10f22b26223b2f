"""WooCommerce REST v3 (``/wp-json/wc/v3/products``): a WordPress shop, as a client sees it.

Mirrors ``WC_REST_CRUD_Controller::get_items``: a bare JSON array, ``page``/``per_page`` (1..100, else
``rest_invalid_param``), ``X-WP-Total``/``X-WP-TotalPages`` and a ``Link`` header built from every request
parameter (credentials included, as WooCommerce does). A page past the end is ``200 []`` with the real totals:
WooCommerce re-counts out-of-bounds queries instead of answering WordPress core's
``rest_post_invalid_page_number``. Default order is ``date ID`` descending, ``modified_after`` is exclusive
and read in the site's time zone unless ``dates_are_gmt=true``. Dates are naive wall-clock strings, prices
strings in the shop currency, ``price_html`` formatted for the shop's locale.
"""

from __future__ import annotations

import base64
import binascii
import html
import math
from datetime import UTC
from decimal import Decimal
from typing import Any, NamedTuple
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from simulators.base import Simulator
from simulators.catalog import BaseItem, load_base_items
from simulators.common import (
    cents,
    humanize,
    iso_naive,
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
from simulators.webhooks import WOOCOMMERCE_TOPICS, woocommerce_headers

MEDIA_TYPE = "application/json; charset=UTF-8"
DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100
_ORDERBY = ("date", "id", "include", "title", "slug", "price", "popularity", "rating", "menu_order", "modified")

_ID_BASE = 100
_ID_STRIDE = 10  # a product's image attachments take the post ids right after it, as uploads do

_SALT_NAME = 0x3A3E
_SALT_SKU = 0x5C1
_SALT_SKU_STYLE = 0x5C2
_SALT_GTIN = 0x6715
_SALT_SALE = 0x5A1E
_SALT_MANAGE = 0x3A4A
_SALT_BACKORDER = 0xBAC0
_SALT_OWN_IMAGES = 0x1A6F
_SALT_DUP_IMAGE = 0xD0B2
_SALT_SALES = 0x5A15

# How each currency is written in price_html: symbol entity, thousands separator, decimal separator.
_PRICE_FORMAT = {
    "TRY": ("&#8378;", ".", ","),
    "EUR": ("&euro;", ".", ","),
    "USD": ("&#36;", ",", "."),
    "GBP": ("&pound;", ",", "."),
}


def _error(code: str, message: str, status: int, **data: Any) -> Response:
    return json_response(
        {"code": code, "message": message, "data": {"status": status, **data}},
        status_code=status,
        media_type=MEDIA_TYPE,
    )


def _invalid_param(name: str, message: str, detail_code: str = "rest_invalid_type") -> Response:
    return _error(
        "rest_invalid_param",
        f"Invalid parameter(s): {name}",
        400,
        params={name: message},
        details={name: {"code": detail_code, "message": message, "data": None}},
    )


def _int_param(value: str | None, name: str, default: int, lo: int, hi: int | None) -> int | Response:
    if value is None:
        return default
    if not value.strip().lstrip("-").isdigit():
        return _invalid_param(name, f"{name} is not of type integer.")
    number = int(value)
    if number < lo or (hi is not None and number > hi):
        bounds = f"between {lo} (inclusive) and {hi} (inclusive)" if hi else f"greater than or equal to {lo}"
        return _invalid_param(name, f"{name} must be {bounds}", "rest_out_of_bounds")
    return number


def _price_text(amount: Decimal, currency: str) -> tuple[str, str]:
    """(symbol, amount) as wc_price() writes them for the shop's locale: &#8378; and 1.495,00 for TRY."""
    symbol, thousands, decimal = _PRICE_FORMAT.get(currency, (currency, ",", "."))
    whole, _, fraction = f"{cents(amount):,.2f}".partition(".")
    return symbol, whole.replace(",", thousands) + decimal + fraction


def format_price_html(amount: Decimal, currency: str) -> str:
    symbol, text = _price_text(amount, currency)
    return (
        '<span class="woocommerce-Price-amount amount"><bdi>'
        f'<span class="woocommerce-Price-currencySymbol">{symbol}</span>{text}</bdi></span>'
    )


def _sale_price_html(regular: Decimal, sale: Decimal, currency: str) -> str:
    reg_text, now_text = "".join(_price_text(regular, currency)), "".join(_price_text(sale, currency))
    reg, now = format_price_html(regular, currency), format_price_html(sale, currency)
    return (
        f'<del aria-hidden="true">{reg}</del> <span class="screen-reader-text">Original price was: {reg_text}.</span>'
        f'<ins aria-hidden="true">{now}</ins><span class="screen-reader-text">Current price is: {now_text}.</span>'
    )


class _Static(NamedTuple):
    """The parts of a product that only depend on its base item: built once per real product, shared by clones."""

    description: str
    short_description: str
    dimensions: dict[str, str]
    categories: list[dict[str, Any]]
    brands: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    rating_count: int


def _first_sentence(text: str) -> str:
    head, dot, _ = text.partition(". ")
    return head + dot.strip() if dot else text


class WooCommerceSimulator(Simulator):
    carried_fraction = 0.60
    webhook_topics = WOOCOMMERCE_TOPICS

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.site = f"https://{slugify(config.name) or 'shop'}.example"
        base = load_base_items()
        self._category_ids = {c: 15 + i for i, c in enumerate(sorted({b.category for b in base}))}
        self._brand_ids = {b: 200 + i for i, b in enumerate(sorted({b.brand for b in base if b.brand}))}
        self._tag_ids = {t: 500 + i for i, t in enumerate(sorted({t for b in base for t in b.tags}))}
        self._statics: dict[int, _Static] = {}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/wp-json/wc/v3/products", self.endpoint(self.list_products), methods=["GET"]),
            Route("/wp-json/wc/v3/products/{product_id}", self.endpoint(self.get_product), methods=["GET"]),
        ]

    def public_id(self, pos: int) -> int:
        return _ID_BASE + (pos + 1) * _ID_STRIDE

    def _product_at(self, raw_id: str) -> int | None:
        offset = int(raw_id) - _ID_BASE
        pos = offset // _ID_STRIDE - 1
        if offset % _ID_STRIDE == 0 and self.state.carries(pos):
            return pos
        return None

    # -- rendering ----------------------------------------------------------------------------------------

    def _static(self, item: BaseItem) -> _Static:
        key = int(item.source["id"])
        static = self._statics.get(key)
        if static is None:
            dims = item.source.get("dimensions", {})
            static = self._statics[key] = _Static(
                description=f"<p>{html.escape(item.description, quote=False)}</p>\n",
                short_description=f"<p>{html.escape(_first_sentence(item.description), quote=False)}</p>\n",
                dimensions={
                    "length": str(dims.get("depth", "")),
                    "width": str(dims.get("width", "")),
                    "height": str(dims.get("height", "")),
                },
                categories=[
                    {
                        "id": self._category_ids.get(item.category, 15),
                        "name": humanize(item.category),
                        "slug": item.category,
                    }
                ],
                brands=(
                    [{"id": self._brand_ids.get(item.brand, 200), "name": item.brand, "slug": slugify(item.brand)}]
                    if item.brand
                    else []
                ),
                tags=[{"id": self._tag_ids.get(t, 500), "name": t, "slug": slugify(t)} for t in item.tags],
                rating_count=len(item.source.get("reviews", [])),
            )
        return static

    def render(self, pos: int) -> dict[str, Any]:
        state = self.state
        config = state.config
        item = state.catalog[pos]
        seed, iid = config.seed, item.id
        wid = self.public_id(pos)
        tz = shop_tz(config.offset_min)
        currency = config.currency
        created = item.created_at
        modified = state.updated_at(pos)

        name, slug = retitle(item.title, item.brand, seed, iid), item.slug
        if item.brand and item.brand.lower() not in name.lower() and unit(seed, iid, _SALT_NAME) < 0.35:
            name, slug = f"{item.brand} {name}", f"{slugify(item.brand)}-{slug}"

        sku_roll = unit(seed, iid, _SALT_SKU)
        if sku_roll < 0.05:
            sku = ""
        elif sku_roll < 0.3:
            sku = item.sku.lower() if unit(seed, iid, _SALT_SKU_STYLE) < 0.5 else item.sku.replace("-", " ")
        else:
            sku = item.sku

        regular = cents(state.price(pos) * USD_RATES[currency])
        on_sale = unit(seed, iid, _SALT_SALE) < 0.2 and item.discount_percentage > 0
        if on_sale:
            sale = cents(regular * (1 - Decimal(str(item.discount_percentage)) / 100))
            price, sale_price, price_html = sale, money(sale), _sale_price_html(regular, sale, currency)
        else:
            price, sale_price, price_html = regular, "", format_price_html(regular, currency)

        stock = state.stock(pos)
        manage_stock = unit(seed, iid, _SALT_MANAGE) < 0.85
        backorders = "notify" if manage_stock and unit(seed, iid, _SALT_BACKORDER) < 0.3 else "no"
        stock_status = "instock" if stock > 0 else ("onbackorder" if backorders != "no" else "outofstock")

        created_local, created_gmt = iso_naive(created, tz), iso_naive(created, UTC)
        srcs = list(item.images)
        if unit(seed, iid, _SALT_OWN_IMAGES) < 0.6:
            folder = f"{self.site}/wp-content/uploads/{created:%Y/%m}"
            srcs = [f"{folder}/{slug}-{k + 1}.{src.rsplit('.', 1)[-1]}" for k, src in enumerate(srcs)]
        if srcs and unit(seed, iid, _SALT_DUP_IMAGE) < 0.1:
            srcs.append(srcs[0])
        images = [
            {
                "id": wid + k + 1,
                "date_created": created_local,
                "date_created_gmt": created_gmt,
                "date_modified": created_local,
                "date_modified_gmt": created_gmt,
                "src": src,
                "name": src.rsplit("/", 1)[-1].rsplit(".", 1)[0],
                "alt": "",
            }
            for k, src in enumerate(srcs[: _ID_STRIDE - 1])
        ]

        static = self._static(item)
        product: dict[str, Any] = {
            "id": wid,
            "name": name,
            "slug": slug,
            "permalink": f"{self.site}/product/{slug}/",
            "date_created": created_local,
            "date_created_gmt": created_gmt,
            "date_modified": iso_naive(modified, tz),
            "date_modified_gmt": iso_naive(modified, UTC),
            "type": "simple",
            "status": "publish",
            "featured": False,
            "catalog_visibility": "visible",
            "description": static.description,
            "short_description": static.short_description,
            "sku": sku,
            "price": money(price),
            "regular_price": money(regular),
            "sale_price": sale_price,
            "date_on_sale_from": None,
            "date_on_sale_from_gmt": None,
            "date_on_sale_to": None,
            "date_on_sale_to_gmt": None,
            "price_html": price_html,
            "on_sale": on_sale,
            "purchasable": True,
            "total_sales": pick(seed, iid, _SALT_SALES, 500),
            "virtual": False,
            "downloadable": False,
            "downloads": [],
            "download_limit": -1,
            "download_expiry": -1,
            "external_url": "",
            "button_text": "",
            "tax_status": "taxable",
            "tax_class": "",
            "manage_stock": manage_stock,
            "stock_quantity": stock if manage_stock else None,
            "stock_status": stock_status,
            "backorders": backorders,
            "backorders_allowed": backorders != "no",
            "backordered": manage_stock and stock <= 0 and backorders != "no",
            "low_stock_amount": None,
            "sold_individually": False,
            "weight": str(item.weight),
            "dimensions": static.dimensions,
            "shipping_required": True,
            "shipping_taxable": True,
            "shipping_class": "",
            "shipping_class_id": 0,
            "reviews_allowed": True,
            "average_rating": f"{item.rating:.2f}",
            "rating_count": static.rating_count,
            "related_ids": [],
            "upsell_ids": [],
            "cross_sell_ids": [],
            "parent_id": 0,
            "purchase_note": "",
            "categories": [
                {
                    "id": self._category_ids.get(item.category, 15),
                    "name": humanize(item.category),
                    "slug": item.category,
                }
            ],
            "brands": (
                [{"id": self._brand_ids.get(item.brand, 200), "name": item.brand, "slug": slugify(item.brand)}]
                if item.brand
                else []
            ),
            "tags": [{"id": self._tag_ids.get(t, 500), "name": t, "slug": slugify(t)} for t in item.tags],
            "images": images,
            "attributes": [],
            "default_attributes": [],
            "variations": [],
            "grouped_products": [],
            "menu_order": 0,
            "has_options": False,
            "post_password": "",
            "global_unique_id": valid_gtin13(item.barcode) if unit(seed, iid, _SALT_GTIN) < 0.3 else "",
            "meta_data": [],
            "_links": {
                "self": [{"href": f"{self.site}/wp-json/wc/v3/products/{wid}"}],
                "collection": [{"href": f"{self.site}/wp-json/wc/v3/products"}],
            },
        }
        bad = state.bad_field(pos)
        if bad == "price":
            product["price"] = product["regular_price"] = "N/A"
        elif bad == "title":
            del product["name"]
        return product

    # -- endpoints ----------------------------------------------------------------------------------------

    async def list_products(self, request: Request) -> Response:
        query = request.query_params
        page = _int_param(query.get("page"), "page", 1, 1, None)
        if isinstance(page, Response):
            return page
        per_page = _int_param(query.get("per_page"), "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        if isinstance(per_page, Response):
            return per_page
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            return _invalid_param("order", "order is not one of asc and desc.", "rest_not_in_enum")
        if query.get("orderby", "date") not in _ORDERBY:
            return _invalid_param("orderby", f"orderby is not one of {', '.join(_ORDERBY)}.", "rest_not_in_enum")

        matching = self.state.carried
        modified_after = query.get("modified_after")
        if modified_after:
            gmt = query.get("dates_are_gmt", "").lower() in ("1", "true")
            moment = parse_iso8601(modified_after, UTC if gmt else shop_tz(self.config.offset_min))
            if moment is None:
                return _invalid_param("modified_after", "Invalid date.", "rest_invalid_date")
            matching = self.state.updated_since(moment, strict=True)

        total = len(matching)
        pages = math.ceil(total / per_page)
        start = (page - 1) * per_page
        if order == "asc":
            positions = matching[start : start + per_page]
        else:
            # "date ID" descending: every product shares its creation date, so it is id order, reversed.
            hi = total - start
            positions = matching[max(0, hi - per_page) : hi][::-1] if hi > 0 else []

        links = []
        base = f"{request.base_url}wp-json/wc/v3/products"
        params = [(k, v) for k, v in query.multi_items() if k != "page"]

        def link(target: int, rel: str) -> str:
            return f'<{base}?{urlencode([*params, ("page", str(target))])}>; rel="{rel}"'

        if page > 1:
            links.append(link(min(page - 1, pages), "prev"))
        if pages > page:
            links.append(link(page + 1, "next"))
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages), "Allow": "GET, POST"}
        if links:
            headers["Link"] = ", ".join(links)
        return raw_json_response(join_json_array(self.items_json(positions)), headers=headers, media_type=MEDIA_TYPE)

    async def get_product(self, request: Request) -> Response:
        raw_id = request.path_params["product_id"]
        if not raw_id.isdigit():
            return _error("rest_no_route", "No route was found matching the URL and request method.", 404)
        pos = self._product_at(raw_id)
        if pos is None:
            return _error("woocommerce_rest_product_invalid_id", "Invalid ID.", 404)
        return raw_json_response(self.item_json(pos), media_type=MEDIA_TYPE)

    # -- platform behaviour -------------------------------------------------------------------------------

    def webhook_headers(self, topic: str, body: bytes, secret: str, delivery_id: str) -> dict[str, str]:
        return woocommerce_headers(topic, body, secret, delivery_id, self.site)

    def authenticate(self, request: Request) -> Response | None:
        key, secret = _credentials(request)
        if key is None:
            single = "product_id" in request.path_params
            message = "Sorry, you cannot view this resource." if single else "Sorry, you cannot list resources."
            return _error("woocommerce_rest_cannot_view", message, 401)
        # WC_REST_Authentication's own wording: which half of the pair was wrong.
        if key != self.config.consumer_key:
            return _error("woocommerce_rest_authentication_error", "Consumer key is invalid.", 401)
        if secret != self.config.consumer_secret:
            return _error("woocommerce_rest_authentication_error", "Consumer secret is invalid.", 401)
        return None

    def server_error(self) -> Response:
        # What WordPress's fatal-error handler answers on a REST route.
        return json_response(
            {
                "code": "internal_server_error",
                "message": "<p>There has been a critical error on this website.</p>"
                '<p><a href="https://wordpress.org/documentation/article/faq-troubleshooting/">'
                "Learn more about troubleshooting WordPress.</a></p>",
                "data": {"status": 500},
                "additional_errors": [],
            },
            status_code=500,
            media_type=MEDIA_TYPE,
        )

    def rate_limited(self) -> Response:
        wait = math.ceil(self.config.retry_after_s)
        response = _error(
            "woocommerce_rest_rate_limit_exceeded",
            f"Too many requests. Please wait {wait} seconds before trying again.",
            429,
        )
        response.headers["Retry-After"] = str(wait)
        return response


def _credentials(request: Request) -> tuple[str | None, str | None]:
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        return user, password
    query = request.query_params
    return query.get("consumer_key"), query.get("consumer_secret")
