"""Fetch requests: what the API asks the ingest side to do when local data is missing or stale.

The same request travels through the in-process queue (embedded) or Kafka (distributed), so it is a plain
value; its JSON form on Kafka is ``app.domain.wire.request_to_dict``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from app.domain.models import utcnow


class RequestKind(StrEnum):
    PRODUCT = "product"
    CATALOG = "catalog"


class RequestStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    NOT_FOUND = "not_found"
    FAILED = "failed"


def new_request_id() -> str:
    return "r_" + uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """``dedup_key`` makes identical concurrent requests share one vendor call.

    ``since`` (catalog requests only) asks for the changes since then: set by a node of the distributed runtime for
    an incremental sync, because the job that runs it does not hold the vendor's sync status. None reads it all.
    """

    kind: RequestKind
    vendor_id: str
    vendor_product_id: str | None = None
    full: bool = False
    id: str = field(default_factory=new_request_id)
    requested_at: datetime = field(default_factory=utcnow)
    since: datetime | None = None

    @property
    def dedup_key(self) -> tuple[str, str, str]:
        """A full sync never joins a pending incremental one: it was asked for because the incremental is not
        enough (the workers run a vendor's syncs one after the other)."""
        return (self.kind.value, self.vendor_id, self.vendor_product_id or ("full" if self.full else ""))


@dataclass(slots=True)
class RequestState:
    """What ``GET /requests/{id}`` reports."""

    request: FetchRequest
    status: RequestStatus = RequestStatus.PENDING
    product_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    finished_at: datetime | None = None
    #: How long the request waited before a worker (embedded) or the job took it, in seconds (None: not known).
    queued_s: float | None = None
