"""A Platzi Fake Store-like API: bare JSON arrays and offset pagination, read only through a generic mapping.

``GET /api/v1/products?offset=0&limit=10`` answers a bare array of ``{"id", "title", "price", "description",
"images", "category": {"id", "name"}, "updatedAt"}`` with whole-number prices, as the real store does;
``GET /api/v1/products/{id}`` one product, or 404 ``{"message": ...}``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from simulators.catalog import BaseItem, build_catalog

MAX_LIMIT = 200


def price(item: BaseItem) -> int:
    return int(item.price.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def render(item: BaseItem) -> dict[str, Any]:
    category_id = sum(item.category.encode()) % 97 + 1
    return {
        "id": item.id,
        "title": item.title,
        "slug": item.slug,
        "price": price(item),
        "description": item.description,
        "images": list(item.images),
        "category": {"id": category_id, "name": item.category, "slug": item.category},
        "creationAt": item.created_at.isoformat().replace("+00:00", "Z"),
        "updatedAt": item.updated_at.isoformat().replace("+00:00", "Z"),
    }


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


def create_platzi_app(size: int = 194, seed: int = 0) -> Starlette:
    """``seed`` is accepted for symmetry with the other simulators; the shape, not the subset, is the point."""
    items = build_catalog(size)
    by_id = {item.id: item for item in items}

    async def products(request: Request) -> JSONResponse:
        offset = max(_int(request, "offset", 0), 0)
        limit = min(max(_int(request, "limit", 10), 1), MAX_LIMIT)
        return JSONResponse([render(i) for i in items[offset : offset + limit]])

    async def product(request: Request) -> JSONResponse:
        raw = request.path_params["id"]
        item = by_id.get(int(raw)) if raw.isdigit() else None
        if item is None:
            return JSONResponse({"message": f"Could not find any entity of type Product with id {raw}"}, 404)
        return JSONResponse(render(item))

    return Starlette(routes=[Route("/api/v1/products", products), Route("/api/v1/products/{id}", product)])
