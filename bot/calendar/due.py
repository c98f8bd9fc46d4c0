"""Running what the calendar has due: plan each slot whose time has come, once; expire the
ones missed for longer than their lateness window (shown, never sent silently late); plan
the deferred parts whose contact window has opened.

Safe to call as often as anyone likes, from any number of processes: a slot run is unique
per (slot, day, part), so whoever inserts it first plans it and the others find it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.calendar import caps
from bot.calendar.content import ContentLibrary
from bot.calendar.held import release_held
from bot.calendar.occurrences import Occurrence, occurrences_between, occurrences_on
from bot.calendar.planner import (
    EXPIRED,
    MAIN,
    PENDING,
    SlotPlan,
    commit_plan,
    compute_plan,
    insert_run,
)
from bot.calendar.schedule import Calendar
from bot.config import Settings
from bot.store.db import Database
from bot.store.models import SlotRun

log = logging.getLogger("bot.calendar")

# How far back a tick looks for slots it has not seen: a day covers any restart; older
# slots are out of every lateness window anyway.
LOOKBACK = timedelta(hours=24)


@dataclass(frozen=True)
class RunOutcome:
    slot_id: str
    day: date
    part: str
    status: str  # planned | failed | expired
    run_id: int | None
    reached: int = 0
    tasks: int = 0
    note: str | None = None


@dataclass
class DueReport:
    outcomes: list[RunOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def summary(self) -> str:
        tasks = sum(o.tasks for o in self.outcomes)
        return (
            f"{self.count('planned')} slot run(s) planned ({tasks} task(s)), "
            f"{self.count('expired')} expired, {self.count('failed')} failed"
        )


def run_due(
    db: Database,
    calendar: Calendar,
    *,
    settings: Settings,
    content: ContentLibrary,
    now: datetime,
) -> DueReport:
    report = DueReport()
    due = occurrences_between(calendar, now - LOOKBACK, now + timedelta(microseconds=1))
    seen = _main_runs(db, {o.day for o in due})
    # Earlier slots first, and at the same time the higher priority first: it spends the
    # receive cap before the others.
    for occ in sorted(due, key=lambda o: (o.fire_at, -o.priority, o.slot_id)):
        if (occ.slot_id, occ.day) in seen:
            continue
        report.outcomes.append(_run_main(db, occ, settings=settings, content=content, now=now))
    for run_id, slot_id, day, part, fire_at in _pending_parts(db, now):
        report.outcomes.append(
            _run_part(
                db,
                _find(calendar, slot_id, day, settings),
                run_id,
                part,
                fire_at,
                settings=settings,
                content=content,
                now=now,
            )
        )
    return report


def _main_runs(db: Database, days: set[date]) -> set[tuple[str, date]]:
    if not days:
        return set()
    query = select(SlotRun.slot_id, SlotRun.day).where(
        SlotRun.part == MAIN, SlotRun.day.in_(sorted(days))
    )
    return {(s, d) for s, d in db.call(lambda s: s.execute(query).all())}


def _pending_parts(db: Database, now: datetime) -> list[tuple[int, str, date, str, datetime]]:
    query = (
        select(SlotRun.id, SlotRun.slot_id, SlotRun.day, SlotRun.part, SlotRun.fire_at)
        .where(SlotRun.status == PENDING, SlotRun.fire_at <= now)
        .order_by(SlotRun.fire_at, SlotRun.id)
    )
    return [tuple(row) for row in db.call(lambda s: s.execute(query).all())]  # type: ignore[misc]


def _find(calendar: Calendar, slot_id: str, day: date, settings: Settings) -> Occurrence | None:
    for occ in occurrences_on(calendar, day, ZoneInfo(settings.timezone)):
        if occ.slot_id == slot_id:
            return occ
    return None


def _run_main(
    db: Database, occ: Occurrence, *, settings: Settings, content: ContentLibrary, now: datetime
) -> RunOutcome:
    late = now - occ.fire_at
    if late > occ.lateness:
        run_id = db.call(lambda s: _expire(s, occ, now=now, late=late))
        if run_id is not None:
            log.warning(
                "slot %s on %s expired: %d min late, over its %d min window",
                occ.slot_id,
                occ.day,
                late // timedelta(minutes=1),
                occ.lateness // timedelta(minutes=1),
            )
        return RunOutcome(occ.slot_id, occ.day, MAIN, EXPIRED, run_id, note="missed")
    plan = compute_plan(db, occ, settings=settings, content=content, at=now)
    return _commit(db, plan, settings=settings, now=now)


def _run_part(
    db: Database,
    occ: Occurrence | None,
    run_id: int,
    part: str,
    fire_at: datetime,
    *,
    settings: Settings,
    content: ContentLibrary,
    now: datetime,
) -> RunOutcome:
    lateness = occ.lateness if occ else timedelta(minutes=settings.calendar.lateness_minutes)
    if occ is None or now - fire_at > lateness:
        reason = "slot no longer in the calendar" if occ is None else "missed"
        db.call(lambda s: _expire_part(s, run_id, note=reason))
        day = occ.day if occ else fire_at.date()
        slot_id = occ.slot_id if occ else "?"
        return RunOutcome(slot_id, day, part, EXPIRED, run_id, note=reason)
    plan = compute_plan(
        db, occ, settings=settings, content=content, at=now, part=part, run_id=run_id
    )
    return _commit(db, plan, settings=settings, now=now)


def _commit(db: Database, plan: SlotPlan, *, settings: Settings, now: datetime) -> RunOutcome:
    occ = plan.occurrence
    run_id = commit_plan(db, plan, settings=settings, now=now)
    if plan.error:
        log.error("slot %s on %s not planned: %s", occ.slot_id, occ.day, plan.error)
        return RunOutcome(occ.slot_id, occ.day, plan.part, "failed", run_id, note=plan.error)
    if run_id is None:
        # Another instance (or an earlier tick) planned this slot part first.
        return RunOutcome(occ.slot_id, occ.day, plan.part, "already", None)
    log.info(
        "slot %s on %s (%s): %d target(s) in %d task(s), %d deferred, dropped %s",
        occ.slot_id,
        occ.day,
        plan.part,
        plan.reached,
        len(plan.tasks),
        sum(len(t) for t in plan.deferred.values()),
        dict(plan.dropped),
    )
    return RunOutcome(
        occ.slot_id, occ.day, plan.part, "planned", run_id, plan.reached, len(plan.tasks)
    )


def _expire(session: Session, occ: Occurrence, *, now: datetime, late: timedelta) -> int | None:
    values = {
        "slot_id": occ.slot_id,
        "day": occ.day,
        "part": MAIN,
        "channel": occ.channel,
        "theme": occ.theme,
        "template": occ.template,
        "fire_at": occ.fire_at,
        "status": EXPIRED,
        "planned_at": now,
        "stats": {"late_minutes": late // timedelta(minutes=1)},
        "note": f"missed: {late // timedelta(minutes=1)} min late, not sent",
    }
    return insert_run(session, values)


def _expire_part(session: Session, run_id: int, *, note: str) -> None:
    expired = session.execute(
        update(SlotRun)
        .where(SlotRun.id == run_id, SlotRun.status == PENDING)
        .values(status=EXPIRED, note=note)
        .returning(SlotRun.channel)
    ).scalar_one_or_none()
    if expired is not None:
        # Its held targets are written as expired: `bot report` counts them as not sent.
        kind = caps.GROUP if expired == "group" else caps.CUSTOMER
        release_held(session, run_id, status=EXPIRED, kind=kind)
