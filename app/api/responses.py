"""Response helpers for the hot paths.

Product bodies are precomputed JSON bytes, so responses are assembled from bytes rather than re-validated
through pydantic; ETags make unchanged pages cost the client nothing.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request, Response

JSON = "application/json"


class JsonResponse(Response):
    media_type = JSON

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)


def not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates


def json_with_etag(request: Request, body: bytes, etag: str, headers: dict[str, str] | None = None) -> Response:
    all_headers = {"ETag": etag, "Cache-Control": "no-cache", **(headers or {})}
    if not_modified(request, etag):
        return Response(status_code=304, headers=all_headers)
    return Response(content=body, media_type=JSON, headers=all_headers)
