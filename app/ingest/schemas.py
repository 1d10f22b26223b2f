"""The state of a fetch request, as `GET /requests/{id}` reports it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class RequestOut(BaseModel):
    id: str
    kind: str
    status: str = Field(description="pending | done | not_found | failed")
    vendor_id: str
    vendor_product_id: str | None
    product_id: str | None = Field(None, description="Set when done (product requests).")
    error: str | None = Field(None, description="The vendor's error, when failed.")
    error_code: str | None = None
    requested_at: datetime
    finished_at: datetime | None
    location: str
