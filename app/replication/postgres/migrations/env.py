"""Alembic environment: runs the migrations in the replica's schema, under an advisory lock.

Called programmatically (``app.replication.postgres.migrate.upgrade``); the URL and the schema come from the Config
object, not from an alembic.ini.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

config = context.config
url = config.get_main_option("sqlalchemy.url")
schema = str(config.attributes.get("schema", "public"))
assert url is not None

engine = create_engine(url, poolclass=NullPool)
with engine.connect() as connection:
    # Two pushers starting at once must not both create the tables.
    connection.execute(text("SELECT pg_advisory_lock(hashtext('catalog-alembic'))"))
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    connection.execute(text(f'SET search_path TO "{schema}"'))
    connection.commit()
    context.configure(connection=connection, version_table_schema=schema, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
    connection.execute(text("SELECT pg_advisory_unlock(hashtext('catalog-alembic'))"))
    connection.commit()
engine.dispose()
