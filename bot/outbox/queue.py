"""The outbox table's operations: enqueue once per key, claim under a lease, record results."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.store.inserts import insert_new
from bot.store.leases import claim_due
from bot.store.models import OutboxItem

FAST = "fast"
NORMAL = "normal"
# Bulk pushes (tag sync's mark_tag rows) have a lane of their own: 100,000 rows take
# WeCom's quota for a quarter of an hour, and rows are claimed by due time, so in a shared
# lane the calendar's tasks would wait behind all of them.
BULK = "bulk"
LANES = (FAST, NORMAL, BULK)

# Row statuses. pending → sending (leased) → sent | failed | dead | expired | skipped;
# `verify` marks a non-idempotent call whose outcome is unknown and must be reconciled.
PENDING = "pending"
SENDING = "sending"
VERIFY = "verify"
SENT = "sent"
FAILED = "failed"
DEAD = "dead"
EXPIRED = "expired"
SKIPPED = "skipped"
OPEN_STATUSES = (PENDING, SENDING, VERIFY)
# The Core table, for the statements that run once per row of a large plan or sync.
OUTBOX = OutboxItem.metadata.tables[OutboxItem.__tablename__]


@dataclass(frozen=True)
class Claimed:
    """A leased outbox row, detached from its session."""

    id: int
    key: str
    kind: str
    lane: str
    payload: dict[str, Any]
    attempts: int
    expires_at: datetime | None
    created_at: datetime
    recovered: bool


def enqueue(
    session: Session,
    *,
    key: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    due_at: datetime | None = None,
    expires_at: datetime | None = None,
    lane: str = NORMAL,
) -> bool:
    """Insert the row unless its key exists; True if inserted. Call inside the business
    change's own transaction, so the effect is recorded exactly when the change is."""
    values = {
        "idempotency_key": key,
        "kind": kind,
        "lane": lane,
        "payload": payload,
        "status": PENDING,
        "attempts": 0,
        "due_at": due_at or now,
        "expires_at": expires_at,
        "created_at": now,
        "updated_at": now,
    }
    stmt = (
        insert_new(session.get_bind().dialect.name, OUTBOX, ["idempotency_key"])
        .values(**values)
        .returning(OUTBOX.c.id)
    )
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING.
    return session.execute(stmt).scalar_one_or_none() is not None


def enqueue_many(session: Session, rows: list[dict[str, Any]], *, now: datetime) -> None:
    """Insert many rows (each: key, kind, payload, and optionally due_at, expires_at, lane),
    skipping keys that exist; for planners that queue hundreds of rows at once."""
    if not rows:
        return
    values = [
        {
            "idempotency_key": row["key"],
            "kind": row["kind"],
            "lane": row.get("lane", NORMAL),
            "payload": row["payload"],
            "status": PENDING,
            "attempts": 0,
            "due_at": row.get("due_at") or now,
            "expires_at": row.get("expires_at"),
            "created_at": now,
            "updated_at": now,
        }
        for row in rows
    ]
    # On the Core table: given the ORM entity, a list of rows takes the ORM's bulk-insert
    # path, which cost more than the rows' own work for a day's thousands of group tasks.
    stmt = insert_new(session.get_bind().dialect.name, OUTBOX, ["idempotency_key"])
    session.execute(stmt, values)


def claim(
    session: Session,
    *,
    lane: str,
    now: datetime,
    worker_id: str,
    lease_seconds: float,
    limit: int,
) -> list[Claimed]:
    """Lease due rows of one lane."""
    pairs = claim_due(
        session,
        OutboxItem,
        now=now,
        worker_id=worker_id,
        lease_seconds=lease_seconds,
        limit=limit,
        due_column=OutboxItem.due_at,
        ready_statuses=(PENDING, VERIFY),
        leased_status=SENDING,
        extra=OutboxItem.lane == lane,
    )
    if not pairs:
        return []
    previous = dict(pairs)
    rows = session.scalars(
        select(OutboxItem)
        .where(OutboxItem.id.in_(previous))
        .order_by(OutboxItem.due_at, OutboxItem.id)
    ).all()
    return [
        Claimed(
            id=row.id,
            key=row.idempotency_key,
            kind=row.kind,
            lane=row.lane,
            payload=dict(row.payload),
            attempts=row.attempts,
            expires_at=row.expires_at,
            created_at=row.created_at,
            recovered=previous[row.id] != PENDING,
        )
        for row in rows
    ]


def finish(
    session: Session,
    item_id: int,
    *,
    status: str,
    now: datetime,
    worker_id: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    errcode: int | None = None,
    count_attempt: bool = True,
) -> bool:
    """Record a final outcome."""
    values = {"status": status, "done_at": now, "result": result}
    return _release(session, item_id, worker_id, now, error, errcode, count_attempt, values)


def reschedule(
    session: Session,
    item_id: int,
    *,
    due_at: datetime,
    now: datetime,
    worker_id: str,
    error: str | None,
    errcode: int | None,
    count_attempt: bool,
    status: str = PENDING,
) -> bool:
    """Put a row back to wait for `due_at` (retry, or a rate-limit deferral)."""
    values = {"status": status, "due_at": due_at}
    return _release(session, item_id, worker_id, now, error, errcode, count_attempt, values)


def _release(
    session: Session,
    item_id: int,
    worker_id: str,
    now: datetime,
    error: str | None,
    errcode: int | None,
    count_attempt: bool,
    values: dict[str, Any],
) -> bool:
    """Give up the lease with `values`; only the lease holder may (a worker whose lease ran
    out and was taken over has its late write ignored)."""
    values = {
        **values,
        "updated_at": now,
        "lease_until": None,
        "last_error": error,
        "last_errcode": errcode,
    }
    if count_attempt:
        values["attempts"] = OUTBOX.c.attempts + 1
    # On the Core table: an ORM-enabled UPDATE per sent row (the bulk-update path) cost
    # more CPU than the statement's own work in a 100,000-row tag sync.
    res = session.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id == item_id, OUTBOX.c.leased_by == worker_id)
        .where(OUTBOX.c.status.in_((SENDING, VERIFY)))
        .values(**values)
    )
    return bool(getattr(res, "rowcount", 0))


def depth(session: Session) -> dict[str, int]:
    """Open rows per kind, for metrics and `bot status`."""
    rows = session.execute(
        select(OutboxItem.kind, func.count())
        .where(OutboxItem.status.in_(OPEN_STATUSES))
        .group_by(OutboxItem.kind)
    ).all()
    return {kind: int(count) for kind, count in rows}


def counts_by_status(session: Session) -> dict[tuple[str, str], int]:
    rows = session.execute(
        select(OutboxItem.kind, OutboxItem.status, func.count()).group_by(
            OutboxItem.kind, OutboxItem.status
        )
    ).all()
    return {(kind, status): int(count) for kind, status, count in rows}


class Outbox:
    """Enqueue helper bound to a wake-up signal, so fast-lane rows go out at once."""

    def __init__(self) -> None:
        self._wake = {lane: asyncio.Event() for lane in LANES}

    def enqueue(self, session: Session, **kwargs: Any) -> bool:
        return enqueue(session, **kwargs)

    def notify(self, lane: str = NORMAL) -> None:
        """Wake the sender for `lane` (call after the enqueuing transaction committed)."""
        self._wake[lane].set()

    def wake_event(self, lane: str) -> asyncio.Event:
        return self._wake[lane]

    @staticmethod
    def deadline(now: datetime, seconds: float) -> datetime:
        return now + timedelta(seconds=seconds)
