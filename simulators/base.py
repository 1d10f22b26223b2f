"""What every platform simulator shares: the request pipeline, the render cache and the control endpoints.

A platform subclass only says how an item looks on its wire and how its errors are spelled. Everything a
client must survive (latency, injected 500/429/hang/malformed, changes over time) is applied here, once, so
the three platforms misbehave in exactly the same, configurable way.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from simulators.common import dumps, json_response
from simulators.config import SimConfig, SimConfigPatch
from simulators.state import SimState
from simulators.webhooks import WebhookOrder, deliver

Handler = Callable[[Request], Awaitable[Response]]


class Simulator(ABC):
    carried_fraction: ClassVar[float] = 1.0
    webhook_topics: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: SimConfig) -> None:
        self.state = SimState(config, self.carried_fraction)
        self._rendered: dict[int, bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interval_changed = asyncio.Event()
        self._release_hangs = asyncio.Event()
        self.app = Starlette(routes=[*self.routes(), *self._control_routes()], lifespan=self._lifespan)

    @property
    def config(self) -> SimConfig:
        return self.state.config

    # -- platform hooks -----------------------------------------------------------------------------------

    @abstractmethod
    def routes(self) -> list[BaseRoute]: ...

    @abstractmethod
    def render(self, pos: int) -> dict[str, Any]:
        """The item at catalog position ``pos`` in the platform's wire format, as of now."""

    @abstractmethod
    def public_id(self, pos: int) -> int:
        """The id the platform shows for the item at ``pos``."""

    @abstractmethod
    def server_error(self) -> Response: ...

    @abstractmethod
    def rate_limited(self) -> Response: ...

    def authenticate(self, request: Request) -> Response | None:
        """None when the request may proceed, else the platform's own refusal."""
        return None

    def finish(self, request: Request, response: Response) -> Response:
        """Last touch on every catalog response (Shopify adds its call-limit header here)."""
        return response

    def webhook_headers(self, topic: str, body: bytes, secret: str, delivery_id: str) -> dict[str, str]:
        """The headers this platform sends with a webhook; only platforms with ``webhook_topics`` are asked."""
        raise RuntimeError(f"{type(self).__name__} sends no webhooks")

    def webhook_body(self, topic: str, pos: int) -> bytes:
        """A delete names the product only (it is gone); the others carry the product as the API shows it."""
        if topic.endswith(("delete", "deleted")):
            return dumps({"id": self.public_id(pos)})
        return self.item_json(pos)

    def truth(self) -> dict[str, str]:
        """Which item each listing is: the id a catalog client files the listing under (``vendor_product_id``)
        -> the item's id in the shared catalog. Listings of one item in several stores share that id, so a test
        can score how a catalog unified them."""
        return {str(self.public_id(pos)): str(self.state.catalog[pos].id) for pos in self.state.carried}

    # -- rendering ----------------------------------------------------------------------------------------

    def item_json(self, pos: int) -> bytes:
        """The item serialised once and reused until it changes: pages are joins of cached bytes."""
        cached = self._rendered.get(pos)
        if cached is None:
            cached = self._rendered[pos] = dumps(self.render(pos))
        return cached

    def items_json(self, positions: Sequence[int]) -> list[bytes]:
        return [self.item_json(pos) for pos in positions]

    def warm(self) -> None:
        """Render every carried item now, so a benchmark measures the client rather than first renders."""
        for pos in self.state.carried:
            self.item_json(pos)

    def tick(self) -> list[int]:
        changed = self.state.tick()
        for pos in changed:
            self._rendered.pop(pos, None)
        return changed

    # -- the request pipeline -----------------------------------------------------------------------------

    def endpoint(self, handler: Handler) -> Handler:
        async def serve(request: Request) -> Response:
            state = self.state
            state.requests += 1
            config = state.config
            if config.latency_ms > 0:
                await asyncio.sleep(config.latency_ms / 1000)
            refused = self.authenticate(request)
            if refused is not None:
                return self.finish(request, refused)
            mode = state.draw_failure()
            if mode == "500":
                return self.finish(request, self.server_error())
            if mode == "429":
                return self.finish(request, self.rate_limited())
            if mode == "hang":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._release_hangs.wait(), timeout=config.hang_s)
            response = await handler(request)
            if mode == "malformed":
                response = _truncated(response)
            return self.finish(request, response)

        return serve

    # -- lifecycle ----------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        # Fresh events bound to this loop: the same simulator may be served again by another server.
        self._interval_changed = asyncio.Event()
        self._release_hangs = asyncio.Event()
        ticker = asyncio.create_task(self._ticker())
        try:
            yield
        finally:
            self._release_hangs.set()
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _ticker(self) -> None:
        while True:
            self._interval_changed.clear()
            interval = self.config.change_interval_s
            if interval <= 0:
                await self._interval_changed.wait()
                continue
            try:
                await asyncio.wait_for(self._interval_changed.wait(), timeout=interval)
            except TimeoutError:
                self.tick()

    def release_hangs_threadsafe(self) -> None:
        """Let sleeping "hang" requests answer now, so a server can stop without waiting them out."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._release_hangs.set)

    # -- control endpoints (no auth, never failing) -------------------------------------------------------

    def _control_routes(self) -> list[BaseRoute]:
        return [
            Route("/_sim/config", self._get_config, methods=["GET"]),
            Route("/_sim/config", self._patch_config, methods=["PATCH"]),
            Route("/_sim/tick", self._post_tick, methods=["POST"]),
            Route("/_sim/stats", self._get_stats, methods=["GET"]),
            Route("/_sim/webhook", self._post_webhook, methods=["POST"]),
        ]

    async def _get_config(self, _request: Request) -> Response:
        return json_response(self.config.model_dump(mode="json"))

    async def _patch_config(self, request: Request) -> Response:
        try:
            patch = SimConfigPatch.model_validate_json(await request.body())
            new = patch.apply(self.config)
        except ValidationError as exc:
            return json_response({"detail": orjson.loads(exc.json(include_url=False))}, status_code=422)
        old = self.config
        self.state.config = new
        if new.bad_item_rate != old.bad_item_rate:
            self._rendered.clear()
        if new.change_interval_s != old.change_interval_s:
            self._interval_changed.set()
        return json_response(new.model_dump(mode="json"))

    async def _post_tick(self, _request: Request) -> Response:
        changed = self.tick()
        return json_response({"changed": len(changed), "ids": [self.public_id(pos) for pos in changed]})

    async def _get_stats(self, _request: Request) -> Response:
        return json_response(self.state.stats())

    async def _post_webhook(self, request: Request) -> Response:
        """Send one signed webhook about an item now, the way the platform would, and say how it was answered."""
        if not self.webhook_topics:
            return json_response({"detail": "this platform sends no webhooks"}, status_code=404)
        try:
            order = WebhookOrder.model_validate_json(await request.body())
        except ValidationError as exc:
            return json_response({"detail": orjson.loads(exc.json(include_url=False))}, status_code=422)
        if order.topic not in self.webhook_topics:
            return json_response({"detail": f"topics: {sorted(self.webhook_topics)}"}, status_code=422)
        pos = next((p for p in self.state.carried if self.public_id(p) == order.item), None)
        if pos is None:
            return json_response({"detail": f"no item {order.item}"}, status_code=404)
        body = self.webhook_body(order.topic, pos)
        headers = self.webhook_headers(order.topic, body, order.secret, order.delivery_id)
        answer = await deliver(order.url, body, headers)
        return json_response({"delivery_id": order.delivery_id, **answer})


def _truncated(response: Response) -> Response:
    """The same response cut off mid-JSON, as a proxy dropping the tail of a body would leave it."""
    body = bytes(response.body)
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    return Response(body[: max(1, len(body) // 2)], status_code=response.status_code, headers=headers)
