"""The ASGI application: `uvicorn app.main:app`.

``create_app`` only declares routes; the adapters are built and connected in the lifespan, so importing this
module touches no file, socket or thread.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware

from app.allocator import limit_malloc_arenas, release_free_memory
from app.analytics import endpoints as analytics
from app.api import bench
from app.api.docs import install_docs
from app.api.errors import install_error_handlers
from app.api.limits import BodyLimit
from app.api.openapi import install_openapi
from app.bootstrap import build_container, load_rates
from app.catalog import endpoints as products
from app.changes import endpoints as changes
from app.health import endpoints as health
from app.health import metrics
from app.images import endpoints as images
from app.ingest import endpoints as requests
from app.matching import endpoints as matching
from app.settings import Settings
from app.vendors import endpoints as vendors
from app.vendors import webhooks

DESCRIPTION = """One fast, always-fresh product catalog unified from many vendors' APIs.

Every error has the same body: `{"error": {"code", "message", "details"}}`.
Admin calls need the `X-API-Key` header (the `AdminKey` security scheme: 401 without it, 403 with a wrong one);
every other call is public. Prices are exact decimals as strings. Cursors and change tokens are opaque and signed:
pass them back as they came.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        settings.check_deployment()  # a weak admin key or the public secret key never serves outside development
        if settings.env == "development":
            logging.getLogger(__name__).warning(
                "CATALOG_ENV=development: the default admin key and the public development secret key are accepted"
            )
        limit_malloc_arenas(settings.malloc_arenas)  # before any adapter starts a thread
        container = build_container(settings)
        release_free_memory()  # what building it parsed and freed (the matcher's trees)
        await container.start()
        # What start-up built lives as long as the service (the matcher's vocabulary and trees, routes, modules,
        # adapters): out of the collector's reach, a full collection walks only what requests and syncs made since.
        # The demo stores' ingest at 2,000 positions each saw gen-2 pauses of up to 161 ms without it (README,
        # issue 15). Unfrozen at shutdown, so an embedding process (the tests) can collect it again.
        gc.freeze()
        app.state.container = container
        try:
            yield
        finally:
            gc.unfreeze()
            await container.stop()

    app = FastAPI(
        title="Unified Vendor Catalog",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes)
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    for module in (products, changes, images, vendors, matching, requests, health, webhooks, metrics, analytics):
        app.include_router(module.router)
    if settings.bench_routes:
        app.include_router(bench.router)
    install_docs(app)

    def currencies() -> list[str]:
        container = getattr(app.state, "container", None)
        rates = container.store.rates if container is not None else load_rates(settings)
        return sorted(rates.rates) if rates is not None else []

    install_openapi(app, public_url=settings.public_url, currencies=currencies)
    return app


app = create_app()
