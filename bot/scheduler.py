"""APScheduler 3 as a clock only: it says when to look; the database says what is due.

Its job store cannot be shared between processes, so no business item is ever an
APScheduler job: jobs only wake the workers and run housekeeping that is safe to repeat.
With several instances, the wake-ups run everywhere (workers claim rows under leases) and
the other jobs only on the instance holding the scheduler lease (bot/leader.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import delete
from sqlalchemy.orm import Session

from bot.calendar.service import CalendarService
from bot.clock import Clock
from bot.config import Settings
from bot.leader import LeaderElection
from bot.store.db import Database
from bot.store.models import InboxEvent
from bot.tagging.engine import retag_all
from bot.tagging.segments import recompute_segments
from bot.tagging.tag_library import ensure_tag_library
from bot.tagging.tagsync import plan_tag_sync
from bot.wecom.client import WeComClient

log = logging.getLogger("bot.scheduler")

WAKE_SECONDS = 15
CALENDAR_SECONDS = 30


def purge_inbox(session: Session, *, before: datetime) -> int:
    """Drop processed callbacks older than the retention (their dedupe keys have served)."""
    result = session.execute(
        delete(InboxEvent).where(
            InboxEvent.received_at < before, InboxEvent.status.in_(("done", "unhandled"))
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _job(
    scheduler: AsyncIOScheduler,
    func: Callable[[], Any],
    trigger: str,
    *,
    job_id: str,
    grace: float,
    **when: Any,
) -> None:
    """Every job is coalesced (one catch-up after a pause, not N) and runs one at a time;
    only the misfire grace differs per job (APScheduler takes whole seconds)."""
    scheduler.add_job(
        func,
        trigger,
        id=job_id,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=max(1, int(grace)),
        **when,
    )


class Ticker:
    """Periodic wake-ups and housekeeping for `bot serve`."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        clock: Clock,
        wecom: WeComClient,
        wake: Sequence[Callable[[], None]],
        calendar: CalendarService,
        leader: LeaderElection | None = None,
    ) -> None:
        self.wecom = wecom
        self.calendar = calendar
        self.settings = settings
        self.db = db
        self.clock = clock
        self.wake = list(wake)
        # None: this process is the only one and runs every job.
        self.leader = leader
        self._scheduler: AsyncIOScheduler | None = None
        self._first_renewal: asyncio.Task[bool] | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this instance runs the leader-only jobs now (for /metrics, `bot status`)."""
        return self.leader is None or self.leader.is_leader

    async def as_leader(self, job: Callable[[], Awaitable[object]]) -> bool:
        """Run `job` if this instance leads, re-checked in the database first (a leader
        that stalled past its lease must not act); True if it ran."""
        if self.leader is not None and not await self.leader.confirm():
            return False
        await job()
        return True

    def start(self) -> None:
        scheduler = AsyncIOScheduler(timezone=self.settings.timezone)
        # A missed wake-up is harmless and one catch-up is enough: coalesce, short grace.
        _job(
            scheduler,
            self.wake_all,
            "interval",
            job_id="wake",
            grace=WAKE_SECONDS,
            seconds=WAKE_SECONDS,
        )
        if self.leader is not None:
            _job(
                scheduler,
                self.leader.renew,
                "interval",
                job_id="leader",
                grace=self.leader.renew_seconds,
                seconds=self.leader.renew_seconds,
            )
        _job(
            scheduler,
            partial(self.as_leader, self.housekeeping),
            "cron",
            job_id="housekeeping",
            grace=6 * 3600,
            hour=3,
            minute=17,
        )
        # Lifecycle stages move with time alone (no login for 90 days is no event), so every
        # customer is re-evaluated nightly, and the resulting tag changes go to WeCom.
        _job(
            scheduler,
            partial(self.as_leader, self.nightly_retag),
            "cron",
            job_id="retag",
            grace=6 * 3600,
            hour=2,
            minute=30,
        )
        _job(
            scheduler,
            partial(self.as_leader, self.refresh_segments),
            "interval",
            job_id="segments",
            grace=3600,
            hours=1,
        )
        self._calendar_jobs(scheduler)
        scheduler.start()
        self._scheduler = scheduler
        self._first_renewal = asyncio.get_running_loop().create_task(self._startup())

    async def _startup(self) -> bool:
        """Take (or learn of) the lease at once, then look at the calendar at once: a slot
        missed while the bot was down still has its lateness window, and it is running."""
        if self.leader is not None:
            await self.leader.renew()
        if self.settings.calendar.enabled:
            return await self.as_leader(self.calendar_slots)
        return False

    def _calendar_jobs(self, scheduler: AsyncIOScheduler) -> None:
        """The calendar's clock. What is due lives in the database (slot runs, outbox rows),
        so each job only looks: a missed look is made up by the next one (coalesce), and
        how late a post may still go out is the slot's lateness window, not APScheduler's
        misfire grace."""
        calendar = self.settings.calendar
        if not calendar.enabled:
            return
        _job(
            scheduler,
            partial(self.as_leader, self.calendar_slots),
            "interval",
            job_id="calendar-slots",
            grace=CALENDAR_SECONDS,
            seconds=CALENDAR_SECONDS,
        )
        # Reminders are only useful near their time: a pass missed by more than 30 min is
        # dropped (plan_reminders itself skips remind times long past).
        for index, at in enumerate(calendar.remind_times):
            hour, minute = (int(part) for part in at.split(":"))
            _job(
                scheduler,
                partial(self.as_leader, self.calendar_reminders),
                "cron",
                job_id=f"calendar-remind-{index}",
                grace=1800,
                hour=hour,
                minute=minute,
            )
        _job(
            scheduler,
            partial(self.as_leader, self.calendar_results),
            "interval",
            job_id="calendar-results",
            grace=calendar.results_poll_minutes * 60,
            minutes=calendar.results_poll_minutes,
        )

    def stop(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None
        if self._first_renewal is not None:
            self._first_renewal.cancel()
            self._first_renewal = None
        if self.leader is not None:
            self.leader.release()

    def wake_all(self) -> None:
        for wake in self.wake:
            wake()

    async def housekeeping(self) -> int:
        hours = self.settings.callback.inbox_retention_hours
        before = self.clock.now() - timedelta(hours=hours)
        removed = await self.db.run(lambda s: purge_inbox(s, before=before))
        if removed:
            log.info("purged %d processed callbacks older than %d h", removed, hours)
        return removed

    async def nightly_retag(self) -> int:
        """Full rule recompute, then tag sync for whoever changed; returns rows queued."""
        now = self.clock.now()
        result = await asyncio.to_thread(retag_all, self.db, settings=self.settings, now=now)
        log.info("nightly retag: %d evaluated, %d changed", result.evaluated, len(result.changes))
        if not result.changes or not self.settings.tag_sync.enabled:
            return 0
        # A rule tag seen for the first time needs its WeCom tag before it can be pushed.
        await ensure_tag_library(self.wecom, self.db, settings=self.settings, now=now)
        plan = await asyncio.to_thread(
            plan_tag_sync,
            self.db,
            settings=self.settings,
            now=now,
            external_userids=sorted(result.changes),
        )
        self.wake_all()
        return plan.enqueued

    async def refresh_segments(self) -> None:
        """Group segments follow membership, which changes with every join and leave."""
        await asyncio.to_thread(
            recompute_segments, self.db, settings=self.settings, now=self.clock.now()
        )

    async def calendar_slots(self) -> None:
        """Plan the slots that are due, then tell managers about tasks WeCom accepted."""
        report = await self.calendar.plan_due()
        if report is not None and report.outcomes:
            log.info("calendar: %s", report.summary())
        notices = await self.calendar.queue_notices()
        if notices or (report is not None and report.outcomes):
            self.wake_all()

    async def calendar_reminders(self) -> None:
        if await self.calendar.queue_reminders():
            self.wake_all()

    async def calendar_results(self) -> None:
        report = await self.calendar.pull()
        if report.checked:
            log.info("calendar %s", report.summary())
