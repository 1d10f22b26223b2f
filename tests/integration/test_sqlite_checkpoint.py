"""WAL checkpoints run on their own thread, and the writer's commits no longer do them."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from app.store.sqlite.checkpoint import WRITER_PAGES, Checkpointer
from app.store.sqlite.connection import Connections


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE t (x BLOB)")


def _wal(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # only the checkpointer copies the log
    conn.execute("CREATE TABLE IF NOT EXISTS t (x BLOB)")
    return conn


def test_a_round_copies_what_was_committed_and_an_idle_round_copies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    writer = _wal(path)
    checkpointer = Checkpointer(lambda: sqlite3.connect(path))
    conn = sqlite3.connect(path)
    writer.executemany("INSERT INTO t VALUES (?)", [(b"x" * 4000,) for _ in range(200)])
    assert checkpointer.run_once(conn)
    (_, frames, done) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert frames == done > 0  # everything in the log is in the database file now
    assert not checkpointer.run_once(conn)  # nothing written since
    assert checkpointer.checkpoints == 1
    conn.close()
    writer.close()


def test_the_store_checkpoints_off_the_writer_and_says_so_on_metrics(tmp_path: Path) -> None:
    db = Connections(tmp_path / "store.db", busy_timeout_s=5, cache_mb=4)
    db.open(_create)
    try:
        (limit,) = db.reader.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert limit == 1000  # a reader's own default; the writer's finishes the checkpoint thread's copies
        assert db._w is not None and db._w.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WRITER_PAGES
        assert db._checkpointer is not None
        db._checkpointer.every_s = 0.01
        db._w.execute("BEGIN IMMEDIATE")
        db._w.executemany("INSERT INTO t VALUES (?)", [(b"y" * 4000,) for _ in range(300)])
        db._w.execute("COMMIT")
        for _ in range(500):
            if db._checkpointer.checkpoints:
                break
            time.sleep(0.01)
        names = {m.name: m.value for m in db.metrics()}
        assert names["catalog_wal_checkpoints_total"] >= 1
        assert names["catalog_wal_checkpoint_failures_total"] == 0
    finally:
        db.close()


def test_the_log_stays_bounded_while_the_writer_never_pauses(tmp_path: Path) -> None:
    """The checkpoint thread alone rarely gets the log restarted under a busy writer; the writer's own threshold
    (here 1,000 pages instead of ``WRITER_PAGES``, so the test writes little) finishes its copies and keeps the log
    near the threshold."""
    db = Connections(tmp_path / "busy.db", busy_timeout_s=5, cache_mb=4)
    db.open(_create)
    try:
        assert db._w is not None and db._checkpointer is not None
        db._w.execute("PRAGMA wal_autocheckpoint = 1000")
        db._checkpointer.every_s = 0.005
        blob = b"z" * 7000  # about a page each
        for _ in range(40):  # ~10x the threshold, transaction after transaction
            db._w.execute("BEGIN IMMEDIATE")
            db._w.executemany("INSERT INTO t VALUES (?)", [(blob,)] * 250)
            db._w.execute("COMMIT")
            db.reader.execute("SELECT count(*) FROM t").fetchone()  # a reader on the log meanwhile
        checkpoints = db._checkpointer.checkpoints
        db._checkpointer.stop()  # a checkpoint of its own under way would make the one below answer -1 (busy)
        (_, frames, _) = db.reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert 0 < frames <= 2000
        assert checkpoints > 0
    finally:
        db.close()
