"""The schema migration runner: applies the ``migrations/*.sql`` files a catalog file has not seen yet.

Why it is shaped like this:
- The scripts ship as package data (read through ``importlib.resources``), so an installed wheel migrates too.
- A file is applied once, in name order, each in its own transaction with its ``schema_migrations`` row: a
  failed script leaves neither half a schema nor a record claiming it ran.
- This module is not named ``migrations``: the folder of SQL files holds that name in this package.
"""

from __future__ import annotations

import logging
import sqlite3
from functools import partial
from importlib import resources

from app.domain import documents
from app.domain.models import utcnow
from app.store.sqlite.transaction import immediate

log = logging.getLogger(__name__)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file's schema up to date (on the writer connection, before it takes writes)."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    folder = resources.files("app.store.sqlite") / "migrations"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql") or entry.name in done:
            continue
        log.info("applying migration %s", entry.name)
        immediate(conn, partial(_apply, name=entry.name, statements=split_sql(entry.read_text(encoding="utf-8"))))


def _apply(conn: sqlite3.Connection, *, name: str, statements: list[str]) -> None:
    for statement in statements:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, documents.iso(utcnow())))


def split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (which contain ';') whole.

    ``executescript`` would do the splitting but commits first and runs outside our transaction.
    """
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        text = "\n".join(current)
        if stripped.endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    if current and "\n".join(current).strip():
        statements.append("\n".join(current))
    return statements
