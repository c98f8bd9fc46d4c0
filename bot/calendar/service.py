"""The calendar's periodic work, in the order it depends on: plan due slots (outbox rows of
mass-send tasks), tell managers about the tasks WeCom accepted, remind them of unconfirmed
ones, pull send results. `bot serve` runs these from the scheduler, `bot tick` once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.calendar.content import ContentLibrary
from bot.calendar.due import DueReport, run_due
from bot.calendar.notify import plan_notices
from bot.calendar.reminders import plan_reminders
from bot.calendar.results import PullReport, pull_results
from bot.calendar.schedule import Calendar, CalendarError, load_calendar
from bot.clock import Clock
from bot.config import Settings
from bot.store.db import Database
from bot.wecom.client import WeComClient

log = logging.getLogger("bot.calendar")


@dataclass
class TickReport:
    due: DueReport | None = None
    notices: int = 0
    reminders: int = 0
    results: PullReport | None = None

    def summary(self) -> str:
        parts = [self.due.summary() if self.due else "calendar not loaded"]
        parts.append(f"{self.notices} manager notice(s), {self.reminders} reminder(s) queued")
        if self.results is not None:
            parts.append(self.results.summary())
        return "; ".join(parts)


class CalendarService:
    """Everything the calendar does over time, each step safe to repeat."""

    def __init__(
        self, *, settings: Settings, db: Database, clock: Clock, wecom: WeComClient
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.wecom = wecom
        self.content = ContentLibrary(settings.content_dir())
        self._cached: tuple[tuple[tuple[str, int, int], ...], Calendar] | None = None

    def _signature(self) -> tuple[tuple[str, int, int], ...]:
        """Name, mtime and size of every file a calendar load reads or checks."""
        files = [
            *self.settings.schedules_dir().glob("*.y*ml"),
            *self.settings.content_dir().rglob("*.j2"),
        ]
        stats = []
        for path in sorted(files):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            stats.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(stats)

    def load(self) -> Calendar | None:
        """The calendar as the files say now (edits apply at the next tick; an unchanged
        folder is not parsed again); None, logged, when a file is broken, so nothing is
        planned from a half-read calendar."""
        signature = self._signature()
        if self._cached is not None and self._cached[0] == signature:
            return self._cached[1]
        calendar = self._read()
        self._cached = (signature, calendar) if calendar is not None else None
        return calendar

    def _read(self) -> Calendar | None:
        try:
            return load_calendar(
                self.settings.schedules_dir(),
                self.settings.content_dir(),
                lateness_minutes=self.settings.calendar.lateness_minutes,
            )
        except CalendarError as exc:
            for problem in exc.problems:
                log.error("calendar not loaded: %s", problem)
            return None

    async def plan_due(self) -> DueReport | None:
        if not self.settings.calendar.enabled:
            return None
        calendar = self.load()
        if calendar is None:
            return None
        now = self.clock.now()
        return await asyncio.to_thread(
            run_due, self.db, calendar, settings=self.settings, content=self.content, now=now
        )

    async def queue_notices(self) -> int:
        now = self.clock.now()
        return await self.db.run(lambda s: plan_notices(s, settings=self.settings, now=now))

    async def queue_reminders(self) -> int:
        now = self.clock.now()
        return await self.db.run(lambda s: plan_reminders(s, settings=self.settings, now=now))

    async def pull(self) -> PullReport:
        return await pull_results(self.wecom, self.db, settings=self.settings, now=self.clock.now())

    async def tick(self, drain: Callable[[], Awaitable[int]]) -> TickReport:
        """One full pass; `drain` sends what the previous step queued (tasks must exist
        before managers hear of them)."""
        report = TickReport()
        report.due = await self.plan_due()
        await drain()
        report.notices = await self.queue_notices()
        report.reminders = await self.queue_reminders()
        await drain()
        report.results = await self.pull()
        return report
