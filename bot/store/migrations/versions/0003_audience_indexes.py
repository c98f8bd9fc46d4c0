"""audience indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 09:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_customers_opted_out_id",
        "customers",
        ["external_userid"],
        unique=False,
        sqlite_where=sa.text("opted_out = 1"),
        postgresql_where=sa.text("opted_out"),
    )
    op.create_index(
        "ix_follow_relations_customer_status",
        "follow_relations",
        ["external_userid", "status"],
        unique=False,
    )
    op.create_index(
        "ix_customer_profiles_lifecycle_aum",
        "customer_profiles",
        ["lifecycle", "aum", "external_userid"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_customer_profiles_lifecycle_aum", table_name="customer_profiles")
    op.drop_index("ix_follow_relations_customer_status", table_name="follow_relations")
    op.drop_index("ix_customers_opted_out_id", table_name="customers")
