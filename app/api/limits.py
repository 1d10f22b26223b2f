"""Request bodies over ``CATALOG_MAX_BODY_BYTES`` are refused with 413 before any of them is read, in the one error
shape.

Two cases, because a body announces its size or it does not:
- a declared ``Content-Length`` over the limit is answered here at once, without calling the application (a
  webhook's signature is never checked over a body too large to keep);
- a chunked body is counted as it is read: the read that passes the limit raises a 413 ``HTTPException``, which
  FastAPI lets through its body parsing and the error handler shapes.

Not FastAPI's own ``max_body_size``: its middleware sits outside every user middleware and replaces any answer to
a request whose declared length is over the limit with a plain-text 413, so the error shape would be lost.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            response = error_response(
                413, "payload_too_large", self._message, {"limit": self.max_body_bytes}, headers={"Connection": "close"}
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413, self._message)
            return message

        await self.app(scope, counted, send)

    @property
    def _message(self) -> str:
        return f"the request body may not exceed {self.max_body_bytes} bytes"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
