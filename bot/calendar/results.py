"""Pulling what became of each mass-send task: whether the manager confirmed it, and per
recipient whether it arrived (1), or failed because the customer is no longer a friend (2)
or had already received their quota of mass-sends (3).

A task is final once every recipient has a final status, or once it is older than
`results_final_hours` (WeCom lets a task be confirmed for a limited time; recipients still
waiting then are counted "unsent"). A target that ends without the post gives its receive-cap
unit back, exactly once: the change away from "queued" is the guard.

WeCom is never called inside a database transaction: each task is read, then written in
its own short transaction.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Final

from sqlalchemy import ColumnElement, Integer, case, cast, func, or_, select, update
from sqlalchemy.orm import Session

from bot.calendar.records import CREATED, DELIVERED, QUEUED, UNSENT, release_targets
from bot.clock import utc_from_timestamp
from bot.config import Settings
from bot.store.db import Database
from bot.store.models import MassTask, SlotRun, SlotTarget
from bot.wecom.errors import RequestRejected, WeComError

if TYPE_CHECKING:
    from bot.wecom.client import WeComClient

log = logging.getLogger("bot.calendar.results")

# MassTask statuses.
CONFIRMED: Final = "confirmed"
FINAL: Final = "final"
OPEN_TASK_STATUSES: Final = (CREATED, CONFIRMED)

# get_groupmsg_task: a member's share is 0 not sent yet, 2 sent.
MEMBER_SENT: Final = 2
# get_groupmsg_send_result, per recipient.
SEND_PENDING: Final = 0
SEND_OK: Final = 1
SEND_NOT_FRIEND: Final = 2
SEND_ALREADY_RECEIVED: Final = 3

# SlotTarget statuses.
NOT_FRIEND: Final = "not_friend"
ALREADY_RECEIVED: Final = "already_received"
TARGET_STATUS: Final = {
    SEND_OK: DELIVERED,
    SEND_NOT_FRIEND: NOT_FRIEND,
    SEND_ALREADY_RECEIVED: ALREADY_RECEIVED,
}
MOMENT: Final = "moment"


@dataclass
class PullReport:
    """What one pass found and changed."""

    checked: int = 0
    confirmed: int = 0  # tasks newly seen confirmed
    finalised: int = 0
    delivered: int = 0  # targets newly marked, per status
    not_friend: int = 0
    already_received: int = 0
    unsent: int = 0
    given_back: int = 0  # receive-cap units returned
    errors: int = 0  # tasks whose pull failed (tried again next poll)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"results: {self.checked} task(s) checked, {self.confirmed} newly confirmed, "
            f"{self.finalised} final; targets: {self.delivered} delivered, "
            f"{self.not_friend} not a friend, {self.already_received} already received, "
            f"{self.unsent} unsent; {self.given_back} cap unit(s) given back"
        )
        if self.errors:
            text += f"; {self.errors} failed (retried next poll)"
        return "\n".join([text, *self.notes])


@dataclass(frozen=True)
class _Due:
    """A task to pull, detached from its session."""

    id: int
    run_id: int
    outbox_key: str
    chat_type: str
    sender: str | None
    msgid: str
    targets: int
    status: str
    created_at: datetime


@dataclass
class _Pulled:
    """What WeCom said about one task."""

    confirmed: bool = False
    confirmed_at: datetime | None = None
    statuses: dict[str, int] = field(default_factory=dict)  # target → send status
    final: bool = False
    fetched: bool = False  # whether per-recipient results were read
    published: int | None = None  # moments: members who have published


async def pull_results(
    client: WeComClient, db: Database, *, settings: Settings, now: datetime
) -> PullReport:
    """Pull the results of every open task due for a poll; returns what changed."""
    report = PullReport()
    poll = timedelta(minutes=settings.calendar.results_poll_minutes)
    final_age = timedelta(hours=settings.calendar.results_final_hours)
    due = await db.run(lambda s: _due_tasks(s, now - poll))
    for task in due:
        report.checked += 1
        aged = now - task.created_at >= final_age
        try:
            if task.chat_type == MOMENT:
                pulled = await _pull_moment(client, task)
            else:
                pulled = await _pull_mass_send(client, task, aged=aged)
        except WeComError as exc:
            log.warning("results of task %s not pulled: %s", task.msgid, exc)
            report.errors += 1
            # A task WeCom no longer knows can be closed once it is old enough.
            if not (isinstance(exc, RequestRejected) and aged):
                await db.run(partial(_touch, task_id=task.id, now=now))
                continue
            pulled = _Pulled()
        pulled.final = pulled.final or aged
        await db.run(partial(_record, task=task, pulled=pulled, now=now, report=report))
    return report


def _due_tasks(session: Session, polled_before: datetime) -> list[_Due]:
    rows = session.scalars(
        select(MassTask)
        .where(
            MassTask.status.in_(OPEN_TASK_STATUSES),
            MassTask.msgid.is_not(None),
            or_(MassTask.results_at.is_(None), MassTask.results_at <= polled_before),
        )
        .order_by(MassTask.created_at, MassTask.id)
    ).all()
    return [
        _Due(
            id=t.id,
            run_id=t.run_id,
            outbox_key=t.outbox_key,
            chat_type=t.chat_type,
            sender=t.sender,
            msgid=t.msgid or "",
            targets=t.targets,
            status=t.status,
            created_at=t.created_at,
        )
        for t in rows
    ]


# -- reading WeCom --------------------------------------------------------------------------


async def _pull_mass_send(client: WeComClient, task: _Due, *, aged: bool) -> _Pulled:
    pulled = _Pulled()
    members: dict[str, tuple[int, int | None]] = {}
    cursor: str | None = None
    while True:
        page = await client.groupmsg.get_groupmsg_task(task.msgid, cursor=cursor or None)
        for row in page.task_list:
            members[row.userid] = (row.status, row.send_time)
        cursor = page.next_cursor
        if not cursor:
            break
    sent = {u: t for u, (status, t) in members.items() if status == MEMBER_SENT}
    if task.sender is not None and task.sender in members:
        pulled.confirmed = task.sender in sent
        send_time = sent.get(task.sender)
    else:
        pulled.confirmed = bool(members) and len(sent) == len(members)
        send_time = max((t for t in sent.values() if t is not None), default=None)
    if pulled.confirmed:
        pulled.confirmed_at = utc_from_timestamp(send_time) if send_time else None
    # Only a member who sent has results to read; at the age limit read everyone's, so
    # the recipients still waiting are counted.
    for userid in sorted(members if aged else sent):
        cursor = None
        while True:
            result = await client.groupmsg.get_groupmsg_send_result(
                task.msgid, userid, cursor=cursor or None
            )
            for item in result.send_list:
                target = item.external_userid or item.chat_id
                if target:
                    pulled.statuses[target] = item.status
            cursor = result.next_cursor
            if not cursor:
                break
        pulled.fetched = True
    all_sent = bool(members) and len(sent) == len(members)
    waiting = any(status == SEND_PENDING for status in pulled.statuses.values())
    pulled.final = (all_sent and not waiting) or (not members and task.targets == 0)
    return pulled


async def _pull_moment(client: WeComClient, task: _Due) -> _Pulled:
    """Moments: the creation job's outcome, then which members have published. There are
    no per-customer results: a member who published counts as delivered (the customers
    with the slot's tags see it in their moments), and the task is confirmed once anyone
    has published and final once everyone has (or the job failed)."""
    pulled = _Pulled()
    job = await client.moment.get_moment_task_result(task.msgid)
    if not job.done or job.result is None:
        return pulled
    if job.result.errcode != 0 or not job.result.moment_id:
        pulled.final = True  # the job failed: nothing will be published
        return pulled
    members: dict[str, bool] = {}
    cursor: str | None = None
    while True:
        page = await client.moment.get_moment_task(job.result.moment_id, cursor=cursor)
        members.update({row.userid: row.published for row in page.task_list})
        cursor = page.next_cursor or None
        if not cursor:
            break
    pulled.published = sum(members.values())
    pulled.confirmed = pulled.published > 0
    pulled.final = bool(members) and all(members.values())
    return pulled


# -- writing --------------------------------------------------------------------------------


def _touch(session: Session, task_id: int, now: datetime) -> None:
    session.execute(update(MassTask).where(MassTask.id == task_id).values(results_at=now))


def _record(
    session: Session, task: _Due, pulled: _Pulled, now: datetime, report: PullReport
) -> None:
    row = session.get(MassTask, task.id, with_for_update=True)
    if row is None or row.status not in OPEN_TASK_STATUSES:
        return  # cancelled, or finished by another instance meanwhile
    counts = Counter(pulled.statuses.values())
    row.results_at = now
    if pulled.published is not None:
        row.delivered = pulled.published
    elif pulled.fetched or pulled.final:
        row.delivered = counts[SEND_OK]
        row.not_friend = counts[SEND_NOT_FRIEND]
        row.already_received = counts[SEND_ALREADY_RECEIVED]
    if pulled.confirmed and row.confirmed_at is None:
        row.confirmed_at = pulled.confirmed_at or now
        row.status = CONFIRMED
        report.confirmed += 1
    by_status: dict[str, list[str]] = {}
    for target, code in pulled.statuses.items():
        if code in TARGET_STATUS:
            by_status.setdefault(TARGET_STATUS[code], []).append(target)
    for new_status, targets in by_status.items():
        _settle_targets(session, task, new_status, targets, report)
    if pulled.final:
        # Whatever is still waiting now never arrives.
        _settle_targets(session, task, UNSENT, None, report)
        known = row.delivered + row.not_friend + row.already_received
        waiting = counts[SEND_PENDING] if pulled.fetched else 0
        row.unsent = max(waiting, row.targets - known, 0) if task.chat_type != MOMENT else 0
        row.status = FINAL
        row.final_at = now
        report.finalised += 1


def _settle_targets(
    session: Session,
    task: _Due,
    status: str,
    target_ids: Sequence[str] | None,
    report: PullReport,
) -> None:
    """Move the task's still-queued targets (all of them when `target_ids` is None) to
    `status`, and give back the cap units of those that did not get the post."""
    moved, given_back = release_targets(
        session, task.run_id, status, task_key=task.outbox_key, target_ids=target_ids
    )
    setattr(report, status, getattr(report, status) + moved)
    report.given_back += given_back


# -- the per-slot record --------------------------------------------------------------------


@dataclass(frozen=True)
class SlotResult:
    """One slot run's record: tasks created and confirmed, and what became of its targets."""

    run_id: int
    slot_id: str
    day: date
    part: str
    channel: str
    theme: str
    created: int  # tasks WeCom accepted
    confirmed: int  # of which the manager confirmed
    final: int  # of which the results are final
    targets: int  # customers or groups the run reached (deferred ones not counted);
    # for moments: the members asked to publish
    delivered: int  # for moments: the members who published
    not_friend: int
    already_received: int
    unsent: int
    queued: int  # still waiting for a confirmation or a result

    @property
    def failed(self) -> int:
        """Targets the post could not reach: not a friend, or already received."""
        return self.not_friend + self.already_received


def slot_results(session: Session, run_ids: Sequence[int] | None = None) -> list[SlotResult]:
    """The per-slot record for the given runs (all runs when None), by day and time."""
    runs_query = select(SlotRun).order_by(SlotRun.day, SlotRun.fire_at, SlotRun.id)
    if run_ids is not None:
        if not run_ids:
            return []
        runs_query = runs_query.where(SlotRun.id.in_(list(run_ids)))
    runs = session.scalars(runs_query).all()
    if not runs:
        return []
    ids = [run.id for run in runs]
    tasks = {
        row[0]: tuple(int(v or 0) for v in row[1:])
        for row in session.execute(
            select(
                MassTask.run_id,
                func.count(),
                func.sum(_flag(MassTask.confirmed_at.is_not(None))),
                func.sum(_flag(MassTask.status == FINAL)),
                func.sum(MassTask.targets),
                func.sum(MassTask.delivered),
            )
            .where(MassTask.run_id.in_(ids))
            .group_by(MassTask.run_id)
        ).all()
    }
    targets: dict[int, Counter[str]] = {run_id: Counter() for run_id in ids}
    for run_id, status, count in session.execute(
        select(SlotTarget.run_id, SlotTarget.status, func.count())
        .where(SlotTarget.run_id.in_(ids))
        .group_by(SlotTarget.run_id, SlotTarget.status)
    ).all():
        targets[run_id][status] = int(count)
    results = []
    for run in runs:
        created, confirmed, final, asked, published = tasks.get(run.id, (0, 0, 0, 0, 0))
        per = targets[run.id]
        if run.channel == "moments":
            # No per-customer targets: the members asked to publish, and those who did.
            waiting = UNSENT if created and final == created else QUEUED
            per = Counter({waiting: asked - published, DELIVERED: published})
        results.append(
            SlotResult(
                run_id=run.id,
                slot_id=run.slot_id,
                day=run.day,
                part=run.part,
                channel=run.channel,
                theme=run.theme,
                created=created,
                confirmed=confirmed,
                final=final,
                targets=sum(per.values()),
                delivered=per[DELIVERED],
                not_friend=per[NOT_FRIEND],
                already_received=per[ALREADY_RECEIVED],
                unsent=per[UNSENT],
                queued=per[QUEUED],
            )
        )
    return results


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return cast(case((condition, 1), else_=0), Integer)
