"""Benchmark baselines (only with `CATALOG_BENCH_ROUTES=true`).

The benchmarks compare a real route to this one serving a precomputed body of the same size through the same
server and middleware, so the ratio shows what our code costs on top of the framework on a noisy machine.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.api.responses import JSON

router = APIRouter(prefix="/_bench", include_in_schema=False)


@router.put("/body")
async def put_body(request: Request) -> Response:
    request.app.state.bench_body = await request.body()
    return Response(status_code=204)


@router.get("/body")
async def get_body(request: Request) -> Response:
    return Response(content=request.app.state.bench_body, media_type=JSON)
