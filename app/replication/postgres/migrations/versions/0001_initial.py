"""The long-term store: the replicated catalog tables, the append-only price history, sync bookkeeping.

Replicated tables hold exactly the columns SQLite's capture sends (app/replication/capture.py; the pusher refuses
to run when the sets differ) plus three bookkeeping columns: which node wrote the row, at which outbox sequence
(the guard that keeps an older image from overwriting a newer one) and when it changed. Column types mirror SQLite's
storage (timestamps are ISO text, prices exact decimal text) so both sides compare value for value; analytics cast.
CHECK constraints hold the invariants the domain promises, so a bad value stops the push instead of spreading.
No foreign keys: SQLite enforces them at the source, and a batch applies tables set-based, not in FK order.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BOOKKEEPING = "src_node text NOT NULL, src_seq bigint NOT NULL, changed_at timestamptz NOT NULL"
AVAILABILITY = "'in_stock', 'out_of_stock', 'backorder', 'preorder', 'unknown', 'discontinued'"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE vendors (
            id text PRIMARY KEY,
            name text NOT NULL,
            kind text NOT NULL,
            base_url text NOT NULL,
            currency text NOT NULL CHECK (char_length(currency) = 3),
            credentials text NOT NULL,
            refresh_interval_s bigint NOT NULL,
            enabled bigint NOT NULL,
            created_at text NOT NULL,
            updated_at text NOT NULL,
            mapping text,
            {BOOKKEEPING})"""
    )
    op.execute(
        f"""CREATE TABLE vendor_sync (
            vendor_id text PRIMARY KEY,
            state text NOT NULL,
            started_at text,
            finished_at text,
            last_success_at text,
            last_full_sync_at text,
            last_error text,
            last_error_at text,
            syncs_ok bigint NOT NULL,
            syncs_failed bigint NOT NULL,
            {BOOKKEEPING})"""
    )
    op.execute(
        f"""CREATE TABLE offers (
            vendor_id text NOT NULL,
            vendor_product_id text NOT NULL,
            product_id text NOT NULL,
            parent_id text,
            title text NOT NULL,
            price text NOT NULL CHECK (price::numeric >= 0),
            currency text NOT NULL CHECK (char_length(currency) = 3),
            sku text,
            gtin text,
            brand text,
            category text,
            availability text NOT NULL CHECK (availability IN ({AVAILABILITY})),
            stock bigint,
            url text,
            vendor_updated_at text,
            fetched_at text NOT NULL,
            match_key text,
            images text NOT NULL,
            description text NOT NULL,
            {BOOKKEEPING},
            PRIMARY KEY (vendor_id, vendor_product_id))"""
    )
    # No index on offers.product_id: every offer has price history rows, which are indexed by product, and one
    # index less is a tenth off the push's cost per offer.
    op.execute(
        f"""CREATE TABLE products (
            id text PRIMARY KEY,
            name text NOT NULL,
            brand text,
            brand_key text,
            category text,
            category_key text,
            gtin text,
            currency text NOT NULL,
            min_price double precision NOT NULL,
            max_price double precision NOT NULL,
            in_stock bigint NOT NULL,
            offer_count bigint NOT NULL,
            updated_at text NOT NULL,
            etag text NOT NULL,
            min_price_base double precision,
            {BOOKKEEPING})"""
    )
    op.execute(
        """CREATE TABLE price_history (
            vendor_id text NOT NULL,
            vendor_product_id text NOT NULL,
            product_id text NOT NULL,
            price text NOT NULL,
            currency text NOT NULL,
            availability text NOT NULL,
            changed_at timestamptz NOT NULL,
            src_node text NOT NULL,
            src_seq bigint NOT NULL,
            PRIMARY KEY (src_node, src_seq))"""
    )
    op.execute("CREATE INDEX price_history_product ON price_history (product_id, changed_at)")
    op.execute(
        """CREATE TABLE repl_nodes (
            node_id text PRIMARY KEY,
            watermark bigint NOT NULL DEFAULT 0,
            changes bigint NOT NULL DEFAULT 0,
            pushed_at timestamptz)"""
    )


def downgrade() -> None:
    for table in ("repl_nodes", "price_history", "products", "offers", "vendor_sync", "vendors"):
        op.execute(f"DROP TABLE {table}")
