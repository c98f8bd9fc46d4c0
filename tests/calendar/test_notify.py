"""Telling the managers: one card per manager per slot run, once its tasks exist on WeCom."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.calendar.notify import ManagerTasks, build_card, notice_key, plan_notices
from bot.clock import FrozenClock
from bot.config import Settings
from bot.outbox import queue
from bot.outbox.kinds import APP_MESSAGE
from bot.store.db import Database
from bot.store.models import MassTask, OutboxItem, SlotRun
from bot.wecom.models import TemplateCard
from tests.calendar.rig import (
    DAY,
    WANG,
    ZHANG,
    CalendarRig,
    make_client,
    make_sandbox,
    make_sender,
)


@dataclass
class Branch(CalendarRig):
    settings: Settings

    def customers(self, n: int, userid: str = ZHANG, *, prefix: str = "") -> list[str]:
        # Named after their member, so no two customers on the cards share a name.
        return super().customers(n, userid, prefix=prefix or f"客户{userid}")

    def fail_task(self, payload: dict[str, Any]) -> None:
        self.db.call(
            lambda s: s.execute(
                update(OutboxItem)
                .where(OutboxItem.idempotency_key == payload["key"])
                .values(status=queue.FAILED)
            )
        )

    def notices(self) -> dict[str, dict[str, Any]]:
        rows = self.db.call(
            lambda s: s.scalars(
                select(OutboxItem).where(OutboxItem.kind == APP_MESSAGE).order_by(OutboxItem.id)
            ).all()
        )
        return {row.idempotency_key: row.payload for row in rows}

    def plan(self) -> int:
        return self.db.call(lambda s: plan_notices(s, settings=self.settings, now=self.clock.now()))


@pytest.fixture
async def branch(db: Database, clock: FrozenClock) -> AsyncIterator[Branch]:
    sandbox = make_sandbox(clock, seed=11)
    async with make_client(db, clock, sandbox, seed=3) as client:
        yield Branch(db, clock, sandbox, client, Settings())


def notified_at(branch: Branch, run_id: int) -> datetime | None:
    return branch.db.call(lambda s: s.get_one(SlotRun, run_id).notified_at)


def card_of(payload: dict[str, Any]) -> dict[str, Any]:
    assert payload["msgtype"] == "template_card"
    content: dict[str, Any] = payload["content"]
    return content


def reach(card: dict[str, Any]) -> dict[str, str]:
    return {item["keyname"]: item["value"] for item in card["horizontal_content_list"]}


async def test_one_card_per_manager_per_run_with_counts(branch: Branch) -> None:
    zhang = branch.customers(5, ZHANG)
    wang = branch.customers(4, WANG)
    groups = [branch.sandbox.script.create_group(ZHANG, f"理财交流{i}群").chat_id for i in range(3)]
    single = branch.add_run("mon-vip", channel="single")
    grouped = branch.add_run("mon-groups", channel="group", theme="周一群早报")
    tasks = [
        branch.queue_task(single, ZHANG, zhang[:3], index=0),
        branch.queue_task(single, ZHANG, zhang[3:], index=1),
        # One customer WeCom refuses at creation: the card counts those it accepted.
        branch.queue_task(single, WANG, [*wang, "wmstranger"], index=2),
        branch.queue_task(grouped, ZHANG, groups, index=0, chat_type="group"),
    ]
    for payload in tasks:
        await branch.create_task(payload)

    assert branch.plan() == 3
    notices = branch.notices()
    assert set(notices) == {
        notice_key(single, ZHANG),
        notice_key(single, WANG),
        notice_key(grouped, ZHANG),
    }
    zhang_card = card_of(notices[notice_key(single, ZHANG)])
    assert notices[notice_key(single, ZHANG)]["touser"] == ZHANG
    assert zhang_card["card_type"] == "text_notice"
    assert "周一财富早班车" in zhang_card["main_title"]["title"]
    assert zhang_card["emphasis_content"]["title"] == "2"
    assert reach(zhang_card) == {"主题群发": "2 条", "客户": "5 位"}
    assert "群发助手" in zhang_card["sub_title_text"]
    assert zhang_card["card_action"]["url"].endswith("week=2026-W48")
    assert reach(card_of(notices[notice_key(single, WANG)])) == {"主题群发": "1 条", "客户": "4 位"}
    assert reach(card_of(notices[notice_key(grouped, ZHANG)])) == {
        "主题群发": "1 条",
        "客户群": "3 个",
    }
    # Counts only: no customer's name or id appears on any card.
    text = json.dumps(notices, ensure_ascii=False)
    for ext in [*zhang, *wang]:
        assert ext not in text
        assert branch.sandbox.world.customers[ext].name not in text
    task_ids = {card_of(p)["task_id"] for p in notices.values()}
    assert len(task_ids) == 3
    assert all(len(t.encode()) <= 128 for t in task_ids)

    # Once told, a run is not told again, whatever happens later.
    assert branch.plan() == 0
    assert len(branch.notices()) == 3


async def test_the_cards_reach_the_managers(branch: Branch) -> None:
    run = branch.add_run("mon-vip", channel="single")
    await branch.create_task(branch.queue_task(run, ZHANG, branch.customers(2, ZHANG)))
    await branch.create_task(branch.queue_task(run, WANG, branch.customers(1, WANG), index=1))
    assert branch.plan() == 2
    sender = make_sender(
        branch.db,
        branch.clock,
        branch.client,
        config=branch.settings.outbox,
        retry=branch.settings.wecom.retry,
    )
    assert await sender.drain() == 2
    world = branch.sandbox.world
    for userid in (ZHANG, WANG):
        (message,) = world.inbox[userid]
        assert message.msgtype == "template_card"
        assert message.task_id in world.cards
    assert {
        row.status for row in branch.db.call(lambda s: s.scalars(select(OutboxItem)).all())
    } == {"sent"}


async def test_no_card_before_the_tasks_exist(branch: Branch) -> None:
    run = branch.add_run("mon-vip", channel="single")
    first = branch.queue_task(run, ZHANG, branch.customers(2, ZHANG), index=0)
    second = branch.queue_task(run, ZHANG, branch.customers(1, ZHANG), index=1)
    assert branch.plan() == 0  # nothing created on WeCom yet
    await branch.create_task(first)
    assert branch.plan() == 0  # one task row still open: wait for the run's last task
    notified = notified_at(branch, run)
    assert notified is None
    branch.clock.advance(timedelta(minutes=2))
    await branch.create_task(second)
    assert branch.plan() == 1
    card = card_of(branch.notices()[notice_key(run, ZHANG)])
    assert reach(card) == {"主题群发": "2 条", "客户": "3 位"}
    notified = notified_at(branch, run)
    assert notified == branch.clock.now()


async def test_a_run_whose_tasks_all_failed_gets_no_card(branch: Branch) -> None:
    run = branch.add_run("mon-vip", channel="single")
    branch.fail_task(branch.queue_task(run, ZHANG, branch.customers(2, ZHANG)))
    assert branch.plan() == 0
    assert branch.notices() == {}
    # Settled: the run is not looked at again.
    assert notified_at(branch, run) is not None


async def test_only_unconfirmed_tasks_of_planned_runs(branch: Branch) -> None:
    done = branch.add_run("mon-vip", channel="single")
    await branch.create_task(branch.queue_task(done, ZHANG, branch.customers(1, ZHANG)))
    now = branch.clock.now()
    branch.db.call(
        lambda s: s.execute(update(MassTask).values(status="confirmed", confirmed_at=now))
    )
    skipped = branch.add_run("tue-half", channel="single")
    branch.db.call(
        lambda s: s.execute(update(SlotRun).where(SlotRun.id == skipped).values(status="skipped"))
    )
    assert branch.plan() == 0
    assert branch.notices() == {}


def test_the_card_keeps_to_wecom_field_lengths() -> None:
    run = SlotRun(
        id=7,
        slot_id="mon-vip",
        day=DAY,
        part="main",
        channel="single",
        theme="一个特别特别长的主题名字" * 4,
        template="calendar/t.md.j2",
        fire_at=datetime(2026, 11, 23, 1, 30, tzinfo=UTC),
        status="planned",
        stats={},
    )
    card = build_card(run, ManagerTasks("zhang.li", tasks=1, customers=12), settings=Settings())
    TemplateCard.model_validate(card)
    assert len(card["main_title"]["title"]) <= 26
    assert card["main_title"]["desc"] == "11月23日 周一 09:30"
    assert len(card["source"]["desc"]) <= 13
    assert all(len(i["keyname"]) <= 5 for i in card["horizontal_content_list"])


async def test_a_run_too_old_to_confirm_gets_no_card(branch: Branch) -> None:
    run = branch.add_run("mon-vip", channel="single")
    await branch.create_task(branch.queue_task(run, ZHANG, branch.customers(1, ZHANG)))
    branch.clock.advance(timedelta(hours=73))  # the bot was down for three days
    assert branch.plan() == 0
    assert notified_at(branch, run) == branch.clock.now()
