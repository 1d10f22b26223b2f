"""Filling an empty node's SQLite from PostgreSQL, so a new API node serves the catalog at once."""

from __future__ import annotations

import logging

from app.replication.capture import SqliteLoad
from app.replication.postgres.replica import PostgresReplica
from app.store.sqlite.catalog import SqliteCatalog

log = logging.getLogger(__name__)

_CHUNK = 2000


async def initial_load(store: SqliteCatalog, replica: PostgresReplica, *, install_capture: bool) -> int | None:
    """Fill an empty SQLite from PostgreSQL, in one SQLite transaction with capture suppressed.

    Returns the offers loaded, or None when SQLite is not empty (or PostgreSQL has no catalog). Products are
    re-derived through the store's own upsert path (unification), so they are what the source node computed.
    One transaction: a node that dies mid-load starts empty again and reloads, never half-loaded.
    """
    if store.list_vendors() or store.count_products():
        return None
    loaded = await store.run_in_transaction(
        lambda conn: _load(SqliteLoad(store, conn), replica, install_capture=install_capture)
    )
    if loaded is not None:
        log.info("replication: initial load of %d offers from PostgreSQL", loaded)
    return loaded


def _load(target: SqliteLoad, replica: PostgresReplica, *, install_capture: bool) -> int | None:
    columns = target.columns()
    with replica.snapshot() as source:
        vendors = source.rows("vendors", columns["vendors"])
        if not vendors:
            return None
        target.suppress_capture(True)
        target.add_vendors(vendors)
        target.add_rows("vendor_sync", source.rows("vendor_sync", columns["vendor_sync"]))
        # Before the offers: their unification reads the overrides as each batch is clustered.
        target.add_rows("match_overrides", source.rows("match_overrides", columns["match_overrides"]))
        loaded = 0
        for offers in source.offers(_CHUNK):
            target.add_offers(offers)
            loaded += len(offers)
        target.adopt_product_times(source.product_times())
        target.suppress_capture(False)
        if install_capture:
            target.install_capture()
        return loaded
