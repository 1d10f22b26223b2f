"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ContainerDep
from app.api.errors import errors
from app.errors import ServiceUnavailable
from app.health.schemas import Health, Ready, ReplicationStatus

router = APIRouter(tags=["health"])


@router.get("/health", operation_id="getHealth")
async def health() -> Health:
    """The process is alive (it says nothing about its dependencies)."""
    return Health(status="ok")


@router.get(
    "/ready",
    operation_id="getReadiness",
    responses=errors(503, s503="Not ready: `details` has the failing checks and their reasons."),
)
async def ready(container: ContainerDep) -> Ready:
    """The store answers and the workers run; 503 with the failing checks otherwise."""
    state = container.health.readiness()
    body = Ready(
        ready=state.ready,
        checks=state.checks,
        queue_depth=container.queue.depth,
        pending_requests=container.tracker.pending(),
        runtime=container.settings.runtime,
        replication=ReplicationStatus(**state.replication) if state.replication is not None else None,
    )
    if not body.ready:
        raise ServiceUnavailable(
            f"not ready: {'; '.join(state.reasons)}",
            retry_after=5,
            details={**body.model_dump(), "reasons": state.reasons},
        )
    return body
