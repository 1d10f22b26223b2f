"""The OpenAPI document, shaped for client generators (Dart/dio, TypeScript) and for exact validation.

FastAPI's own document is close; what this adds, in one place rather than on every route:
- ``servers`` (``CATALOG_PUBLIC_URL``), so a generated client has a base URL;
- ``security: []`` on every public operation: admin operations carry the ``AdminKey`` scheme (from the
  dependency), and an operation without any ``security`` would leave a client guessing;
- query parameters without ``anyOf [T, null]`` (an absent parameter already says "none"; generators turn such
  unions into wrapper classes), comma-separated lists as ``style: form, explode: false`` arrays, and the currency
  parameters as an enum of the codes the rates file lists, read when the document is first asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.errors import ERROR_STATUSES
from app.catalog.params import CURRENCY_ENUM, parameter_schema

TAGS = [
    {"name": "products", "description": "The unified catalog: browse, search, read one product or a batch."},
    {"name": "changes", "description": "What changed since a token: for offline copies and live updates."},
    {"name": "images", "description": "Resized product images (thumbnails)."},
    {"name": "vendors", "description": "Vendors, their sync status, their listings; admin writes."},
    {"name": "requests", "description": "Vendor fetches that did not finish within the caller's wait."},
    {"name": "webhooks", "description": "Signed product webhooks from Shopify and WooCommerce stores."},
    {"name": "health", "description": "Liveness, readiness and metrics."},
    {"name": "analytics", "description": "Price history and vendor health from the PostgreSQL long-term store."},
]


def _parameter(parameter: dict[str, Any], currencies: list[str]) -> None:
    schema = parameter.get("schema", {})
    ids = schema.pop("x-catalog-ids", None)
    wants_currencies = schema.pop(CURRENCY_ENUM, None)
    schema = parameter_schema(schema, {})
    if wants_currencies:
        schema = {"type": "string", "enum": currencies}
    if ids is not None:
        schema = {
            "type": "array",
            "items": {"type": "string", "pattern": ids["pattern"]},
            "minItems": 1,
            "maxItems": ids["maxItems"],
        }
    if schema.get("type") == "array":
        parameter["style"] = "form"
        parameter["explode"] = False
    parameter["schema"] = schema


ERROR_SHAPE = {"$ref": "#/components/schemas/ErrorResponse"}


def _one_error_shape(operation: dict[str, Any]) -> None:
    """FastAPI documents its validation errors in a shape of its own; ours folds them into the one error shape.
    Any request may answer 413: the body limit stands in front of every route."""
    responses = operation.setdefault("responses", {})
    responses.setdefault(
        "413",
        {"description": ERROR_STATUSES[413], "content": {"application/json": {"schema": ERROR_SHAPE}}},
    )
    invalid = responses.get("422")
    if invalid is not None:
        invalid["content"] = {"application/json": {"schema": ERROR_SHAPE}}
        if invalid.get("description") == "Validation Error":
            invalid["description"] = "Invalid input."


def install_openapi(app: FastAPI, *, public_url: str, currencies: Callable[[], list[str]]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=TAGS,
            servers=[{"url": public_url.rstrip("/"), "description": "This deployment (`CATALOG_PUBLIC_URL`)."}],
            license_info={"name": "Proprietary", "identifier": "LicenseRef-Proprietary"},
        )
        codes = currencies()
        for item in schema["paths"].values():
            for operation in item.values():
                for parameter in operation.get("parameters", ()):
                    _parameter(parameter, codes)
                operation.setdefault("security", [])
                _one_error_shape(operation)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
