"""SQLite -> PostgreSQL replication against a real PostgreSQL: crashes, outages, rejected rows, initial load.

After each scenario both sides must hold identical replicated content (hash over canonically ordered rows) and the
outbox must be empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import orjson
import psycopg
import pytest

from app.domain.matching import OverrideChange
from app.domain.models import Availability, Offer, Vendor, VendorKind
from app.replication.capture import SqliteOutbox, outbox_stats
from app.replication.initial_load import initial_load
from app.replication.postgres.replica import PostgresReplica, SchemaMismatch
from app.replication.pusher import Pusher
from app.store.sqlite.catalog import SqliteCatalog
from tests.integration.pg import (
    MATCHING,
    NoPostgres,
    answers,
    assert_in_step,
    fresh_schema,
    outbox_backlog,
    pg_bin,
    pg_digest,
    pg_scalar,
    pick_server,
    server_url,
    sqlite_digest,
    start_writer,
    throwaway_server,
)
from tests.support import ROOT, wait_until

pytestmark = pytest.mark.postgres

KILLS = 22


@pytest.fixture(scope="module")
def pg_url() -> str:
    return server_url()


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    with fresh_schema(pg_url, "repl") as name:
        yield name


def vendor(vendor_id: str) -> Vendor:
    return Vendor(id=vendor_id, name=vendor_id.upper(), kind=VendorKind.DUMMYJSON, base_url="http://x", currency="EUR")


def offers(vendor_id: str, n: int, *, price: str = "10.00", start: int = 0) -> list[Offer]:
    return [
        Offer(
            vendor_id=vendor_id,
            vendor_product_id=str(i),
            title=f"Widget {i % 50}",
            brand="Acme",
            price=Decimal(price) + Decimal(i) / 100,
            currency="EUR",
            availability=Availability.IN_STOCK if i % 3 else Availability.OUT_OF_STOCK,
            stock=i % 7,
        )
        for i in range(start, start + n)
    ]


def seeded_store(path: Path, n: int = 0) -> None:
    async def run() -> None:
        store = SqliteCatalog(path, matching=MATCHING)
        store.open()
        try:
            for v in ("v1", "v2"):
                await store.add_vendor(vendor(v))
                if n:
                    await store.upsert_offers(offers(v, n))
        finally:
            store.close()

    asyncio.run(run())


def pusher_for(db: Path, url: str, schema: str, *, node: str = "node-a", batch: int = 500) -> Pusher:
    outbox = SqliteOutbox(db)
    outbox.open()
    return Pusher(
        outbox,
        PostgresReplica(url, schema=schema, node_id=node, connect_timeout_s=2),
        batch_size=batch,
        poll_s=0.02,
        backoff_max_s=0.3,
    )


@contextlib.contextmanager
def running(pusher: Pusher) -> Iterator[Pusher]:
    thread = threading.Thread(target=pusher.run, name="test-pusher", daemon=True)
    thread.start()
    try:
        yield pusher
    finally:
        pusher.stop()
        thread.join(timeout=15)
        pusher.outbox.close()
        assert not thread.is_alive()


def drained(pusher: Pusher, db: Path) -> bool:
    return outbox_backlog(db) == 0 and pusher.counters.last_error is None


def push_env(db: Path, url: str, schema: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_") and k != "DATABASE_URL"}
    env.update(
        {
            "DATABASE_URL": url,
            "CATALOG_DATABASE_SCHEMA": schema,
            "CATALOG_DB_PATH": str(db),
            "CATALOG_NODE_ID": "node-a",
            "CATALOG_REPLICATION_BATCH_SIZE": "40",
            "CATALOG_REPLICATION_POLL_S": "0.01",
            "CATALOG_REPLICATION_BACKOFF_MAX_S": "0.2",
            "CATALOG_LOG_LEVEL": "warning",
            "CATALOG_ENV": "development",
        }
    )
    return env


def start_push_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "sync", "run"], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def pushed_past(url: str, schema: str, watermark: int) -> bool:
    return watermark_of(url, schema) > watermark


def watermark_of(url: str, schema: str) -> int:
    """0 until the first pusher got as far as creating the tables (an early kill can stop it before)."""
    try:
        return int(pg_scalar(url, schema, "SELECT watermark FROM repl_nodes") or 0)
    except psycopg.errors.UndefinedTable:
        return 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_push_loop_killed_at_random_points_while_writes_continue(tmp_path: Path, pg_url: str, schema: str) -> None:
    db = tmp_path / "node.db"
    seeded_store(db, 100)
    env = push_env(db, pg_url, schema)
    log = tmp_path / "push.log"
    rng = random.Random(5)
    writer = start_writer(db, 600, seed=11)  # terminated after the last kill; it must outlast them all
    watermarks: list[int] = []
    try:
        for kill in range(KILLS):
            before = watermarks[-1] if watermarks else 0
            proc = start_push_process(env, log)
            if kill % 2:
                # Every other run is killed once it has pushed (under load a process can take longer than any fixed
                # pause just to start), at a random point of the push that follows...
                wait_until(partial(pushed_past, pg_url, schema, before), timeout=60, what="a batch of this run")
                time.sleep(rng.uniform(0.0, 0.6))
            else:
                time.sleep(rng.uniform(0.5, 1.6))  # ...the others at any point, start-up and capture install included
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert proc.returncode == -signal.SIGKILL, log.read_text()
            watermarks.append(watermark_of(pg_url, schema))
            assert writer.poll() is None, "the writer died"
    finally:
        writer.terminate()
        writer.wait(timeout=10)
    # The pushes made progress between kills (not 22 kills of a process that never got going)...
    assert watermarks[-1] > 0 and len(set(watermarks)) > KILLS // 4, watermarks
    # ...the backlog /ready and /metrics show (from the first and last sequence) is still exactly the row count...
    with contextlib.closing(sqlite3.connect(db)) as conn:
        stats = outbox_stats(conn)
        assert stats is not None and stats.backlog == outbox_backlog(db)
    # ...and the last run drains the outbox and leaves both sides identical.
    proc = start_push_process(env, log)
    try:
        # A liveness bound, not a speed check: a process start under CI's load (22 on 2 cores seen) takes seconds.
        wait_until(lambda: outbox_backlog(db) == 0, timeout=90, what="the outbox to drain")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, log.read_text()
    assert_in_step(db, pg_url, schema)
    assert pg_scalar(pg_url, schema, "SELECT count(*) FROM offers") > 100
    # Prices changed many times: the history has them, and no change was recorded twice for one image.
    assert pg_scalar(pg_url, schema, "SELECT count(*) FROM price_history") > 400
    assert pg_scalar(pg_url, schema, "SELECT count(*) - count(DISTINCT (src_node, src_seq)) FROM price_history") == 0


@pytest.mark.slow
def test_postgres_stopped_mid_push_and_restarted(tmp_path: Path) -> None:
    server = throwaway_server()
    try:
        db = tmp_path / "node.db"
        seeded_store(db, 3000)
        pusher = pusher_for(db, server.url, "catalog", batch=200)
        writer = start_writer(db, 6, seed=3)
        try:
            with running(pusher):
                wait_until(lambda: pusher.watermark > 0, timeout=20, what="a first batch")
                server.stop("immediate")
                wait_until(lambda: pusher.counters.last_error, timeout=10, what="the pusher to notice")
                assert "Operational" in (pusher.counters.last_error or "")
                before = outbox_backlog(db)
                time.sleep(1.0)
                assert outbox_backlog(db) >= before  # nothing acknowledged while PostgreSQL is down
                server.start()
                writer.wait(timeout=20)
                wait_until(lambda: drained(pusher, db), timeout=30, what="the push to resume and drain")
        finally:
            with contextlib.suppress(ProcessLookupError):
                writer.kill()
        assert_in_step(db, server.url, "catalog")
    finally:
        server.destroy()


def test_rejected_batch_stops_the_push_loudly_until_fixed(
    tmp_path: Path, pg_url: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "node.db"
    seeded_store(db, 50)
    pusher = pusher_for(db, pg_url, schema)
    with running(pusher):
        wait_until(lambda: drained(pusher, db), timeout=20, what="the first push")
        before = pusher.watermark
        with contextlib.closing(sqlite3.connect(db)) as conn:
            # A value PostgreSQL's CHECK refuses, written around good changes.
            conn.execute("UPDATE offers SET title = 'before' WHERE vendor_id = 'v1' AND vendor_product_id = '1'")
            conn.execute("UPDATE offers SET currency = 'EURO' WHERE vendor_id = 'v1' AND vendor_product_id = '7'")
            conn.execute("UPDATE offers SET title = 'after' WHERE vendor_id = 'v1' AND vendor_product_id = '2'")
            conn.commit()
        blocked = wait_until(lambda: pusher.counters.blocked, timeout=10, what="the rejection")
        assert blocked["pk"] == '["v1","7"]' and "currency" in str(blocked["columns"]), blocked
        assert "EURO" not in str(blocked)  # the row's values are not shown (a vendor row carries credentials)
        assert "CheckViolation" in str(blocked["error"])
        time.sleep(0.5)  # it keeps retrying but never skips: the watermark stays, nothing of the batch landed
        assert pusher.watermark == before
        assert pusher.counters.rejected >= 2
        assert (
            pg_scalar(pg_url, schema, "SELECT title FROM offers WHERE vendor_product_id = '1' AND vendor_id = 'v1'")
            != "before"
        )
        assert any('["v1","7"]' in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            status = conn.execute("SELECT blocked, last_error FROM repl_status").fetchone()
            assert status[0] and orjson.loads(status[0])["pk"] == '["v1","7"]' and "EURO" not in status[0] + status[1]
            conn.execute("UPDATE offers SET currency = 'EUR' WHERE vendor_id = 'v1' AND vendor_product_id = '7'")
            conn.commit()
        wait_until(lambda: drained(pusher, db), timeout=10, what="the push to resume")
        assert pusher.counters.blocked is None and pusher.counters.superseded == 1
    assert_in_step(db, pg_url, schema)
    assert (
        pg_scalar(pg_url, schema, "SELECT title FROM offers WHERE vendor_product_id = '2' AND vendor_id = 'v1'")
        == "after"
    )
    assert pg_scalar(pg_url, schema, "SELECT count(*) FROM price_history WHERE currency = 'EURO'") == 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT blocked, last_error FROM repl_status").fetchone() == (None, None)


def test_replayed_or_older_images_change_nothing(tmp_path: Path, pg_url: str, schema: str) -> None:
    db = tmp_path / "node.db"
    seeded_store(db, 20)
    pusher = pusher_for(db, pg_url, schema)
    pusher.prepare()
    first = pusher.outbox.read(0, 10_000)
    pusher.step()
    asyncio.run(_reprice(db))
    pusher.step()
    digest = pg_digest(pg_url, schema, {"offers": ["vendor_id", "vendor_product_id", "price"]})
    history = pg_scalar(pg_url, schema, "SELECT count(*) FROM price_history")
    # Force the first batch in again, as if the watermark had been lost: the (node, seq) guard refuses it.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'UPDATE "{schema}".repl_nodes SET watermark = 0')
    pusher.replica.apply(first, expected=0, upto=first[-1].seq)
    assert pg_digest(pg_url, schema, {"offers": ["vendor_id", "vendor_product_id", "price"]}) == digest
    assert pg_scalar(pg_url, schema, "SELECT count(*) FROM price_history") == history
    pusher.close()
    pusher.replica.close()
    pusher.outbox.close()


async def _reprice(db: Path) -> None:
    store = SqliteCatalog(db, matching=MATCHING)
    store.open()
    try:
        await store.upsert_offers(offers("v1", 20, price="20.00"))
    finally:
        store.close()


def test_pusher_refuses_different_columns(tmp_path: Path, pg_url: str, schema: str) -> None:
    db = tmp_path / "node.db"
    seeded_store(db, 5)
    pusher = pusher_for(db, pg_url, schema)
    pusher.prepare()
    pusher.replica.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("ALTER TABLE offers ADD COLUMN colour TEXT")
    with pytest.raises(SchemaMismatch, match=r"offers: only in SQLite: colour"):
        pusher.prepare()
    assert pusher.counters.schema_ok is False
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schema}".offers ADD COLUMN colour text')
    # Same columns again: the triggers are regenerated with the new column and the table reloaded.
    pusher.prepare()
    pusher.step()
    assert_in_step(db, pg_url, schema)
    pusher.close()
    pusher.replica.close()
    pusher.outbox.close()


T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _refresh_then_rebuild_by_another_offer(db: Path) -> None:
    """The one case where a product's ``updated_at`` is not a function of PostgreSQL's offers: an offer without a
    vendor timestamp is re-fetched unchanged (its new ``fetched_at`` is not captured), then another offer of the
    same product changes and the product is rebuilt with the newer fetch time."""
    store = SqliteCatalog(db, matching=MATCHING)
    store.open()
    try:
        plain = Offer(
            vendor_id="v1",
            vendor_product_id="shared",
            title="Shared widget",
            price=Decimal("5.00"),
            currency="EUR",
            availability=Availability.IN_STOCK,
            gtin="4006381333931",
            fetched_at=T0 + timedelta(hours=1),
        )
        stamped = replace(
            plain, vendor_id="v2", vendor_updated_at=T0, fetched_at=T0 + timedelta(hours=1), price=Decimal("6.00")
        )
        await store.upsert_offers([plain, stamped])
        await store.upsert_offers([replace(plain, fetched_at=T0 + timedelta(hours=2))])  # unchanged: a refresh
        await store.upsert_offers([replace(stamped, price=Decimal("7.00"), fetched_at=T0 + timedelta(hours=3))])
    finally:
        store.close()


def products_in_full(db: Path) -> list[tuple[object, ...]]:
    """Every column of every product but the local change counter: documents, etags and times byte for byte."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(products)") if r[1] != "change_seq"]
        return conn.execute(f"SELECT {', '.join(cols)} FROM products ORDER BY id").fetchall()


