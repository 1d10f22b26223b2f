"""Interactive docs served by the service itself: Swagger UI at /docs, ReDoc at /redoc.

FastAPI's defaults load both from a CDN, so offline, in a locked-down network or behind a strict
Content-Security-Policy the pages stay blank. The assets come from a pinned package (``fastapi-offline``, which
ships Swagger UI 5 and ReDoc 2 as files) and are served from /docs/assets; the pages carry no inline script, so
they work under the ``script-src 'self'`` policy they are sent with.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'"
)


def assets_dir() -> Path:
    return Path(str(resources.files("fastapi_offline") / "static"))


def _page(title: str, head: str, body: str) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="{ASSETS}/favicon.png">{head}</head><body>{body}</body></html>'
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})


def install_docs(app: FastAPI) -> None:
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _page(
            f"{title} - Swagger UI",
            f'<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">',
            f'<div id="swagger-ui"></div><script src="{ASSETS}/swagger-ui-bundle.js"></script>'
            '<script src="/docs/init.js"></script>',
        )

    @app.get("/docs/init.js", include_in_schema=False)
    async def swagger_init() -> Response:
        script = (
            f'window.ui = SwaggerUIBundle({{url: "{openapi_url}", dom_id: "#swagger-ui", deepLinking: true, '
            "presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout'});\n"
        )
        return Response(script, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _page(
            f"{title} - ReDoc",
            "",
            f'<redoc spec-url="{openapi_url}"></redoc><script src="{ASSETS}/redoc.standalone.js"></script>',
        )
