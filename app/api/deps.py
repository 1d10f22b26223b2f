"""FastAPI dependencies: the container built at start-up, handed to endpoints through short aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from app.bootstrap import Container
from app.catalog.service import CatalogService
from app.domain.cursor import TokenSigner
from app.errors import Forbidden, RateLimited, Unauthorized
from app.matching.service import MatchingService
from app.settings import Settings
from app.vendors.service import VendorService


# Dependencies are ``async`` on purpose: FastAPI runs plain ``def`` dependencies in a thread pool, a hop that
# cost more than the whole detail read.
async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def get_catalog(request: Request) -> CatalogService:
    catalog: CatalogService = request.app.state.container.catalog
    return catalog


async def get_vendors(request: Request) -> VendorService:
    vendors: VendorService = request.app.state.container.vendors
    return vendors


async def get_matching(request: Request) -> MatchingService:
    matching: MatchingService = request.app.state.container.matching
    return matching


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.container.settings
    return settings


async def get_tokens(request: Request) -> TokenSigner:
    tokens: TokenSigner = request.app.state.container.tokens
    return tokens


ContainerDep = Annotated[Container, Depends(get_container)]
TokensDep = Annotated[TokenSigner, Depends(get_tokens)]
CatalogDep = Annotated[CatalogService, Depends(get_catalog)]
VendorsDep = Annotated[VendorService, Depends(get_vendors)]
MatchingDep = Annotated[MatchingService, Depends(get_matching)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


#: The admin key as an OpenAPI ``apiKey`` security scheme, so generated clients know how to authenticate; the
#: check itself stays ours (401 without it, 403 when wrong, both in the error shape).
ADMIN_KEY_SCHEME = "AdminKey"
admin_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name=ADMIN_KEY_SCHEME,
    description="The admin key (setting `CATALOG_ADMIN_KEY`).",
    auto_error=False,
)


async def require_admin(
    request: Request, container: ContainerDep, x_api_key: Annotated[str | None, Depends(admin_key_header)]
) -> None:
    """A client out of admin-failure tokens gets 429 before its key is even compared (``app.api.ratelimit``)."""
    limits = container.limits
    client = limits.clients.of(request)
    if (wait := limits.admin_failures.wait(client)) is not None:
        raise RateLimited("too many admin calls with a wrong or missing key; retry later", retry_after=wait)
    if not x_api_key:
        limits.admin_failures.take(client)
        raise Unauthorized("this call needs the X-API-Key header")
    if not hmac.compare_digest(x_api_key.encode(), container.settings.admin_key.encode()):
        limits.admin_failures.take(client)
        raise Forbidden("the X-API-Key is not valid")


async def limit_misses(request: Request, container: ContainerDep, vendor_id: str, vendor_product_id: str) -> None:
    """A listing the store does not hold costs a vendor call: those are limited per client; stored ones are not,
    nor ones the vendor said it does not have a moment ago (answered from memory)."""
    if container.store.find_offer(vendor_id, vendor_product_id) is not None:
        return
    if container.tracker.not_found(vendor_id, vendor_product_id) is not None:
        return
    limits = container.limits
    if (wait := limits.misses.take(limits.clients.of(request))) is not None:
        raise RateLimited(
            "too many requests for listings not in the catalog from this client; retry later", retry_after=wait
        )


AdminDep = Depends(require_admin)
MissLimitDep = Depends(limit_misses)
