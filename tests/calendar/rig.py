"""Shared set-up for the calendar tests that run against the sandbox: the bot's WeCom
client and outbox sender on a sandbox, and the rows the planner and the sender would write
(slot runs, their targets and cap counts, mass-send task rows)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.calendar import caps
from bot.calendar.effects import create_mass_task
from bot.calendar.records import MASS_TASK, record_task_created, task_targets
from bot.clock import FrozenClock
from bot.config import OutboxConfig, RetryConfig, WeComConfig
from bot.outbox import queue
from bot.outbox.kinds import default_effects
from bot.outbox.sender import Sender
from bot.sandbox import Limits, NewCustomer, Sandbox
from bot.store.db import Database
from bot.store.models import MassTask, OutboxItem, ReceiveCount, SlotRun, SlotTarget
from bot.wecom.client import WeComClient

ZHANG = "ZhangLi"
WANG = "WangJianhua"
MEMBER_NAMES = {ZHANG: "张丽", WANG: "王建华"}
DAY = date(2026, 11, 23)  # the `clock` fixture's Monday
PERIOD = "2026-11"
THEME = "周一财富早班车"
TEMPLATE = "calendar/t.md.j2"


def make_sandbox(
    clock: FrozenClock,
    *,
    seed: int,
    members: Iterable[str] = (ZHANG, WANG),
    limits: Limits | None = None,
) -> Sandbox:
    sandbox = Sandbox.create(clock, seed=seed, limits=limits)
    for userid in members:
        sandbox.world.add_member(userid, MEMBER_NAMES[userid])
    return sandbox


def make_client(db: Database, clock: FrozenClock, sandbox: Sandbox, *, seed: int) -> WeComClient:
    """The bot's client, holding the sandbox corp's own secret."""
    world = sandbox.world
    config = WeComConfig(
        corp_id=world.corp_id,
        agent_id=world.agent_id,
        secret=SecretStr(world.secret),
        api_base="http://sandbox/cgi-bin",
    )
    return WeComClient(
        config, db=db, clock=clock, transport=sandbox.api_transport(), rng=random.Random(seed)
    )


def make_sender(
    db: Database,
    clock: FrozenClock,
    client: WeComClient,
    *,
    config: OutboxConfig,
    retry: RetryConfig,
) -> Sender:
    """The product's outbox sender (every registered effect, the calendar's included)."""
    return Sender(
        db=db,
        clock=clock,
        client=client,
        effects=default_effects(),
        config=config,
        retry=retry,
        worker_id="w1",
        outbox=queue.Outbox(),
        rng=random.Random(1),
    )


def insert_run(
    session: Session,
    *,
    slot_id: str,
    channel: str,
    now: datetime,
    day: date = DAY,
    theme: str = THEME,
    template: str = TEMPLATE,
) -> int:
    """A planned slot run firing `now`; returns its id."""
    run = SlotRun(
        slot_id=slot_id,
        day=day,
        part="main",
        channel=channel,
        theme=theme,
        template=template,
        fire_at=now,
        status="planned",
        planned_at=now,
        stats={},
    )
    session.add(run)
    session.flush()
    return int(run.id)


def insert_targets(
    session: Session,
    run_id: int,
    targets: list[str],
    *,
    kind: str,
    sender: str = ZHANG,
    task_key: str | None = None,
) -> None:
    """A run's queued targets, each counted once against its receive cap."""
    for target in targets:
        session.add(
            SlotTarget(
                run_id=run_id,
                target_id=target,
                target_kind=kind,
                sender=sender,
                task_key=task_key,
                status="queued",
                period=PERIOD,
            )
        )
    session.flush()
    caps.count_run(session, kind, PERIOD, run_id, task_key=task_key)


def cap_kind(chat_type: str) -> str:
    return caps.CUSTOMER if chat_type == "single" else caps.GROUP


@dataclass
class CalendarRig:
    """The sandbox's WeCom, the bot's client on it, and the calendar's tables."""

    db: Database
    clock: FrozenClock
    sandbox: Sandbox
    client: WeComClient

    def customers(self, n: int, userid: str = ZHANG, *, prefix: str = "客户") -> list[str]:
        """`n` new customers of `userid`, named prefix0, prefix1, ..."""
        script = self.sandbox.script
        return [
            script.customer_adds_member(NewCustomer(f"{prefix}{i}"), userid).external_userid
            for i in range(n)
        ]

    def add_run(
        self, slot_id: str, *, channel: str = "single", theme: str = THEME, day: date = DAY
    ) -> int:
        now = self.clock.now()
        return self.db.call(
            lambda s: insert_run(s, slot_id=slot_id, channel=channel, now=now, day=day, theme=theme)
        )

    def queue_task(
        self,
        run_id: int,
        sender: str,
        targets: list[str],
        *,
        index: int = 0,
        chat_type: str = "single",
        text: str | None = None,
    ) -> dict[str, Any]:
        """What the planner writes for one task: the outbox row, its targets, their cap
        counts. Returns the row's payload."""
        key = f"cal:{run_id}:{index}:{sender}"
        field_name = "external_userid" if chat_type == "single" else "chat_id_list"
        payload: dict[str, Any] = {
            "key": key,
            "run_id": run_id,
            "chat_type": chat_type,
            "sender": sender,
            "text": f"第{index}条" if text is None else text,
            field_name: targets,
        }
        now = self.clock.now()

        def write(s: Session) -> None:
            queue.enqueue(s, key=key, kind=MASS_TASK, payload=payload, now=now)
            insert_targets(
                s,
                run_id,
                task_targets(payload),
                kind=cap_kind(chat_type),
                sender=sender,
                task_key=key,
            )

        self.db.call(write)
        return payload

    async def create_task(self, payload: dict[str, Any]) -> str:
        """WeCom accepts the task: the row is marked sent with its result and the mass_tasks
        row recorded (refused targets given back), as the sender does. Returns the msgid."""
        result = await create_mass_task(self.client, payload)
        now = self.clock.now()

        def write(s: Session) -> None:
            s.execute(
                update(OutboxItem)
                .where(OutboxItem.idempotency_key == payload["key"])
                .values(status=queue.SENT, result=result, done_at=now)
            )
            record_task_created(s, payload, result, now)

        self.db.call(write)
        return str(result["msgid"])

    def mass_task(self, msgid: str) -> MassTask:
        return self.db.call(
            lambda s: s.scalars(select(MassTask).where(MassTask.msgid == msgid)).one()
        )

    def target_statuses(self, run_id: int | None = None) -> dict[str, str]:
        query = select(SlotTarget.target_id, SlotTarget.status)
        if run_id is not None:
            query = query.where(SlotTarget.run_id == run_id)
        return dict(self.db.call(lambda s: s.execute(query).all()))

    def counts(self) -> dict[str, int]:
        query = select(ReceiveCount.target_id, ReceiveCount.count)
        return dict(self.db.call(lambda s: s.execute(query).all()))
