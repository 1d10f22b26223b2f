"""The SQLite side of replication: generated triggers fill an outbox, the pusher reads and trims it, and an empty
node's initial load writes through here. Every SQLite statement of replication is in this module.

Change capture, SymmetricDS style. Why it is shaped like this:
- Triggers write a full row image (JSON) or a tombstone into ``repl_outbox`` in the same transaction as the change,
  so a change is captured if and only if it commits, whichever process or code path wrote it.
- The triggers are generated from ``PRAGMA table_info`` minus an explicit per-table exclusion list, so a new column is
  captured without hand-written SQL; the PostgreSQL table holds exactly the replicated columns and the pusher
  compares both column sets before it sends anything.
- An UPDATE that changes no replicated column is not captured (``WHEN OLD.c IS NOT NEW.c OR ...``).
  ``offers.fetched_at`` is *carried*: it travels in every image but a change to it alone is not captured. The
  store refreshes it on every re-fetch of an unchanged offer, and capturing that would push the whole catalog on each
  refresh; PostgreSQL thus holds the fetch time of the offer's last content change, which is what the price history
  and a fresh node's initial load need (a loaded node then re-fetches sooner, never later, than it should).
- Excluded: local counters (``change_seq``), derived blobs (``products.summary``/``doc``/``description``, rebuilt from
  the offers), binary hashes (``offers.content_hash``), per-page sync progress (``vendor_sync.pages`` ...) and the FTS
  tables.
- REAL columns travel as 17-digit text: SQLite's JSON renders reals with 15 digits, which does not round-trip.
- Rows loaded by the sync itself are not captured again: the loader sets ``repl_control.suppress`` inside its own write
  transaction (triggers cannot read TEMP tables).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from app.domain import documents
from app.domain.models import Offer
from app.replication.schema import REPLICATED, Change, Column, TableSpec
from app.store.sqlite.catalog import SqliteCatalog
from app.store.sqlite.connection import next_seq
from app.store.sqlite.transaction import immediate

OUTBOX = "repl_outbox"
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_ACTIVE = "(SELECT suppress FROM repl_control WHERE id = 1) = 0"

#: What a failed read or write of the outbox raises, for callers that must not stop on it.
OUTBOX_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)


class CaptureError(Exception):
    """The capture cannot be generated for a table as it is (a column type it cannot carry)."""


def replicated_columns(conn: sqlite3.Connection, spec: TableSpec) -> list[Column]:
    rows = conn.execute(f"PRAGMA table_info({spec.name})").fetchall()
    if not rows:
        raise CaptureError(f"table {spec.name} does not exist in SQLite")
    names = {r[1] for r in rows}
    missing = set(spec.pk) - names
    if missing:
        raise CaptureError(f"{spec.name}: primary key column(s) {sorted(missing)} missing")
    cols = [Column(r[1], (r[2] or "").upper(), bool(r[3]), r[1] in spec.pk) for r in rows if r[1] not in spec.excluded]
    for col in cols:
        if col.type not in ("TEXT", "INTEGER", "REAL"):
            raise CaptureError(
                f"{spec.name}.{col.name} has type {col.type or 'none'}; only TEXT, INTEGER and REAL columns can be "
                f"replicated: add it to the table's exclusion list in app/replication/schema.py or change its type"
            )
    return cols


def _value(col: Column, ref: str) -> str:
    expr = f"{ref}.{col.name}"
    if col.type == "REAL":
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE printf('%!.17g', {expr}) END"
    return expr


def image_sql(cols: Sequence[Column], ref: str) -> str:
    return "json_object(" + ", ".join(f"'{c.name}', {_value(c, ref)}" for c in cols) + ")"


def pk_sql(spec: TableSpec, ref: str) -> str:
    return "json_array(" + ", ".join(f"{ref}.{c}" for c in spec.pk) + ")"


def trigger_statements(spec: TableSpec, cols: Sequence[Column]) -> dict[str, str]:
    """Trigger name -> its exact CREATE statement (SQLite keeps the text, so a changed column list is detectable)."""
    t = spec.name
    insert_image = f"INSERT INTO {OUTBOX} (tbl, pk, op, row, at) VALUES ('{t}', {pk_sql(spec, 'NEW')}, 'U', "
    watched = [c.name for c in cols if c.name not in spec.carried]
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in watched)
    pk_changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in spec.pk)
    tombstone = f"INSERT INTO {OUTBOX} (tbl, pk, op, row, at) VALUES ('{t}', {pk_sql(spec, 'OLD')}, 'D', NULL, {_NOW})"
    return {
        f"repl_{t}_ins": (
            f"CREATE TRIGGER repl_{t}_ins AFTER INSERT ON {t} WHEN {_ACTIVE}\n"
            f"BEGIN {insert_image}{image_sql(cols, 'NEW')}, {_NOW}); END"
        ),
        f"repl_{t}_upd": (
            f"CREATE TRIGGER repl_{t}_upd AFTER UPDATE ON {t} WHEN {_ACTIVE} AND ({changed})\n"
            f"BEGIN {insert_image}{image_sql(cols, 'NEW')}, {_NOW}); END"
        ),
        # A key change moves the row: the old key is gone (its tombstone), the new one gets the image above.
        f"repl_{t}_key": (
            f"CREATE TRIGGER repl_{t}_key AFTER UPDATE ON {t} WHEN {_ACTIVE} AND ({pk_changed})\nBEGIN {tombstone}; END"
        ),
        f"repl_{t}_del": f"CREATE TRIGGER repl_{t}_del AFTER DELETE ON {t} WHEN {_ACTIVE}\nBEGIN {tombstone}; END",
    }


def installed_triggers(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(
        conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'repl\\_%' ESCAPE '\\'")
    )


def install(conn: sqlite3.Connection, *, reload: bool = True) -> list[str]:
    """Create or refresh the capture triggers; call inside a write transaction. Returns the tables reloaded.

    A table whose triggers are new or were generated from other columns is *reloaded*: every existing row is
    queued as an image, so rows written before capture was on (or before the new column) reach PostgreSQL too.
    ``reload=False`` is for a loader that has just copied the rows from PostgreSQL.
    """
    current = installed_triggers(conn)
    reloaded: list[str] = []
    for spec in REPLICATED:
        cols = replicated_columns(conn, spec)
        wanted = trigger_statements(spec, cols)
        mine = {name: sql for name, sql in current.items() if name.startswith(f"repl_{spec.name}_")}
        if mine == wanted:
            continue
        for name in mine:
            conn.execute(f"DROP TRIGGER {name}")
        for sql in wanted.values():
            conn.execute(sql)
        if reload:
            conn.execute(
                f"INSERT INTO {OUTBOX} (tbl, pk, op, row, at) SELECT '{spec.name}', {pk_sql(spec, spec.name)}, 'U', "
                f"{image_sql(cols, spec.name)}, {_NOW} FROM {spec.name} ORDER BY {', '.join(spec.pk)}"
            )
            reloaded.append(spec.name)
    return reloaded


def set_suppressed(conn: sqlite3.Connection, on: bool) -> None:
    """Only inside the loader's own write transaction: set, write, reset, commit."""
    conn.execute("UPDATE repl_control SET suppress = ? WHERE id = 1", (int(on),))


