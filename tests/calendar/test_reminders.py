"""Reminders: at the configured local times only, at most three per task in 24 hours (so
WeCom's own limit is never hit), never for confirmed tasks, sent through the real outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.calendar.reminders import REMIND_TASK, plan_reminders, remind_key
from bot.calendar.results import pull_results
from bot.clock import SHANGHAI, FrozenClock
from bot.config import Settings
from bot.outbox.sender import Sender
from bot.store.db import Database
from bot.store.models import MassTask, OutboxItem
from tests.calendar.rig import ZHANG, CalendarRig, make_client, make_sandbox, make_sender

REMIND = "externalcontact/remind_groupmsg_send"


def at(day: int, hhmm: str) -> datetime:
    hour, minute = (int(p) for p in hhmm.split(":"))
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


@dataclass
class Branch(CalendarRig):
    settings: Settings
    sender: Sender
    run_id: int = 0
    made: int = 0

    async def task(self, n: int = 1, *, chat_type: str = "single") -> str:
        """A task as the planner queues it and WeCom accepts it: msgid."""
        self.made += 1
        if chat_type == "single":
            targets = self.customers(n, ZHANG, prefix=f"客户{self.made}-")
        else:
            script = self.sandbox.script
            targets = [script.create_group(ZHANG, f"群{self.made}-{i}").chat_id for i in range(n)]
        payload = self.queue_task(self.run_id, ZHANG, targets, index=self.made, chat_type=chat_type)
        return await self.create_task(payload)

    def plan(self, when: datetime | None = None) -> int:
        if when is not None:
            self.clock.set(when)
        return self.db.call(
            lambda s: plan_reminders(s, settings=self.settings, now=self.clock.now())
        )

    def reminded_at(self, msgid: str) -> list[str]:
        return list(self.mass_task(msgid).reminded_at)

    def remind_rows(self) -> list[OutboxItem]:
        return list(
            self.db.call(
                lambda s: s.scalars(
                    select(OutboxItem).where(OutboxItem.kind == REMIND_TASK).order_by(OutboxItem.id)
                ).all()
            )
        )

    def calls(self, msgid: str | None = None) -> int:
        return sum(
            1
            for c in self.sandbox.world.calls(REMIND)
            if c.errcode == 0 and (msgid is None or c.body.get("msgid") == msgid)
        )


def make_settings(**calendar: Any) -> Settings:
    return Settings.model_validate({"calendar": calendar})


async def make_branch(db: Database, clock: FrozenClock, settings: Settings) -> Branch:
    sandbox = make_sandbox(clock, seed=5, members=[ZHANG])
    client = make_client(db, clock, sandbox, seed=3)
    sender = make_sender(db, clock, client, config=settings.outbox, retry=settings.wecom.retry)
    branch = Branch(db, clock, sandbox, client, settings, sender)
    branch.run_id = branch.add_run("mon-vip", channel="single")
    return branch


@pytest.fixture
async def branch(db: Database, clock: FrozenClock) -> AsyncIterator[Branch]:
    made = await make_branch(db, clock, make_settings())
    yield made
    await made.client.aclose()


async def test_reminders_at_the_configured_times_only(branch: Branch) -> None:
    msgid = await branch.task(2)  # Monday 09:00
    assert branch.plan(at(23, "10:59")) == 0
    assert branch.plan(at(23, "11:00")) == 1
    assert branch.plan() == 0  # one row per task, day and remind time
    (row,) = branch.remind_rows()
    assert row.idempotency_key == remind_key(msgid, at(23, "11:00"))
    assert row.payload == {"msgid": msgid}
    assert await branch.sender.drain() == 1
    assert branch.calls(msgid) == 1
    assert len(branch.reminded_at(msgid)) == 1
    for when in ("11:30", "12:59", "14:00", "14:59"):
        assert branch.plan(at(23, when)) == 0
    assert branch.plan(at(23, "15:00") + timedelta(seconds=40)) == 1
    await branch.sender.drain()
    assert branch.plan(at(23, "19:45")) == 1
    await branch.sender.drain()
    assert branch.calls(msgid) == 3
    assert [datetime.fromisoformat(t) for t in branch.reminded_at(msgid)] == [
        at(23, "11:00"),
        at(23, "15:00") + timedelta(seconds=40),
        at(23, "19:45"),
    ]
    # The next day's 11:00 is 24 h after the first reminder: allowed again.
    assert branch.plan(at(24, "11:00")) == 1
    await branch.sender.drain()
    assert branch.calls(msgid) == 4
    assert [r.status for r in branch.remind_rows()] == ["sent"] * 4
    assert branch.sandbox.world.breaches("remind_limit") == []


async def test_at_most_three_in_24_hours(db: Database, clock: FrozenClock) -> None:
    settings = make_settings(remind_times=["10:00", "11:00", "12:00", "13:00", "14:00"])
    branch = await make_branch(db, clock, settings)
    try:
        msgid = await branch.task(1)
        planned = []
        for when in ("10:00", "11:00", "12:00", "13:00", "14:00"):
            planned.append(branch.plan(at(23, when)))
            await branch.sender.drain()
        assert planned == [1, 1, 1, 0, 0]
        # Tuesday 10:00: Monday 10:00's reminder has left the 24 h window, 11:00's has not.
        assert branch.plan(at(24, "10:00")) == 1
        await branch.sender.drain()
        assert branch.plan(at(24, "11:00")) == 1
        await branch.sender.drain()
        assert branch.plan(at(24, "11:30") - timedelta(minutes=1)) == 0
        assert branch.calls(msgid) == 5
        assert branch.sandbox.world.breaches("remind_limit") == []
    finally:
        await branch.client.aclose()


async def test_queued_reminders_count_towards_the_limit(db: Database, clock: FrozenClock) -> None:
    settings = make_settings(remind_times=["10:00", "10:20", "10:40"], max_reminders_per_day=2)
    branch = await make_branch(db, clock, settings)
    try:
        msgid = await branch.task(1)
        # The sender is down: nothing goes out, yet no more than two are ever queued.
        assert branch.plan(at(23, "10:00")) == 1
        assert branch.plan(at(23, "10:20")) == 1
        assert branch.plan(at(23, "10:40")) == 0
        assert await branch.sender.drain() == 2
        assert branch.calls(msgid) == 2
    finally:
        await branch.client.aclose()


async def test_none_for_confirmed_cancelled_old_or_later_tasks(branch: Branch) -> None:
    confirmed = await branch.task(1)
    cancelled = await branch.task(1)
    old = await branch.task(1)
    groups = await branch.task(2, chat_type="group")
    branch.sandbox.script.member_confirms_task(confirmed, ZHANG)
    await pull_results(branch.client, branch.db, settings=branch.settings, now=branch.clock.now())
    four_days = timedelta(days=4)
    branch.db.call(
        lambda s: s.execute(
            update(MassTask).where(MassTask.msgid == cancelled).values(status="cancelled")
        )
    )
    branch.db.call(
        lambda s: s.execute(
            update(MassTask)
            .where(MassTask.msgid == old)
            .values(created_at=branch.clock.now() - four_days)
        )
    )
    branch.clock.set(at(23, "11:30"))
    later = await branch.task(1)  # created after the 11:00 reminders
    assert branch.plan(at(23, "11:00") + timedelta(minutes=50)) == 1
    assert [r.payload["msgid"] for r in branch.remind_rows()] == [groups]
    await branch.sender.drain()
    assert branch.plan(at(23, "15:00")) == 2
    assert {r.payload["msgid"] for r in branch.remind_rows()} == {groups, later}
    await branch.sender.drain()
    assert branch.calls(groups) == 2
    assert branch.calls(later) == 1
    assert branch.calls() == 3


async def test_a_missed_remind_time_is_skipped_not_sent_late(branch: Branch) -> None:
    msgid = await branch.task(1)
    # Down from 10:30 to 12:01: the 11:00 reminder is not made up.
    assert branch.plan(at(23, "12:01")) == 0
    # Queued on time, but the sender was down past the grace: the row expires unsent.
    assert branch.plan(at(23, "15:00")) == 1
    branch.clock.set(at(23, "16:01"))
    await branch.sender.drain()
    assert [r.status for r in branch.remind_rows()] == ["expired"]
    assert branch.calls(msgid) == 0
    assert branch.reminded_at(msgid) == []


async def test_wecoms_limit_answer_is_final(branch: Branch) -> None:
    msgid = await branch.task(1)
    # Someone reminded by hand three times this morning; the bot cannot know.
    for minutes in (0, 10, 20):
        branch.clock.set(at(23, "10:00") + timedelta(minutes=minutes))
        await branch.client.groupmsg.remind_groupmsg_send(msgid)
    assert branch.plan(at(23, "11:00")) == 1
    await branch.sender.drain()
    for _ in range(5):
        branch.clock.advance(timedelta(minutes=5))
        await branch.sender.drain()
    (row,) = branch.remind_rows()
    assert (row.status, row.last_errcode, row.attempts) == ("skipped", 45009, 1)
    attempts = [c for c in branch.sandbox.world.calls(REMIND) if c.errcode != 0]
    assert len(attempts) == 1  # not retried
    assert branch.reminded_at(msgid) == []
