"""`bot demo`, part three: a simulated week of the default theme calendar.

The clock jumps from one moment something happens to the next (a slot's time, a contact
window opening, a reminder time, a result poll, a manager confirming), so the week takes
seconds. Managers confirm most tasks soon, some late (after a reminder) and some never.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from rich.console import Console
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.calendar import caps
from bot.calendar.occurrences import occurrences_between
from bot.calendar.report import print_report
from bot.calendar.schedule import Calendar
from bot.clock import FrozenClock
from bot.sandbox.models import TASK_SENT
from bot.store.models import CustomerTag, OutboxItem, ReceiveCount, SlotRun

if TYPE_CHECKING:
    from bot.demo import DemoRun

SOON = 0.70  # confirm within the hour
LATE = 0.20  # confirm hours later, after a reminder; the rest never confirm
DAY_START = time(8, 0)
DAY_END = time(22, 30)


@dataclass
class Confirmations:
    """When each simulated manager will confirm each of their tasks (None: never)."""

    due: dict[tuple[str, str], datetime | None] = field(default_factory=dict)
    done: Counter[str] = field(default_factory=Counter)

    def schedule(self, run: DemoRun, rng: random.Random, now: datetime) -> None:
        for msgid, task in run.sandbox.world.tasks.items():
            for userid in task.tasks:
                if (msgid, userid) in self.due:
                    continue
                roll = rng.random()
                if roll < SOON:
                    self.due[(msgid, userid)] = now + timedelta(minutes=rng.randint(5, 50))
                elif roll < SOON + LATE:
                    self.due[(msgid, userid)] = now + timedelta(hours=rng.uniform(3, 9))
                else:
                    self.due[(msgid, userid)] = None

    def schedule_moments(self, run: DemoRun, rng: random.Random, now: datetime) -> None:
        """Moments, once their job is done, are published by most of their senders."""
        world = run.sandbox.world
        for moment in world.moments.values():
            for userid in moment.senders:
                key = (moment.moment_id, userid)
                if key not in self.due and world.live_moment(moment.moment_id) is not None:
                    soon = rng.random() < SOON + LATE
                    self.due[key] = now + timedelta(minutes=rng.randint(5, 90)) if soon else None

    def next_at(self, after: datetime) -> datetime | None:
        times = [t for t in self.due.values() if t is not None and t > after]
        return min(times) if times else None

    def confirm_due(self, run: DemoRun, now: datetime, created: dict[str, datetime]) -> None:
        world = run.sandbox.world
        for (msgid, userid), when in list(self.due.items()):
            if when is None or when > now:
                continue
            if msgid in world.moments:
                if userid not in world.moments[msgid].published:
                    run.sandbox.script.member_publishes_moment(msgid, userid)
                    self.done["moments"] += 1
                continue
            task = world.tasks[msgid]
            if task.cancelled or task.tasks[userid].status == TASK_SENT:
                continue
            run.sandbox.script.member_confirms_task(msgid, userid)
            late = when - created.get(msgid, when) > timedelta(hours=1)
            self.done["late" if late else "soon"] += 1


async def play_week(run: DemoRun, *, rng: random.Random, console: Console) -> None:
    """Run the default calendar from next Monday 08:00 to Sunday night, then report."""
    bot = run.bot
    clock = bot.clock
    assert isinstance(clock, FrozenClock)
    zone = ZoneInfo(bot.settings.timezone)
    monday = _next_monday(clock.now().astimezone(zone).date())
    start = datetime.combine(monday, DAY_START, zone)
    end = datetime.combine(monday + timedelta(days=6), DAY_END, zone)
    calendar = bot.calendar.load()
    if calendar is None:
        console.print("[red]calendar not loaded: run `bot check`[/red]")
        return
    console.print(
        f"\n[bold]A week of the theme calendar[/bold] {monday} → {monday + timedelta(days=6)} "
        "(simulated clock; managers confirm most tasks, some late, some never)"
    )
    clock.set(start)
    capped = _earlier_sends(run, rng, monday)
    console.print(
        f"{capped} payroll customers already had this month's mass-sends "
        f"(cap: {bot.settings.calendar.receive_cap}) from earlier campaigns: "
        "the planner skips and reports them"
    )
    confirmations = Confirmations()
    created: dict[str, datetime] = {}
    poll = timedelta(minutes=bot.settings.calendar.results_poll_minutes)
    last_poll = start
    now = start
    while now <= end:
        await run.deliverer.flush()
        due = await bot.calendar.plan_due()
        await bot.drain()
        await bot.calendar.queue_notices()
        await bot.calendar.queue_reminders()
        await bot.drain()
        for msgid, task in run.sandbox.world.tasks.items():
            created.setdefault(msgid, datetime.fromtimestamp(task.create_time, zone))
        confirmations.schedule(run, rng, now)
        confirmations.schedule_moments(run, rng, now)
        confirmations.confirm_due(run, now, created)
        if now - last_poll >= poll:
            await bot.calendar.pull()
            last_poll = now
        if due is not None:
            for outcome in due.outcomes:
                if outcome.status == "planned":
                    continue
                when = "before the week (the bot was not running)" if outcome.day < monday else ""
                console.print(
                    f"  {outcome.day} {outcome.slot_id}: {outcome.status} {when}".rstrip(),
                    highlight=False,
                )
        now = _next_event(run, calendar, confirmations, now, last_poll + poll, end)
        clock.set(now)
    # Let the last confirmations and results come in: Monday morning after the week.
    clock.set(end + timedelta(hours=10))
    confirmations.confirm_due(run, clock.now(), created)
    await bot.calendar.pull()
    _print_week(run, console, monday, confirmations)


def _earlier_sends(run: DemoRun, rng: random.Random, monday: date) -> int:
    """Put a few payroll customers at the receive cap of every period the week touches, as
    earlier campaigns would have, so the week shows the cap at work (a week that starts in
    one month and ends in the next touches two monthly periods)."""
    settings = run.bot.settings
    mode = settings.calendar.receive_cap
    days = [monday + timedelta(days=offset) for offset in range(7)]
    periods = {caps.period_of(day, mode): caps.cap_of(day, mode) for day in days}

    def write(session: Session) -> int:
        payroll = sorted(
            session.scalars(
                select(CustomerTag.external_userid).where(
                    CustomerTag.tag == settings.tagging.payroll_tag
                )
            )
        )
        chosen = rng.sample(payroll, k=max(1, len(payroll) // 12)) if payroll else []
        for period, cap in periods.items():
            for external_userid in chosen:
                session.add(
                    ReceiveCount(
                        period=period,
                        target_kind=caps.CUSTOMER,
                        target_id=external_userid,
                        count=cap,
                    )
                )
        return len(chosen)

    return run.bot.db.call(write)


def _next_monday(today: date) -> date:
    return today + timedelta(days=(7 - today.weekday()) % 7 or 7)


def _next_event(
    run: DemoRun,
    calendar: Calendar,
    confirmations: Confirmations,
    now: datetime,
    next_poll: datetime,
    end: datetime,
) -> datetime:
    """The next moment anything happens, never more than an hour away."""
    bot = run.bot
    zone = ZoneInfo(bot.settings.timezone)
    horizon = now + timedelta(hours=1)
    candidates = [horizon, next_poll]
    upcoming = occurrences_between(calendar, now + timedelta(seconds=1), horizon, zone)
    candidates += [o.fire_at for o in upcoming]
    pending = bot.db.call(
        lambda s: s.scalars(
            select(func.min(SlotRun.fire_at)).where(
                SlotRun.status == "pending", SlotRun.fire_at > now
            )
        ).first()
    )
    if pending is not None:
        candidates.append(pending)
    for hhmm in bot.settings.calendar.remind_times:
        hour, minute = (int(p) for p in hhmm.split(":"))
        at = now.replace(hour=hour, minute=minute, second=0, microsecond=0) + timedelta(seconds=30)
        if at > now:
            candidates.append(at)
    confirm = confirmations.next_at(now)
    if confirm is not None:
        candidates.append(confirm)
    nxt = min(c for c in candidates if c > now)
    if nxt.astimezone(zone).time() > DAY_END:
        # Nights are quiet: jump to the next morning.
        morning = datetime.combine(nxt.astimezone(zone).date() + timedelta(days=1), DAY_START, zone)
        nxt = min(morning, end + timedelta(seconds=1)) if now < end else morning
    return nxt


def _print_week(run: DemoRun, console: Console, monday: date, confirmations: Confirmations) -> None:
    bot, world = run.bot, run.sandbox.world
    tasks = list(world.tasks.values())
    reminders = sum(len(t.reminders) for t in tasks)
    member_tasks = [mt for t in tasks for mt in t.tasks.values()]
    confirmed = sum(1 for mt in member_tasks if mt.status == TASK_SENT)
    cards = bot.db.call(
        lambda s: s.scalar(
            select(func.count()).where(
                OutboxItem.kind == "app_message", OutboxItem.status == "sent"
            )
        )
    )
    console.print(
        f"sandbox: {len(tasks)} mass-send task(s) created, {confirmed} of {len(member_tasks)} "
        f"confirmed ({confirmations.done['soon']} soon, {confirmations.done['late']} late), "
        f"{confirmations.done['moments']} moment(s) published, "
        f"{reminders} reminder(s) sent, {cards} manager card(s) sent, "
        f"{len(world.breaches())} limit breach(es)"
    )
    zone = ZoneInfo(bot.settings.timezone)
    console.width = max(console.width, 120)  # the report's tables, unwrapped
    print_report(console, bot.db, monday, monday + timedelta(days=6), tz=zone)
