"""Vendors: public reads with sync status, admin writes (header `X-API-Key`), and the per-vendor miss path."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from app.api.deps import AdminDep, CatalogDep, MissLimitDep, SettingsDep, TokensDep, VendorsDep
from app.api.errors import errors
from app.api.responses import JsonResponse
from app.catalog.endpoints import NOT_MODIFIED, CurrencyParam, DetailFieldsParam
from app.catalog.params import PRODUCT_FILTER_PARAMS, ProductFilters, fields_of, parse_product_filters
from app.catalog.schemas import ProductDetail, ProductList
from app.catalog.service import Pending
from app.catalog.views import View, display_rates, page_response, served_response, verified_cursor
from app.domain.models import Vendor
from app.domain.requests import RequestState
from app.ingest.endpoints import request_out
from app.ingest.schemas import RequestOut
from app.vendors.schemas import VendorIn, VendorList, VendorOut, VendorPatch
from app.vendors.service import VendorService

router = APIRouter(tags=["vendors"])

ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": RequestOut, "description": "Requested from the vendor; poll `Location`."}
}


def accepted(state: RequestState, retry_after_s: int = 1) -> Response:
    body = request_out(state)
    return JsonResponse(
        body.model_dump(mode="json"),
        status_code=202,
        headers={"Location": body.location, "Retry-After": str(retry_after_s)},
    )


def _vendor_out(vendors: VendorService, vendor: Vendor) -> VendorOut:
    state = vendors.state(vendor)
    return VendorOut.of(vendor, state.sync, state.breaker)


ADMIN = errors(401, 403)


@router.get("/vendors", operation_id="listVendors")
async def list_vendors(vendors: VendorsDep) -> VendorList:
    return VendorList(items=[_vendor_out(vendors, v) for v in vendors.list_vendors()])


@router.get("/vendors/{vendor_id}", operation_id="getVendor", responses=errors(404))
async def get_vendor(vendors: VendorsDep, vendor_id: str) -> VendorOut:
    """The vendor with its sync status: last sync, counts, skipped items by reason, last error."""
    return _vendor_out(vendors, vendors.get(vendor_id))


@router.post(
    "/vendors",
    operation_id="createVendor",
    status_code=201,
    dependencies=[AdminDep],
    responses={
        **ADMIN,
        **errors(
            409,
            413,
            422,
            s409="A vendor with this id exists.",
            s422="Invalid input, or (kind `generic`) a mapping that does not fit the vendor's first page.",
        ),
    },
)
async def add_vendor(vendors: VendorsDep, settings: SettingsDep, body: VendorIn, response: Response) -> VendorOut:
    """Register a vendor; its first full sync is requested at once."""
    vendor = await vendors.add(body.to_vendor(settings.default_refresh_interval_s))
    response.headers["Location"] = f"/vendors/{vendor.id}"
    return _vendor_out(vendors, vendor)


@router.patch(
    "/vendors/{vendor_id}",
    operation_id="updateVendor",
    dependencies=[AdminDep],
    responses={
        **ADMIN,
        **errors(
            404,
            413,
            422,
            s422="Invalid input, or (kind `generic`) a mapping that does not fit the vendor's first page.",
        ),
    },
)
async def patch_vendor(vendors: VendorsDep, vendor_id: str, body: VendorPatch) -> VendorOut:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("base_url") is not None:
        changes["base_url"] = str(body.base_url).rstrip("/")
    return _vendor_out(vendors, await vendors.patch(vendor_id, changes))


@router.delete(
    "/vendors/{vendor_id}",
    operation_id="deleteVendor",
    status_code=204,
    dependencies=[AdminDep],
    responses={**ADMIN, **errors(404)},
)
async def delete_vendor(vendors: VendorsDep, vendor_id: str) -> Response:
    """Remove the vendor and its offers; products it shared with others keep their other offers."""
    await vendors.delete(vendor_id)
    return Response(status_code=204)


@router.post(
    "/vendors/{vendor_id}/sync",
    operation_id="syncVendor",
    status_code=202,
    dependencies=[AdminDep],
    responses={**ADMIN, **errors(404, 409, 503, s409="The vendor is disabled."), **ACCEPTED},
)
async def sync_vendor(
    catalog: CatalogDep,
    vendor_id: str,
    full: Annotated[bool, Query(description="Ignore change tracking and read the whole catalog.")] = False,
) -> Response:
    return accepted(await catalog.request_sync(vendor_id, full=full), retry_after_s=2)


@router.get(
    "/vendors/{vendor_id}/products",
    operation_id="listVendorProducts",
    response_model=ProductList,
    responses={
        **NOT_MODIFIED,
        **errors(400, 404, 409, 422, 503, s409="The vendor is disabled and was never synced."),
        **ACCEPTED,
    },
    openapi_extra=PRODUCT_FILTER_PARAMS,
)
async def vendor_products(
    request: Request,
    catalog: CatalogDep,
    tokens: TokensDep,
    vendor_id: str,
    filters: Annotated[ProductFilters, Depends(parse_product_filters)],
) -> Response:
    """The products this vendor offers. A vendor never synced yet answers 202 and its sync is requested."""
    catalog.vendor(vendor_id)
    view = View(display_rates(catalog, filters.currency), fields_of(filters.fields))
    cursor = verified_cursor(tokens, filters.cursor)
    status = catalog.store.vendor_status(vendor_id)
    if status.offers == 0 and status.last_success_at is None:
        return accepted(await catalog.request_sync(vendor_id, full=True), retry_after_s=2)
    return await page_response(request, catalog, tokens, filters.to_query(vendor_id, cursor), view)


@router.get(
    "/vendors/{vendor_id}/products/{vendor_product_id}",
    operation_id="getVendorProduct",
    dependencies=[MissLimitDep],
    response_model=ProductDetail,
    responses={
        **NOT_MODIFIED,
        **errors(
            404,
            409,
            422,
            429,
            502,
            503,
            504,
            s404="No such vendor, or the vendor says it has no such product.",
            s409="The vendor is disabled.",
        ),
        200: {
            "description": "The product. `X-Data-Age`: seconds since its oldest offer was fetched; `X-Data-Stale: "
            "true` when a refresh was requested. A miss (fetched now) carries `Server-Timing: miss;dur=<ms>, "
            "queue;dur=<ms>`: the whole wait, and the part spent before a worker or the job took the request."
        },
        **ACCEPTED,
    },
)
async def vendor_product(
    request: Request,
    catalog: CatalogDep,
    vendor_id: str,
    vendor_product_id: str,
    wait_ms: Annotated[int | None, Query(ge=0, description="How long to wait for the vendor on a miss.")] = None,
    currency: CurrencyParam = None,
    fields: DetailFieldsParam = None,
) -> Response:
    """The unified product of one vendor listing: local if fresh, else fetched from the vendor.

    Missing locally: fetched, waiting up to `wait_ms` (200); not done in time: 202 with `Location` to poll;
    the vendor says it does not exist: 404.
    """
    view = View(display_rates(catalog, currency), fields_of(fields))
    result = await catalog.vendor_product(vendor_id, vendor_product_id, wait_ms)
    if isinstance(result, Pending):
        return accepted(result.state)
    return served_response(request, result, view)