def test_fresh_node_starts_with_the_catalog(tmp_path: Path, pg_url: str, schema: str) -> None:
    source = tmp_path / "source.db"
    seeded_store(source, 400)
    asyncio.run(_reprice(source))
    pusher = pusher_for(source, pg_url, schema)
    pusher.prepare()
    while pusher.step():
        pass
    asyncio.run(_refresh_then_rebuild_by_another_offer(source))  # captured from here on, as it happens
    while pusher.step():
        pass
    pusher.close()
    pusher.replica.close()
    pusher.outbox.close()

    fresh = tmp_path / "fresh.db"

    async def load() -> int | None:
        store = SqliteCatalog(fresh, matching=MATCHING)
        store.open()
        try:
            replica = PostgresReplica(pg_url, schema=schema, node_id="node-b")
            loaded = await initial_load(store, replica, install_capture=True)
            assert await initial_load(store, replica, install_capture=True) is None  # not empty any more
            return loaded
        finally:
            store.close()

    # The scenario is real: PostgreSQL's offer has the older fetch time, its product the newer one.
    shared = "WHERE vendor_id = 'v1' AND vendor_product_id = 'shared'"
    assert pg_scalar(pg_url, schema, f"SELECT fetched_at FROM offers {shared}").startswith("2026-01-01T01:00")
    assert pg_scalar(
        pg_url, schema, f"SELECT p.updated_at FROM products p JOIN offers o ON o.product_id = p.id AND o.{shared[6:]}"
    ).startswith("2026-01-01T02:00")

    assert asyncio.run(load()) == 802
    assert outbox_backlog(fresh) == 0  # the load itself was not captured
    assert sqlite_digest(fresh) == sqlite_digest(source)
    assert products_in_full(fresh) == products_in_full(source)
    # Capture is on for the new node: its own changes go out.
    asyncio.run(_reprice_to(fresh, "30.00"))
    assert outbox_backlog(fresh) > 0


