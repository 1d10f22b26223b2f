"""Vendors: public reads with sync status, admin writes (header `X-API-Key`), and the per-vendor miss path."""

from __future__ import annotations

import dataclasses
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from app.api.deps import AdminDep, CatalogDep, ContainerDep
from app.api.errors import ERROR_RESPONSES
from app.api.responses import JsonResponse
from app.bootstrap import Container, http_policy
from app.catalog.endpoints import (
    NOT_MODIFIED,
    PRODUCT_FILTER_PARAMS,
    CurrencyParam,
    ProductFilters,
    display_rates,
    page_response,
    parse_product_filters,
    served_response,
)
from app.catalog.schemas import ProductDetail, ProductList
from app.catalog.service import CatalogService, Pending
from app.domain.models import Vendor, VendorKind
from app.domain.requests import RequestState
from app.errors import InvalidInput, ServiceUnavailable
from app.ingest.endpoints import request_out
from app.ingest.schemas import RequestOut
from app.sources import GenericSource, VendorHttp, validate_generic
from app.vendors.schemas import VendorIn, VendorList, VendorOut, VendorPatch

router = APIRouter(tags=["vendors"])
log = logging.getLogger(__name__)

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


def _vendor_out(catalog: CatalogService, vendor: Vendor) -> VendorOut:
    return VendorOut.of(vendor, catalog.store.vendor_status(vendor.id), catalog.breakers.get(vendor.id).snapshot())


async def check_generic(container: Container, vendor: Vendor) -> None:
    """A generic vendor's mapping against its live first page; a misfit is a 422 and nothing is stored."""
    if vendor.kind is not VendorKind.GENERIC:
        return
    http = VendorHttp(vendor.base_url, policy=http_policy(container.settings), vendor_id=vendor.id)
    async with http:
        await validate_generic(GenericSource(vendor, http))


@router.get("/vendors", responses=ERROR_RESPONSES)
async def list_vendors(catalog: CatalogDep) -> VendorList:
    return VendorList(items=[_vendor_out(catalog, v) for v in catalog.store.list_vendors()])


@router.get("/vendors/{vendor_id}", responses=ERROR_RESPONSES)
async def get_vendor(catalog: CatalogDep, vendor_id: str) -> VendorOut:
    """The vendor with its sync status: last sync, counts, skipped items by reason, last error."""
    return _vendor_out(catalog, catalog.vendor(vendor_id))


@router.post("/vendors", status_code=201, dependencies=[AdminDep], responses=ERROR_RESPONSES)
async def add_vendor(container: ContainerDep, body: VendorIn, response: Response) -> VendorOut:
    """Register a vendor; its first full sync is requested at once."""
    vendor = body.to_vendor(container.settings.default_refresh_interval_s)
    if container.store.get_vendor(vendor.id) is None:  # a duplicate is a 409 without asking the vendor
        await check_generic(container, vendor)
    await container.store.add_vendor(vendor)
    await container.vendor_saved(vendor)
    if vendor.enabled:
        try:
            await container.catalog.request_sync(vendor.id, full=True)
        except ServiceUnavailable:
            # The vendor is registered either way; with the queue full, its first sync is left to the scheduler.
            log.info("vendor %s registered; its first sync waits for the scheduler (queue full)", vendor.id)
    response.headers["Location"] = f"/vendors/{vendor.id}"
    return _vendor_out(container.catalog, vendor)


@router.patch("/vendors/{vendor_id}", dependencies=[AdminDep], responses=ERROR_RESPONSES)
async def patch_vendor(container: ContainerDep, vendor_id: str, body: VendorPatch) -> VendorOut:
    vendor = container.catalog.vendor(vendor_id)
    changes = body.model_dump(exclude_unset=True)
    if "base_url" in changes and changes["base_url"] is not None:
        changes["base_url"] = str(body.base_url).rstrip("/")
    changes = {k: v for k, v in changes.items() if v is not None}
    if "mapping" in changes and vendor.kind is not VendorKind.GENERIC:
        raise InvalidInput(
            f"a {vendor.kind.value} vendor takes no mapping (only kind generic does)",
            details={"path": "mapping", "reason": "not a generic vendor"},
        )
    updated = dataclasses.replace(vendor, **changes)
    if {"mapping", "base_url", "credentials"} & set(changes):
        await check_generic(container, updated)
    await container.store.update_vendor(updated)
    await container.vendor_saved(updated)
    return _vendor_out(container.catalog, updated)


@router.delete("/vendors/{vendor_id}", status_code=204, dependencies=[AdminDep], responses=ERROR_RESPONSES)
async def delete_vendor(container: ContainerDep, vendor_id: str) -> Response:
    """Remove the vendor and its offers; products it shared with others keep their other offers."""
    await container.store.delete_vendor(vendor_id)
    await container.vendor_deleted(vendor_id)
    container.sources.drop(vendor_id)
    container.breakers.drop(vendor_id)
    return Response(status_code=204)


@router.post(
    "/vendors/{vendor_id}/sync",
    status_code=202,
    dependencies=[AdminDep],
    responses={**ERROR_RESPONSES, **ACCEPTED},
)
async def sync_vendor(
    catalog: CatalogDep,
    vendor_id: str,
    full: Annotated[bool, Query(description="Ignore change tracking and read the whole catalog.")] = False,
) -> Response:
    return accepted(await catalog.request_sync(vendor_id, full=full), retry_after_s=2)


@router.get(
    "/vendors/{vendor_id}/products",
    response_model=ProductList,
    responses={**NOT_MODIFIED, **ERROR_RESPONSES, **ACCEPTED},
    openapi_extra=PRODUCT_FILTER_PARAMS,
)
async def vendor_products(
    request: Request,
    catalog: CatalogDep,
    vendor_id: str,
    filters: Annotated[ProductFilters, Depends(parse_product_filters)],
) -> Response:
    """The products this vendor offers. A vendor never synced yet answers 202 and its sync is requested."""
    catalog.vendor(vendor_id)
    display_rates(catalog, filters.currency)
    status = catalog.store.vendor_status(vendor_id)
    if status.offers == 0 and status.last_success_at is None:
        return accepted(await catalog.request_sync(vendor_id, full=True), retry_after_s=2)
    return page_response(request, catalog, filters.to_query(vendor_id))


@router.get(
    "/vendors/{vendor_id}/products/{vendor_product_id}",
    response_model=ProductDetail,
    responses={**NOT_MODIFIED, **ERROR_RESPONSES, **ACCEPTED},
)
async def vendor_product(
    request: Request,
    catalog: CatalogDep,
    vendor_id: str,
    vendor_product_id: str,
    wait_ms: Annotated[int | None, Query(ge=0, description="How long to wait for the vendor on a miss.")] = None,
    currency: CurrencyParam = None,
) -> Response:
    """The unified product of one vendor listing: local if fresh, else fetched from the vendor.

    Missing locally: fetched, waiting up to `wait_ms` (200); not done in time: 202 with `Location` to poll;
    the vendor says it does not exist: 404.
    """
    display = display_rates(catalog, currency)
    result = await catalog.vendor_product(vendor_id, vendor_product_id, wait_ms)
    if isinstance(result, Pending):
        return accepted(result.state)
    return served_response(request, result, display)
