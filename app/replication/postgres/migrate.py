"""Alembic, run from code: the pusher upgrades the schema at start-up, ``catalog db upgrade`` does it by hand."""

from __future__ import annotations

import threading

import psycopg
import sqlalchemy.exc
from alembic import command
from alembic.config import Config

# Alembic keeps its running context in module globals: two upgrades at once in one process corrupt each other.
_LOCK = threading.Lock()


def sqlalchemy_url(url: str) -> str:
    """A libpq URL (what DATABASE_URL holds) as SQLAlchemy's psycopg 3 dialect wants it."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def alembic_config(url: str, schema: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "app.replication.postgres:migrations")
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    config.attributes["schema"] = schema
    return config


def upgrade(url: str, schema: str, revision: str = "head") -> None:
    """Raises ``psycopg.OperationalError`` when PostgreSQL is unreachable, like the rest of the adapter."""
    try:
        with _LOCK:
            command.upgrade(alembic_config(url, schema), revision)
    except sqlalchemy.exc.OperationalError as exc:
        raise psycopg.OperationalError(str(exc.orig)) from exc