async def _reprice_to(db: Path, price: str) -> None:
    store = SqliteCatalog(db, matching=MATCHING)
    store.open()
    try:
        await store.upsert_offers(offers("v2", 5, price=price))
    finally:
        store.close()


def test_every_price_change_between_two_pushes_is_recorded(tmp_path: Path, pg_url: str, schema: str) -> None:
    db = tmp_path / "node.db"
    seeded_store(db, 3)
    pusher = pusher_for(db, pg_url, schema)
    pusher.prepare()
    pusher.step()

    async def changes() -> None:
        store = SqliteCatalog(db, matching=MATCHING)
        store.open()
        try:
            for price in ("11.00", "12.00", "12.00", "13.00"):  # the repeat is no change and leaves no row
                await store.upsert_offers(offers("v1", 1, price=price))
            await store.delete_offers_of("v1", "0")
            await store.upsert_offers(offers("v1", 1, price="13.00"))  # back after a deletion: a new row
        finally:
            store.close()

    asyncio.run(changes())
    assert pusher.step() > 0
    prices = pg_scalar(
        pg_url,
        schema,
        "SELECT array_agg(price ORDER BY src_seq) FROM price_history "
        "WHERE vendor_id = 'v1' AND vendor_product_id = '0'",
    )
    assert prices == ["10.00", "11.00", "12.00", "13.00", "13.00"]
    assert_in_step(db, pg_url, schema)
    pusher.close()
    pusher.replica.close()
    pusher.outbox.close()


