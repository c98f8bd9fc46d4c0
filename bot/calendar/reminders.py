"""Reminding managers of mass-send tasks they have not confirmed yet.

At each configured remind time (local time) each unconfirmed task gets one
`remind_groupmsg_send`, at most `max_reminders_per_day` in any 24 hours, which is WeCom's own
limit of three. A remind time missed by more than `REMIND_GRACE` (downtime) is skipped, not
made up late, and a queued reminder expires when that grace runs out.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.calendar.records import CREATED
from bot.clock import as_utc
from bot.config import Settings
from bot.outbox import queue
from bot.outbox.effects import Effect
from bot.store.models import MassTask, OutboxItem

if TYPE_CHECKING:
    from bot.wecom.client import WeComClient

REMIND_TASK: Final = "remind_task"
REMIND_PATH: Final = "externalcontact/remind_groupmsg_send"
# WeCom documents no errcode for a fourth reminder in 24 h; 45009 is the best guess (the
# sandbox answers it too). Treated as done: the member has had their reminders.
REMIND_LIMIT_ERRCODE: Final = 45009
REMIND_GRACE: Final = timedelta(hours=1)
WINDOW: Final = timedelta(hours=24)
# remind_groupmsg_send covers customer and group mass-sends, not moments.
REMINDABLE: Final = ("single", "group")


def remind_key(msgid: str, at: datetime) -> str:
    """One reminder per task, day and remind time (`at` is the local remind time)."""
    return f"remind:{msgid}:{at:%Y-%m-%d}:{at:%H%M}"


async def _remind(client: WeComClient, payload: dict[str, Any]) -> dict[str, Any]:
    await client.groupmsg.remind_groupmsg_send(payload["msgid"])
    return {"reminded": True}


def record_reminder(
    session: Session, payload: dict[str, Any], result: dict[str, Any], now: datetime
) -> None:
    """on_success: note the reminder on the task (the 24 h count is taken from these)."""
    task = session.scalars(
        select(MassTask).where(MassTask.msgid == payload["msgid"]).with_for_update()
    ).one_or_none()
    if task is None:
        return
    task.reminded_at = [*(task.reminded_at or []), as_utc(now).isoformat()]


def remind_effect() -> Effect:
    return Effect(
        kind=REMIND_TASK,
        api_path=REMIND_PATH,
        execute=_remind,
        # A repeated reminder is one more notification, never a second task; the 24 h cap
        # is counted before the row is queued.
        idempotent=True,
        # The 24 h limit answer: retrying cannot help, and a reminder is not worth a wait.
        done_errcodes=frozenset({REMIND_LIMIT_ERRCODE}),
        on_success=record_reminder,
    )


def due_remind_times(settings: Settings, now: datetime) -> list[datetime]:
    """Today's remind times (aware, local) that have passed, at most REMIND_GRACE ago."""
    tz = ZoneInfo(settings.timezone)
    today = now.astimezone(tz).date()
    due = []
    for text in sorted(set(settings.calendar.remind_times)):
        at = datetime.combine(today, time.fromisoformat(text), tz)
        if at <= now < at + REMIND_GRACE:
            due.append(at)
    return due


def plan_reminders(session: Session, *, settings: Settings, now: datetime) -> int:
    """Queue the reminders due at the remind times just passed; returns how many."""
    limit = settings.calendar.max_reminders_per_day
    due = due_remind_times(settings, now)
    if not due or limit <= 0:
        return 0
    oldest = now - timedelta(hours=settings.calendar.results_final_hours)
    tasks = session.execute(
        select(MassTask.msgid, MassTask.created_at, MassTask.reminded_at)
        .where(
            MassTask.status == CREATED,
            MassTask.msgid.is_not(None),
            MassTask.chat_type.in_(REMINDABLE),
            MassTask.created_at < max(due),
            MassTask.created_at >= oldest,
        )
        .order_by(MassTask.id)
    ).all()
    if not tasks:
        return 0
    pending = _open_reminders(session)
    queued = 0
    for msgid, created_at, reminded_at in tasks:
        assert msgid is not None
        made = sum(1 for at in reminded_at or [] if _parse(at) > now - WINDOW)
        for at in due:
            if created_at >= at:
                continue
            if made + pending[msgid] >= limit:
                break
            inserted = queue.enqueue(
                session,
                key=remind_key(msgid, at),
                kind=REMIND_TASK,
                payload={"msgid": msgid},
                now=now,
                expires_at=at + REMIND_GRACE,
            )
            if inserted:
                pending[msgid] += 1
                queued += 1
    return queued


def _open_reminders(session: Session) -> Counter[str]:
    """Reminders queued and not yet settled, per msgid."""
    rows = session.scalars(
        select(OutboxItem.payload["msgid"].as_string()).where(
            OutboxItem.kind == REMIND_TASK, OutboxItem.status.in_(queue.OPEN_STATUSES)
        )
    )
    return Counter(msgid for msgid in rows if msgid)


def _parse(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))
