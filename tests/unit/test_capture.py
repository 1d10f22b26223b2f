"""Change capture in SQLite: generated triggers, the outbox, suppression (a real SQLite file, no PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from app.domain.models import Availability, Offer, Vendor, VendorKind
from app.observability import Metric, render
from app.replication import capture
from app.replication.capture import CaptureError, SqliteOutbox
from app.replication.schema import SPECS, Change
from app.store.sqlite.catalog import SqliteCatalog


def offer(vpid: str, price: str = "9.99", **kw: object) -> Offer:
    return Offer(
        vendor_id="v1",
        vendor_product_id=vpid,
        title=f"Thing {vpid}",
        price=Decimal(price),
        currency="EUR",
        availability=Availability.IN_STOCK,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "c.db"
    store = SqliteCatalog(path)
    store.open()
    asyncio.run(store.add_vendor(Vendor("v1", "V1", VendorKind.DUMMYJSON, "http://x", "EUR")))
    asyncio.run(store.upsert_offers([offer("a"), offer("b")]))
    store.close()
    yield path


@pytest.fixture
def outbox(db: Path) -> Iterator[SqliteOutbox]:
    box = SqliteOutbox(db)
    box.open()
    yield box
    box.close()


def write(db: Path, fn: object) -> None:
    async def run() -> None:
        store = SqliteCatalog(db)
        store.open()
        try:
            await fn(store)  # type: ignore[operator]
        finally:
            store.close()

    asyncio.run(run())


def changes(box: SqliteOutbox, after: int = 0) -> list[Change]:
    return box.read(after, 10_000)


def test_first_install_queues_existing_rows_and_is_idempotent(outbox: SqliteOutbox) -> None:
    assert outbox.install_capture() == ["vendors", "vendor_sync", "offers", "products", "match_overrides"]
    queued = changes(outbox)
    # Every table with rows; this store has no unification overrides.
    assert {(c.tbl, c.op) for c in queued} == {(t, "U") for t in SPECS if t != "match_overrides"}
    assert sum(c.tbl == "offers" for c in queued) == 2
    assert outbox.install_capture() == []
    assert len(changes(outbox)) == len(queued)


def test_images_hold_exactly_the_replicated_columns(db: Path, outbox: SqliteOutbox) -> None:
    outbox.install_capture()
    mark = changes(outbox)[-1].seq
    write(db, lambda s: s.upsert_offers([offer("a", "12.50")]))
    new = changes(outbox, mark)
    (image,) = [c for c in new if c.tbl == "offers"]
    assert image.op == "U" and json.loads(image.pk) == ["v1", "a"]
    row = json.loads(image.row or "")
    expected = {c.name for c in capture.replicated_columns(outbox.conn, SPECS["offers"])}
    assert set(row) == expected and "change_seq" not in row and "content_hash" not in row
    assert row["price"] == "12.50"
    # the product was rebuilt in the same transaction: captured too, without its blobs
    (product,) = [json.loads(c.row or "") for c in new if c.tbl == "products"]
    assert "doc" not in product and "summary" not in product


def test_unchanged_rewrites_and_fetched_at_refreshes_are_not_captured(db: Path, outbox: SqliteOutbox) -> None:
    outbox.install_capture()
    mark = changes(outbox)[-1].seq
    # re-fetching an unchanged offer only moves fetched_at (carried, not watched)
    later = offer("a").fetched_at + timedelta(hours=1)
    write(db, lambda s: s.upsert_offers([replace(offer("a"), fetched_at=later)]))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert (
            conn.execute("SELECT fetched_at FROM offers WHERE vendor_product_id = 'a'")
            .fetchone()[0]
            .startswith(later.date().isoformat())
        )
        conn.execute("UPDATE offers SET title = title, change_seq = change_seq + 1")  # only non-replicated columns
        conn.commit()
    assert changes(outbox, mark) == []


def test_deletes_and_key_changes_leave_tombstones(db: Path, outbox: SqliteOutbox) -> None:
    outbox.install_capture()
    mark = changes(outbox)[-1].seq
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE offers SET vendor_product_id = 'z' WHERE vendor_product_id = 'b'")
        conn.execute("DELETE FROM offers WHERE vendor_product_id = 'a'")
        conn.commit()
    got = [(c.op, json.loads(c.pk)) for c in changes(outbox, mark)]
    assert ("D", ["v1", "b"]) in got and ("U", ["v1", "z"]) in got and ("D", ["v1", "a"]) in got
    assert all(c.row is None for c in changes(outbox, mark) if c.op == "D")


def test_vendor_delete_cascades_into_tombstones(db: Path, outbox: SqliteOutbox) -> None:
    outbox.install_capture()
    mark = changes(outbox)[-1].seq
    write(db, lambda s: s.delete_vendor("v1"))
    gone = {(c.tbl, c.op) for c in changes(outbox, mark)}
    assert {("vendors", "D"), ("vendor_sync", "D"), ("offers", "D"), ("products", "D")} <= gone


def test_suppressed_writes_are_not_captured(db: Path, outbox: SqliteOutbox) -> None:
    outbox.install_capture()
    mark = changes(outbox)[-1].seq
    conn = outbox.conn
    conn.execute("BEGIN IMMEDIATE")
    capture.set_suppressed(conn, True)
    conn.execute("UPDATE offers SET title = 'loaded' WHERE vendor_product_id = 'a'")
    capture.set_suppressed(conn, False)
    conn.execute("UPDATE offers SET title = 'local' WHERE vendor_product_id = 'b'")
    conn.execute("COMMIT")
    (only,) = changes(outbox, mark)
    assert json.loads(only.pk) == ["v1", "b"]


def test_reals_travel_with_every_digit(db: Path, outbox: SqliteOutbox) -> None:
    outbox.install_capture()
    mark = changes(outbox)[-1].seq
    value = 0.1 + 0.2
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE products SET min_price_base = ?", (value,))
        conn.commit()
    rows = [json.loads(c.row or "") for c in changes(outbox, mark)]
    assert rows and all(float(r["min_price_base"]) == value for r in rows)


def test_new_column_regenerates_and_reloads_only_its_table(db: Path, outbox: SqliteOutbox) -> None:
    outbox.install_capture()
    mark = changes(outbox)[-1].seq
    outbox.conn.execute("ALTER TABLE vendors ADD COLUMN region TEXT")
    assert outbox.install_capture() == ["vendors"]
    (reloaded,) = changes(outbox, mark)
    assert "region" in json.loads(reloaded.row or "")


def test_a_blob_column_must_be_excluded(outbox: SqliteOutbox) -> None:
    outbox.conn.execute("ALTER TABLE offers ADD COLUMN thumb BLOB")
    with pytest.raises(CaptureError, match=r"offers\.thumb has type BLOB"):
        outbox.install_capture()


def test_a_new_file_under_an_old_node_name_continues_after_the_watermark(outbox: SqliteOutbox) -> None:
    outbox.install_capture()
    pending = changes(outbox)
    outbox.adopt_watermark(1000)
    moved = changes(outbox)
    assert [c.seq for c in moved] == [c.seq + 1000 for c in pending]
    assert outbox.last_issued() == pending[-1].seq + 1000


def test_backlog_and_lag_stay_exact_without_counting(db: Path, outbox: SqliteOutbox) -> None:
    """``outbox_stats`` derives the backlog from the first and last sequence: compare it with count(*) and min(at)
    after every kind of write, rollback and push, including those that could leave holes in the sequence."""
    conn = outbox.conn

    def check() -> int:
        stats = capture.outbox_stats(conn)
        assert stats is not None
        count, oldest = conn.execute("SELECT count(*), min(at) FROM repl_outbox").fetchone()
        assert (stats.backlog, stats.oldest_at) == (count, oldest)
        return int(count)

    assert check() == 0
    outbox.install_capture()  # the reload of every existing row
    queued = check()
    assert queued > 0
    write(db, lambda s: s.upsert_offers([offer(str(i), "5.00") for i in range(30)]))
    assert check() > queued
    # A rolled-back transaction, a failing statement that had already fired triggers, a rolled-back savepoint:
    # their sequence numbers are taken back, so later rows leave no hole.
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE offers SET title = title || '!'")
    conn.execute("ROLLBACK")
    before = check()
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE offers SET title = CASE WHEN vendor_product_id = '29' THEN NULL ELSE 'x' END")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE offers SET title = 'kept' WHERE vendor_product_id = 'a'")
    conn.execute("SAVEPOINT s")
    conn.execute("UPDATE offers SET title = 'dropped'")
    conn.execute("ROLLBACK TO s")
    conn.execute("COMMIT")
    write(db, lambda s: s.upsert_offers([offer("b", "6.00")]))
    assert check() > before
    # Pushes acknowledge prefixes; what is left is counted from its first row on.
    pending = changes(outbox)
    outbox.acknowledge(pending[len(pending) // 3].seq, pushed=len(pending) // 3 + 1)
    check()
    write(db, lambda s: s.delete_offers_of("v1", "3"))
    outbox.adopt_watermark(pending[-1].seq + 500)  # renumbers the pending rows: they stay one run
    check()
    outbox.drop_acknowledged(changes(outbox)[-2].seq)
    assert check() == 1
    outbox.acknowledge(changes(outbox)[-1].seq, pushed=1)
    assert check() == 0
    stats = capture.outbox_stats(conn)
    assert stats is not None and stats.lag_s() == 0.0
    # Primary-key lookups only, whatever the backlog: the query plan never scans the outbox.
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + capture._STATS)]
    assert not any(step.startswith("SCAN") and "repl_outbox" in step for step in plan), plan
    assert sum(step.startswith("SEARCH") for step in plan) == 3, plan  # first row, min(seq), max(seq)


def test_metrics_render_in_the_prometheus_text_format() -> None:
    text = render(
        [
            Metric("a_total", "Things.", "counter", 3),
            Metric("b", "Per queue.", "gauge", 0.25, {"queue": 'x"y'}),
            Metric("b", "Per queue.", "gauge", 1, {"queue": "z"}),
        ]
    )
    assert text.splitlines() == [
        "# HELP a_total Things.",
        "# TYPE a_total counter",
        "a_total 3",
        "# HELP b Per queue.",
        "# TYPE b gauge",
        'b{queue="x\\"y"} 0.25',
        'b{queue="z"} 1',
    ]
