"""GET /metrics: the Prometheus text format, from the providers the container registered.

Public like /health and /ready: it carries counts and timings, no catalog data, and scrapers rarely send keys.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from app.api.deps import ContainerDep
from app.observability import Metric, render

router = APIRouter(tags=["health"])

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/metrics", operation_id="getMetrics", response_class=PlainTextResponse)
async def metrics(container: ContainerDep) -> PlainTextResponse:
    """Gauges and counters of this node (replication backlog, lag, errors when DATABASE_URL is set)."""
    state = container.health.readiness()
    collected: list[Metric] = [
        Metric("catalog_up", "1: this process answers.", "gauge", 1),
        Metric("catalog_ready", "1 when every readiness check passes.", "gauge", int(state.ready)),
        Metric("catalog_queue_depth", "Requests waiting for a worker.", "gauge", container.queue.depth),
    ]
    for provider in container.metric_providers:
        collected.extend(provider())
    collected.extend(state.metrics)
    return PlainTextResponse(render(collected), media_type=CONTENT_TYPE)
