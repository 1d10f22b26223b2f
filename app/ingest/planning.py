"""Full or incremental, and since when: the one planning rule of a catalog sync, for both runtimes.

The embedded workers apply it when they run a sync; a node of the distributed runtime applies it when it publishes a
catalog request, because the Flink job that runs the sync holds no sync status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta

from app.domain.models import VendorKind
from app.domain.queries import VendorSyncStatus
from app.domain.requests import FetchRequest
from app.store.port import CatalogStore

#: Incremental syncs ask for changes since the last success minus this margin, because vendor clocks and our
#: own can disagree and an item updated during the previous sync must not be missed.
SINCE_MARGIN = timedelta(minutes=5)


def incremental_since(last_success_at: datetime | None) -> datetime | None:
    return None if last_success_at is None else last_success_at - SINCE_MARGIN


def plan_sync(
    requested_full: bool, status: VendorSyncStatus, supports_changes_since: bool
) -> tuple[bool, datetime | None]:
    """A vendor never fully synced, or one that cannot filter by change time, is read whole (and then counts as full,
    so unlisted offers are marked); otherwise the changes since the last success, minus ``SINCE_MARGIN``."""
    full = requested_full or status.last_full_sync_at is None or not supports_changes_since
    return full, None if full else incremental_since(status.last_success_at)


def plan_catalog(
    request: FetchRequest, *, store: CatalogStore, changes_since: Callable[[VendorKind], bool]
) -> FetchRequest:
    """The request with ``full`` and ``since`` decided from this node's sync status (a vendor this node does not
    hold is left as asked: the job fails it as unknown). ``changes_since``: whether a platform filters by change
    time, a fact of the platform, so no vendor client is built to learn it."""
    vendor = store.get_vendor(request.vendor_id)
    if vendor is None:
        return request
    full, since = plan_sync(request.full, store.vendor_status(vendor.id), changes_since(vendor.kind))
    return dataclasses.replace(request, full=full, since=since)
