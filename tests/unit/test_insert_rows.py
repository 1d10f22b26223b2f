"""``insert_rows`` (multi-row statements) against ``executemany`` (one statement per row): the same rows, the same
trigger effects in the same order, the same upserts, for every batch size the halving split produces."""

from __future__ import annotations

import sqlite3

import pytest

from app.store.sqlite.connection import ROWS_PER_STATEMENT, insert_rows

SCHEMA = """
CREATE TABLE t (k TEXT NOT NULL UNIQUE, v INTEGER NOT NULL, blob BLOB NOT NULL);
CREATE TABLE log (seq INTEGER PRIMARY KEY, k TEXT NOT NULL, op TEXT NOT NULL, v INTEGER NOT NULL);
CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN INSERT INTO log (k, op, v) VALUES (NEW.k, 'i', NEW.v); END;
CREATE TRIGGER t_upd AFTER UPDATE ON t WHEN NEW.v IS NOT OLD.v BEGIN
    INSERT INTO log (k, op, v) VALUES (NEW.k, 'u', NEW.v); END;
"""
UPSERT = "ON CONFLICT (k) DO UPDATE SET v = excluded.v, blob = excluded.blob"


def state(conn: sqlite3.Connection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    return conn.execute("SELECT rowid, * FROM t ORDER BY rowid").fetchall(), conn.execute(
        "SELECT * FROM log ORDER BY seq"
    ).fetchall()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, ROWS_PER_STATEMENT - 1, ROWS_PER_STATEMENT, 2 * ROWS_PER_STATEMENT + 45])
def test_multi_row_statements_store_what_one_statement_per_row_stores(n: int) -> None:
    first = [(f"k{i % 97:03d}-{i}", i, bytes([i % 256]) * (i % 5)) for i in range(n)]
    again = [(k, v + 1 if i % 3 else v, b) for i, (k, v, b) in enumerate(first)] + [("new", -1, b"")]
    results = []
    for multi in (False, True):
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.executescript(SCHEMA)
        for rows in (first, again[::-1]):
            if multi:
                insert_rows(conn, "INSERT INTO t (k, v, blob)", 3, rows, UPSERT)
            else:
                conn.executemany(f"INSERT INTO t (k, v, blob) VALUES (?, ?, ?) {UPSERT}", rows)
        results.append(state(conn))
        conn.close()
    assert results[0] == results[1]
    assert len(results[0][0]) == n + 1


def test_statements_stay_within_the_parameter_limit_of_the_sqlite_at_hand() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 50)  # 16 rows of 3 per statement at most
    rows = [(f"k{i}", i, b"") for i in range(300)]
    insert_rows(conn, "INSERT INTO t (k, v, blob)", 3, rows, UPSERT)
    assert conn.execute("SELECT k, v, blob FROM t ORDER BY rowid").fetchall() == rows
    conn.close()
