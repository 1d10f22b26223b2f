"""People's unification overrides (issue 10): SQLite's ``match_overrides`` (migration 0008), replicated like the
other tables so a node loaded from PostgreSQL splits and pins exactly as the one that took the admin call.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BOOKKEEPING = "src_node text NOT NULL, src_seq bigint NOT NULL, changed_at timestamptz NOT NULL"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE match_overrides (
            vendor_id text NOT NULL,
            vendor_product_id text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('split', 'pin')),
            other_vendor_id text NOT NULL,
            other_product_id text NOT NULL,
            created_at text NOT NULL,
            {BOOKKEEPING},
            PRIMARY KEY (vendor_id, vendor_product_id, kind, other_vendor_id, other_product_id))"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE match_overrides")
