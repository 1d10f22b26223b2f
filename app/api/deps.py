"""FastAPI dependencies: the container built at start-up, handed to endpoints through short aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from app.bootstrap import Container
from app.catalog.service import CatalogService
from app.domain.cursor import TokenSigner
from app.errors import Forbidden, Unauthorized
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


async def require_admin(container: ContainerDep, x_api_key: Annotated[str | None, Depends(admin_key_header)]) -> None:
    if not x_api_key:
        raise Unauthorized("this call needs the X-API-Key header")
    if not hmac.compare_digest(x_api_key.encode(), container.settings.admin_key.encode()):
        raise Forbidden("the X-API-Key is not valid")


AdminDep = Depends(require_admin)