def test_two_pushers_for_one_node_never_double_apply(tmp_path: Path, pg_url: str, schema: str) -> None:
    """A misconfiguration (the API and `catalog sync run` both pushing one file) costs retries, not data."""
    db = tmp_path / "node.db"
    seeded_store(db, 50)
    first, second = pusher_for(db, pg_url, schema, batch=30), pusher_for(db, pg_url, schema, batch=30)
    writer = start_writer(db, 3, seed=7)
    with running(first), running(second):
        writer.wait(timeout=20)
        wait_until(lambda: drained(first, db) and drained(second, db), timeout=20, what="both to drain")
    # Both took part (which one wins each race is up to the scheduler: under load one may win them all) ...
    assert all(p.counters.batches + p.counters.errors > 0 for p in (first, second))
    assert first.counters.batches + second.counters.batches > 0
    assert first.counters.errors + second.counters.errors > 0  # ... they did collide, and recovered
    assert_in_step(db, pg_url, schema)


# -- where the tests get PostgreSQL from (tests/integration/pg.py) ----------------------------------------------

DEAD_URL = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1: refused at once


def test_no_server_and_no_binaries_gives_a_skip_reason_naming_both(tmp_path: Path) -> None:
    with pytest.raises(NoPostgres) as caught:
        pick_server(DEAD_URL, tmp_path)  # an empty dir: no initdb there
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "no PostgreSQL binaries" in message and str(tmp_path) in message, message


