"""The one write-transaction shape of the SQLite adapters (the catalog's writer and the replication outbox)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def immediate(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn`` in one transaction that takes the write lock at once (``BEGIN IMMEDIATE``: no upgrade deadlock
    with another writer); rolled back on any exception, including KeyboardInterrupt."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
        return result
    except BaseException:
        if conn.in_transaction:  # SQLite already rolled back after some errors (SQLITE_FULL): keep the real one
            conn.execute("ROLLBACK")
        raise
