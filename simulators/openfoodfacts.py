"""An Open Food Facts-like search API: a shape no adapter was written for, read only through a generic mapping.

``GET /api/v2/search?page=N&page_size=M`` answers ``{"count", "page", "page_size", "products": [...]}`` with
EAN-13 ``code``s, comma-separated ``brands``/``categories`` and epoch ``last_modified_t``, like the real API.
Open Food Facts has no prices; ``price_cents`` is invented (integer minor units) so the ``minor_units``
transform has something real to do.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.domain.normalize import gtin_check_digit
from simulators.catalog import BaseItem, build_catalog

MAX_PAGE_SIZE = 100


def ean13(item: BaseItem) -> str:
    """A check-digit-valid EAN-13 (the demo barcodes are not), so every product has a usable GTIN."""
    body = item.barcode[:12].rjust(12, "0")
    return f"{body}{gtin_check_digit(body)}"


def price_cents(item: BaseItem) -> int:
    return int(item.price * 100)


def render(item: BaseItem) -> dict[str, Any]:
    product: dict[str, Any] = {
        "code": ean13(item),
        "product_name": item.title,
        "generic_name": item.description,
        "categories": f"{item.category},demo-foods",
        "image_front_url": item.thumbnail,
        "price_cents": price_cents(item),
        "last_modified_t": int(item.updated_at.timestamp()),
    }
    if item.brand:
        product["brands"] = f"{item.brand},Demo Group"
    return product


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


def create_openfoodfacts_app(size: int = 194, seed: int = 0) -> Starlette:
    """``seed`` is accepted for symmetry with the other simulators; the shape, not the subset, is the point."""
    items = build_catalog(size)

    async def search(request: Request) -> JSONResponse:
        page = max(_int(request, "page", 1), 1)
        page_size = min(max(_int(request, "page_size", 24), 1), MAX_PAGE_SIZE)
        chunk = items[(page - 1) * page_size : page * page_size]
        body = {"count": len(items), "page": page, "page_size": page_size, "products": [render(i) for i in chunk]}
        return JSONResponse(body)

    return Starlette(routes=[Route("/api/v2/search", search)])
