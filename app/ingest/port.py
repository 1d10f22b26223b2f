"""The request-queue port: in-process for the embedded runtime, Kafka for the distributed one."""

from __future__ import annotations

from typing import Protocol

from app.domain.requests import FetchRequest


class RequestQueue(Protocol):
    """Carries fetch requests to whoever calls the vendors (in-process workers, or Kafka + Flink)."""

    @property
    def healthy(self) -> bool:
        """False when requests cannot currently be delivered (workers stopped, broker unreachable)."""
        ...

    @property
    def reason(self) -> str | None:
        """Why it is not healthy, for /ready (None when it is)."""
        ...

    async def publish(self, request: FetchRequest) -> None:
        """Hand over a request; raises ``ServiceUnavailable`` with a retry hint when it cannot be taken now."""
        ...

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
