"""The ordering guard: an offer older than the one stored never overwrites it.

Webhooks arrive late and out of order, a sync page read before a webhook can be written after it, a changelog is
replayed, and in the kafka runtime a shopper's miss (the interactive topic) and a catalog page (``product_updates``)
are applied by two consumers in no fixed order. Written last must not mean newest, so every offer write (syncs,
webhooks, the changelog: they all go through ``SqliteCatalog.upsert_offers``) first drops the offers observed
before the stored one:
- the vendor's own change time (``vendor_updated_at``) decides when both carry one and they differ;
- otherwise the time the offer was fetched does: a vendor whose update time did not move (DummyJSON's does not
  when only the stock changes) or that sends none. Equal times pass (a re-fetch of the same version is idempotent
  by content anyway).
Without the second rule a late miss of the same version moved ``fetched_at`` back, and the full sync that had
just re-fetched the offer then marked it discontinued as if the vendor had stopped listing it. For the same reason
a dropped offer fetched later than the stored one still moves the stored ``fetched_at`` on: the vendor listed the
item then (a sync reading a version older than a webhook's has seen it), so the sweep after a full sync keeps it.

Kept apart from the offer writer (``offers.py``): it is a filter before the write, not part of unification.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from app.domain.documents import iso
from app.domain.models import Offer
from app.store.sqlite.connection import chunks, dt, marks, value_lists

log = logging.getLogger(__name__)


def observed_before(offer: Offer, vendor_updated_at: datetime | None, fetched_at: datetime) -> bool:
    """Whether ``offer`` is an older observation than one with these times (the rule above)."""
    theirs = offer.vendor_updated_at
    if theirs is not None and vendor_updated_at is not None and theirs != vendor_updated_at:
        return theirs < vendor_updated_at
    return offer.fetched_at < fetched_at


#: What the writer needs next of each stored offer: its content hash, product and match key.
Stored = dict[tuple[str, str], tuple[bytes, str, str | None]]


def newer_only(conn: sqlite3.Connection, batch: list[Offer], stored: Stored) -> list[Offer]:
    """``batch`` without the offers older than what is stored (read inside the caller's write transaction).

    ``stored`` receives the rows read (``Stored``): the writer looks them up next, and reading the same rows a
    second time was one more lookup per offer.
    """
    incoming: dict[str, dict[str, Offer]] = defaultdict(dict)
    for offer in batch:
        incoming[offer.vendor_id][offer.vendor_product_id] = offer
    older: set[tuple[str, str]] = set()
    seen: list[tuple[str | None, str, str]] = []  # dropped, but fetched after the stored version
    for vendor_id, offers in incoming.items():
        for chunk in chunks(list(offers)):
            for vpid, vendor_at, fetched, content_hash, product_id, mk in conn.execute(
                f"SELECT vendor_product_id, vendor_updated_at, fetched_at, content_hash, product_id, match_key "
                f"FROM offers WHERE vendor_id = ? AND vendor_product_id IN ({marks(len(chunk))})",
                (vendor_id, *chunk),
            ):
                stored[(vendor_id, vpid)] = (content_hash, product_id, mk)
                offer = offers[vpid]
                stored_fetch = datetime.fromisoformat(fetched)
                if observed_before(offer, dt(vendor_at), stored_fetch):
                    older.add((vendor_id, vpid))
                    if offer.fetched_at > stored_fetch:
                        seen.append((iso(offer.fetched_at), vendor_id, vpid))
    if not older:
        return batch
    if seen:
        touch_fetched(conn, seen)
    log.info("dropped %d offer update(s) older than the stored version", len(older))
    return [o for o in batch if o.key not in older]


def touch_fetched(conn: sqlite3.Connection, rows: Sequence[tuple[str | None, str, str]]) -> None:
    """``UPDATE offers SET fetched_at`` for many (fetched_at, vendor_id, vendor_product_id), in multi-row
    statements for the reason ``insert_rows`` gives (replication's triggers on ``offers``); each row is found by
    the offer's unique key, so the cost follows the rows given, not the catalog. Keys must be distinct."""
    for values, params in value_lists(conn, 3, rows):
        conn.execute(
            f"UPDATE offers SET fetched_at = v.column1 FROM (VALUES {values}) AS v "
            f"WHERE offers.vendor_id = v.column2 AND offers.vendor_product_id = v.column3",
            params,
        )
