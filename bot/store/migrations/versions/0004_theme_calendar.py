"""theme calendar

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "receive_counts",
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("target_kind", sa.String(length=8), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "period", "target_kind", "target_id", name=op.f("pk_receive_counts")
        ),
    )
    op.create_table(
        "slot_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("slot_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("part", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("theme", sa.String(length=128), nullable=False),
        sa.Column("template", sa.String(length=255), nullable=False),
        sa.Column("fire_at", bot.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("planned_at", bot.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("notified_at", bot.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slot_runs")),
        sa.UniqueConstraint("slot_id", "day", "part", name=op.f("uq_slot_runs_slot_id")),
    )
    with op.batch_alter_table("slot_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slot_runs_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_slot_runs_status"), ["status"], unique=False)

    op.create_table(
        "mass_tasks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("outbox_key", sa.String(length=191), nullable=False),
        sa.Column("chat_type", sa.String(length=8), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=True),
        sa.Column("msgid", sa.String(length=128), nullable=True),
        sa.Column("targets", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", bot.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", bot.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", sa.JSON(), nullable=False),
        sa.Column("results_at", bot.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("final_at", bot.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("not_friend", sa.Integer(), nullable=False),
        sa.Column("already_received", sa.Integer(), nullable=False),
        sa.Column("unsent", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["slot_runs.id"],
            name=op.f("fk_mass_tasks_run_id_slot_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mass_tasks")),
        sa.UniqueConstraint("msgid", name=op.f("uq_mass_tasks_msgid")),
        sa.UniqueConstraint("outbox_key", name=op.f("uq_mass_tasks_outbox_key")),
    )
    with op.batch_alter_table("mass_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mass_tasks_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_mass_tasks_sender"), ["sender"], unique=False)
        batch_op.create_index(batch_op.f("ix_mass_tasks_status"), ["status"], unique=False)

    op.create_table(
        "slot_targets",
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("target_kind", sa.String(length=8), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=True),
        sa.Column("task_key", sa.String(length=191), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["slot_runs.id"],
            name=op.f("fk_slot_targets_run_id_slot_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "target_id", name=op.f("pk_slot_targets")),
    )
    with op.batch_alter_table("slot_targets", schema=None) as batch_op:
        batch_op.create_index("ix_slot_targets_task_key", ["task_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("slot_targets", schema=None) as batch_op:
        batch_op.drop_index("ix_slot_targets_task_key")

    op.drop_table("slot_targets")
    with op.batch_alter_table("mass_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mass_tasks_status"))
        batch_op.drop_index(batch_op.f("ix_mass_tasks_sender"))
        batch_op.drop_index(batch_op.f("ix_mass_tasks_run_id"))

    op.drop_table("mass_tasks")
    with op.batch_alter_table("slot_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slot_runs_status"))
        batch_op.drop_index(batch_op.f("ix_slot_runs_day"))

    op.drop_table("slot_runs")
    op.drop_table("receive_counts")
