"""The pieces that keep interactive work ahead of bulk work: the lane queue's per-vendor quota, the vendor limiter,
SQLite's priority writer and the time-sized bulk slices."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.domain.lanes import InteractiveWork, Lane, current_lane, in_lane, interactive_work
from app.domain.requests import FetchRequest, RequestKind
from app.ingest.inprocess_queue import InProcessRequestQueue, LaneQueue, lane_of
from app.sources.limiter import LaneLimiter
from app.store.sqlite.connection import Connections
from app.store.sqlite.slicing import MAX_OFFERS, MIN_OFFERS, BulkSlicer
from app.store.sqlite.writer import PriorityWriter


def product(vendor_id: str, vpid: str) -> FetchRequest:
    return FetchRequest(RequestKind.PRODUCT, vendor_id, vpid)


async def test_a_vendor_at_its_quota_waits_while_another_vendors_request_goes() -> None:
    release = asyncio.Event()
    handled: list[str] = []

    async def handler(request: FetchRequest, waited_s: float) -> None:
        handled.append(f"{request.vendor_id}:{request.vendor_product_id}")
        if request.vendor_id == "slow":
            await release.wait()

    lane = LaneQueue(Lane.INTERACTIVE, handler, workers=3, per_vendor=1, maxsize=10)
    lane.start()
    try:
        for vpid in ("1", "2", "3"):
            await lane.put(product("slow", vpid))
        await lane.put(product("fast", "9"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert handled == ["slow:1", "fast:9"]  # the slow vendor's others wait, free workers notwithstanding
        assert lane.busy("slow") == 1 and lane.depth == 2
        release.set()
        for _ in range(50):
            await asyncio.sleep(0)
        assert sorted(handled) == ["fast:9", "slow:1", "slow:2", "slow:3"]
    finally:
        await lane.stop()


async def test_products_and_syncs_take_separate_lanes_and_workers_run_in_their_lane() -> None:
    seen: list[tuple[str, Lane]] = []

    async def handler(request: FetchRequest, waited_s: float) -> None:
        seen.append((request.kind.value, current_lane()))

    queue = InProcessRequestQueue(handler, workers=1, interactive_workers=1)
    await queue.start()
    try:
        await queue.publish(FetchRequest(RequestKind.CATALOG, "v", full=True))
        await queue.publish(product("v", "1"))
        for _ in range(20):
            await asyncio.sleep(0)
    finally:
        await queue.stop()
    assert sorted(seen) == [("catalog", Lane.BULK), ("product", Lane.INTERACTIVE)]
    assert lane_of(product("v", "1")) is Lane.INTERACTIVE


async def test_the_limiter_gives_a_freed_slot_to_a_waiting_interactive_call_first() -> None:
    limiter = LaneLimiter(1)
    order: list[str] = []

    async def call(name: str, lane: Lane) -> None:
        with in_lane(lane):
            async with limiter:
                order.append(name)
                await asyncio.sleep(0)

    await limiter.__aenter__()  # the slot is taken
    tasks = [asyncio.create_task(call("bulk-1", Lane.BULK)), asyncio.create_task(call("bulk-2", Lane.BULK))]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(call("miss", Lane.INTERACTIVE)))
    await asyncio.sleep(0)
    assert limiter.waiting(Lane.BULK) == 2 and limiter.waiting(Lane.INTERACTIVE) == 1
    await limiter.__aexit__()
    await asyncio.gather(*tasks)
    assert order == ["miss", "bulk-1", "bulk-2"]


def test_the_writer_runs_waiting_interactive_jobs_before_waiting_bulk_ones() -> None:
    writer = PriorityWriter("test-writer")
    gate = threading.Event()
    ran: list[str] = []
    try:
        blocker = writer.submit(gate.wait, Lane.BULK)
        futures = [
            writer.submit(lambda: ran.append("bulk-1"), Lane.BULK),
            writer.submit(lambda: ran.append("bulk-2"), Lane.BULK),
            writer.submit(lambda: ran.append("miss"), Lane.INTERACTIVE),
        ]
        assert writer.waiting(Lane.BULK) >= 2 and writer.waiting(Lane.INTERACTIVE) == 1
        gate.set()
        blocker.result(5)
        for future in futures:
            future.result(5)
    finally:
        writer.shutdown()
    assert ran == ["miss", "bulk-1", "bulk-2"]


def test_bulk_slices_follow_the_measured_write_rate_within_bounds() -> None:
    slicer = BulkSlicer(0.02)
    for _ in range(20):
        slicer.took(1000, 0.1)  # 10k offers/s: 200 per 20 ms
    assert 190 <= slicer.size <= 210
    assert [len(p) for p in slicer.parts(list(range(450)))] == [slicer.size, slicer.size, 450 - 2 * slicer.size]
    for _ in range(50):
        slicer.took(MIN_OFFERS, 10.0)
    assert slicer.size == MIN_OFFERS
    for _ in range(50):
        slicer.took(10_000, 0.001)
    assert slicer.size == MAX_OFFERS
    groups = list(BulkSlicer(0.02).groups([("p1", [1] * 300), ("p2", [1] * 300), ("p3", [1] * 300)]))
    assert [[name for name, _ in g] for g in groups] == [["p1"], ["p2"], ["p3"]]  # a message is never split


async def test_a_bulk_write_lets_a_waiting_interactive_one_in_between_two_parts(tmp_path: Path) -> None:
    db = Connections(tmp_path / "t.db", busy_timeout_s=5, cache_mb=4)

    def prepare(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE t (step TEXT)")

    db.open(prepare)
    loop = asyncio.get_running_loop()
    interactive: list[asyncio.Future[None]] = []

    def part(name: str) -> Callable[[sqlite3.Connection], str]:
        def write(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO t VALUES (?)", (name,))
            if name == "bulk-1":  # a miss's write arrives while the bulk transaction runs
                write_miss = db.transaction(lambda c: c.execute("INSERT INTO t VALUES ('miss')"), Lane.INTERACTIVE)
                interactive.append(asyncio.run_coroutine_threadsafe(write_miss, loop))  # type: ignore[arg-type]
                while not db._writer or not db._writer.waiting(Lane.INTERACTIVE):
                    time.sleep(0.001)
            return name

        return write

    try:
        assert await db.bulk([part("bulk-1"), part("bulk-2"), part("bulk-3")]) == ["bulk-1", "bulk-2", "bulk-3"]
        await asyncio.wrap_future(interactive[0])
        steps = [row[0] for row in db.reader.execute("SELECT step FROM t ORDER BY rowid")]
    finally:
        db.close()
    assert steps == ["bulk-1", "miss", "bulk-2", "bulk-3"]


def test_bulk_work_steps_aside_while_an_interactive_job_runs_and_goes_on_when_it_ends() -> None:
    work = InteractiveWork(max_pause_s=30.0)
    work.step_aside()  # nothing interactive: returns at once
    stepped = threading.Event()

    def bulk() -> None:
        work.step_aside()
        stepped.set()

    with work.running():
        assert not work.quiet
        thread = threading.Thread(target=bulk)
        thread.start()
        assert not stepped.wait(0.2)  # still waiting for the miss
    assert stepped.wait(5.0)  # the miss ended: the sync goes on
    thread.join()
    assert work.quiet and work.paused_s > 0


async def test_a_pause_is_bounded_so_a_stream_of_misses_never_stops_a_sync() -> None:
    work = InteractiveWork(max_pause_s=0.01)
    with work.running():
        await asyncio.wait_for(work.step_aside_async(), timeout=5.0)
        work.step_aside()
        assert not work.quiet  # both returned while the interactive job still ran


async def test_interactive_workers_count_as_running_for_as_long_as_they_handle_a_request() -> None:
    seen: list[bool] = []
    handled = asyncio.Event()

    async def handler(request: FetchRequest, waited_s: float) -> None:
        seen.append(interactive_work.quiet)
        handled.set()

    queue = LaneQueue(Lane.INTERACTIVE, handler, workers=1, per_vendor=1, maxsize=10)
    queue.start()
    try:
        await queue.put(product("v", "1"))
        await asyncio.wait_for(handled.wait(), timeout=5.0)
        await asyncio.sleep(0.05)  # the worker leaves the handler and counts itself out
    finally:
        await queue.stop()
    assert seen == [False] and interactive_work.quiet


def test_the_writer_runs_interactive_writes_while_it_steps_aside() -> None:
    work = InteractiveWork(max_pause_s=0.05)
    calls: list[None] = []
    with work.running():
        work.step_aside(lambda: calls.append(None))
    assert calls  # what arrived meanwhile (the miss's own write) was not left waiting for the pause to end


async def test_a_miss_waiting_long_on_its_vendor_stops_holding_bulk_work_back_until_it_ends() -> None:
    work = InteractiveWork()
    with work.running():
        with work.away(0.02):
            assert not work.quiet  # a vendor answering within 20 ms: the sync keeps stepping aside
            await asyncio.sleep(0.06)
            assert work.quiet  # waited longer: bulk work goes on meanwhile
        assert not work.quiet  # the answer is back: mapping and writing count again
    assert work.quiet


async def test_a_fast_vendor_answer_leaves_the_count_as_it_was_and_bulk_work_is_never_counted() -> None:
    work = InteractiveWork()
    with work.running():
        with work.away(0.5):
            await asyncio.sleep(0.01)
        assert not work.quiet
        await asyncio.sleep(0.6)  # the timer was cancelled with the block: nothing leaves later
        assert not work.quiet
    assert work.quiet
    with work.away(0.0):  # outside ``running`` (a sync's page): nothing to leave
        await asyncio.sleep(0.01)
        assert work.quiet
    assert work.quiet


def test_a_step_aside_ends_when_the_writer_must_commit_first() -> None:
    work = InteractiveWork(max_pause_s=30.0)
    with work.running():
        started = time.monotonic()
        work.step_aside(lambda: False)
    assert time.monotonic() - started < 5.0  # not the 30 s pause: a write waits that needs the commit


def nested_db(tmp_path: Path) -> tuple[Connections, list[str]]:
    """A store with one table and a log of its commits and rollbacks (as the catalog's hooks see them)."""
    db = Connections(tmp_path / "t.db", busy_timeout_s=5, cache_mb=4)

    def prepare(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE t (step TEXT)")

    db.open(prepare)
    events: list[str] = []
    db.after_commit = lambda conn: events.append("commit")
    db.after_rollback = lambda: events.append("rollback")
    return db, events


def committed(db: Connections) -> list[str]:
    conn = db.connect_reader()
    try:
        return [row[0] for row in conn.execute("SELECT step FROM t ORDER BY rowid")]
    finally:
        conn.close()


def bulk_with_a_miss(
    db: Connections, loop: asyncio.AbstractEventLoop, misses: list[asyncio.Future[None]], seen: list[list[str]]
) -> Callable[[str], Callable[[sqlite3.Connection], str]]:
    """Bulk parts; the first sends a nested miss write and waits until the writer has it, the second notes what
    another connection sees (the miss ran between them), the part named "fail" raises."""

    def part(name: str) -> Callable[[sqlite3.Connection], str]:
        def write(conn: sqlite3.Connection) -> str:
            if name == "fail":
                raise RuntimeError("the sync's part failed")
            conn.execute("INSERT INTO t VALUES (?)", (name,))
            if name == "bulk-1":

                def miss(c: sqlite3.Connection) -> None:
                    c.execute("INSERT INTO t VALUES ('miss')")

                write_miss = db.transaction(miss, Lane.INTERACTIVE, nested=miss)
                misses.append(asyncio.run_coroutine_threadsafe(write_miss, loop))  # type: ignore[arg-type]
                while not db._writer or not db._writer.waiting(Lane.INTERACTIVE):
                    time.sleep(0.001)
            if name == "bulk-2":  # the miss ran between the two parts, in this transaction
                assert [row[0] for row in conn.execute("SELECT step FROM t ORDER BY rowid")] == [
                    "bulk-1",
                    "miss",
                    "bulk-2",
                ]
                seen.append(committed(db))
            return name

        return write

    return part


async def test_a_nested_miss_write_runs_inside_the_bulk_transaction_and_commits_with_it(tmp_path: Path) -> None:
    db, events = nested_db(tmp_path)
    misses: list[asyncio.Future[None]] = []
    seen: list[list[str]] = []
    part = bulk_with_a_miss(db, asyncio.get_running_loop(), misses, seen)
    try:
        assert await db.bulk([part("bulk-1"), part("bulk-2"), part("bulk-3")]) == ["bulk-1", "bulk-2", "bulk-3"]
        await asyncio.wrap_future(misses[0])
        steps = committed(db)
        nested = [m.value for m in db.metrics() if m.name == "catalog_writer_nested_total"]
    finally:
        db.close()
    assert nested == [1]
    assert seen == [[]]  # nothing committed while the miss had its answer: it ran in the open transaction
    assert steps == ["bulk-1", "miss", "bulk-2", "bulk-3"]
    assert events == ["commit"]  # one commit for the sync and the miss (a plain interactive write makes two)


async def test_a_nested_write_is_committed_within_its_bound_even_as_the_bulk_job_goes_on(tmp_path: Path) -> None:
    db, events = nested_db(tmp_path)
    db.nested_commit_s = 0.0
    misses: list[asyncio.Future[None]] = []
    seen: list[list[str]] = []
    part = bulk_with_a_miss(db, asyncio.get_running_loop(), misses, seen)
    try:
        await db.bulk([part("bulk-1"), part("bulk-2"), part("bulk-3")])
        steps = committed(db)
    finally:
        db.close()
    assert seen == [["bulk-1", "miss"]]  # committed before the next part
    assert steps == ["bulk-1", "miss", "bulk-2", "bulk-3"]
    assert events == ["commit", "commit"]


async def test_a_nested_write_is_written_again_when_its_bulk_transaction_rolls_back(tmp_path: Path) -> None:
    db, events = nested_db(tmp_path)
    misses: list[asyncio.Future[None]] = []
    seen: list[list[str]] = []
    part = bulk_with_a_miss(db, asyncio.get_running_loop(), misses, seen)
    try:
        try:
            await db.bulk([part("bulk-1"), part("bulk-2"), part("fail")])
        except RuntimeError as exc:
            assert "failed" in str(exc)
        else:
            raise AssertionError("the failing part did not fail the bulk job")
        await asyncio.wrap_future(misses[0])
        steps = committed(db)
    finally:
        db.close()
    assert steps == ["miss"]  # the sync's parts rolled back; the answered miss was written again on its own
    assert events == ["rollback", "commit"]


async def test_a_nested_write_that_fails_undoes_only_itself_and_the_bulk_job_goes_on(tmp_path: Path) -> None:
    db, events = nested_db(tmp_path)
    loop = asyncio.get_running_loop()
    misses: list[asyncio.Future[None]] = []

    def miss(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES ('miss')")
        raise ValueError("the miss's write failed")

    def part(name: str) -> Callable[[sqlite3.Connection], str]:
        def write(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO t VALUES (?)", (name,))
            if name == "bulk-1":
                write_miss = db.transaction(miss, Lane.INTERACTIVE, nested=miss)
                misses.append(asyncio.run_coroutine_threadsafe(write_miss, loop))  # type: ignore[arg-type]
                while not db._writer or not db._writer.waiting(Lane.INTERACTIVE):
                    time.sleep(0.001)
            return name

        return write

    try:
        assert await db.bulk([part("bulk-1"), part("bulk-2")]) == ["bulk-1", "bulk-2"]
        try:
            await asyncio.wrap_future(misses[0])
        except ValueError as exc:
            assert "failed" in str(exc)
        else:
            raise AssertionError("the failed nested write was answered as done")
        steps = committed(db)
    finally:
        db.close()
    assert steps == ["bulk-1", "bulk-2"]  # its row rolled back to its savepoint; the sync's parts committed
    assert events == ["commit"]
