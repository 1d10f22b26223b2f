"""WAL checkpoints run on their own thread, and the writer's commits no longer do them."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from app.store.sqlite.checkpoint import BACKSTOP_PAGES, Checkpointer
from app.store.sqlite.connection import Connections


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
    db.open(lambda conn: conn.execute("CREATE TABLE t (x BLOB)"))
    try:
        (limit,) = db.reader.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert limit == 1000  # a reader's own default; the writer's is the backstop
        assert db._w is not None and db._w.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
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
