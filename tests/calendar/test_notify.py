"""Telling the managers: one card per manager per slot run, once its tasks exist on WeCom."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from bot.calendar import caps
from bot.calendar.notify import ManagerTasks, build_card, notice_key, plan_notices
from bot.calendar.records import MASS_TASK, record_task_created
from bot.clock import FrozenClock
from bot.config import Settings, WeComConfig
from bot.outbox import queue
from bot.outbox.kinds import APP_MESSAGE, default_effects
from bot.outbox.sender import Sender
from bot.sandbox import NewCustomer, Sandbox
from bot.store.db import Database
from bot.store.models import MassTask, OutboxItem, SlotRun, SlotTarget
from bot.wecom.client import WeComClient
from bot.wecom.models import TemplateCard

ZHANG = "ZhangLi"
WANG = "WangJianhua"
DAY = date(2026, 11, 23)


@dataclass
class Branch:
    """The sandbox's WeCom, the bot's client on it, and the calendar's tables."""

    db: Database
    clock: FrozenClock
    sandbox: Sandbox
    client: WeComClient
    settings: Settings

    def customers(self, n: int, userid: str) -> list[str]:
        script = self.sandbox.script
        return [
            script.customer_adds_member(NewCustomer(f"客户{userid}{i}"), userid).external_userid
            for i in range(n)
        ]

    def add_run(self, slot_id: str, *, channel: str, theme: str = "周一财富早班车") -> int:
        run = SlotRun(
            slot_id=slot_id,
            day=DAY,
            part="main",
            channel=channel,
            theme=theme,
            template="calendar/t.md.j2",
            fire_at=self.clock.now(),
            status="planned",
            planned_at=self.clock.now(),
            stats={},
        )

        def write(s: Any) -> int:
            s.add(run)
            s.flush()
            return int(run.id)

        return self.db.call(write)

    def queue_task(
        self, run_id: int, sender: str, targets: list[str], *, index: int = 0, kind: str = "single"
    ) -> dict[str, Any]:
        """What the planner writes: the task row, its targets, their cap counts."""
        key = f"cal:{run_id}:{index}:{sender}"
        field_name = "external_userid" if kind == "single" else "chat_id_list"
        payload = {
            "key": key,
            "run_id": run_id,
            "chat_type": kind,
            "sender": sender,
            "text": f"第{index}条",
            field_name: targets,
        }
        target_kind = caps.CUSTOMER if kind == "single" else caps.GROUP

        def write(s: Any) -> None:
            queue.enqueue(s, key=key, kind=MASS_TASK, payload=payload, now=self.clock.now())
            for target in targets:
                s.add(
                    SlotTarget(
                        run_id=run_id,
                        target_id=target,
                        target_kind=target_kind,
                        sender=sender,
                        task_key=key,
                        status="queued",
                        period="2026-11",
                    )
                )
            caps.count_sends(s, target_kind, "2026-11", targets)

        self.db.call(write)
        return payload

    async def create_task(self, payload: dict[str, Any]) -> str:
        """WeCom accepts the task row: the row is sent and its mass_tasks row recorded."""
        answer = await self.client.groupmsg.add_msg_template(
            chat_type=payload["chat_type"],
            external_userid=payload.get("external_userid"),
            chat_id_list=payload.get("chat_id_list"),
            sender=payload["sender"],
            text=payload["text"],
        )
        result = {"msgid": answer.msgid, "fail_list": answer.fail_list}
        now = self.clock.now()

        def write(s: Any) -> None:
            s.execute(
                update(OutboxItem)
                .where(OutboxItem.idempotency_key == payload["key"])
                .values(status=queue.SENT, result=result, done_at=now)
            )
            record_task_created(s, payload, result, now)

        self.db.call(write)
        return answer.msgid

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
    sandbox = Sandbox.create(clock, seed=11)
    sandbox.world.add_member(ZHANG, "张丽")
    sandbox.world.add_member(WANG, "王建华")
    world = sandbox.world
    config = WeComConfig(
        corp_id=world.corp_id,
        agent_id=world.agent_id,
        secret=SecretStr(world.secret),
        api_base="http://sandbox/cgi-bin",
    )
    client = WeComClient(
        config, db=db, clock=clock, transport=sandbox.api_transport(), rng=random.Random(3)
    )
    yield Branch(db, clock, sandbox, client, Settings())
    await client.aclose()


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
        branch.queue_task(grouped, ZHANG, groups, index=0, kind="group"),
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
    sender = Sender(
        db=branch.db,
        clock=branch.clock,
        client=branch.client,
        effects=default_effects(),
        config=branch.settings.outbox,
        retry=branch.settings.wecom.retry,
        worker_id="w1",
        outbox=queue.Outbox(),
        rng=random.Random(1),
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
