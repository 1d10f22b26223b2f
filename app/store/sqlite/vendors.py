"""Vendor records and their sync-status records (``vendors``, ``vendor_sync``).

Every function takes the connection it runs on: writes are called inside a write transaction the facade
(``SqliteCatalog``) opens, reads on the calling thread's reader, so one transaction can combine them with the
offer writer's work (deleting a vendor re-unifies its products in the same commit).
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from typing import Any

import orjson

from app.domain import documents
from app.domain.models import Vendor, VendorKind, utcnow
from app.domain.queries import AppliedSync, SyncProgress, VendorSyncStatus
from app.domain.webhooks import Delivery
from app.errors import Conflict, NotFound
from app.secrets import PREFIX, Secrets
from app.sources.safety import without_userinfo
from app.store.sqlite.connection import dt, next_seq
from app.store.sqlite.offers import OfferWriter

_COLUMNS = "id, name, kind, base_url, currency, credentials, refresh_interval_s, enabled, mapping"


def _missing(vendor_id: str) -> NotFound:
    return NotFound(f"vendor {vendor_id!r} does not exist", details={"vendor_id": vendor_id})


def put(conn: sqlite3.Connection, vendor: Vendor, secrets: Secrets, *, create: bool) -> None:
    """Insert (``create``) or replace a vendor; refuses to create one twice or to update one that is not there."""
    exists = conn.execute("SELECT 1 FROM vendors WHERE id = ?", (vendor.id,)).fetchone() is not None
    if create and exists:
        raise Conflict(f"vendor {vendor.id!r} already exists", details={"vendor_id": vendor.id})
    if not create and not exists:
        raise _missing(vendor.id)
    now = documents.iso(utcnow())
    seq = next_seq(conn, 1)
    conn.execute(
        """INSERT INTO vendors (id, name, kind, base_url, currency, credentials, refresh_interval_s, enabled,
                                mapping, created_at, updated_at, change_seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind,
               base_url = excluded.base_url, currency = excluded.currency,
               credentials = excluded.credentials, refresh_interval_s = excluded.refresh_interval_s,
               enabled = excluded.enabled, mapping = excluded.mapping, updated_at = excluded.updated_at,
               change_seq = excluded.change_seq""",
        (
            vendor.id,
            vendor.name,
            vendor.kind.value,
            vendor.base_url,
            vendor.currency,
            secrets.seal(vendor.credentials),
            vendor.refresh_interval_s,
            int(vendor.enabled),
            None if vendor.mapping is None else orjson.dumps(vendor.mapping).decode(),
            now,
            now,
            seq,
        ),
    )
    conn.execute("INSERT OR IGNORE INTO vendor_sync (vendor_id) VALUES (?)", (vendor.id,))


def delete(conn: sqlite3.Connection, vendor_id: str, offers: OfferWriter) -> None:
    """Remove a vendor and its offers; products it shared with other vendors are rebuilt from the rest.

    The statements keep their order (offers, then the vendor, then the rebuilt products): the change capture
    of the replica records them in that order.
    """
    if conn.execute("SELECT 1 FROM vendors WHERE id = ?", (vendor_id,)).fetchone() is None:
        raise _missing(vendor_id)
    removed = offers.remove_vendor_offers(conn, vendor_id)
    conn.execute("DELETE FROM vendors WHERE id = ?", (vendor_id,))
    offers.settle(conn, removed)


def _from_row(row: tuple[Any, ...], secrets: Secrets) -> Vendor:
    return Vendor(
        id=row[0],
        name=row[1],
        kind=VendorKind(row[2]),
        base_url=row[3],
        currency=row[4],
        credentials=secrets.open(row[5]),
        refresh_interval_s=row[6],
        enabled=bool(row[7]),
        mapping=None if row[8] is None else orjson.loads(row[8]),
    )


def get(conn: sqlite3.Connection, vendor_id: str, secrets: Secrets) -> Vendor | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM vendors WHERE id = ?", (vendor_id,)).fetchone()
    return _from_row(row, secrets) if row else None


def list_all(conn: sqlite3.Connection, secrets: Secrets) -> list[Vendor]:
    return [_from_row(r, secrets) for r in conn.execute(f"SELECT {_COLUMNS} FROM vendors ORDER BY id").fetchall()]


def seal_clear_credentials(conn: sqlite3.Connection, secrets: Secrets) -> int:
    """Seal what an older version stored in clear: credentials, and a ``user:password@`` inside a ``base_url``
    (moved into the credentials as ``url_userinfo``). Runs when the store opens; returns how many vendors changed."""
    rows = conn.execute(
        "SELECT id, base_url, credentials FROM vendors WHERE credentials NOT LIKE ? OR base_url LIKE '%@%'",
        (PREFIX + "%",),
    ).fetchall()
    changed = 0
    for vendor_id, base_url, credentials in rows:
        clear = secrets.open(credentials)
        bare = without_userinfo(base_url)
        if bare != base_url:
            clear["url_userinfo"] = base_url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
        conn.execute(
            "UPDATE vendors SET base_url = ?, credentials = ?, change_seq = ? WHERE id = ?",
            (bare, secrets.seal(clear), next_seq(conn, 1), vendor_id),
        )
        changed += 1
    return changed


def reseal_all(conn: sqlite3.Connection, secrets: Secrets) -> int:
    """Every vendor's credentials sealed again with the first key (``catalog secrets rotate``)."""
    rows = conn.execute("SELECT id, credentials FROM vendors").fetchall()
    for vendor_id, credentials in rows:
        conn.execute(
            "UPDATE vendors SET credentials = ?, change_seq = ? WHERE id = ?",
            (secrets.reseal(credentials), next_seq(conn, 1), vendor_id),
        )
    return len(rows)


def status(conn: sqlite3.Connection, vendor_id: str) -> VendorSyncStatus:
    row = conn.execute(
        """SELECT state, started_at, finished_at, last_success_at, last_full_sync_at, last_error,
                  last_error_at, pages, items_seen, items_skipped, items_total, skip_reasons, syncs_ok,
                  syncs_failed
           FROM vendor_sync WHERE vendor_id = ?""",
        (vendor_id,),
    ).fetchone()
    if row is None:
        raise _missing(vendor_id)
    counted = conn.execute("SELECT offers, products FROM vendor_counts WHERE vendor_id = ?", (vendor_id,)).fetchone()
    offers, products = counted if counted is not None else (0, 0)  # kept by triggers (0012_vendor_counts.sql)
    return VendorSyncStatus(
        state=row[0],
        started_at=dt(row[1]),
        finished_at=dt(row[2]),
        last_success_at=dt(row[3]),
        last_full_sync_at=dt(row[4]),
        last_error=row[5],
        last_error_at=dt(row[6]),
        progress=SyncProgress(
            pages=row[7],
            items_seen=row[8],
            items_skipped=row[9],
            items_total=row[10],
            skip_reasons=orjson.loads(row[11]),
        ),
        syncs_ok=row[12],
        syncs_failed=row[13],
        offers=offers,
        products=products,
    )


def delivery(conn: sqlite3.Connection, vendor_id: str, delivery_id: str) -> Delivery | None:
    row = conn.execute(
        "SELECT answer, applied FROM webhook_deliveries WHERE vendor_id = ? AND delivery_id = ?",
        (vendor_id, delivery_id),
    ).fetchone()
    return None if row is None else Delivery(None if row[0] is None else orjson.loads(row[0]), bool(row[1]))


def record_delivery(
    conn: sqlite3.Connection,
    vendor_id: str,
    delivery_id: str,
    *,
    answer: dict[str, object] | None,
    applied: bool,
    keep_s: float,
) -> None:
    """Remember a delivery (the first answer stays; applied once, applied for good); forget those past ``keep_s``
    (platforms retry for a day or two: Shopify 48 hours)."""
    now = time.time()
    conn.execute("DELETE FROM webhook_deliveries WHERE received_at < ?", (now - keep_s,))
    conn.execute(
        """INSERT INTO webhook_deliveries (vendor_id, delivery_id, answer, applied, received_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (vendor_id, delivery_id) DO UPDATE SET answer = COALESCE(answer, excluded.answer),
               applied = max(applied, excluded.applied)""",
        (vendor_id, delivery_id, None if answer is None else orjson.dumps(answer).decode(), int(applied), now),
    )


def mark_interrupted_syncs(conn: sqlite3.Connection) -> None:
    """A sync still 'running' at start-up died with the previous process; say so, so it is rescheduled."""
    conn.execute(
        "UPDATE vendor_sync SET state = 'interrupted', finished_at = ? WHERE state = 'running'",
        (documents.iso(utcnow()),),
    )


def sync_interrupted(conn: sqlite3.Connection, vendor_id: str) -> None:
    conn.execute(
        "UPDATE vendor_sync SET state = 'interrupted', finished_at = ? WHERE vendor_id = ?",
        (documents.iso(utcnow()), vendor_id),
    )


#: Finished syncs remembered per node; a redelivery comes seconds or minutes after the original, not 10,000 syncs.
FINISHED_SYNCS_KEPT = 10_000


def applied_sync(conn: sqlite3.Connection, sync_id: str) -> AppliedSync | None:
    row = conn.execute(
        "SELECT vendor_id, last_page, finished FROM applied_syncs WHERE sync_id = ?", (sync_id,)
    ).fetchone()
    return None if row is None else AppliedSync(sync_id, row[0], row[1], bool(row[2]))


def sync_started(conn: sqlite3.Connection, vendor_id: str, sync_id: str | None = None) -> None:
    now = documents.iso(utcnow())
    conn.execute(
        """UPDATE vendor_sync SET state = 'running', started_at = ?, pages = 0, items_seen = 0,
           items_skipped = 0, items_total = NULL, skip_reasons = '{}' WHERE vendor_id = ?""",
        (now, vendor_id),
    )
    if sync_id is not None:
        conn.execute(
            "INSERT INTO applied_syncs (sync_id, vendor_id, at) VALUES (?, ?, ?) ON CONFLICT (sync_id) DO NOTHING",
            (sync_id, vendor_id, now),
        )


def sync_progress(
    conn: sqlite3.Connection,
    vendor_id: str,
    progress: SyncProgress,
    sync_id: str | None = None,
    last_page: int | None = None,
) -> None:
    """The counters, and (``sync_id``) the last page they include, in one transaction: a page is counted once."""
    conn.execute(
        """UPDATE vendor_sync SET pages = ?, items_seen = ?, items_skipped = ?, items_total = ?,
           skip_reasons = ? WHERE vendor_id = ?""",
        (
            progress.pages,
            progress.items_seen,
            progress.items_skipped,
            progress.items_total,
            orjson.dumps(progress.skip_reasons).decode(),
            vendor_id,
        ),
    )
    if sync_id is not None and last_page is not None:
        conn.execute(
            """INSERT INTO applied_syncs (sync_id, vendor_id, last_page, at) VALUES (?1, ?2, ?3, ?4)
               ON CONFLICT (sync_id) DO UPDATE SET last_page = max(coalesce(last_page, ?3), ?3), at = ?4""",
            (sync_id, vendor_id, last_page, documents.iso(utcnow())),
        )


def sync_finished(
    conn: sqlite3.Connection,
    vendor_id: str,
    *,
    error: str | None,
    full: bool,
    at: datetime,
    sync_id: str | None = None,
) -> bool:
    """Close a sync: a success counts and moves the success times, a failure keeps its (truncated) error.

    ``at`` is when the caller finished, taken before the write waited its turn on the writer thread. With
    ``sync_id``, a sync already recorded as finished is left alone (False): its end is counted once.
    """
    now = documents.iso(at)
    if sync_id is not None:
        seen = applied_sync(conn, sync_id)
        if seen is not None and seen.finished:
            return False
    if error is None:
        conn.execute(
            """UPDATE vendor_sync SET state = 'ok', finished_at = ?1, last_success_at = ?1,
                   last_full_sync_at = CASE WHEN ?2 THEN ?1 ELSE last_full_sync_at END,
                   syncs_ok = syncs_ok + 1 WHERE vendor_id = ?3""",
            (now, full, vendor_id),
        )
    else:
        conn.execute(
            """UPDATE vendor_sync SET state = 'failed', finished_at = ?1, last_error = ?2,
                   last_error_at = ?1, syncs_failed = syncs_failed + 1 WHERE vendor_id = ?3""",
            (now, error[:2000], vendor_id),
        )
    if sync_id is not None:
        conn.execute(
            """INSERT INTO applied_syncs (sync_id, vendor_id, finished, at) VALUES (?1, ?2, 1, ?3)
               ON CONFLICT (sync_id) DO UPDATE SET finished = 1, at = ?3""",
            (sync_id, vendor_id, now),
        )
        conn.execute(
            """DELETE FROM applied_syncs WHERE sync_id IN (SELECT sync_id FROM applied_syncs WHERE finished = 1
               ORDER BY at DESC LIMIT -1 OFFSET ?)""",
            (FINISHED_SYNCS_KEPT,),
        )
    return True
