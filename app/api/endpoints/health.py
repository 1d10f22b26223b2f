"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ContainerDep
from app.api.errors import ERROR_RESPONSES
from app.api.schemas import Health, Ready
from app.errors import ServiceUnavailable

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> Health:
    """The process is alive (it says nothing about its dependencies)."""
    return Health(status="ok")


@router.get("/ready", responses={503: ERROR_RESPONSES[503]})
async def ready(container: ContainerDep) -> Ready:
    """The store answers and the workers run; 503 with the failing checks otherwise."""
    checks = container.ready
    body = Ready(
        ready=all(checks.values()),
        checks=checks,
        queue_depth=container.queue.depth,
        pending_requests=container.tracker.pending(),
        runtime=container.settings.runtime,
    )
    if not body.ready:
        failing = [name for name, ok in checks.items() if not ok]
        raise ServiceUnavailable(f"not ready: {', '.join(failing)}", retry_after=5, details=body.model_dump())
    return body
