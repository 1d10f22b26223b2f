"""Liveness and readiness bodies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str


class ReplicationStatus(BaseModel):
    """The PostgreSQL push as this node's SQLite file records it (whichever process pushes)."""

    pushing: bool = Field(description="This process runs the push loop (false when `catalog sync run` does).")
    backlog: int = Field(description="Captured changes not yet acknowledged by PostgreSQL.")
    lag_s: float = Field(description="Age of the oldest unsent change, in seconds (0: nothing pending).")
    watermark: int = Field(description="Last outbox sequence PostgreSQL acknowledged.")
    last_push_at: float | None = Field(None, description="Unix time of the last acknowledged batch.")
    last_error: str | None = None
    blocked: dict[str, Any] | None = Field(None, description="The row PostgreSQL rejected, while the push is stopped.")
    connected: bool | None = None
    schema_ok: bool | None = None


class Ready(BaseModel):
    ready: bool
    checks: dict[str, bool]
    queue_depth: int
    pending_requests: int
    runtime: str
    replication: ReplicationStatus | None = Field(None, description="Present when DATABASE_URL is set.")
