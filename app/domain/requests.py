"""Fetch requests: what the API asks the ingest side to do when local data is missing or stale.

The same request travels through the in-process queue (embedded) or Kafka (distributed), so it is a plain
value with a stable JSON form.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "id": self.id,
            "kind": self.kind.value,
            "vendor_id": self.vendor_id,
            "vendor_product_id": self.vendor_product_id,
            "full": self.full,
            "requested_at": self.requested_at.isoformat(),
            "since": None if self.since is None else self.since.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FetchRequest:
        return cls(
            kind=RequestKind(data["kind"]),
            vendor_id=str(data["vendor_id"]),
            vendor_product_id=data.get("vendor_product_id"),
            full=bool(data.get("full", False)),
            id=str(data.get("id") or new_request_id()),
            requested_at=datetime.fromisoformat(data["requested_at"]) if data.get("requested_at") else utcnow(),
            since=datetime.fromisoformat(str(data["since"])) if data.get("since") else None,
        )


@dataclass(slots=True)
class RequestState:
    """What ``GET /requests/{id}`` reports."""

    request: FetchRequest
    status: RequestStatus = RequestStatus.PENDING
    product_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    finished_at: datetime | None = None
