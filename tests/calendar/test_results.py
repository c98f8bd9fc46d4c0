"""Pulling results: confirmation, each recipient status counted, cap units given back once,
and the 72 h finalisation of tasks nobody confirmed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest
from sqlalchemy import select, update

from bot.calendar import caps
from bot.calendar.records import record_task_created
from bot.calendar.results import PullReport, SlotResult, pull_results, slot_results
from bot.clock import FrozenClock, utc_from_timestamp
from bot.config import Settings
from bot.sandbox import Limits, ReceiveCap
from bot.store.db import Database
from bot.store.models import MassTask, ReceiveCount
from tests.calendar.rig import THEME, WANG, ZHANG, CalendarRig, make_client, make_sandbox

SEND_RESULT = "externalcontact/get_groupmsg_send_result"


@dataclass
class Branch(CalendarRig):
    settings: Settings
    runs: dict[str, int] = field(default_factory=dict)
    made: int = 0

    def run(self, slot_id: str, channel: str = "single") -> int:
        if slot_id not in self.runs:
            self.runs[slot_id] = self.add_run(slot_id, channel=channel)
        return self.runs[slot_id]

    async def task(
        self, targets: list[str], *, slot_id: str = "mon-vip", chat_type: str = "single"
    ) -> str:
        """A task as the planner queues it (targets counted against the cap) and WeCom
        accepts it (mass_tasks row recorded, refusals given back)."""
        run_id = self.run(slot_id, chat_type)
        self.made += 1
        payload = self.queue_task(
            run_id, ZHANG, targets, index=self.made, chat_type=chat_type, text=THEME
        )
        return await self.create_task(payload)

    async def pull(self) -> PullReport:
        return await pull_results(
            self.client, self.db, settings=self.settings, now=self.clock.now()
        )

    def record(self, slot_id: str = "mon-vip") -> SlotResult:
        (result,) = self.db.call(lambda s: slot_results(s, [self.runs[slot_id]]))
        return result


async def make_branch(
    db: Database, clock: FrozenClock, limits: Limits | None = None
) -> AsyncIterator[Branch]:
    sandbox = make_sandbox(clock, seed=9, limits=limits)
    async with make_client(db, clock, sandbox, seed=3) as client:
        yield Branch(db, clock, sandbox, client, Settings())


@pytest.fixture
async def branch(db: Database, clock: FrozenClock) -> AsyncIterator[Branch]:
    async for made in make_branch(db, clock):
        yield made


@pytest.fixture
async def daily_cap(db: Database, clock: FrozenClock) -> AsyncIterator[Branch]:
    """WeCom set to one mass-send per customer per day, so status 3 is easy to reach."""
    async for made in make_branch(db, clock, Limits(receive_cap=ReceiveCap.daily())):
        yield made


async def test_results_are_pulled_until_final_with_each_status(daily_cap: Branch) -> None:
    branch = daily_cap
    c0, c1, c2, c3 = branch.customers(4)
    # c1 already had today's mass-send, from a task the calendar knows nothing of.
    other = await branch.client.groupmsg.add_msg_template(external_userid=[c1], text="他人群发")
    branch.sandbox.script.member_confirms_task(other.msgid, ZHANG)
    msgid = await branch.task([c0, c1, c2, c3, "wmstranger"])
    # WeCom refused the stranger at creation; that unit came back at once.
    assert branch.counts() == {c0: 1, c1: 1, c2: 1, c3: 1, "wmstranger": 0}

    report = await branch.pull()
    assert (report.checked, report.confirmed, report.finalised) == (1, 0, 0)
    task = branch.mass_task(msgid)
    assert (task.status, task.results_at, task.targets) == ("created", branch.clock.now(), 4)
    assert (await branch.pull()).checked == 0  # polled just now
    assert branch.sandbox.world.calls(SEND_RESULT) == []  # nothing to read before a confirm

    branch.sandbox.script.customer_deletes_member(c0, ZHANG)
    branch.clock.advance(timedelta(minutes=10))
    confirmed_at = branch.clock.now()
    branch.sandbox.script.member_confirms_task(msgid, ZHANG)
    assert (await branch.pull()).checked == 0  # the next poll is 30 minutes after the last
    branch.clock.advance(timedelta(minutes=20))
    report = await branch.pull()
    assert (report.checked, report.confirmed, report.finalised) == (1, 1, 1)
    assert (report.delivered, report.not_friend, report.already_received, report.unsent) == (
        2,
        1,
        1,
        0,
    )
    assert report.given_back == 2

    task = branch.mass_task(msgid)
    assert task.status == "final"
    assert task.confirmed_at == confirmed_at
    assert task.final_at == branch.clock.now()
    assert (task.delivered, task.not_friend, task.already_received, task.unsent) == (2, 1, 1, 0)
    assert branch.target_statuses() == {
        c0: "not_friend",
        c1: "already_received",
        c2: "delivered",
        c3: "delivered",
        "wmstranger": "not_friend",
    }
    assert branch.counts() == {c0: 0, c1: 0, c2: 1, c3: 1, "wmstranger": 0}
    assert branch.record() == SlotResult(
        run_id=branch.runs["mon-vip"],
        slot_id="mon-vip",
        day=date(2026, 11, 23),
        part="main",
        channel="single",
        theme="周一财富早班车",
        created=1,
        confirmed=1,
        final=1,
        targets=5,
        delivered=2,
        not_friend=2,
        already_received=1,
        unsent=0,
        queued=0,
    )
    assert branch.record().failed == 3

    # Final: never pulled again.
    branch.clock.advance(timedelta(hours=1))
    assert (await branch.pull()).checked == 0


async def test_cap_units_come_back_exactly_once(daily_cap: Branch) -> None:
    branch = daily_cap
    c0, c1 = branch.customers(2)
    msgid = await branch.task([c0, c1])
    branch.sandbox.script.customer_deletes_member(c0, ZHANG)
    branch.sandbox.script.member_confirms_task(msgid, ZHANG)
    assert (await branch.pull()).given_back == 1
    assert branch.counts() == {c0: 0, c1: 1}
    # A second instance that read the same results (or a repeated pass) changes nothing.
    branch.db.call(
        lambda s: s.execute(
            update(MassTask).values(status="confirmed", results_at=None, final_at=None)
        )
    )
    report = await branch.pull()
    assert (report.checked, report.finalised, report.given_back, report.not_friend) == (1, 1, 0, 0)
    assert branch.counts() == {c0: 0, c1: 1}
    task = branch.mass_task(msgid)
    assert (task.status, task.delivered, task.not_friend) == ("final", 1, 1)


async def test_group_results_give_back_group_units(branch: Branch) -> None:
    script = branch.sandbox.script
    kept = script.create_group(ZHANG, "理财交流群").chat_id
    gone = script.create_group(ZHANG, "社区二群").chat_id
    msgid = await branch.task([kept, gone], slot_id="mon-groups", chat_type="group")
    script.dismiss_group(gone)
    script.member_confirms_task(msgid, ZHANG)
    report = await branch.pull()
    assert (report.delivered, report.not_friend, report.given_back) == (1, 1, 1)
    assert branch.target_statuses() == {kept: "delivered", gone: "not_friend"}
    kinds = branch.db.call(
        lambda s: s.execute(select(ReceiveCount.target_kind, ReceiveCount.count)).all()
    )
    assert sorted((kind, count) for kind, count in kinds) == [(caps.GROUP, 0), (caps.GROUP, 1)]
    record = branch.record("mon-groups")
    assert (record.channel, record.created, record.confirmed, record.delivered) == (
        "group",
        1,
        1,
        1,
    )


async def test_unconfirmed_tasks_become_final_after_72_hours(branch: Branch) -> None:
    customers = branch.customers(3)
    groups = [branch.sandbox.script.create_group(ZHANG, f"群{i}").chat_id for i in range(2)]
    single = await branch.task(customers)
    grouped = await branch.task(groups, slot_id="mon-groups", chat_type="group")
    polls = 0
    while True:
        report = await branch.pull()
        polls += 1
        assert report.confirmed == 0
        if report.finalised:
            break
        assert branch.clock.now() - branch.mass_task(single).created_at < timedelta(hours=72)
        branch.clock.advance(timedelta(minutes=30))
    assert polls == 72 * 2 + 1
    assert (report.finalised, report.unsent, report.given_back) == (2, 5, 5)
    for msgid, unsent in ((single, 3), (grouped, 2)):
        task = branch.mass_task(msgid)
        assert (task.status, task.confirmed_at, task.delivered, task.unsent) == (
            "final",
            None,
            0,
            unsent,
        )
    assert set(branch.target_statuses().values()) == {"unsent"}
    assert set(branch.counts().values()) == {0}
    record = branch.record()
    assert (record.created, record.confirmed, record.unsent, record.queued) == (1, 0, 3, 0)
    # A confirmation after the end changes nothing the bot counted.
    branch.sandbox.script.member_confirms_task(single, ZHANG)
    branch.clock.advance(timedelta(hours=1))
    assert (await branch.pull()).checked == 0


async def test_a_late_partial_confirmation_counts_what_arrived(branch: Branch) -> None:
    customers = branch.customers(2)
    msgid = await branch.task(customers)
    await branch.pull()
    branch.clock.advance(timedelta(hours=71))
    branch.sandbox.script.member_confirms_task(msgid, ZHANG)
    send_time = int(branch.clock.timestamp())
    branch.clock.advance(timedelta(hours=2))
    report = await branch.pull()
    assert (report.confirmed, report.finalised, report.delivered, report.unsent) == (1, 1, 2, 0)
    task = branch.mass_task(msgid)
    assert task.confirmed_at == utc_from_timestamp(send_time)
    assert (task.status, task.delivered, task.unsent) == ("final", 2, 0)
    assert set(branch.counts().values()) == {1}


async def test_results_follow_cursors(branch: Branch) -> None:
    customers = branch.customers(620)
    msgid = await branch.task(customers)
    branch.sandbox.script.member_confirms_task(msgid, ZHANG)
    report = await branch.pull()
    assert (report.delivered, report.finalised) == (620, 1)
    assert len(branch.sandbox.world.calls(SEND_RESULT)) == 2  # 500 a page
    assert branch.mass_task(msgid).delivered == 620
    assert set(branch.target_statuses().values()) == {"delivered"}


async def test_a_failed_pull_is_tried_at_the_next_poll(branch: Branch) -> None:
    (customer,) = branch.customers(1)
    msgid = await branch.task([customer])
    # WeCom no longer knows the task (say, it was created with another app's secret).
    branch.sandbox.world.tasks.pop(msgid)
    report = await branch.pull()
    assert (report.checked, report.errors, report.finalised) == (1, 1, 0)
    assert branch.mass_task(msgid).results_at == branch.clock.now()
    assert (await branch.pull()).checked == 0
    branch.clock.advance(timedelta(hours=72))
    report = await branch.pull()
    assert (report.errors, report.finalised, report.unsent, report.given_back) == (1, 1, 1, 1)
    assert branch.mass_task(msgid).status == "final"


async def test_moments_are_confirmed_when_members_publish(branch: Branch) -> None:
    run_id = branch.run("wed-moments", "moments")
    created = await branch.client.moment.add_moment_task(
        text=THEME, visible_range={"sender_list": {"user_list": [ZHANG, WANG]}}
    )
    payload = {"key": "cal:m:0", "run_id": run_id, "chat_type": "moment", "senders": [ZHANG, WANG]}
    now = branch.clock.now()
    branch.db.call(lambda s: record_task_created(s, payload, {"jobid": created.jobid}, now))

    # The creation job is still running: nothing to record yet.
    report = await branch.pull()
    assert (report.checked, report.confirmed, report.finalised) == (1, 0, 0)
    poll = timedelta(minutes=branch.settings.calendar.results_poll_minutes)
    branch.clock.advance(poll)
    job = await branch.client.moment.get_moment_task_result(created.jobid)
    assert job.result is not None
    moment_id = job.result.moment_id

    assert (await branch.pull()).confirmed == 0  # nobody has published
    branch.sandbox.script.member_publishes_moment(moment_id, WANG)
    branch.clock.advance(poll)
    report = await branch.pull()
    assert (report.confirmed, report.finalised) == (1, 0)
    task = branch.mass_task(created.jobid)
    assert (task.status, task.targets, task.delivered) == ("confirmed", 2, 1)
    record = branch.record("wed-moments")
    assert (record.created, record.confirmed, record.targets) == (1, 1, 2)
    assert (record.delivered, record.queued, record.unsent) == (1, 1, 0)

    branch.sandbox.script.member_publishes_moment(moment_id, ZHANG)
    branch.clock.advance(poll)
    report = await branch.pull()
    assert (report.confirmed, report.finalised) == (0, 1)
    assert branch.mass_task(created.jobid).delivered == 2
    record = branch.record("wed-moments")
    assert (record.final, record.delivered, record.queued) == (1, 2, 0)


async def test_moments_nobody_publishes_end_unsent(branch: Branch) -> None:
    run_id = branch.run("wed-moments", "moments")
    created = await branch.client.moment.add_moment_task(
        text=THEME, visible_range={"sender_list": {"user_list": [ZHANG]}}
    )
    payload = {"key": "cal:m:1", "run_id": run_id, "chat_type": "moment", "senders": [ZHANG]}
    now = branch.clock.now()
    branch.db.call(lambda s: record_task_created(s, payload, {"jobid": created.jobid}, now))
    branch.clock.advance(timedelta(hours=branch.settings.calendar.results_final_hours))
    report = await branch.pull()
    assert (report.confirmed, report.finalised) == (0, 1)
    record = branch.record("wed-moments")
    assert (record.confirmed, record.delivered, record.unsent, record.queued) == (0, 0, 1, 0)
