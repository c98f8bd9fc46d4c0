"""Operational figures read from the database: what `bot status` prints and what /metrics
reports as gauges. Counts, ages and event types only: no payload, no customer, no token."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.outbox.queue import OPEN_STATUSES
from bot.store.models import InboxEvent, MassTask, OutboxItem, SlotRun, TokenCache

INBOX_BACKLOG_STATUSES = ("pending", "processing")
RECENT_CALLBACKS = 10


@dataclass(frozen=True)
class KindBacklog:
    """Open outbox rows of one kind and how long the oldest has waited."""

    kind: str
    open: int
    oldest_age_seconds: float


@dataclass(frozen=True)
class RecentCallback:
    """One stored callback, by type and outcome (never its content)."""

    received_at: datetime
    event_type: str
    status: str
    attempts: int


@dataclass(frozen=True)
class TokenState:
    """A cached access token's expiry (the token itself is never read)."""

    key: str
    expires_at: datetime | None
    expires_in_seconds: float | None


@dataclass(frozen=True)
class TaskCounts:
    created: int = 0
    confirmed: int = 0


@dataclass(frozen=True)
class Status:
    """Everything `bot status` shows, read in one transaction."""

    now: datetime
    outbox: list[KindBacklog]
    inbox_by_status: dict[str, int]
    inbox_oldest_pending_age_seconds: float | None
    recent_callbacks: list[RecentCallback]
    tasks_today: TaskCounts
    tasks_total: TaskCounts
    tasks_by_status: dict[str, int]
    slot_runs_today: dict[str, int]
    tokens: list[TokenState] = field(default_factory=list)

    @property
    def inbox_backlog(self) -> int:
        return sum(self.inbox_by_status.get(s, 0) for s in INBOX_BACKLOG_STATUSES)

    @property
    def last_callback_at(self) -> datetime | None:
        return self.recent_callbacks[0].received_at if self.recent_callbacks else None

    def to_json(self) -> dict[str, Any]:
        """Plain data for `bot status --json` (times as ISO strings in the clock's zone)."""
        tz = self.now.tzinfo

        def iso(value: datetime | None) -> str | None:
            return value.astimezone(tz).isoformat() if value is not None else None

        return {
            "now": self.now.isoformat(),
            "outbox": {
                b.kind: {"open": b.open, "oldest_age_seconds": round(b.oldest_age_seconds, 3)}
                for b in self.outbox
            },
            "inbox": {
                "backlog": self.inbox_backlog,
                "by_status": dict(self.inbox_by_status),
                "oldest_pending_age_seconds": _round(self.inbox_oldest_pending_age_seconds),
                "last_received_at": iso(self.last_callback_at),
                "recent": [
                    {
                        "received_at": iso(c.received_at),
                        "event_type": c.event_type,
                        "status": c.status,
                        "attempts": c.attempts,
                    }
                    for c in self.recent_callbacks
                ],
            },
            "mass_tasks": {
                "today": {
                    "created": self.tasks_today.created,
                    "confirmed": self.tasks_today.confirmed,
                },
                "total": {
                    "created": self.tasks_total.created,
                    "confirmed": self.tasks_total.confirmed,
                },
                "by_status": dict(self.tasks_by_status),
            },
            "slot_runs_today": dict(self.slot_runs_today),
            "tokens": [
                {
                    "key": t.key,
                    "expires_at": iso(t.expires_at),
                    "expires_in_seconds": _round(t.expires_in_seconds),
                }
                for t in self.tokens
            ],
        }


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _age(now: datetime, then: datetime | None) -> float:
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


def start_of_day(now: datetime) -> datetime:
    """Midnight of `now`'s day in `now`'s own zone (the bank's day, not UTC's)."""
    return datetime.combine(now.date(), time(), tzinfo=now.tzinfo)


def read_status(session: Session, now: datetime, *, recent: int = RECENT_CALLBACKS) -> Status:
    """Read the figures as of `now` (aware, in the zone whose day counts as today)."""
    today_start = start_of_day(now)
    today_end = today_start + timedelta(days=1)
    return Status(
        now=now,
        outbox=_outbox(session, now),
        inbox_by_status=_grouped(session, InboxEvent.status),
        inbox_oldest_pending_age_seconds=_oldest_pending(session, now),
        recent_callbacks=_recent(session, recent) if recent else [],
        tasks_today=TaskCounts(
            created=_count(session, MassTask.created_at, today_start, today_end),
            confirmed=_count(session, MassTask.confirmed_at, today_start, today_end),
        ),
        tasks_total=_task_totals(session),
        tasks_by_status=_grouped(session, MassTask.status),
        slot_runs_today=_grouped(session, SlotRun.status, SlotRun.day == now.date()),
        tokens=_tokens(session, now),
    )


def _outbox(session: Session, now: datetime) -> list[KindBacklog]:
    rows = session.execute(
        select(OutboxItem.kind, func.count(), func.min(OutboxItem.created_at))
        .where(OutboxItem.status.in_(OPEN_STATUSES))
        .group_by(OutboxItem.kind)
        .order_by(OutboxItem.kind)
    ).all()
    return [KindBacklog(kind, int(n), _age(now, oldest)) for kind, n, oldest in rows]


def _grouped(session: Session, column: Any, *where: Any) -> dict[str, int]:
    rows = session.execute(
        select(column, func.count()).where(*where).group_by(column).order_by(column)
    ).all()
    return {str(value): int(n) for value, n in rows}


def _oldest_pending(session: Session, now: datetime) -> float | None:
    oldest = session.scalar(
        select(func.min(InboxEvent.received_at)).where(
            InboxEvent.status.in_(INBOX_BACKLOG_STATUSES)
        )
    )
    return _age(now, oldest) if oldest is not None else None


def _recent(session: Session, limit: int) -> list[RecentCallback]:
    rows = session.execute(
        select(
            InboxEvent.received_at,
            InboxEvent.msg_type,
            InboxEvent.event,
            InboxEvent.change_type,
            InboxEvent.status,
            InboxEvent.attempts,
        )
        .order_by(InboxEvent.id.desc())
        .limit(limit)
    ).all()
    return [
        RecentCallback(
            received_at=r.received_at,
            event_type="/".join(p for p in (r.msg_type, r.event, r.change_type) if p),
            status=r.status,
            attempts=r.attempts,
        )
        for r in rows
    ]


def _count(session: Session, column: Any, start: datetime, end: datetime) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(MassTask).where(column >= start, column < end)
        )
        or 0
    )


def _task_totals(session: Session) -> TaskCounts:
    created, confirmed = session.execute(
        select(func.count(), func.count(MassTask.confirmed_at)).select_from(MassTask)
    ).one()
    return TaskCounts(created=int(created or 0), confirmed=int(confirmed or 0))


def _tokens(session: Session, now: datetime) -> list[TokenState]:
    rows = session.execute(
        select(TokenCache.key, TokenCache.expires_at).order_by(TokenCache.key)
    ).all()
    return [
        TokenState(
            key=key,
            expires_at=expires_at,
            expires_in_seconds=(expires_at - now).total_seconds() if expires_at else None,
        )
        for key, expires_at in rows
    ]


__all__ = [
    "KindBacklog",
    "RecentCallback",
    "Status",
    "TaskCounts",
    "TokenState",
    "read_status",
    "start_of_day",
]
