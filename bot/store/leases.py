"""Claiming due rows under a lease, the same way for the inbox and the outbox.

On PostgreSQL the claim is `SELECT … FOR UPDATE SKIP LOCKED`, so several processes take
different rows without waiting on each other; on SQLite every transaction begins IMMEDIATE
(bot/store/db.py), so the select and the update see no other writer in between.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session


def claim_due(
    session: Session,
    model: Any,
    *,
    now: datetime,
    worker_id: str,
    lease_seconds: float,
    limit: int,
    due_column: InstrumentedAttribute[datetime],
    ready_statuses: tuple[str, ...] = ("pending",),
    leased_status: str = "sending",
    extra: ColumnElement[bool] | None = None,
    extra_values: dict[str, Any] | None = None,
) -> list[tuple[int, str]]:
    """Lease up to `limit` due rows; return (id, status before the claim) pairs.

    Due means in a ready status with its due time reached, or leased by a worker whose lease ran out
    (that worker died). The previous status tells the caller which rows are recoveries.
    """
    due = or_(
        and_(model.status.in_(ready_statuses), due_column <= now),
        and_(model.status == leased_status, model.lease_until < now),
    )
    if extra is not None:
        due = and_(due, extra)
    query = select(model.id, model.status).where(due).order_by(due_column, model.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(query.with_for_update(skip_locked=True)).all()
    else:
        rows = session.execute(query).all()
    if not rows:
        return []
    ids = [row[0] for row in rows]
    session.execute(
        update(model)
        .where(model.id.in_(ids))
        .values(
            status=leased_status,
            lease_until=now + timedelta(seconds=lease_seconds),
            leased_by=worker_id,
            **(extra_values or {}),
        )
        .execution_options(synchronize_session=False)
    )
    return [(row[0], row[1]) for row in rows]