@dataclass(frozen=True)
class OutboxStats:
    backlog: int
    oldest_at: float | None
    watermark: int
    pushed_total: int
    last_push_at: float | None
    last_error: str | None
    last_error_at: float | None
    blocked: dict[str, object] | None

    def lag_s(self, now: float | None = None) -> float:
        """Age of the oldest change not yet acknowledged by PostgreSQL (0 with an empty outbox)."""
        if self.oldest_at is None:
            return 0.0
        return max(0.0, (now or time.time()) - self.oldest_at)


class SqliteOutbox:
    """The pusher's side of the SQLite file: read changes in order, drop what PostgreSQL acknowledged.

    Its own connection (the pusher may be another process than the API); writes are short ``BEGIN IMMEDIATE``
    transactions that the busy timeout serialises with the store's writer.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("outbox is not open")
        return self._conn

    def write(self, sql: str, params: Sequence[object] = ()) -> None:
        immediate(self.conn, lambda conn: conn.execute(sql, params))

    def install_capture(self) -> list[str]:
        return immediate(self.conn, install)

    def columns(self) -> dict[str, list[Column]]:
        return {spec.name: replicated_columns(self.conn, spec) for spec in REPLICATED}

    def read(self, after: int, limit: int) -> list[Change]:
        rows = self.conn.execute(
            f"SELECT seq, tbl, pk, op, row, at FROM {OUTBOX} WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
        return [Change(*r) for r in rows]

    def newer_image(self, tbl: str, pk: str, seq: int) -> int | None:
        """The first change of the same row after ``seq`` (a fix of a row PostgreSQL rejected), if any."""
        row = self.conn.execute(
            f"SELECT min(seq) FROM {OUTBOX} WHERE tbl = ? AND pk = ? AND seq > ?", (tbl, pk, seq)
        ).fetchone()
        return int(row[0]) if row[0] is not None else None

    def last_issued(self) -> int:
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (OUTBOX,)).fetchone()
        return int(row[0]) if row else 0

    def adopt_watermark(self, watermark: int) -> None:
        """Move this file's sequence past PostgreSQL's watermark for our node (a new file under an old node name).

        Pending changes are renumbered above it (keeping their order), since they were never sent.
        """

        def adopt(conn: sqlite3.Connection) -> None:
            issued = self.last_issued()
            if issued < watermark:
                conn.execute(f"UPDATE {OUTBOX} SET seq = seq + ?", (watermark,))
                conn.execute("INSERT OR IGNORE INTO sqlite_sequence (name, seq) VALUES (?, 0)", (OUTBOX,))
                conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (issued + watermark, OUTBOX))

        immediate(self.conn, adopt)

    def acknowledge(self, upto: int, *, pushed: int) -> None:
        """PostgreSQL committed everything up to ``upto``: forget it here and record the push."""

        def ack(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM {OUTBOX} WHERE seq <= ?", (upto,))
            conn.execute(
                "UPDATE repl_status SET watermark = max(watermark, ?), pushed_total = pushed_total + ?, "
                "last_push_at = ?, last_error = NULL, last_error_at = NULL, blocked = NULL WHERE id = 1",
                (upto, pushed, time.time()),
            )

        immediate(self.conn, ack)

    def drop_acknowledged(self, watermark: int) -> None:
        self.write(f"DELETE FROM {OUTBOX} WHERE seq <= ?", (watermark,))
        self.write("UPDATE repl_status SET watermark = ? WHERE id = 1", (watermark,))

    def clear_error(self) -> None:
        self.write("UPDATE repl_status SET last_error = NULL, last_error_at = NULL, blocked = NULL WHERE id = 1")

    def record_error(self, message: str, blocked: dict[str, object] | None) -> None:
        self.write(
            "UPDATE repl_status SET last_error = ?, last_error_at = ?, blocked = ? WHERE id = 1",
            (message[:4000], time.time(), None if blocked is None else orjson.dumps(blocked).decode()),
        )


# One statement, so one snapshot: the first row (by the primary key), the last sequence, the pusher's state.
_STATS = f"""SELECT first.seq, first.at, (SELECT max(seq) FROM {OUTBOX}),
                    s.watermark, s.pushed_total, s.last_push_at, s.last_error, s.last_error_at, s.blocked
             FROM repl_status s LEFT JOIN {OUTBOX} first ON first.seq = (SELECT min(seq) FROM {OUTBOX})"""


def outbox_stats(conn: sqlite3.Connection) -> OutboxStats | None:
    """Backlog, lag and the pusher's last state as the file holds them; None before the migration ran.

    /ready and /metrics call this on every request, so it costs three primary-key lookups whatever the backlog,
    no ``count(*)``. The backlog is ``max(seq) - min(seq) + 1``, exact because the outbox rows always form one
    unbroken run of sequence numbers:
    - AUTOINCREMENT hands out ``max + 1`` and its counter (``sqlite_sequence``) is an ordinary row written in the
      inserting transaction: a rolled-back transaction, savepoint or failed statement takes its numbers back with
      its rows, so committed rows leave no holes (tests/unit/test_capture.py checks all three against count(*));
    - rows are only ever removed as a prefix (``seq <= watermark``) and renumbered by a constant shift
      (``adopt_watermark``); the reload of a table at install is an ordinary INSERT ... SELECT.
    The lag is the age of the first row: writers are serialised and stamp ``at`` while holding the write lock, so
    sequence order is capture-time order (short of the wall clock being set back).
    """
    try:
        row = conn.execute(_STATS).fetchone()
    except sqlite3.OperationalError:
        return None
    first, oldest, last = row[0], row[1], row[2]
    return OutboxStats(
        backlog=0 if first is None else int(last) - int(first) + 1,
        oldest_at=oldest,
        watermark=int(row[3]),
        pushed_total=int(row[4]),
        last_push_at=row[5],
        last_error=row[6],
        last_error_at=row[7],
        blocked=None if row[8] is None else orjson.loads(row[8]),
    )


class SqliteLoad:
    """The SQLite half of an initial load, on the store's writer inside the one transaction the load runs in
    (``SqliteCatalog.run_in_transaction``): a node that dies mid-load starts empty again, never half-loaded."""

    def __init__(self, store: SqliteCatalog, conn: sqlite3.Connection) -> None:
        self.store = store
        self.conn = conn

    def columns(self) -> dict[str, list[str]]:
        return {spec.name: [c.name for c in replicated_columns(self.conn, spec)] for spec in REPLICATED}

    def suppress_capture(self, on: bool) -> None:
        set_suppressed(self.conn, on)

    def add_vendors(self, rows: Sequence[dict[str, Any]]) -> None:
        """Vendors take fresh numbers of this file's change sequence (``change_seq`` is not replicated)."""
        first = next_seq(self.conn, len(rows))
        for i, row in enumerate(rows):
            self._insert("vendors", {**row, "change_seq": first + i})

    def add_rows(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._insert(table, row)

    def _insert(self, table: str, values: dict[str, Any]) -> None:
        names = ", ".join(values)
        self.conn.execute(
            f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(values))})", list(values.values())
        )

    def add_offers(self, offers: Sequence[Offer]) -> None:
        """Through the store's own upsert, so the products are re-derived (unified) as the source node did."""
        self.store.upsert_in(self.conn, offers)

    def adopt_product_times(self, theirs: dict[str, str]) -> int:
        """Give the re-derived products the ``updated_at`` the source node computed; returns how many differed.

        A product's ``updated_at`` is the newest of its offers' ``vendor_updated_at or fetched_at``. ``fetched_at``
        is carried, not watched: when an offer without a vendor timestamp is only re-fetched, its new fetch time
        stays in the source's SQLite, and if another offer's change then rebuilds the product, the product row
        PostgreSQL gets holds that newer time while PostgreSQL's offer still holds the older one. Re-deriving from
        the offers alone then gives an older ``updated_at`` (and so another document and etag). Everything else in
        a product's document is a function of its offers' replicated content, so taking ``updated_at`` from
        PostgreSQL's product row makes the document byte for byte the source's. The offers' ``fetched_at`` stay as
        PostgreSQL has them (never later than the truth: which offer was re-fetched is not known).
        """
        fixes: list[tuple[str, bytes, bytes, str, str]] = []
        for pid, updated_at, summary, doc in self.conn.execute("SELECT id, updated_at, summary, doc FROM products"):
            wanted = theirs.get(pid)
            if wanted is None or wanted == updated_at:
                continue
            new_summary, new_doc = orjson.loads(summary), orjson.loads(doc)
            new_summary["updated_at"] = new_doc["updated_at"] = wanted
            body = orjson.dumps(new_doc)
            fixes.append((wanted, orjson.dumps(new_summary), body, documents.etag_of(body), pid))
        self.conn.executemany("UPDATE products SET updated_at = ?, summary = ?, doc = ?, etag = ? WHERE id = ?", fixes)
        return len(fixes)

    def install_capture(self) -> None:
        """Capture from here on, without queueing the rows just copied from PostgreSQL."""
        install(self.conn, reload=False)
