"""GET /changes (a page of the change feed) and GET /changes/stream (the same feed as Server-Sent Events)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import ContainerDep
from app.api.errors import errors
from app.bootstrap import Container
from app.catalog.params import exact_int
from app.changes.schemas import ChangePage
from app.changes.service import Change, ChangeFeed
from app.domain.changes import ChangeToken
from app.domain.cursor import TOKEN_MAX_LENGTH, TOKEN_PATTERN, InvalidCursor, TokenSigner
from app.errors import InvalidInput, InvalidToken

router = APIRouter(tags=["changes"])

HEARTBEAT_S = 15.0

SinceParam = Annotated[
    str | None,
    Query(
        max_length=TOKEN_MAX_LENGTH,
        pattern=TOKEN_PATTERN,
        description="`next` of the previous page (or an event id of the stream); none: from the beginning, every "
        "product there is.",
    ),
]


def changes_of(container: Container) -> ChangeFeed:
    assert container.changes is not None, "build_container sets the change feed"
    return container.changes


def _token(signer: TokenSigner, raw: str | None) -> ChangeToken | None:
    if raw is None:
        return None
    try:
        return ChangeToken.decode(signer.verify(raw))
    except InvalidCursor as exc:
        raise InvalidToken(str(exc), details={"parameter": "since"}) from None


def _limit(raw: str | None, default: int, high: int) -> int:
    """Exactly what the schema says: an integer 1..high (``exact_int``, not pydantic's lax parsing)."""
    if raw is None:
        return default
    try:
        value = exact_int(raw)
    except ValueError:
        value = None
    if type(value) is not int or not 1 <= value <= high:
        raise InvalidInput(f"limit must be an integer from 1 to {high}", details={"parameter": "limit"})
    return value


def _change_json(change: Change) -> bytes:
    product = change.summary if change.summary is not None else b"null"
    head = orjson.dumps({"id": change.product_id, "deleted": change.summary is None})[:-1]
    return head + b',"product":' + product + b"}"


#: One Server-Sent Event of the stream, as SSE parsers (and schemathesis) see it.
EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["change"]},
        "id": {"type": "string", "description": "The token that resumes right after this change."},
        "data": {"type": "string", "description": "JSON: `{id, deleted, product}`, as an item of `/changes`."},
        "retry": {"type": "integer"},
    },
}

LIMIT_DOC = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    "description": "Changes per page.",
}


@router.get(
    "/changes",
    operation_id="listChanges",
    response_model=ChangePage,
    responses=errors(400, 410, 422),
    openapi_extra={"parameters": [LIMIT_DOC]},
)
async def list_changes(request: Request, container: ContainerDep, since: SinceParam = None) -> Response:
    """Products changed since `since` (upserts with their list document, deletions as tombstones), in commit
    order, each once, and the `next` token. 410: the token is older than the feed keeps, resync from the start."""
    feed = changes_of(container)
    signer = container.tokens
    page = await feed.page(_token(signer, since), _limit(request.query_params.get("limit"), 100, 1000))
    body = b"".join(
        (
            b'{"changes":[',
            b",".join(_change_json(c) for c in page.changes),
            b'],"next":',
            orjson.dumps(signer.sign(page.next.encode())),
            b',"more":',
            b"true" if page.more else b"false",
            b"}",
        )
    )
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get(
    "/changes/stream",
    operation_id="streamChanges",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`text/event-stream`: one `change` event per change (`data`: `{id, deleted, product}` as "
            "in `/changes`; `id`: the token that resumes after it), a comment every 15 s. The server ends the "
            "stream after `CATALOG_CHANGES_STREAM_MAX_S`; reconnect with `Last-Event-ID` (EventSource does).",
            "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
        },
        **errors(400, 410, 422),
    },
)
async def stream_changes(request: Request, container: ContainerDep, since: SinceParam = None) -> StreamingResponse:
    """Live price and stock updates: the change feed as Server-Sent Events, from `since` (none: from the
    beginning) on. A reconnecting EventSource sends `Last-Event-ID` (an event's id), which wins over `since`.
    Validated before the stream starts, so a bad token is a plain 400/410."""
    last_event_id = request.headers.get("last-event-id")
    feed = changes_of(container)
    signer = container.tokens
    token = _token(signer, last_event_id or since) or feed.start()
    feed.check(token)
    settings = container.settings

    async def events() -> AsyncIterator[bytes]:
        nonlocal token
        ends = time.monotonic() + settings.changes_stream_max_s
        beat = time.monotonic() + HEARTBEAT_S
        yield b"retry: 1000\n\n"
        while time.monotonic() < ends and not await request.is_disconnected():
            page = await feed.page(token, 100)
            for change in page.changes:
                yield b"event: change\nid: " + signer.sign(change.after.encode()).encode() + b"\ndata: "
                yield _change_json(change) + b"\n\n"
            token = page.next
            if page.more:
                continue
            if time.monotonic() >= beat:
                beat = time.monotonic() + HEARTBEAT_S
                yield b": keep-alive\n\n"
            await asyncio.sleep(settings.changes_poll_s)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        # identity: the gzip middleware would otherwise hold events back until it has a block to compress
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Content-Encoding": "identity"},
    )
