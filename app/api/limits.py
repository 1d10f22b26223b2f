"""Request bodies over ``CATALOG_MAX_BODY_BYTES`` are refused with 413 before any of them is read.

Two layers, because a body announces its size or it does not:
- a declared ``Content-Length`` over the limit is answered here at once, in the one error shape, without
  calling the application (a webhook's signature is never checked over a body too large to keep);
- a chunked body is counted as it is read by FastAPI's own limit (``FastAPI(max_body_size=...)``), which stops
  reading at the limit and raises a 413 the error handler shapes.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import error_response


class DeclaredBodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                response = error_response(
                    413,
                    "payload_too_large",
                    f"the request body may not exceed {self.max_body_bytes} bytes",
                    {"limit": self.max_body_bytes},
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
