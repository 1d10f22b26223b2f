"""The ordering guard: an offer older than the one stored never overwrites it.

Webhooks arrive late and out of order, a sync page read before a webhook can be written after it, and a changelog is
replayed; each carries the vendor's own change time (``vendor_updated_at``). Written last must not mean newest, so
every offer write (syncs, webhooks, the changelog: they all go through ``SqliteCatalog.upsert_offers``) first drops
the offers whose vendor change time is before the stored one's. Equal times pass (a re-fetch of the same version is
idempotent by content anyway); an offer or a stored row without a time passes (nothing to compare).

Kept apart from the offer writer (``offers.py``): it is a filter before the write, not part of unification.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from datetime import datetime

from app.domain.models import Offer
from app.store.sqlite.connection import chunks, dt, marks

log = logging.getLogger(__name__)


def newer_only(conn: sqlite3.Connection, batch: list[Offer]) -> list[Offer]:
    """``batch`` without the offers older than what is stored (read inside the caller's write transaction)."""
    timed: dict[str, dict[str, datetime]] = defaultdict(dict)
    for offer in batch:
        if offer.vendor_updated_at is not None:
            timed[offer.vendor_id][offer.vendor_product_id] = offer.vendor_updated_at
    if not timed:
        return batch
    older: set[tuple[str, str]] = set()
    for vendor_id, incoming in timed.items():
        for chunk in chunks(list(incoming)):
            for vpid, stored in conn.execute(
                f"SELECT vendor_product_id, vendor_updated_at FROM offers "
                f"WHERE vendor_id = ? AND vendor_product_id IN ({marks(len(chunk))}) AND vendor_updated_at IS NOT NULL",
                (vendor_id, *chunk),
            ):
                stored_at = dt(stored)
                if stored_at is not None and incoming[vpid] < stored_at:
                    older.add((vendor_id, vpid))
    if not older:
        return batch
    log.info("dropped %d offer update(s) older than the stored version", len(older))
    return [o for o in batch if o.key not in older]