def test_a_dead_server_falls_back_to_a_throwaway_one_removed_afterwards() -> None:
    try:
        url, server = pick_server(DEAD_URL, None)
    except NoPostgres as exc:
        pytest.skip(str(exc))
    assert server is not None and url != DEAD_URL
    try:
        assert answers(url)
        pid = int((server.data / "postmaster.pid").read_text().split()[0])
    finally:
        server.destroy()
    assert not answers(url)
    assert not server.dir.exists()
    assert not running_process(pid)


def running_process(pid: int) -> bool:
    """Exited processes may linger briefly as zombies until PID 1 reaps them: those count as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_a_test_process_killed_outright_leaves_no_server_behind() -> None:
    """atexit does not run on SIGKILL: the server's watchdog removes it once the process that started it is gone."""
    found = pg_bin()
    if found is None or not (found / "initdb").exists():
        pytest.skip(f"no PostgreSQL binaries for a throwaway server (looked in {found or 'the usual places'})")
    code = (
        "import time\nfrom tests.integration.pg import ThrowawayPostgres\n"
        "s = ThrowawayPostgres()\nprint(s.dir, s.url, flush=True)\ntime.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        directory, url = proc.stdout.readline().decode().split()
        pid = int((Path(directory) / "data" / "postmaster.pid").read_text().split()[0])
        assert answers(url) and running_process(pid)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    wait_until(lambda: not running_process(pid), timeout=30, what="the watchdog to stop the server")
    wait_until(lambda: not Path(directory).exists(), timeout=10, what="the watchdog to remove its directory")
    assert not answers(url)


def test_unification_overrides_are_replicated_and_a_fresh_node_applies_them(
    tmp_path: Path, pg_url: str, schema: str
) -> None:
    """Splits and pins travel like any table (issue 10): PostgreSQL holds them, their removal too, and a node
    loaded from PostgreSQL unifies exactly as the node that took the admin calls."""
    source = tmp_path / "source.db"
    seeded_store(source, 20)

    async def decide(changes: list[OverrideChange]) -> None:
        store = SqliteCatalog(source, matching=MATCHING)
        store.open()
        try:
            for change in changes:
                await store.apply_override(change)
        finally:
            store.close()

    asyncio.run(
        decide(
            [
                OverrideChange("split", ("v1", "3")),
                OverrideChange("pin", ("v1", "4"), ("v2", "9")),
                OverrideChange("pin", ("v1", "5"), ("v2", "5")),
                OverrideChange("clear", ("v2", "5")),
            ]
        )
    )
    pusher = pusher_for(source, pg_url, schema)
    pusher.prepare()
    while pusher.step():
        pass
    assert_in_step(source, pg_url, schema)
    rows = pg_scalar(
        pg_url, schema, "SELECT string_agg(kind || ':' || vendor_product_id, ',' ORDER BY kind) FROM match_overrides"
    )
    assert rows == "pin:4,split:3"

    fresh = tmp_path / "fresh.db"

    async def load() -> int | None:
        store = SqliteCatalog(fresh, matching=MATCHING)
        store.open()
        try:
            return await initial_load(
                store, PostgresReplica(pg_url, schema=schema, node_id="node-b"), install_capture=True
            )
        finally:
            store.close()

    assert asyncio.run(load()) == 40
    assert sqlite_digest(fresh) == sqlite_digest(source)
    assert products_in_full(fresh) == products_in_full(source)
    pusher.close()
    pusher.replica.close()
    pusher.outbox.close()
