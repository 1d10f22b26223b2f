"""Polling a fetch request that did not finish within the caller's wait."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import CatalogDep
from app.api.errors import errors
from app.domain.requests import RequestState
from app.errors import NotFound
from app.ingest.schemas import RequestOut

router = APIRouter(tags=["requests"])


def request_out(state: RequestState) -> RequestOut:
    r = state.request
    return RequestOut(
        id=r.id,
        kind=r.kind.value,
        status=state.status.value,
        vendor_id=r.vendor_id,
        vendor_product_id=r.vendor_product_id,
        product_id=state.product_id,
        error=state.error,
        error_code=state.error_code,
        requested_at=r.requested_at,
        finished_at=state.finished_at,
        location=f"/requests/{r.id}",
    )


@router.get("/requests/{request_id}", operation_id="getRequest", responses=errors(404))
async def get_request(catalog: CatalogDep, request_id: str) -> RequestOut:
    """pending, done (with the product's id), not_found, or failed (with the vendor's error).

    Any node answers in the distributed runtime, whichever node took the request (404 only for an id no node has
    announced on the changelog within `CATALOG_REQUEST_LOOKUP_WAIT_MS`, or one expired)."""
    state = await catalog.tracker.lookup(request_id)
    if state is None:
        raise NotFound(f"request {request_id!r} is unknown or expired", details={"request_id": request_id})
    return request_out(state)
