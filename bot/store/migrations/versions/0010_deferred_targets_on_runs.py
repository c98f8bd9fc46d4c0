"""deferred targets held on their part's run, not a row each

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 12:00:00.000000

A slot planned outside some customers' contact window defers them to a later part of the
slot. They were written as slot_targets rows with status `deferred`: at a million
customers, a 1:1 slot defers its 144,000 seniors, and those rows cost 2–2.6 s of the
slot's planning on either engine. The part's run now holds them as one JSON document,
{target: sender} (bot.calendar.held); rows are written when the part is planned (the ones
it did not keep) or expires.

Upgrade moves the existing deferred rows into their runs' documents and deletes them;
downgrade writes them back as rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("slot_runs") as batch:
        batch.add_column(sa.Column("deferred_targets", sa.JSON(), nullable=True))
    build = "json_object_agg" if _postgres() else "json_group_object"
    op.execute(
        f"""
        UPDATE slot_runs SET deferred_targets = (
            SELECT {build}(t.target_id, t.sender) FROM slot_targets AS t
            WHERE t.run_id = slot_runs.id AND t.status = 'deferred'
        )
        WHERE id IN (SELECT run_id FROM slot_targets WHERE status = 'deferred')
        """
    )
    op.execute("DELETE FROM slot_targets WHERE status = 'deferred'")


def downgrade() -> None:
    each = "json_each_text" if _postgres() else "json_each"
    op.execute(
        f"""
        INSERT INTO slot_targets
            (run_id, target_id, target_kind, sender, task_key, status, period)
        SELECT r.id, held.key,
               CASE WHEN r.channel = 'group' THEN 'group' ELSE 'customer' END,
               held.value, NULL, 'deferred', NULL
        FROM slot_runs AS r JOIN {each}(r.deferred_targets) AS held ON 1 = 1
        WHERE r.deferred_targets IS NOT NULL
        """
    )
    with op.batch_alter_table("slot_runs") as batch:
        batch.drop_column("deferred_targets")
