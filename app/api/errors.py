"""The one error handler: every failure leaves the API as ``{"error": {"code", "message", "details"}}``.

FastAPI's own validation errors and Starlette's HTTP errors (unknown route, wrong method) are folded into the
same shape, so a client needs exactly one error parser.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.api.responses import JsonResponse
from app.errors import CatalogError, RateLimited, ServiceUnavailable, VendorRateLimited

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorResponse(BaseModel):
    """The body of every non-2xx answer."""

    error: ErrorBody


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JsonResponse(body, status_code=status, headers=headers)


_STATUS_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CatalogError)
    async def _catalog_error(_: Request, exc: CatalogError) -> JsonResponse:
        headers = None
        if isinstance(exc, ServiceUnavailable | VendorRateLimited | RateLimited):
            headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        if exc.status_code >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return error_response(exc.status_code, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JsonResponse:
        problems = [
            {
                "location": ".".join(str(p) for p in err.get("loc", ())),
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
            for err in exc.errors()
        ]
        return error_response(422, "invalid_input", "the request is not valid", {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JsonResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 400:
            # FastAPI's "error parsing the body": input that is not valid, like every other (400 is kept for tokens
            # this API did not issue, so a client can tell the two apart).
            return error_response(422, "invalid_input", "the request body could not be read", headers=headers)
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JsonResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "something went wrong on our side")


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path: Starlette's own ``Allow`` names only the first route that
    matched the path, and ``GET /vendors/{id}``, ``PATCH`` and ``DELETE`` are three routes. Each method is tried
    against the routes' public ``matches``, so included routers are asked as they route."""
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.routes)
    ]
    return ", ".join(allowed)


#: Every status an operation may answer in the error shape, with what it means; operations pick theirs with
#: ``errors(...)``, so the schema lists exactly what each can answer.
ERROR_STATUSES: dict[int, str] = {
    400: "A cursor or token this API did not issue (edited, truncated or signed with another key).",
    401: "Missing `X-API-Key` on an admin call.",
    403: "Wrong `X-API-Key`.",
    404: "Not found.",
    409: "Conflicts with the current state.",
    410: "The change token is older than the feed keeps: resync from the start.",
    413: "The request body is larger than `CATALOG_MAX_BODY_BYTES`.",
    415: "The format asked for cannot be produced by this build.",
    422: "Invalid input.",
    429: "Too many requests from this client (misses that cost a vendor call, admin key failures); see `Retry-After`.",
    502: "The vendor failed.",
    503: "Temporarily unable; see `Retry-After`.",
    504: "The vendor did not answer in time.",
}


def errors(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these statuses, all in the one error shape; ``described`` overrides a description
    (keys ``s404`` and so on)."""
    out: dict[int | str, dict[str, Any]] = {}
    if 401 in statuses and 429 not in statuses:  # every admin call: key failures are rate-limited per client
        statuses = (*statuses, 429)
    for status in statuses:
        description = described.get(f"s{status}", ERROR_STATUSES[status])
        out[status] = {"model": ErrorResponse, "description": description}
    return out


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        401: "Missing `X-API-Key` on an admin call.",
        403: "Wrong `X-API-Key`.",
        404: "Not found.",
        409: "Conflicts with the current state.",
        422: "Invalid input.",
        429: "Too many requests from this client (misses that cost a vendor call, admin key failures); see "
        "`Retry-After`.",
        502: "The vendor failed.",
        503: "Temporarily unable; see `Retry-After`.",
    }.items()
}
