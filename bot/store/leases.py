"""Claiming due rows under a lease, the same way for the inbox and the outbox.

On PostgreSQL the claim is `SELECT … FOR UPDATE SKIP LOCKED`, so several processes take
different rows without waiting on each other; on SQLite every transaction begins IMMEDIATE
(bot/store/db.py), so the select and the update see no other writer in between.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, select, update
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
    # One query per status, each ordered by the due time alone: the (status, …, due) index
    # then yields the first rows in order and the scan stops at `limit`. An OR of statuses,
    # or a second sort key, makes the database sort the whole due backlog on every claim
    # (200 ms per claim with 100,000 queued rows). Rows one query locks but the merge
    # leaves out are released when the claim's transaction ends.
    conditions = [and_(model.status == status, due_column <= now) for status in ready_statuses]
    conditions.append(and_(model.status == leased_status, model.lease_until < now))
    postgres = session.get_bind().dialect.name == "postgresql"
    found: list[Any] = []
    for condition in conditions:
        where = condition if extra is None else and_(condition, extra)
        query = select(due_column, model.id, model.status).where(where)
        query = query.order_by(due_column).limit(limit)
        if postgres:
            query = query.with_for_update(skip_locked=True)
        found.extend(session.execute(query).all())
    rows = sorted(found, key=lambda row: (row[0], row[1]))[:limit]
    if not rows:
        return []
    ids = [row[1] for row in rows]
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
    return [(row[1], row[2]) for row in rows]
