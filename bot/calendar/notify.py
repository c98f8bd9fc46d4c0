"""Telling the managers: once a slot run's tasks exist on WeCom, each manager with tasks to
confirm gets one app card naming the theme, what to confirm and how many groups and
customers it reaches (counts only, never a customer's name)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.calendar.records import CREATED, MASS_TASK, MOMENT_TASK
from bot.config import Settings
from bot.outbox import queue
from bot.outbox.kinds import APP_MESSAGE
from bot.store.models import MassTask, OutboxItem, SlotRun, SlotTarget
from bot.wecom.models import TemplateCard

TASK_KINDS: Final = (MASS_TASK, MOMENT_TASK)
PLANNED: Final = "planned"

WEEKDAYS: Final = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
# WeCom's text_notice field lengths (characters), beyond which the client cuts the text.
SOURCE_CHARS: Final = 13
TITLE_CHARS: Final = 26
DESC_CHARS: Final = 30
KEYNAME_CHARS: Final = 5
VALUE_CHARS: Final = 26
SUBTITLE_CHARS: Final = 112


@dataclass
class ManagerTasks:
    """What one manager has to confirm for one run."""

    sender: str
    tasks: int = 0
    groups: int = 0
    customers: int = 0
    moments: int = 0


def notice_key(run_id: int, sender: str) -> str:
    return f"calendar-notice:{run_id}:{sender}"


def card_task_id(run: SlotRun, sender: str) -> str:
    """Unique per app (WeCom refuses a task_id twice): day and run id, plus a digest of the
    slot and the manager (userids may hold characters task_id does not allow)."""
    digest = hashlib.sha256(f"{run.slot_id}|{run.part}|{sender}".encode()).hexdigest()[:16]
    return f"cal-{run.day:%Y%m%d}-{run.id}-{digest}"


def plan_notices(session: Session, *, settings: Settings, now: datetime) -> int:
    """Queue one card per (run, manager) for planned runs whose task rows are all settled;
    mark those runs notified. Returns the number of cards queued."""
    runs = session.scalars(
        select(SlotRun)
        .where(SlotRun.status == PLANNED, SlotRun.notified_at.is_(None))
        .order_by(SlotRun.fire_at, SlotRun.id)
    ).all()
    if not runs:
        return 0
    waiting = _runs_with_open_task_rows(session, [run.id for run in runs])
    # Past this age the tasks can no longer be confirmed usefully: settle without a card.
    stale_before = now - timedelta(hours=settings.calendar.results_final_hours)
    queued = 0
    for run in runs:
        if run.id in waiting:
            continue
        managers = _managers(session, run.id) if run.fire_at >= stale_before else []
        for manager in managers:
            card = build_card(run, manager, settings=settings)
            payload = {"msgtype": "template_card", "content": card, "touser": manager.sender}
            inserted = queue.enqueue(
                session,
                key=notice_key(run.id, manager.sender),
                kind=APP_MESSAGE,
                payload=payload,
                now=now,
            )
            queued += int(inserted)
        session.execute(
            update(SlotRun)
            .where(SlotRun.id == run.id, SlotRun.notified_at.is_(None))
            .values(notified_at=now)
        )
    return queued


def _runs_with_open_task_rows(session: Session, run_ids: list[int]) -> set[int]:
    """Runs with a task row not settled yet (pending, being sent, or being verified), or
    a target whose task row is missing."""
    wanted = set(run_ids)
    waiting: set[int] = set()
    # Read run_id inside the database: a task row's payload may list 10,000 customers.
    open_runs = session.scalars(
        select(OutboxItem.payload["run_id"].as_integer())
        .where(OutboxItem.kind.in_(TASK_KINDS), OutboxItem.status.in_(queue.OPEN_STATUSES))
        .distinct()
    )
    waiting.update(run_id for run_id in open_runs if run_id in wanted)
    keys = session.execute(
        select(SlotTarget.run_id, SlotTarget.task_key)
        .where(SlotTarget.run_id.in_(wanted - waiting), SlotTarget.task_key.is_not(None))
        .distinct()
    ).all()
    present = set(
        session.scalars(
            select(OutboxItem.idempotency_key).where(
                OutboxItem.idempotency_key.in_({key for _, key in keys})
            )
        )
    )
    waiting.update(run_id for run_id, key in keys if key not in present)
    return waiting


def _managers(session: Session, run_id: int) -> list[ManagerTasks]:
    """Each manager with created (unconfirmed) tasks in the run, with what they reach."""
    rows = session.execute(
        select(MassTask.sender, MassTask.chat_type, MassTask.targets, MassTask.outbox_key)
        .where(MassTask.run_id == run_id, MassTask.status == CREATED)
        .order_by(MassTask.id)
    ).all()
    # A moments task is one task for several members, named in its row's payload (only
    # these payloads are read: a customer task's lists thousands of customers).
    unnamed = [key for sender, _, _, key in rows if not sender]
    payloads: dict[str, Any] = dict(
        session.execute(
            select(OutboxItem.idempotency_key, OutboxItem.payload).where(
                OutboxItem.idempotency_key.in_(unnamed)
            )
        ).all()
        if unnamed
        else []
    )
    by_sender: dict[str, ManagerTasks] = {}
    for sender, chat_type, targets, key in rows:
        senders = [sender] if sender else _payload_senders(payloads.get(key))
        for userid in senders:
            manager = by_sender.setdefault(userid, ManagerTasks(userid))
            manager.tasks += 1
            if chat_type == "group":
                manager.groups += targets
            elif chat_type == "single":
                manager.customers += targets
            else:
                manager.moments += 1
    return sorted(by_sender.values(), key=lambda m: m.sender)


def _payload_senders(payload: Any) -> list[str]:
    senders = payload.get("senders") if isinstance(payload, dict) else None
    return [str(s) for s in senders or [] if s]


def build_card(run: SlotRun, manager: ManagerTasks, *, settings: Settings) -> dict[str, Any]:
    """The text_notice card for one manager; validated against WeCom's card rules."""
    fire = run.fire_at.astimezone(ZoneInfo(settings.timezone))
    reach = _reach(manager)
    card: dict[str, Any] = {
        "card_type": "text_notice",
        "task_id": card_task_id(run, manager.sender),
        "source": {"desc": _cut(f"{settings.branch_name}社群日历", SOURCE_CHARS)},
        "main_title": {
            "title": _cut(f"待确认群发：{run.theme}", TITLE_CHARS),
            "desc": _cut(f"{_day_text(run.day)} {fire:%H:%M}", DESC_CHARS),
        },
        "emphasis_content": {"title": str(manager.tasks), "desc": "条群发待你确认"},
        "sub_title_text": _cut(_instructions(manager), SUBTITLE_CHARS),
        "horizontal_content_list": [
            {"keyname": _cut(name, KEYNAME_CHARS), "value": _cut(value, VALUE_CHARS)}
            for name, value in reach
        ],
        "card_action": {"type": 1, "url": _activity_link(settings, run.day)},
    }
    return TemplateCard.model_validate(card).to_body()


def _reach(manager: ManagerTasks) -> Iterable[tuple[str, str]]:
    yield "主题群发", f"{manager.tasks} 条"
    if manager.groups:
        yield "客户群", f"{manager.groups} 个"
    if manager.customers:
        yield "客户", f"{manager.customers} 位"
    if manager.moments:
        yield "朋友圈", f"{manager.moments} 条"


def _instructions(manager: ManagerTasks) -> str:
    places = []
    if manager.groups or manager.customers or not manager.moments:
        places.append("「群发助手」")
    if manager.moments:
        places.append("「客户朋友圈」")
    return f"请在企业微信{'和'.join(places)}中查看并确认发送；确认前客户收不到这条内容。"


def _day_text(day: date) -> str:
    return f"{day.month}月{day.day}日 {WEEKDAYS[day.weekday()]}"


def _activity_link(settings: Settings, day: date) -> str:
    year, week, _ = day.isocalendar()
    return settings.calendar.activity_link.format(week=f"{year:04d}-W{week:02d}")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
