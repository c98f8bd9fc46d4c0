"""The calendar's outbox effects through the real Sender against the sandbox: one task per
row, lost answers and crashes reconciled rather than repeated, fail_list caps given back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.calendar.effects import (
    MASS_TASK,
    MOMENT_TASK,
    calendar_effects,
    create_mass_task,
)
from bot.calendar.results import slot_results
from bot.clock import FrozenClock
from bot.config import OutboxConfig, RetryConfig
from bot.outbox import queue
from bot.outbox.kinds import default_effects
from bot.outbox.sender import Sender
from bot.sandbox.models import MassTask as SandboxTask
from bot.store.db import Database
from bot.store.models import MassTask, OutboxItem
from tests.calendar.rig import (
    WANG,
    ZHANG,
    CalendarRig,
    insert_run,
    insert_targets,
    make_client,
    make_sandbox,
    make_sender,
)

ADD = "externalcontact/add_msg_template"
LIST = "externalcontact/get_groupmsg_list_v2"
TEXT = "周一财富早班车：天天盈本周七日年化 2.1%，详情点链接。"
LINK: dict[str, Any] = {
    "msgtype": "link",
    "link": {
        "title": "本周活动",
        "picurl": "https://example.com/cover.png",
        "desc": "理财沙龙报名",
        "url": "https://example.com/h5/week?w=2026-W48",
    },
}
STRANGER = "wmstranger"


@dataclass
class Rig(CalendarRig):
    sender: Sender

    @property
    def tasks(self) -> dict[str, SandboxTask]:
        return self.sandbox.world.tasks

    def customers(self, n: int, userid: str = ZHANG, *, prefix: str = "客户") -> list[str]:
        exts = super().customers(n, userid, prefix=prefix)
        self.sandbox.world.ledger.pending_callbacks.clear()
        return exts

    def plan(self, targets: Sequence[str], kind: str = "customer", channel: str = "single") -> int:
        """A planned slot run whose targets are queued and counted against their cap."""
        now = self.clock.now()

        def write(session: Session) -> int:
            run_id = insert_run(
                session,
                slot_id=f"mon-wealth-brief-{kind}",
                channel=channel,
                now=now,
                day=now.date(),
                template="calendar/mon_wealth_brief.md.j2",
            )
            insert_targets(session, run_id, list(targets), kind=kind)
            return run_id

        return self.db.call(write)

    def enqueue(self, kind: str, payload: dict[str, Any]) -> None:
        now = self.clock.now()
        self.db.call(
            lambda s: queue.enqueue(s, key=payload["key"], kind=kind, payload=payload, now=now)
        )

    def row(self, key: str) -> OutboxItem:
        return self.db.call(
            lambda s: s.scalars(select(OutboxItem).where(OutboxItem.idempotency_key == key)).one()
        )

    def records(self) -> list[MassTask]:
        return self.db.call(lambda s: list(s.scalars(select(MassTask).order_by(MassTask.id))))

    def calls(self, path: str) -> int:
        return len(self.sandbox.world.calls(path))

    def die_holding(self) -> None:
        """Another worker claims every due row and dies before recording anything."""
        now = self.clock.now()
        self.db.call(
            lambda s: queue.claim(
                s, lane="normal", now=now, worker_id="dead", lease_seconds=60, limit=50
            )
        )

    async def later(self, seconds: float = 120) -> int:
        self.clock.advance(timedelta(seconds=seconds))
        return await self.sender.drain()


@pytest.fixture
async def rig(db: Database, clock: FrozenClock) -> AsyncIterator[Rig]:
    sandbox = make_sandbox(clock, seed=11)
    async with make_client(db, clock, sandbox, seed=7) as client:
        sender = make_sender(
            db, clock, client, config=OutboxConfig(lease_seconds=60), retry=RetryConfig()
        )
        yield Rig(db, clock, sandbox, client, sender)


def single(
    key: str,
    run_id: int,
    targets: list[str],
    *,
    text: str = TEXT,
    attachments: list[dict[str, Any]] | None = None,
    sender: str | None = ZHANG,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "key": key,
        "run_id": run_id,
        "chat_type": "single",
        "external_userid": targets,
        "text": text,
        "attachments": [LINK] if attachments is None else attachments,
    }
    if sender is not None:
        payload["sender"] = sender
    return payload


def test_the_product_registry_has_the_calendar_kinds() -> None:
    kinds = default_effects().kinds()
    assert {e.kind for e in calendar_effects()} == {MASS_TASK, MOMENT_TASK}
    assert {MASS_TASK, MOMENT_TASK} <= set(kinds)
    assert all(not e.idempotent for e in calendar_effects())


async def test_a_row_creates_one_task_and_gives_back_refused_targets(rig: Rig) -> None:
    exts = rig.customers(2)
    run_id = rig.plan([*exts, STRANGER])
    rig.enqueue(MASS_TASK, single("cal:1", run_id, [*exts, STRANGER]))
    assert await rig.sender.drain() == 1
    item = rig.row("cal:1")
    assert item.status == "sent"
    ((msgid, task),) = rig.tasks.items()
    assert item.result == {"msgid": msgid, "fail_list": [STRANGER]}
    assert sorted(r.target for r in task.recipients) == sorted(exts)
    assert (task.sender, task.text, task.attachments) == (ZHANG, TEXT, [LINK])
    (record,) = rig.records()
    assert (record.msgid, record.run_id, record.chat_type) == (msgid, run_id, "single")
    assert (record.sender, record.targets, record.status) == (ZHANG, 2, "created")
    assert rig.target_statuses(run_id) == {
        exts[0]: "queued",
        exts[1]: "queued",
        STRANGER: "not_friend",
    }
    assert rig.counts() == {exts[0]: 1, exts[1]: 1, STRANGER: 0}
    assert await rig.later() == 0
    assert len(rig.tasks) == 1


async def test_a_lost_answer_is_reconciled_not_repeated(rig: Rig) -> None:
    exts = rig.customers(2)
    run_id = rig.plan([*exts, STRANGER])
    rig.enqueue(MASS_TASK, single("cal:1", run_id, [*exts, STRANGER]))
    rig.sandbox.world.faults.timeout_next(ADD, after_effect=True)
    await rig.sender.drain()
    assert rig.row("cal:1").status == "verify"
    assert len(rig.tasks) == 1
    assert rig.records() == []

    assert await rig.later() == 1
    item = rig.row("cal:1")
    (msgid,) = rig.tasks
    assert item.status == "sent"
    assert item.result == {"msgid": msgid, "fail_list": [STRANGER], "reconciled": True}
    assert rig.calls(ADD) == 1
    assert rig.sender.stats.reconciled == 1
    (record,) = rig.records()
    assert (record.msgid, record.targets) == (msgid, 2)
    assert rig.target_statuses(run_id)[STRANGER] == "not_friend"
    assert rig.counts()[STRANGER] == 0
    # The reconcile looked at API-made tasks since the row was queued (less the slack).
    call = rig.sandbox.world.calls(LIST)[0]
    assert call.body["filter_type"] == 0
    assert call.body["chat_type"] == "single"
    assert call.body["end_time"] == int(rig.clock.timestamp())
    queued = int(item.created_at.timestamp())
    assert call.body["start_time"] == queued - 300


async def test_a_timeout_before_creation_is_retried_once(rig: Rig) -> None:
    exts = rig.customers(2)
    run_id = rig.plan(exts)
    rig.enqueue(MASS_TASK, single("cal:1", run_id, exts))
    rig.sandbox.world.faults.timeout_next(ADD, after_effect=False)
    await rig.sender.drain()
    assert rig.row("cal:1").status == "verify"
    assert rig.tasks == {}

    await rig.later()
    item = rig.row("cal:1")
    (msgid,) = rig.tasks
    assert item.status == "sent"
    assert item.result == {"msgid": msgid, "fail_list": []}
    assert rig.calls(ADD) == 2
    assert rig.calls(LIST) == 1
    assert [r.msgid for r in rig.records()] == [msgid]
    assert await rig.later() == 0
    assert len(rig.tasks) == 1


@pytest.mark.parametrize("reached_wecom", [True, False])
async def test_a_row_recovered_after_a_crash_is_reconciled(rig: Rig, reached_wecom: bool) -> None:
    exts = rig.customers(2)
    run_id = rig.plan(exts)
    payload = single("cal:1", run_id, exts)
    rig.enqueue(MASS_TASK, payload)
    rig.die_holding()
    if reached_wecom:
        # The dead worker's call went through before it died.
        await create_mass_task(rig.client, payload)
    assert await rig.sender.drain() == 0  # still leased
    assert await rig.later(61) == 1
    item = rig.row("cal:1")
    (msgid,) = rig.tasks
    assert item.status == "sent"
    assert item.result is not None
    assert item.result["msgid"] == msgid
    assert item.result.get("reconciled", False) is reached_wecom
    assert rig.calls(ADD) == 1
    assert [r.msgid for r in rig.records()] == [msgid]


async def test_reconcile_tells_apart_look_alike_tasks_across_pages(rig: Rig) -> None:
    world = rig.sandbox.world
    ours = rig.customers(2)
    theirs = rig.customers(1)
    others = rig.customers(1, WANG)
    run_id = rig.plan(ours)
    # Same text and attachments for other customers of the same member, for another
    # member, and the same text with another link: none of them is this row's task.
    decoys = [
        single("x:1", run_id, theirs),
        single("x:2", run_id, others, sender=WANG),
        single("x:3", run_id, ours, attachments=[{**LINK, "link": {**LINK["link"], "url": "u"}}]),
    ]
    for decoy in decoys:
        await create_mass_task(rig.client, decoy)
    # Enough unrelated tasks that the candidates span several pages.
    for n in range(150):
        msgid = f"msgdecoy{n:03d}"
        world.tasks[msgid] = SandboxTask(
            msgid, "single", world.now(), f"其他活动 {n}", [], ZHANG, None, 0
        )
    rig.enqueue(MASS_TASK, single("cal:1", run_id, ours))
    world.faults.timeout_next(ADD, after_effect=False)
    await rig.sender.drain()
    await rig.later()
    item = rig.row("cal:1")
    assert item.status == "sent"
    assert item.result is not None
    assert "reconciled" not in item.result
    assert rig.calls(LIST) == 2
    assert len(rig.tasks) == 3 + 150 + 1
    task = rig.tasks[item.result["msgid"]]
    assert sorted(r.target for r in task.recipients) == sorted(ours)


async def test_a_group_task_is_reconciled(rig: Rig) -> None:
    world = rig.sandbox.world
    exts = rig.customers(3)
    groups = [
        world.create_group(ZHANG, "理财交流群", exts[:2]).chat_id,
        world.create_group(ZHANG, "代发工资群", exts[2:]).chat_id,
    ]
    foreign = world.create_group(WANG, "王经理的群").chat_id
    targets = [*groups, foreign]
    run_id = rig.plan(targets, kind="group", channel="group")
    payload = {
        "key": "cal:g",
        "run_id": run_id,
        "chat_type": "group",
        "sender": ZHANG,
        "chat_id_list": targets,
        "text": TEXT,
        "attachments": [],
    }
    rig.enqueue(MASS_TASK, payload)
    world.faults.timeout_next(ADD, after_effect=True)
    await rig.sender.drain()
    await rig.later()
    item = rig.row("cal:g")
    (msgid,) = rig.tasks
    assert item.result == {"msgid": msgid, "fail_list": [foreign], "reconciled": True}
    assert rig.sandbox.world.calls(LIST)[0].body["chat_type"] == "group"
    (record,) = rig.records()
    assert (record.chat_type, record.targets) == ("group", 2)
    assert rig.target_statuses(run_id)[foreign] == "not_friend"
    assert rig.counts() == {groups[0]: 1, groups[1]: 1, foreign: 0}


async def test_a_malformed_row_fails_without_calling_wecom(rig: Rig) -> None:
    exts = rig.customers(1)
    run_id = rig.plan(exts)
    rig.enqueue(MASS_TASK, single("cal:nosender", run_id, exts, sender=None))
    rig.enqueue(MASS_TASK, {**single("cal:badtype", run_id, exts), "chat_type": "moment"})
    rig.enqueue(MASS_TASK, single("cal:notargets", run_id, []))
    await rig.sender.drain()
    for key in ("cal:nosender", "cal:badtype", "cal:notargets"):
        assert rig.row(key).status == "failed", key
    assert rig.calls(ADD) == 0
    assert rig.records() == []


async def upload_cover(rig: Rig) -> str:
    cover = await rig.client.media.upload_attachment(
        "image", b"\x89PNG" + b"0" * 64, filename="c.png"
    )
    return cover.media_id


def moment_payload(key: str, run_id: int, tag_ids: list[str], cover: str) -> dict[str, Any]:
    return {
        "key": key,
        "run_id": run_id,
        "chat_type": "moment",
        "senders": [ZHANG, WANG],
        "tag_ids": tag_ids,
        "text": "周末理财沙龙，欢迎报名",
        "attachments": [
            {
                "msgtype": "link",
                "link": {
                    "title": "理财沙龙",
                    "url": "https://example.com/h5/salon",
                    "media_id": cover,
                },
            }
        ],
    }


async def test_a_moment_row_creates_one_job_and_its_record(rig: Rig) -> None:
    world = rig.sandbox.world
    group = world.create_tag_group("客户等级")
    gold = world.create_tag(group.group_id, "金卡")
    run_id = rig.plan([], channel="moments")
    cover = await upload_cover(rig)
    rig.enqueue(MOMENT_TASK, moment_payload("cal:m", run_id, [gold.tag_id], cover))
    assert await rig.sender.drain() == 1
    item = rig.row("cal:m")
    (jobid,) = world.moment_jobs
    assert (item.status, item.result) == ("sent", {"jobid": jobid})
    (record,) = rig.records()
    assert (record.chat_type, record.msgid, record.sender, record.targets) == (
        "moment",
        jobid,
        None,
        2,  # the members asked to publish
    )
    rig.clock.advance(3)
    result = await rig.client.moment.get_moment_task_result(jobid)
    assert result.result is not None
    moment = world.moments[result.result.moment_id]
    assert (moment.senders, moment.tag_ids) == ([ZHANG, WANG], [gold.tag_id])
    assert await rig.later() == 0
    assert len(world.moment_jobs) == 1


async def test_a_moment_for_every_customer_has_no_tag_filter(rig: Rig) -> None:
    run_id = rig.plan([], channel="moments")
    cover = await upload_cover(rig)
    rig.enqueue(MOMENT_TASK, moment_payload("cal:m", run_id, [], cover))
    await rig.sender.drain()
    (call,) = rig.sandbox.world.calls("externalcontact/add_moment_task")
    assert call.body["visible_range"] == {"sender_list": {"user_list": [ZHANG, WANG]}}


async def test_a_moment_with_an_unknown_outcome_is_given_up_not_repeated(rig: Rig) -> None:
    world = rig.sandbox.world
    run_id = rig.plan([], channel="moments")
    cover = await upload_cover(rig)
    rig.enqueue(MOMENT_TASK, moment_payload("cal:lost", run_id, [], cover))
    world.faults.timeout_next("externalcontact/add_moment_task", after_effect=True)
    await rig.sender.drain()
    item = rig.row("cal:lost")
    assert item.status == "failed"
    assert "outcome unknown" in (item.last_error or "")
    rig.enqueue(MOMENT_TASK, moment_payload("cal:crash", run_id, [], cover))
    rig.die_holding()
    await rig.later(61)
    assert rig.row("cal:crash").status == "failed"
    await rig.later()
    assert len(world.calls("externalcontact/add_moment_task")) == 1
    assert len(world.moment_jobs) == 1
    assert rig.records() == []


@pytest.mark.parametrize("ending", ["expired", "failed"])
async def test_a_task_never_created_gives_its_targets_back(rig: Rig, ending: str) -> None:
    exts = rig.customers(2)
    run_id = rig.add_run("mon-wealth-brief")
    payload = rig.queue_task(run_id, ZHANG, exts, index=1)
    assert rig.counts() == {exts[0]: 1, exts[1]: 1}
    if ending == "expired":
        # Past the slot's lateness window before the sender got to it.
        past = rig.clock.now() - timedelta(minutes=1)
        rig.db.call(
            lambda s: s.execute(
                update(OutboxItem)
                .where(OutboxItem.idempotency_key == payload["key"])
                .values(expires_at=past)
            )
        )
    else:
        rig.sandbox.world.faults.fail_next(ADD, 40003)  # refused for good
    await rig.sender.drain()
    assert rig.row(payload["key"]).status == ending
    assert rig.tasks == {}
    assert rig.target_statuses(run_id) == {exts[0]: "unsent", exts[1]: "unsent"}
    assert rig.counts() == {exts[0]: 0, exts[1]: 0}
    (record,) = rig.db.call(lambda s: slot_results(s, [run_id]))
    assert (record.created, record.targets, record.unsent, record.queued) == (0, 2, 2, 0)
